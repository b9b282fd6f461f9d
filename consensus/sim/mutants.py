"""Deliberately broken variants of the core and of the driver: the simulator's negative controls.

A test that cannot fail is a defect. Each mutant breaks one rule the protocol depends on, and
``tests/sim/test_simulator.py`` asserts the simulator catches it within the CI seeds, with the
kind of violation that rule's breach must cause. The real code is ``MUTANTS["none"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from consensus.core import (
    Accept,
    Accepted,
    Ballot,
    Message,
    Persist,
    Promise,
    Ready,
    RebuildInfo,
    Replica,
    Value,
)
from consensus.core.acceptor import Acceptor
from consensus.core.leader import Leadership
from consensus.core.ready import LogRead

if TYPE_CHECKING:
    from .cluster import SimCluster, SimNode

ReadyHandler = Callable[["SimCluster", "SimNode", int, Replica, Ready], None]


def correct_ready_loop(
    cluster: SimCluster,
    node: SimNode,
    group_id: int,
    replica: Replica,
    ready: Ready,
    after_write: Callable[[], None] | None = None,
) -> None:
    """The runtime's contract: send the eager messages, persist, send the rest, apply, advance.
    A crash may strike between any two of these steps. ``after_write``: what a broken driver
    does right after the Ready's write, before it counts as persisted."""
    cluster.send_all(ready.eager_messages)
    cluster.maybe_crash()
    cluster.persist(node, group_id, ready)
    if after_write is not None:
        after_write()
    ready.mark_persisted()
    cluster.maybe_crash()
    cluster.send_all(ready.messages)
    cluster.maybe_crash()
    cluster.apply_and_serve(node, group_id, ready)
    replica.advance(ready)


def send_before_persist_loop(
    cluster: SimCluster, node: SimNode, group_id: int, replica: Replica, ready: Ready
) -> None:
    """BROKEN: votes leave the node before they are durable; a crash in between forgets them."""
    cluster.send_all(ready.eager_messages + ready._messages)
    cluster.maybe_crash()
    cluster.persist(node, group_id, ready)
    ready.mark_persisted()
    cluster.apply_and_serve(node, group_id, ready)
    replica.advance(ready)


def forget_promise_loop(
    cluster: SimCluster, node: SimNode, group_id: int, replica: Replica, ready: Ready
) -> None:
    """BROKEN: the driver writes a Ready's votes and chosen values but drops its promise to
    another node's ballot, so a restarted node may promise (or vote) again in a ballot below one
    it promised before. (A promise of its own ballot it still writes: dropping that too was
    caught at once, when the candidate counts its own promise, which is ``drop-own-promise``.)"""
    promised = ready.persist.promised
    if promised is not None and promised.node_id != node.node_id:
        ready.persist = dataclasses.replace(ready.persist, promised=None)
    correct_ready_loop(cluster, node, group_id, replica, ready)


def stale_ballot_write_loop(
    cluster: SimCluster, node: SimNode, group_id: int, replica: Replica, ready: Ready
) -> None:
    """BROKEN: when a node campaigns, a stale write-behind copy of its promise lands after the
    new one: the disk goes back to the promise it held before, while the Prepares of the new
    ballot go out. Restarted now, the node could campaign in that ballot again, and two
    proposals of one ballot break Paxos (ballot.py: a node never reuses a ballot because its
    own promise of it is durable before the Prepare leaves).

    ``Checker.on_persisted_promise`` catches it at the write, on every seed. Without that
    check, ``Checker.on_own_vote_counted`` would a moment later, when the candidate counts its
    promise to itself (on every one of the first 300 seeds, 3 nodes or 5). Before that one, the
    simulator's other promise checks never did: they compared the disk with the Promises and
    Accepteds the node *sent*, and a candidate's promise to itself never leaves the node. The
    restart audit (core/audit.py) notices it at a later restart if a peer that saw the Prepare
    is still up, which the simulator reports as intact storage taken for a stale one (in 279 of
    the first 300 seeds with 3 nodes and 294 with 5, with neither check); without the audit as
    well, 1 seed in those 600 reused a ballot and chose two values."""
    promised = ready.persist.promised
    if promised is None or promised.node_id != node.node_id:
        correct_ready_loop(cluster, node, group_id, replica, ready)
        return
    before = node.disks[group_id].storage.promised

    def stale_copy_lands_last() -> None:
        cluster.write(node, group_id, Persist(promised=before))

    correct_ready_loop(cluster, node, group_id, replica, ready, stale_copy_lands_last)


