"""``Replica``: one node's multi-Paxos participant for one group, with no IO at all.

Theory of operation
-------------------
Inputs are ``step(message)``, ``tick()`` and ``submit(command)``. They only change memory and queue
output. ``ready()`` collects that output into one ``Ready``; the caller persists ``ready.persist``,
calls ``ready.mark_persisted()``, sends ``ready.messages``, applies ``ready.committed`` and calls
``advance(ready)``. Votes the replica casts for itself are held back and counted inside
``advance()``, so no vote, local or remote, counts before it is durable.

Roles: a *follower* votes and learns; a *candidate* runs phase 1 with a fresh ballot; a *leader*
runs phase 2 for new commands until it meets a higher ballot (a Nack, a Prepare, an Accept or a
Heartbeat of a higher ballot), loses contact with a majority, chooses nothing for
``quorum_loss_limit`` ticks while work is pending (stuck: ``_tick_leader``) or learns that another
value was chosen in its range.

Elections: a follower whose election timer expires first asks its peers (PreVote, no state
changed anywhere) and campaigns only when a majority, itself included, hears no working leader.
A node that was cut off therefore cannot bump ballots while away and depose a healthy leader on
its return (its Nacks of the leader's messages would carry its higher promise); a node that still
hears a working leader ignores Prepares too (leader stickiness). A leader's hand-over
(``TimeoutNow``) skips both: to the group's preferred node once it is caught up, and to the most
up-to-date reachable peer when this node is about to stop (``hand_over``).

Learning: the leader announces its chosen prefix ``chosen_upto`` with its ballot ``b`` on every
Accept and Heartbeat (every ``heartbeat_ticks``, and at once to a follower whose forwarded command
was chosen, see ``_announce_chosen``). A follower marks instance ``i <= chosen_upto`` chosen when
its own vote for ``i`` is in ballot ``b``: the leader proposed exactly one value per instance in
``b``, and a leader never counts an instance of its own range as chosen unless that value is the
chosen one (a chosen value learned from elsewhere that differs from its proposal makes it step
down). Everything else is fetched with LearnRequest/LearnReply.

Client commands: a command submitted here stays *pending* until it is seen chosen; it is forwarded
to the leader and sent again every ``retry_ticks``. Retries may put one request id into the log
twice; the applier skips the repeat (exactly-once is an apply-time property, see DESIGN.md §3).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from .acceptor import Acceptor
from .audit import Audit, SeenVotes, audit_ticks
from .ballot import ZERO_BALLOT, Ballot
from .config import ReplicaConfig
from .errors import LocalProtocolError, RemoteProtocolError
from .leader import Candidacy, Leadership, PendingRead, PreVoteRound, recovery_values
from .log import InstanceLog
from .messages import (
    NOOP,
    Accept,
    Accepted,
    ChosenEntry,
    Command,
    FillRequest,
    Forward,
    Heartbeat,
    HeartbeatAck,
    LearnReply,
    LearnRequest,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndexReply,
    ReadIndexRequest,
    RebuildInfo,
    RebuildQuery,
    TimeoutNow,
    Value,
    value_size,
)
from .reads import ReadAsks
from .ready import Failed, LogRead, Persist, Ready, RebuildWrite
from .rebuild import Rebuild
from .recent import RecentlyChosen
from .storage import InitialState

EAGER_TYPES = (
    TimeoutNow,
    Accept,
    Heartbeat,
    HeartbeatAck,
    Forward,
    LearnRequest,
    LearnReply,
    ReadIndexRequest,
    ReadIndexReply,
    RebuildQuery,
    RebuildInfo,
    FillRequest,
)
"""Messages that cast no vote and report nothing unpersisted: they may leave before the Ready's
write (see ready.py). A HeartbeatAck says "I promised nothing above your ballot": true of the
durable promise too, which is never above the one in memory (a RebuildInfo's promise is used as a
lower bound, which the one in memory is too). Prepare is not among them: it needs the candidate's
own promise on disk, so a restart can never reuse its ballot."""


RETIRING = "this node is stopping: retry on another node"
"""The reason ``submit`` fails with once ``hand_over()`` was called."""


class RandomSource(Protocol):
    """The one source of randomness: election jitter, candidacy nonces and the rebuild token.
    Pass a ``random.Random`` seeded differently at every start of the node: a restarted node
    must not repeat the nonces of its previous run (messages.Prepare.nonce)."""

    def randrange(self, start: int, stop: int, /) -> int: ...


@dataclass(slots=True)
class PendingCommand:
    command: Command
    sent_at: int
    """Tick of the last forward; the command is sent again ``retry_ticks`` later if not chosen."""


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Replica:
    def __init__(
        self,
        config: ReplicaConfig,
        state: InitialState,
        rng: RandomSource,
        first_read_token: int = 1,
    ) -> None:
        """``first_read_token`` must differ between incarnations of the node (pass a random
        number): a late ReadIndexReply addressed to a previous incarnation must not complete a
        read of this one with its older index."""
        self.config = config
        self._rng = rng
        self.log = InstanceLog(state, config.cache_size, config.cache_bytes)
        self.acceptor = self._make_acceptor(state.promised)
        self.role = Role.FOLLOWER
        self.step_down_reason: str | None = None
        """Why this replica last stopped leading or campaigning (for the runtime's log)."""
        self.leader_id: int | None = None
        self.leader_ballot: Ballot = ZERO_BALLOT
        self._candidacy: Candidacy | None = None
        self._pre_vote: PreVoteRound | None = None
        self._leadership: Leadership | None = None
        self._highest_round = state.promised.round
        self._now = 0
        self._election_elapsed = 0
        self._election_timeout = self._random_election_timeout()
        self._learn_elapsed = 0
        self._retry_elapsed = 0
        self.peer_chosen_upto: dict[int, int] = {}
        self._learn_turn = 0
        self._pending: dict[str, PendingCommand] = {}
        self._recently_chosen = RecentlyChosen(config.recent_request_ids)
        self._read_asks = ReadAsks(first_read_token)
        # Output buffers, drained by ready().
        self._outbox: list[Message] = []
        self._forwards: list[Command] = []
        self._chosen: list[ChosenEntry] = []
        self._committed: list[ChosenEntry] = []
        self._log_reads: list[LogRead] = []
        self._resolved: list[str] = []
        self._failed: list[Failed] = []
        # Between ready() and advance(): the Ready handed out and the self-votes it holds back.
        self._unadvanced: Ready | None = None
        self._held_back: list[Message] = []
        # A node whose storage is new votes only once that is safe (rebuild.py).
        self._rebuild: Rebuild | None = None
        self._rebuild_write: RebuildWrite | None = None
        self.rebuilt_upto: int | None = None
        """The target of the rebuild this replica finished, if it did (for the runtime's log)."""
        # A node restarted on its old storage checks it first (audit.py).
        self._votes_seen: dict[int, SeenVotes] = {}
        self._own_votes_upto = 0
        """The highest instance of this node's counted (durable) votes, for its Heartbeats."""
        self._audit: Audit | None = None
        self.stale_storage_reason: str | None = None
        """Why this replica found its storage older than its votes, if it did (audit.py)."""
        self.audit_unanswered: list[int] = []
        """The peers whose answers the audit at start did not wait for (audit.py)."""
        self._retiring = False
        """``hand_over()`` was called: this node is about to stop (see there)."""
        self._hand_over_to: int | None = None
        """The peer asked to take over (``TimeoutNow``) while this replica still leads."""
        self._hand_over_among: frozenset[int] | None = None
        """The peers ``hand_over`` may pick (None: any it hears from)."""
        if state.rebuilding:
            self._rebuild = Rebuild(rng.randrange(1, 2**62), target=state.rebuild_target)
            if state.rebuild_target is None:
                self._ask_for_rebuild_info()
            else:
                self._finish_rebuild_if_caught_up()
        elif state.audit and len(config.node_ids) >= 3:
            # Two nodes: every majority holds the other node, whose storage is intact, so old
            # votes here cannot lose a value; and a rebuild could wait for instances that only
            # this node's vote can get chosen, for good.
            self._audit = Audit(
                rng.randrange(1, 2**62),
                self.acceptor.promised,
                self.log.highest_instance(),
                deadline=audit_ticks(config.election_ticks),
            )
            self._ask_for_audit()
        self._handlers: dict[type[Message], Callable[[Message], None]] = {
            Prepare: self._on_prepare,  # type: ignore[dict-item]
            Promise: self._on_promise,  # type: ignore[dict-item]
            Nack: self._on_nack,  # type: ignore[dict-item]
            Accept: self._on_accept,  # type: ignore[dict-item]
            Accepted: self._on_accepted,  # type: ignore[dict-item]
            Heartbeat: self._on_heartbeat,  # type: ignore[dict-item]
            HeartbeatAck: self._on_heartbeat_ack,  # type: ignore[dict-item]
            LearnRequest: self._on_learn_request,  # type: ignore[dict-item]
            LearnReply: self._on_learn_reply,  # type: ignore[dict-item]
            Forward: self._on_forward,  # type: ignore[dict-item]
            ReadIndexRequest: self._on_read_index_request,  # type: ignore[dict-item]
            ReadIndexReply: self._on_read_index_reply,  # type: ignore[dict-item]
            TimeoutNow: self._on_timeout_now,  # type: ignore[dict-item]
            PreVote: self._on_pre_vote,  # type: ignore[dict-item]
            PreVoteReply: self._on_pre_vote_reply,  # type: ignore[dict-item]
            RebuildQuery: self._on_rebuild_query,  # type: ignore[dict-item]
            RebuildInfo: self._on_rebuild_info,  # type: ignore[dict-item]
            FillRequest: self._on_fill_request,  # type: ignore[dict-item]
        }

    def _make_acceptor(self, promised: Ballot) -> Acceptor:
        """Hook for the simulator's deliberately broken variants (negative controls)."""
        return Acceptor(promised, self.log)

    def _recovery_values(self, promises: list[Promise], start: int) -> dict[int, Value]:
        """Hook for the simulator's negative controls; see ``leader.recovery_values``."""
        return recovery_values(promises, start)

    # ------------------------------------------------------------------ introspection

    @property
    def node_id(self) -> int:
        return self.config.node_id

    @property
    def group_id(self) -> int:
        return self.config.group_id

    @property
    def chosen_upto(self) -> int:
        return self.log.chosen_upto

    @property
    def known_chosen_upto(self) -> int:
        """The highest chosen index this replica knows of: its own, or one a peer reported
        (how far behind a node is: readiness, local reads, catch-up)."""
        return max(self.log.chosen_upto, max(self.peer_chosen_upto.values(), default=0))

    @property
    def promised(self) -> Ballot:
        return self.acceptor.promised

    @property
    def ballot(self) -> Ballot:
        """The ballot this node leads or campaigns with, else the highest leader ballot seen."""
        if self._leadership is not None:
            return self._leadership.ballot
        if self._candidacy is not None:
            return self._candidacy.ballot
        return self.leader_ballot

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def retiring(self) -> bool:
        """``hand_over()`` was called: this replica proposes and campaigns no more."""
        return self._retiring

    @property
    def rebuilding(self) -> bool:
        """True while this node's storage is new and it does not vote yet (rebuild.py)."""
        return self._rebuild is not None

    @property
    def may_vote(self) -> bool:
        """False while this replica may not vote: rebuilding, or auditing its storage at start."""
        return self._rebuild is None and self._audit is None

    @property
    def rebuild_waiting_for(self) -> list[int]:
        """While rebuilding and asking: the peers that have not answered yet."""
        rebuild = self._rebuild
        if rebuild is None or rebuild.target is not None:
            return []
        return rebuild.unanswered(self.config.peers)

    @property
    def rebuild_target(self) -> int | None:
        """While rebuilding: the instance it must know chosen before it votes (None: not known
        until the peers have answered)."""
        return self._rebuild.target if self._rebuild is not None else None

    # ------------------------------------------------------------------ inputs

    def step(self, msg: Message) -> None:
        """Feed one message from a peer (or a held-back vote from ``advance``)."""
        config = self.config
        if msg.group_id != config.group_id:
            raise RemoteProtocolError(
                f"message for group {msg.group_id} in group {config.group_id}"
            )
        if msg.dst != config.node_id or msg.src not in config.node_ids:
            raise RemoteProtocolError(f"message from {msg.src} to {msg.dst} is not for this node")
        handler = self._handlers.get(type(msg))
        if handler is None:
            raise RemoteProtocolError(f"unknown message type {type(msg).__name__}")
        handler(msg)

    def tick(self) -> None:
        self._now += 1
        if self._leadership is not None:
            self._tick_leader(self._leadership)
        elif self._rebuild is not None:
            if self._now % self.config.retry_ticks == 0:
                if self._rebuild.target is None:
                    self._ask_for_rebuild_info()
                else:
                    self._ask_leader_to_fill(self._rebuild.target)
        elif self._audit is not None:
            if self._now >= self._audit.deadline:
                # The peers still silent are down (their memory is gone) or slow: vote.
                self.audit_unanswered = self._audit.unanswered(self.config.peers)
                self._audit = None
            elif self._now % self.config.retry_ticks == 0:
                self._ask_for_audit()
        else:
            self._election_elapsed += 1
            if self._election_elapsed >= self._election_timeout and not self._retiring:
                self._start_pre_vote()
        self._learn_elapsed += 1
        if self._learn_elapsed >= self.config.learn_ticks:
            self._learn_elapsed = 0
            self._request_missing()
        self._retry_elapsed += 1
        if self._retry_elapsed >= self.config.retry_ticks:
            self._retry_elapsed = 0
            self._retry_pending()

    def submit(self, command: Command) -> None:
        """Propose a client command. Its request id resolves in a later Ready once it is chosen."""
        if command.request_id in self._pending:
            return
        if self._retiring:
            self._failed.append(Failed(command.request_id, RETIRING))
            return
        if len(self._pending) >= self.config.max_pending:
            self._failed.append(Failed(command.request_id, "too many pending commands"))
            return
        self._pending[command.request_id] = PendingCommand(command, self._now)
        self._route(command)

    def hand_over(self, reachable: Collection[int] | None = None) -> int | None:
        """This node is about to stop (a graceful shutdown): stop leading, for good.

        If it leads, it asks the most up-to-date peer it heard from recently (``_hand_over_target``;
        among ``reachable`` only, when given: the runtime knows which links are up) to campaign at
        once with ``TimeoutNow``, as a leader does for the group's preferred node, and returns
        that peer (None: it does not lead, or hears no such peer). From now on the replica
        proposes nothing new: commands queued here wait, forwards are dropped (their senders
        retry, and forward again to whoever leads next), and ``submit`` fails at once. It never
        campaigns again and ignores a ``TimeoutNow`` to it; a candidacy in progress is dropped. It
        promises nothing to candidates (``_on_prepare`` says why) but still votes for a leader's
        proposals and learns; it steps down when it hears the new leader, and then forwards its
        own pending commands to it like any follower. The ``TimeoutNow`` follows a heartbeat,
        which tells every follower how far the log is chosen.

        Safety is that of any election: ``TimeoutNow`` only makes the peer start one. If it gets
        lost, the peer still campaigns once its election timer runs out, as without hand-over
        (``TimeoutNow`` is sent again every ``retry_ticks`` meanwhile, to the peer that is best
        then)."""
        self._retiring = True
        self._hand_over_among = None if reachable is None else frozenset(reachable)
        self._pre_vote = None
        if self.role is Role.CANDIDATE:
            self._step_down("this node is stopping")
        leadership = self._leadership
        if leadership is None:
            return None
        self._hand_over_to = self._hand_over_target(leadership)
        if self._hand_over_to is not None:
            self._broadcast_heartbeat(leadership)
            self._send_timeout_now(leadership)
        return self._hand_over_to

    def was_chosen_recently(self, request_id: str) -> bool:
        """Whether this node saw a command with ``request_id`` chosen (among the last
        ``recent_request_ids``). A leader drops such a command as a late retry instead of
        proposing it again, so whoever resubmits it must answer it from the stored result."""
        return request_id in self._recently_chosen

    def chosen_instance(self, request_id: str) -> int | None:
        """The instance a recently chosen command with ``request_id`` was chosen in, if this
        node saw it chosen (see ``was_chosen_recently``)."""
        return self._recently_chosen.get(request_id)

    def forget_chosen_before(self, cutoff: int) -> None:
        """The stored results of instances below ``cutoff`` were pruned (a pruning marker was
        applied here): a retry of one of their request ids is a new command again
        (storage/pruning.py), to be proposed, not answered from a result that is gone."""
        self._recently_chosen.forget_before(cutoff)

    def read_index(self, read_id: int) -> None:
        """Start a linearizable read. A later Ready's ``reads`` gives its index: once the local
        state machine has applied that instance, local state reflects every command acknowledged
        before this call (Raft's ReadIndex: the leader's chosen prefix, confirmed by a majority
        acking a heartbeat sent after the read arrived, so no newer leader can have chosen more).
        """
        self._read_asks.start(read_id, self._now)
        self._route_read(self.node_id, read_id)

    # ------------------------------------------------------------------ outputs

    def has_ready(self) -> bool:
        if self._unadvanced is not None:
            return False
        leadership = self._leadership
        return bool(
            self._outbox
            or self._rebuild_write is not None
            or self.acceptor.dirty
            or self._chosen
            or self._committed
            or self._log_reads
            or self._resolved
            or self._failed
            or self._read_asks.completed
            or (leadership is not None and self._reads_to_serve(leadership))
            or (self._forwards and self.leader_id is not None)
            or (
                leadership is not None
                and not self._retiring
                and leadership.may_propose(
                    self.config.window,
                    self.config.max_batch_commands,
                    self.config.max_batch_bytes,
                    self.config.max_inflight_bytes,
                )
            )
        )

    def ready(self) -> Ready:
        if self._unadvanced is not None:
            raise LocalProtocolError("ready() called again before advance()")
        self._propose_queued()
        if self._leadership is not None:
            self._serve_reads(self._leadership)
        self._announce_chosen()
        self._flush_forwards()
        promised, accepted = self.acceptor.take_writes()
        outgoing = [m for m in self._outbox if m.dst != self.node_id]
        self._held_back = [m for m in self._outbox if m.dst == self.node_id]
        eager = [m for m in outgoing if isinstance(m, EAGER_TYPES)]
        if eager:
            outgoing = [m for m in outgoing if not isinstance(m, EAGER_TYPES)]
        ready = Ready(
            group_id=self.group_id,
            persist=Persist(promised, accepted, tuple(self._chosen), self._rebuild_write),
            _messages=tuple(outgoing),
            eager_messages=tuple(eager),
            committed=tuple(self._committed),
            log_reads=tuple(self._log_reads),
            resolved=tuple(self._resolved),
            failed=tuple(self._failed),
            reads=tuple(self._read_asks.completed),
        )
        self._outbox = []
        self._rebuild_write = None
        self._chosen = []
        self._committed = []
        self._log_reads = []
        self._resolved = []
        self._failed = []
        self._read_asks.completed.clear()
        self._unadvanced = ready
        return ready

    def advance(self, ready: Ready) -> None:
        """The caller persisted ``ready`` and sent its messages: count the held-back self-votes."""
        if ready is not self._unadvanced:
            raise LocalProtocolError("advance() must be given the Ready from the last ready()")
        if not ready.persisted:
            raise LocalProtocolError("advance() before the Ready was marked persisted")
        self._unadvanced = None
        held_back, self._held_back = self._held_back, []
        for msg in held_back:
            self.step(msg)

    # ------------------------------------------------------------------ acceptor side

    def _on_prepare(self, msg: Prepare) -> None:
        if msg.ballot.node_id == msg.src:  # a candidate's promise to itself is durable first
            self._saw_vote(msg.src, msg.ballot)
        if not self.may_vote:
            return  # no promises while rebuilding or auditing: a lost message
        if self._retiring and msg.src != self.node_id:
            # This node is stopping (hand_over): its promise would report how far it knows the
            # log chosen, maybe further than anyone else does (followers learn of a leader's own
            # commands from its next message), and the new leader, which proposes only above
            # that, would have to learn the rest from this node once it is gone: it was stuck
            # until its stuck timer. The others' promises recover every chosen value instead.
            # A majority without this node can elect (it stops: no majority needs it).
            return
        if msg.src != self.node_id and not msg.force and self._has_live_leader(msg.src):
            # Leader stickiness (Raft's CheckQuorum/PreVote idea): while a leader demonstrably
            # works, a node that cannot hear it (cut off, one way or both) must not depose it by
            # campaigning. Ignoring a Prepare is always safe: it is a lost message.
            return
        self._observe(msg.ballot)
        reply = self.acceptor.on_prepare(msg)
        if (
            isinstance(reply, Promise)
            and msg.src != self.node_id
            and msg.ballot > self.leader_ballot
        ):
            self.leader_id = None
        # No election-timer reset here: a candidate that cannot hear its voters would otherwise
        # keep them from ever timing out and electing someone who can.
        self._send(reply)

    def _has_live_leader(self, candidate: int) -> bool:
        """Whether this node leads with a majority in touch, or follows a leader other than
        ``candidate`` that it heard from within the election timeout."""
        config = self.config
        leadership = self._leadership
        if leadership is not None:
            heard = sum(
                1
                for node_id in config.peers
                if self._now - leadership.last_heard.get(node_id, -(10**9)) < config.election_ticks
            )
            return heard + 1 >= config.quorum
        return (
            self.role is Role.FOLLOWER
            and self.leader_id is not None
            and self.leader_id != candidate
            and self._election_elapsed < config.election_ticks
        )

    def _on_accept(self, msg: Accept) -> None:
        self._observe(msg.ballot)
        if not self.may_vote:
            self._follow_without_voting(msg.src, msg.ballot, msg.chosen_upto)
            return
        reply = self.acceptor.on_accept(msg)
        if msg.ballot >= self.acceptor.promised and msg.src != self.node_id:
            self._heard_from_leader(msg.ballot)
        self._learn_commit(msg.src, msg.ballot, msg.chosen_upto)
        if isinstance(reply, LogRead):
            self._log_reads.append(reply)
        elif reply is not None:
            self._send(reply)

    def _on_heartbeat(self, msg: Heartbeat) -> None:
        if msg.ballot.node_id == msg.src:
            self._saw_vote(msg.src, msg.ballot, msg.voted)
        self._observe(msg.ballot)
        if not self.may_vote:
            # No HeartbeatAck: it says "I promised nothing above your ballot", which the lost
            # storage may have, and a leader counts acks to confirm linearizable reads.
            self._follow_without_voting(msg.src, msg.ballot, msg.chosen_upto)
            return
        if msg.ballot < self.acceptor.promised:
            self._send(
                Nack(
                    group_id=self.group_id,
                    src=self.node_id,
                    dst=msg.src,
                    ballot=msg.ballot,
                    promised=self.acceptor.promised,
                )
            )
            return
        self._heard_from_leader(msg.ballot)
        self._learn_commit(msg.src, msg.ballot, msg.chosen_upto)
        self._send(
            HeartbeatAck(
                group_id=self.group_id,
                src=self.node_id,
                dst=msg.src,
                ballot=msg.ballot,
                seq=msg.seq,
                chosen_upto=self.log.chosen_upto,
            )
        )

    # ------------------------------------------------------------------ proposer side

    def _on_promise(self, msg: Promise) -> None:
        self._saw_vote(msg.src, msg.ballot)
        candidacy = self._candidacy
        if candidacy is None or msg.ballot != candidacy.ballot or msg.nonce != candidacy.nonce:
            return
        candidacy.promises[msg.src] = msg
        self._note_peer_progress(msg.src, msg.chosen_upto)
        if len(candidacy.promises) >= self.config.quorum:
            self._become_leader(candidacy)

    def _on_nack(self, msg: Nack) -> None:
        self._observe(msg.promised)

    def _on_accepted(self, msg: Accepted) -> None:
        if msg.src == self.node_id:  # held back until persisted: durable (audit.py)
            self._own_votes_upto = max(self._own_votes_upto, msg.instance)
        else:
            self._saw_vote(msg.src, msg.ballot, msg.instance)
        leadership = self._leadership
        if leadership is None or msg.ballot != leadership.ballot:
            return
        leadership.last_heard[msg.src] = self._now
        voters = leadership.votes.get(msg.instance)
        if voters is None:
            return
        voters.add(msg.src)
        if len(voters) >= self.config.quorum:
            self._mark_chosen(msg.instance, leadership.inflight[msg.instance])

    def _on_heartbeat_ack(self, msg: HeartbeatAck) -> None:
        leadership = self._leadership
        if leadership is None or msg.ballot != leadership.ballot:
            return
        leadership.last_heard[msg.src] = self._now
        self._note_peer_progress(msg.src, msg.chosen_upto)
        if msg.seq > leadership.acked_seq.get(msg.src, 0):
            leadership.acked_seq[msg.src] = msg.seq
            self._release_reads(leadership)

    def _on_forward(self, msg: Forward) -> None:
        if self._leadership is not None and not self._retiring:
            for command in msg.commands:
                self._leadership.enqueue(command, self._recently_chosen, origin=msg.src)
        # Not the leader (any more), or handing over: drop. The node that took the command
        # retries it, and forwards it to the next leader as soon as it hears of one.

    def _start_pre_vote(self) -> None:
        """Ask the peers whether they would take part in an election before starting one.

        From now on this node knows no leader (as in etcd's PreCandidate), so it grants the
        pre-votes of others: two followers of a dead leader must not keep refusing each other
        because each one's own pre-vote restarted its timer."""
        self._restart_election_timer()
        self.leader_id = None
        pre_vote = PreVoteRound(self._next_round(), {self.node_id})
        self._pre_vote = pre_vote
        if len(pre_vote.grants) >= self.config.quorum:  # a group of one
            self._start_election()
            return
        for node_id in self.config.peers:
            self._send(
                PreVote(group_id=self.group_id, src=self.node_id, dst=node_id, round=pre_vote.round)
            )

    def _on_pre_vote(self, msg: PreVote) -> None:
        self._send(
            PreVoteReply(
                group_id=self.group_id,
                src=self.node_id,
                dst=msg.src,
                round=msg.round,
                granted=self.may_vote and not self._has_live_leader(msg.src),
            )
        )

    def _on_pre_vote_reply(self, msg: PreVoteReply) -> None:
        pre_vote = self._pre_vote
        if pre_vote is None or msg.round != pre_vote.round or not msg.granted:
            return
        pre_vote.grants.add(msg.src)
        if len(pre_vote.grants) >= self.config.quorum:
            self._start_election()

    def _next_round(self) -> int:
        return max(self._highest_round, self.acceptor.promised.round) + 1

    def _start_election(self, force: bool = False) -> None:
        ballot = Ballot(self._next_round(), self.node_id)
        self._highest_round = ballot.round
        self.role = Role.CANDIDATE
        self._leadership = None
        self._pre_vote = None
        self._candidacy = candidacy = Candidacy(ballot, self._rng.randrange(1, 2**62))
        self.leader_id = None
        self._restart_election_timer()
        # Our own promise goes into this Ready, so the ballot is durable before any Prepare leaves
        # and a restart can never reuse it.
        self.acceptor.promise(ballot)
        first = self.log.first_unchosen
        for node_id in self.config.node_ids:
            self._send(
                Prepare(
                    group_id=self.group_id,
                    src=self.node_id,
                    dst=node_id,
                    ballot=ballot,
                    first_instance=first,
                    force=force,
                    nonce=candidacy.nonce,
                )
            )

    def _become_leader(self, candidacy: Candidacy) -> None:
        promises = list(candidacy.promises.values())
        start = max([self.log.chosen_upto] + [p.chosen_upto for p in promises]) + 1
        values = self._recovery_values(promises, start)
        # Values this node learned as chosen after it promised count too: never propose over them.
        learned = [i for i, entry in self.log.entries.items() if entry.chosen and i >= start]
        top = max([start - 1, *values, *learned])
        leadership = Leadership(
            ballot=candidacy.ballot,
            start=start,
            next_instance=top + 1,
            max_queue=self.config.max_pending,
            progress_tick=self._now,
            transfer_tick=self._now + self.config.election_ticks,
        )
        self.role = Role.LEADER
        self._candidacy = None
        self._pre_vote = None
        self._leadership = leadership
        self.leader_id = self.node_id
        self.leader_ballot = candidacy.ballot
        for instance in range(start, top + 1):
            known = self.log.chosen_value(instance)
            self._propose(
                leadership,
                instance,
                known if known is not None else values.get(instance, NOOP),
            )
        leadership.recovery_top = top
        self._broadcast_heartbeat(leadership)
        for pending in self._pending.values():
            leadership.enqueue(pending.command, self._recently_chosen)
        self._requeue_reads()

    def _propose(self, leadership: Leadership, instance: int, value: Value) -> None:
        if not leadership.inflight and self.log.chosen_upto >= leadership.start - 1:
            # The stuck timer runs while something waits to be chosen, not while the leader
            # idles: without this reset, the first proposal after a quiet spell longer than
            # quorum_loss_limit made the leader step down at the next tick. (A gap below
            # ``start`` is work waiting too: the timer keeps running for it.)
            leadership.progress_tick = self._now
        old = leadership.inflight.get(instance)
        if old is not None:
            leadership.inflight_bytes -= value_size(old)
        leadership.inflight[instance] = value
        leadership.inflight_bytes += value_size(value)
        leadership.votes[instance] = set()
        for command in value:
            leadership.known_ids.add(command.request_id)
            origin = leadership.forwarded_by.pop(command.request_id, None)
            if origin is not None:
                leadership.awaiting.setdefault(instance, set()).add(origin)
        for node_id in self.config.node_ids:
            self._send_accept(leadership, node_id, instance, value)
        leadership.announced_upto = self.log.chosen_upto

    def _send_accept(self, leadership: Leadership, dst: int, instance: int, value: Value) -> None:
        self._send(
            Accept(
                group_id=self.group_id,
                src=self.node_id,
                dst=dst,
                ballot=leadership.ballot,
                instance=instance,
                value=value,
                chosen_upto=self.log.chosen_upto,
            )
        )

    def _propose_queued(self) -> None:
        leadership = self._leadership
        if leadership is None or self._retiring:
            return
        config = self.config
        for _ in range(config.max_proposals_per_ready):
            if not leadership.may_propose(
                config.window,
                config.max_batch_commands,
                config.max_batch_bytes,
                config.max_inflight_bytes,
            ):
                break
            value = leadership.take_batch(config.max_batch_commands, config.max_batch_bytes)
            instance = leadership.next_instance
            leadership.next_instance += 1
            self._propose(leadership, instance, value)

    def _announce_chosen(self) -> None:
        """Tell a follower at once when an instance holding a command it forwarded is chosen
        (unless the Accepts of a proposal just carried the news), so that it applies the
        command and answers its client without waiting for the next heartbeat.

        Only those followers: the others learn the chosen prefix from the next Accept or
        heartbeat. Telling every follower after every instance cost each of them a message, a
        reply and a turn of its writer thread per instance whenever no next proposal carried
        it: with one client, a quarter of the cluster's CPU per command."""
        leadership = self._leadership
        if leadership is None or not leadership.awaiting:
            return
        upto = self.log.chosen_upto
        due: set[int] = set()
        for instance in [instance for instance in leadership.awaiting if instance <= upto]:
            due |= leadership.awaiting.pop(instance)
        if due and upto > leadership.announced_upto:
            self._broadcast_heartbeat(leadership, sorted(due))

    def _tick_leader(self, leadership: Leadership) -> None:
        config = self.config
        if self._now % config.heartbeat_ticks == 0:
            self._broadcast_heartbeat(leadership)
        if self._now % config.retry_ticks == 0:
            for instance, value in leadership.inflight.items():
                voters = leadership.votes[instance]
                for node_id in config.peers:
                    if node_id not in voters:
                        self._send_accept(leadership, node_id, instance, value)
        heard = sum(
            1
            for node_id in config.peers
            if self._now - leadership.last_heard.get(node_id, leadership.progress_tick)
            < config.quorum_loss_limit
        )
        if heard + 1 < config.quorum:
            self._step_down(f"heard from no majority for {config.quorum_loss_limit} ticks")
            return
        stuck = leadership.inflight or self.log.chosen_upto < leadership.start - 1
        if stuck and self._now - leadership.progress_tick > config.quorum_loss_limit:
            # e.g. the only peer that could teach us the gap is gone
            self._step_down(
                f"nothing chosen for {config.quorum_loss_limit} ticks with work pending "
                f"(chosen up to {self.log.chosen_upto}, in flight: {len(leadership.inflight)}, "
                f"oldest {min(leadership.inflight, default=None)})"
            )
            return
        if self._retiring:
            if self._now % config.retry_ticks == 0:  # the first one got lost, or its peer
                self._hand_over_to = self._hand_over_target(leadership) or self._hand_over_to
                self._send_timeout_now(leadership)
            return
        self._maybe_hand_over(leadership)

    def _maybe_hand_over(self, leadership: Leadership) -> None:
        """Hand leadership to the preferred node once it is up and nearly caught up."""
        config = self.config
        preferred = config.preferred_leader
        if preferred is None or preferred == self.node_id or self._now < leadership.transfer_tick:
            return
        recently_heard = self._now - leadership.last_heard.get(preferred, -(10**9))
        caught_up = self.peer_chosen_upto.get(preferred, 0) >= self.log.chosen_upto - config.window
        if recently_heard <= 2 * config.heartbeat_ticks and caught_up:
            leadership.transfer_tick = self._now + 4 * config.election_ticks
            self._send(
                TimeoutNow(
                    group_id=self.group_id,
                    src=self.node_id,
                    dst=preferred,
                    ballot=leadership.ballot,
                )
            )

    def _hand_over_target(self, leadership: Leadership) -> int | None:
        """The peer to hand over to before stopping: among those heard from within two heartbeat
        intervals (and allowed by ``hand_over(reachable)``), the one that knows the longest
        chosen prefix, then the one that voted for most of the instances in flight (it has the
        least to learn before it can propose), then the group's preferred node, then the lowest
        id. (Heard within an election timeout was too lax: a peer that had stopped a moment
        before was picked, and the hand-over went nowhere.)"""
        config = self.config
        among = self._hand_over_among
        reachable = [
            node_id
            for node_id in config.peers
            if (among is None or node_id in among)
            and self._now - leadership.last_heard.get(node_id, -(10**9))
            <= 2 * config.heartbeat_ticks
        ]
        if not reachable:
            return None

        def up_to_date(node_id: int) -> tuple[int, int, bool, int]:
            voted = sum(1 for voters in leadership.votes.values() if node_id in voters)
            preferred = node_id == config.preferred_leader
            return (self.peer_chosen_upto.get(node_id, 0), voted, preferred, -node_id)

        return max(reachable, key=up_to_date)

    def _send_timeout_now(self, leadership: Leadership) -> None:
        if self._hand_over_to is not None:
            self._send(
                TimeoutNow(
                    group_id=self.group_id,
                    src=self.node_id,
                    dst=self._hand_over_to,
                    ballot=leadership.ballot,
                )
            )

    def _broadcast_heartbeat(
        self, leadership: Leadership, to: Collection[int] | None = None
    ) -> None:
        """A Heartbeat to every peer, or to the peers ``to`` only."""
        leadership.heartbeat_seq += 1
        if to is None:
            to = self.config.peers
            leadership.announced_upto = self.log.chosen_upto
        for node_id in to:
            self._send(
                Heartbeat(
                    group_id=self.group_id,
                    src=self.node_id,
                    dst=node_id,
                    ballot=leadership.ballot,
                    chosen_upto=self.log.chosen_upto,
                    seq=leadership.heartbeat_seq,
                    voted=self._own_votes_upto,
                )
            )

    def _observe(self, ballot: Ballot) -> None:
        """Any higher ballot seen anywhere ends our candidacy or leadership."""
        if ballot.round > self._highest_round:
            self._highest_round = ballot.round
        if self.role is not Role.FOLLOWER and ballot > self.ballot:
            self._step_down(f"saw the higher ballot {ballot}")

    def _step_down(self, reason: str) -> None:
        if self.role is not Role.FOLLOWER:
            self.step_down_reason = reason
        self.role = Role.FOLLOWER
        self._leadership = None
        self._candidacy = None
        self._pre_vote = None
        self.leader_id = None
        self._restart_election_timer()

    def _heard_from_leader(self, ballot: Ballot) -> None:
        if ballot < self.leader_ballot:
            return
        self._election_elapsed = 0
        self._pre_vote = None  # a leader is back: grants still on their way must not start one
        changed = self.leader_id != ballot.node_id
        self.leader_id = ballot.node_id
        self.leader_ballot = ballot
        if changed:
            self._forwards.extend(pending.command for pending in self._pending.values())
            self._requeue_reads()

    # ------------------------------------------------------------------ learner side

    def _learn_commit(self, src: int, ballot: Ballot, chosen_upto: int) -> None:
        """Apply a leader's announcement: votes of its ballot up to its chosen prefix are chosen."""
        self._note_peer_progress(src, chosen_upto)
        if chosen_upto <= self.log.chosen_upto:
            return
        decided = [
            (instance, entry.value)
            for instance, entry in self.log.entries.items()
            if instance <= chosen_upto and not entry.chosen and entry.ballot == ballot
        ]
        for instance, value in sorted(decided):
            self._mark_chosen(instance, value)

    def _on_learn_request(self, msg: LearnRequest) -> None:
        last = min(msg.last_instance, msg.first_instance + self.config.learn_batch - 1)
        if msg.first_instance > last:
            return
        entries = self.log.cached_range(msg.first_instance, last, self.config.learn_max_bytes)
        if entries is None:
            self._log_reads.append(
                LogRead(msg.src, msg.first_instance, min(last, self.log.chosen_upto))
            )
            return
        self._send(
            LearnReply(
                group_id=self.group_id,
                src=self.node_id,
                dst=msg.src,
                entries=tuple(entries),
                chosen_upto=self.log.chosen_upto,
            )
        )

    def _on_learn_reply(self, msg: LearnReply) -> None:
        self._note_peer_progress(msg.src, msg.chosen_upto)
        before = self.log.chosen_upto
        for entry in msg.entries:
            self._learn_chosen(entry.instance, entry.value)
        if self.log.chosen_upto > before:
            self._request_missing()  # keep catching up without waiting for the learn timer

    def _learn_chosen(self, instance: int, value: Value) -> None:
        if self.log.is_chosen(instance):
            return
        leadership = self._leadership
        if (
            leadership is not None
            and instance >= leadership.start
            and leadership.inflight.get(instance) != value
        ):
            # A value we did not propose was chosen in our range: we are stale.
            self._step_down(f"another value was chosen in instance {instance}")
        self._mark_chosen(instance, value)

    def _request_missing(self) -> None:
        first = self.log.first_unchosen
        target = max(self.peer_chosen_upto.values(), default=0)
        above = [i for i, entry in self.log.entries.items() if entry.chosen]
        target = max([target, *above])
        if target < first:
            return
        source = self._learn_source(first)
        if source is None:
            return
        self._send(
            LearnRequest(
                group_id=self.group_id,
                src=self.node_id,
                dst=source,
                first_instance=first,
                last_instance=min(target, first + self.config.learn_batch - 1),
            )
        )

    def _learn_source(self, first: int) -> int | None:
        """A peer that knows instance ``first`` is chosen, taking turns between them: the one
        that knows the longest prefix may be down (its progress report outlives it), and asking
        only it would stall catch-up, and a leader's recovery, for as long as it is."""
        eligible = sorted(
            node_id
            for node_id, upto in self.peer_chosen_upto.items()
            if upto >= first and node_id != self.node_id
        )
        if not eligible:
            leader = self.leader_id
            return leader if leader is not None and leader != self.node_id else None
        self._learn_turn += 1
        return eligible[self._learn_turn % len(eligible)]

    def _note_peer_progress(self, node_id: int, chosen_upto: int) -> None:
        if node_id != self.node_id and chosen_upto > self.peer_chosen_upto.get(node_id, 0):
            self.peer_chosen_upto[node_id] = chosen_upto

    def _mark_chosen(self, instance: int, value: Value) -> None:
        if not self.log.mark_chosen(instance, value):
            if self._leadership is not None:
                # Known chosen already (a new leader re-proposes what it learned above a gap):
                # its slot and bytes in flight are free again, or they stalled the window.
                self._leadership.forget(instance)
            return
        self._chosen.append(ChosenEntry(instance, value))
        for command in value:
            if self._pending.pop(command.request_id, None) is not None:
                self._resolved.append(command.request_id)
        self._recently_chosen.record(instance, value)
        leadership = self._leadership
        if leadership is not None:
            leadership.forget(instance)
        before = self.log.chosen_upto
        self._committed.extend(self.log.advance_prefix())
        if leadership is not None and self.log.chosen_upto > before:
            # Progress is the chosen prefix moving, not any instance chosen: instances chosen
            # above a gap nobody can teach us must not keep a stuck leader from stepping down.
            leadership.progress_tick = self._now
        if self._rebuild is not None:
            self._finish_rebuild_if_caught_up()

    # ------------------------------------------------------------------ rebuilding (rebuild.py)

    def _follow_without_voting(self, src: int, ballot: Ballot, chosen_upto: int) -> None:
        """A rebuilding node hears a leader's Accept or Heartbeat: it learns who leads (to forward
        commands and reads) and how far the log is chosen (to catch up), and answers nothing."""
        self._heard_from_leader(ballot)
        self._note_peer_progress(src, chosen_upto)

    def _ask_for_rebuild_info(self) -> None:
        rebuild = self._rebuild
        assert rebuild is not None
        self._send_rebuild_queries(rebuild.token, rebuild.unanswered(self.config.peers))
        self._decide_rebuild()  # a group of one decides at once

    def _send_rebuild_queries(self, token: int, node_ids: list[int]) -> None:
        """A RebuildQuery to each of ``node_ids``: a rebuild's question, or an audit's."""
        for node_id in node_ids:
            self._send(
                RebuildQuery(group_id=self.group_id, src=self.node_id, dst=node_id, token=token)
            )

    def _on_rebuild_query(self, msg: RebuildQuery) -> None:
        highest = self.log.highest_instance()
        if self._rebuild is not None and self._rebuild.target is not None:
            highest = max(highest, self._rebuild.target)
        seen = self._votes_seen.get(msg.src, SeenVotes())  # for its audit, if it is one
        self._send(
            RebuildInfo(
                group_id=self.group_id,
                src=self.node_id,
                dst=msg.src,
                token=msg.token,
                promised=self.acceptor.promised,
                highest_instance=highest,
                chosen_upto=self.log.chosen_upto,
                seen_promised=seen.promised,
                seen_instance=seen.instance,
            )
        )

    def _on_rebuild_info(self, msg: RebuildInfo) -> None:
        self._note_peer_progress(msg.src, msg.chosen_upto)
        if self._audit is not None:
            self._audit_answered(msg)
        elif self._rebuild is not None:
            self._rebuild.record(msg)
            self._decide_rebuild()

    def _decide_rebuild(self) -> None:
        rebuild = self._rebuild
        assert rebuild is not None
        decision = rebuild.decide(self.config.peers)
        if decision is None:
            return
        self._observe(decision.floor)
        if decision.floor > self.acceptor.promised:
            self.acceptor.promise(decision.floor)
        rebuild.target = decision.target
        rebuild.answers.clear()
        self._rebuild_write = RebuildWrite(decision.target)
        self._finish_rebuild_if_caught_up()
        if self._rebuild is not None:
            self._request_missing()

    def _ask_leader_to_fill(self, target: int) -> None:
        """Nobody knows the target chosen (an old vote above anything proposed since, say):
        without load, nothing would ever choose it. The leader fills the gap with no-ops."""
        leader = self.leader_id
        if (
            leader is None
            or leader == self.node_id
            or self.log.chosen_upto >= target
            or max(self.peer_chosen_upto.values(), default=0) >= target
        ):
            return
        self._send(
            FillRequest(group_id=self.group_id, src=self.node_id, dst=leader, instance=target)
        )

    def _on_fill_request(self, msg: FillRequest) -> None:
        leadership = self._leadership
        if leadership is None:
            return  # not the leader (any more): the asker asks again
        # At most a window beyond what is proposed: a peer cannot make us propose forever.
        limit = leadership.next_instance + self.config.window - 1
        leadership.fill_upto = max(leadership.fill_upto, min(msg.instance, limit))

    def _finish_rebuild_if_caught_up(self) -> None:
        rebuild = self._rebuild
        assert rebuild is not None
        if rebuild.target is not None and self.log.chosen_upto >= rebuild.target:
            self.rebuilt_upto = rebuild.target
            self._rebuild = None
            self._rebuild_write = RebuildWrite(None)
            self._election_elapsed = 0

    # ------------------------------------------------------------------ restart audit (audit.py)

    def _saw_vote(self, src: int, ballot: Ballot, instance: int = 0) -> None:
        """A peer's Promise or Accepted, a candidate's Prepare or a leader's Heartbeat: proof
        of what its storage holds (audit.py)."""
        if src != self.node_id:
            self._votes_seen.setdefault(src, SeenVotes()).saw(ballot, instance)

    def _ask_for_audit(self) -> None:
        audit = self._audit
        assert audit is not None
        self._send_rebuild_queries(audit.token, audit.unanswered(self.config.peers))

    def _audit_answered(self, info: RebuildInfo) -> None:
        audit = self._audit
        assert audit is not None
        stale = audit.record(info)
        if stale is not None:
            # Older than votes it sent: it rebuilds, as a node whose storage is new does.
            self.stale_storage_reason = stale
            self._audit = None
            self._rebuild = Rebuild(self._rng.randrange(1, 2**62))
            # Written down: restarted before its rebuild decides, it must not audit again (the
            # peer that saw its votes may be gone by then) but go on rebuilding.
            self._rebuild_write = RebuildWrite(None, started=True)
            self._ask_for_rebuild_info()
        elif not audit.unanswered(self.config.peers):
            self._audit = None

    # ------------------------------------------------------------------ client commands

    def _route(self, command: Command) -> None:
        if self._leadership is not None:
            self._leadership.enqueue(command, self._recently_chosen)
        elif self.leader_id is not None:
            self._forwards.append(command)
        # else: no leader known; _heard_from_leader forwards it once one is.

    def _retry_pending(self) -> None:
        horizon = self._now - self.config.retry_ticks
        for pending in self._pending.values():
            if pending.sent_at <= horizon:
                pending.sent_at = self._now
                self._route(pending.command)
        if self._leadership is None and self._read_asks.retry_due(horizon, self._now):
            self._requeue_reads()

    def _flush_forwards(self) -> None:
        if not self._forwards or self.leader_id is None:
            return
        commands, self._forwards = tuple(self._forwards), []
        if self.leader_id == self.node_id:
            return  # we lead now: _become_leader queued every pending command already
        self._send(
            Forward(
                group_id=self.group_id,
                src=self.node_id,
                dst=self.leader_id,
                commands=commands,
            )
        )

    def _on_timeout_now(self, msg: TimeoutNow) -> None:
        if (
            self.role is Role.FOLLOWER
            and self.may_vote
            and not self._retiring
            and msg.ballot == self.leader_ballot
        ):
            self._start_election(force=True)

    # ------------------------------------------------------------------ linearizable reads

    def _route_read(self, reply_to: int, token: int) -> None:
        if self._leadership is not None:
            self._leadership.reads.append(PendingRead(reply_to, token, index=-1, seq=-1))
        elif reply_to == self.node_id:
            self._read_asks.queue(token)
            self._ask_for_reads()

    def _ask_for_reads(self) -> None:
        """Send the follower's next ReadIndexRequest, if one may go (``ReadAsks.next_ask``)."""
        leader = self.leader_id
        if leader is None or leader == self.node_id:
            return
        token = self._read_asks.next_ask()
        if token is None:
            return
        self._send(
            ReadIndexRequest(group_id=self.group_id, src=self.node_id, dst=leader, token=token)
        )

    def _requeue_reads(self) -> None:
        """Ask again (a new leader, or no answer in time) for every unanswered read."""
        for read_id in self._read_asks.requeue():
            self._route_read(self.node_id, read_id)

    def _on_read_index_request(self, msg: ReadIndexRequest) -> None:
        if self._leadership is not None:
            self._route_read(msg.src, msg.token)
        # Not the leader: drop; the asker retries.

    def _on_read_index_reply(self, msg: ReadIndexReply) -> None:
        if self._read_asks.on_reply(msg.token, msg.index):
            self._ask_for_reads()

    def _reads_to_serve(self, leadership: Leadership) -> bool:
        recovered = self.log.chosen_upto >= leadership.recovery_top
        return leadership.read_heartbeat_due or (
            recovered and any(read.seq < 0 for read in leadership.reads)
        )

    def _serve_reads(self, leadership: Leadership) -> None:
        """Give waiting reads an index (once phase 1's values are chosen) and start the heartbeat
        round that confirms it."""
        if self.log.chosen_upto >= leadership.recovery_top:
            for read in leadership.reads:
                if read.seq < 0:
                    read.index = self.log.chosen_upto
                    read.seq = leadership.heartbeat_seq + 1
                    leadership.read_heartbeat_due = True
        if leadership.read_heartbeat_due:
            leadership.read_heartbeat_due = False
            self._broadcast_heartbeat(leadership)
            self._release_reads(leadership)

    def _release_reads(self, leadership: Leadership) -> None:
        needed = self.config.quorum - 1  # we count ourselves
        if needed == 0:
            confirmed = leadership.heartbeat_seq
        else:
            acks = sorted(leadership.acked_seq.values(), reverse=True)
            if len(acks) < needed:
                return
            confirmed = acks[needed - 1]
        waiting = []
        for read in leadership.reads:
            if read.seq < 0 or read.seq > confirmed:
                waiting.append(read)
            elif read.dst == self.node_id:
                self._read_asks.complete(read.token, read.index)
            else:
                self._send(
                    ReadIndexReply(
                        group_id=self.group_id,
                        src=self.node_id,
                        dst=read.dst,
                        token=read.token,
                        index=read.index,
                    )
                )
        leadership.reads = waiting

    # ------------------------------------------------------------------ plumbing

    def _send(self, msg: Message) -> None:
        """Queue a message. Requests to ourselves are handled at once (our acceptor votes now);
        the replies to ourselves wait in the outbox and are held back until ``advance``."""
        if msg.dst == self.node_id and isinstance(msg, Prepare | Accept):
            self.step(msg)
        else:
            self._outbox.append(msg)

    def _restart_election_timer(self) -> None:
        """Start a new election timeout of a fresh random length (campaigning, stepping down)."""
        self._election_elapsed = 0
        self._election_timeout = self._random_election_timeout()

    def _random_election_timeout(self) -> int:
        """Between ``election_ticks`` and twice that; the preferred leader draws from the first
        fifth of the range and everybody else from the rest, so it usually campaigns first."""
        ticks = self.config.election_ticks
        preferred = self.config.preferred_leader
        early = ticks + max(1, ticks // 5)
        if preferred is None:
            return self._rng.randrange(ticks, 2 * ticks)
        if preferred == self.node_id:
            return self._rng.randrange(ticks, early)
        return self._rng.randrange(early, 2 * ticks)