def drop_own_vote_loop(
    cluster: SimCluster, node: SimNode, group_id: int, replica: Replica, ready: Ready
) -> None:
    """BROKEN: the driver leaves a leader's votes for its own proposals out of the write, as if
    nothing depended on them: no message waits for them (the Accepts left before the write, the
    acks come from the peers' disks). But the leader counts its own vote towards the majority
    (``Replica.advance``), so a value may be chosen with a vote that a crash takes back. With 3
    nodes: the leader and one peer choose v; the leader announces it (its next Accepts and
    Heartbeats carry the chosen prefix and leave before that Ready's write, which holds the
    chosen mark) and crashes; the peer learns v; the next leader's phase 1 over the forgetful
    leader and the third node finds no vote for v and gets another value chosen.

    ``Checker.on_own_vote_counted`` catches it when a leader counts its first unwritten vote: on
    every one of the first 300 seeds, with 3 nodes and with 5. Before that check the checks fed
    by the network never saw a leader's own votes (they leave no node): only the restart audit
    (core/audit.py) noticed the loss, through a peer that had seen a Heartbeat claim the vote,
    which the simulator reports as intact storage taken for a stale one, in 146 of those seeds
    with 3 nodes and 219 with 5; without the audit as well, 3 and 1 of them chose two values
    (agreement), and the rest passed. The restart half of the check alone (own votes counted,
    compared with the disk at restart) catches it in 290 and 287."""
    own = tuple(write for write in ready.persist.accepted if write.ballot.node_id == node.node_id)
    if own:
        others = tuple(write for write in ready.persist.accepted if write not in own)
        ready.persist = dataclasses.replace(ready.persist, accepted=others)
    correct_ready_loop(cluster, node, group_id, replica, ready)


def drop_own_promise_loop(
    cluster: SimCluster, node: SimNode, group_id: int, replica: Replica, ready: Ready
) -> None:
    """BROKEN: the driver leaves a candidate's promise of its own ballot out of the write (its
    votes, and its promises to other candidates, it writes), while the Prepares of that ballot
    go out and the candidate counts its own promise. Restarted, the node holds an older promise
    than the ballot it campaigned (and maybe led) in, and may campaign in that ballot again: two
    proposals in one ballot.

    Unlike ``stale-ballot-write``, no write goes back, so ``Checker.on_persisted_promise`` never
    sees it; ``Checker.on_own_vote_counted`` catches it when the candidate counts its promise,
    on every one of the first 300 seeds (3 nodes and 5). Before that check only the restart
    audit noticed (a peer that saw the Prepare): in 279 of those seeds with 3 nodes and 294
    with 5; without the audit as well, one seed with 3 nodes (72) reused a ballot and chose two
    values, and every other seed passed. The restart half of the check alone catches it in 298
    of them with 3 nodes and 298 with 5 (its promise went backwards)."""
    promised = ready.persist.promised
    if promised is not None and promised.node_id == node.node_id:
        ready.persist = dataclasses.replace(ready.persist, promised=None)
    correct_ready_loop(cluster, node, group_id, replica, ready)


class SkipRecoveryReplica(Replica):
    """BROKEN: a new leader ignores the values reported in promises and proposes its own."""

    def _recovery_values(self, promises: list[Promise], start: int) -> dict[int, Value]:
        return {}


class LaxAcceptor(Acceptor):
    """BROKEN: votes for an Accept even when its ballot is below the promise."""

    def on_accept(self, msg: Accept) -> Message | LogRead | None:
        promised: Ballot = self.promised
        if msg.ballot < promised:
            self.promised = msg.ballot
            try:
                return super().on_accept(msg)
            finally:
                self.promised = promised
        return super().on_accept(msg)


class AcceptBelowPromiseReplica(Replica):
    def _make_acceptor(self, promised: Ballot) -> Acceptor:
        return LaxAcceptor(promised, self.log)


class UnconfirmedReadsReplica(Replica):
    """BROKEN: a leader answers reads from its chosen prefix without a majority confirming it
    still leads, so a deposed leader cut off from the others serves stale reads."""

    def _release_reads(self, leadership: Leadership) -> None:
        leadership.acked_seq = dict.fromkeys(self.config.peers, leadership.heartbeat_seq)
        super()._release_reads(leadership)


class EarlySeqReadsReplica(Replica):
    """BROKEN: a read takes the sequence number of the heartbeat already sent, not of the next
    one, so acks sent before the read arrived confirm it. A leader deposed in between (a
    hand-over it has not heard the end of) serves an index older than what the new leader has
    applied. The race is narrow (the leader's next message to a voter of its successor closes
    it): the default chaos hit it in none of hundreds of seeds; ``--scenario hand-over-reads``
    catches it within a few."""

    def _serve_reads(self, leadership: Leadership) -> None:
        if self.log.chosen_upto >= leadership.recovery_top:
            for read in leadership.reads:
                if read.seq < 0:
                    read.index = self.log.chosen_upto
                    read.seq = leadership.heartbeat_seq  # the real code: + 1
                    leadership.read_heartbeat_due = True
        if leadership.read_heartbeat_due:
            leadership.read_heartbeat_due = False
            self._broadcast_heartbeat(leadership)
            self._release_reads(leadership)


class OverReportingReplica(Replica):
    """BROKEN: answers a restarted node's audit as if it had seen that node vote one instance
    further than it did, so intact storage is taken for a restored backup (core/audit.py).

    Only where it did see the node vote (``seen_instance > 0``): a peer that saw no vote at all
    is what every node of a new cluster hears while it rebuilds, and over-reporting that breaks
    the first rebuild, which the liveness check catches at once without any audit at all."""

    def _send(self, msg: Message) -> None:
        if isinstance(msg, RebuildInfo) and msg.seen_instance > 0:
            msg = dataclasses.replace(msg, seen_instance=msg.seen_instance + 1)
        super()._send(msg)


class AnyBallotAcksReplica(Replica):
    """BROKEN: a leader counts an ``Accepted`` of any ballot towards the value it has in flight
    in that instance, not only those of its current ballot.

    An ``Accepted`` carries a ballot and an instance but no value, and the leader does not check
    anything else: it marks chosen ``inflight[instance]``, its current proposal. A leader gets
    only acks of its own ballots (an ``Accepted`` goes back to the Accept's sender), so a stale
    one is an ack of a proposal this node made in an earlier leadership, and it counts only if
    it arrives while the same node proposes in the same instance again.

    Often harmless, which is why it hides: with 3 nodes, if the leader's own vote in the earlier
    ballot b1 was written, that vote and the stale ack's already chose b1's value v1, so v1 is
    what its phase 1 (which always hears its own promise, reporting that vote) proposes again,
    and counting the stale ack merely calls v1 chosen a little early. What breaks it is the
    leader losing that vote: Accepts leave before the leader's own vote is written (the eager
    messages of a Ready), and a crash in between leaves a peer's vote for a proposal its
    proposer forgot. Then (3 nodes): node 1 proposes c1 in instance i in ballot b1, only node
    2's vote is cast, node 1 crashes before writing its own; it restarts and leads again in b3
    with node 3's promise, which knows nothing of i, and proposes c3 there; node 2's ack of b1
    arrives (a duplicate, or just late) and node 1 applies c3, chosen by "its vote in b3 and
    node 2's", which was for c1. If b3's Accepts are lost and node 1 goes down, nodes 2 and 3
    choose c1 (tests/sim/test_any_ballot_acks.py plays this out). With 5 nodes, acks of two
    earlier ballots can also add up to a "majority" that no ballot had.

    The random chaos never gets there: in 600 seeds no stale ack reached a leader while its
    instance was in flight again. ``--scenario stale-acks`` makes both faults common (leaders
    crash part-way through sending their Accepts; the network hands a leader old acks of the
    instance it proposes in), and rule 7 of invariants.py (a value is learned chosen only once
    a majority voted for it in one ballot) catches the claim when it is made. Agreement alone
    almost never would: the claim usually comes true a moment later, when the Accepts of b3
    are answered."""

    def _on_accepted(self, msg: Accepted) -> None:
        leadership = self._leadership
        if leadership is None or msg.ballot == leadership.ballot:
            super()._on_accepted(msg)
            return
        # The real code returns here for any other ballot.
        if msg.src == self.node_id:
            self._own_votes_upto = max(self._own_votes_upto, msg.instance)
        else:
            self._saw_vote(msg.src, msg.ballot, msg.instance)
        leadership.last_heard[msg.src] = self._now
        voters = leadership.votes.get(msg.instance)
        if voters is None:
            return
        voters.add(msg.src)
        if len(voters) >= self.config.quorum:
            self._mark_chosen(msg.instance, leadership.inflight[msg.instance])


class AllVotesReplica(Replica):
    """BROKEN: a leader counts a value chosen only once every node voted for it, so it makes
    progress while all nodes are up and none once one is down for good."""

    def _mark_chosen(self, instance: int, value: Value) -> None:
        leadership = self._leadership
        if leadership is not None and instance in leadership.inflight:
            voters = leadership.votes.get(instance, set())
            if len(voters | {self.node_id}) < len(self.config.node_ids):
                return
        super()._mark_chosen(instance, value)


def deterministic_result(node_id: int, request_id: str, position: int) -> bytes:
    """The simulated state machine's result: where the command falls in the group's order."""
    return f"{request_id}@{position}".encode()


def node_3_differs(node_id: int, request_id: str, position: int) -> bytes:
    """BROKEN: node 3's state machine answers otherwise (other code under the same name)."""
    return deterministic_result(node_id, request_id, position + (node_id == 3))


@dataclass(frozen=True)
class Mutant:
    description: str
    replica_class: type[Replica] = Replica
    handle_ready: ReadyHandler = correct_ready_loop
    rebuild_new_storage: bool = True
    """Whether a node with a replaced disk rebuilds before voting (core/rebuild.py)."""
    audit_restarts: bool = True
    """Whether a node restarted on its storage audits it before voting (core/audit.py), which
    also notices a replaced disk when a peer remembers the node's votes."""
    result_of: Callable[[int, str, int], bytes] = deterministic_result
    """A node's state machine's result for a command (node id, request id, position)."""


MUTANTS: dict[str, Mutant] = {
    "none": Mutant("the real core and driver"),
    "skip-recovery": Mutant(
        "a new leader ignores accepted values reported in promises",
        replica_class=SkipRecoveryReplica,
    ),
    "accept-below-promise": Mutant(
        "an acceptor accepts a ballot below its promise",
        replica_class=AcceptBelowPromiseReplica,
    ),
    "unconfirmed-reads": Mutant(
        "a leader serves read indexes without a majority confirming its leadership",
        replica_class=UnconfirmedReadsReplica,
    ),
    "early-seq": Mutant(
        "a read counts acks of the heartbeat sent before it arrived (caught only with "
        "--scenario hand-over-reads)",
        replica_class=EarlySeqReadsReplica,
    ),
    "any-ballot-acks": Mutant(
        "a leader counts acks of any ballot towards the value it proposes (caught only with "
        "--scenario stale-acks)",
        replica_class=AnyBallotAcksReplica,
    ),
    "all-votes": Mutant(
        "a leader waits for every node's vote (caught mostly with a node left down: --left-down)",
        replica_class=AllVotesReplica,
    ),
    "over-reporting-audit": Mutant(
        "a node tells a restarted peer it saw it vote further than it did (a false stale verdict)",
        replica_class=OverReportingReplica,
    ),
    "no-rebuild": Mutant(
        "a node whose disk was replaced votes at once (caught only with --wipe-rate)",
        rebuild_new_storage=False,
        audit_restarts=False,
    ),
    "divergent-results": Mutant(
        "node 3's state machine gives other results (the result digests must differ)",
        result_of=node_3_differs,
    ),
    "send-before-persist": Mutant(
        "the driver sends a Ready's messages before persisting it (crash in between)",
        handle_ready=send_before_persist_loop,
    ),
    "stale-ballot-write": Mutant(
        "the driver writes a candidate's new ballot, then the promise it replaced (the disk "
        "goes back while the Prepares go out)",
        handle_ready=stale_ballot_write_loop,
    ),
    "forget-promise": Mutant(
        "the driver persists votes but not promises to other nodes' ballots (a restart forgets "
        "what it promised)",
        handle_ready=forget_promise_loop,
    ),
    "drop-own-vote": Mutant(
        "the driver leaves a leader's votes for its own proposals out of the write (the leader "
        "counts them all the same)",
        handle_ready=drop_own_vote_loop,
    ),
    "drop-own-promise": Mutant(
        "the driver leaves a candidate's promise of its own ballot out of the write (it "
        "counts it all the same)",
        handle_ready=drop_own_promise_loop,
    ),
}
