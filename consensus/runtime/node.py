"""``PaxosNode``: the asyncio service that runs one node's replicas (one per group).

It is the ONLY consumer of ``Ready`` in the product. Its loop:

1. drain the inbox (peer messages, client commands, clock ticks) into the replicas;
2. collect a Ready from every replica that has one;
3. on the storage thread, in ONE transaction: persist all of them (group commit across groups and
   across every message that arrived meanwhile);
4. only then send their messages (votes are durable now); messages that report no vote and
   no promise (``Ready.eager_messages``: heartbeats, forwards, the leader's Accepts) leave
   before the write, so the followers' fsyncs overlap the leader's own;
5. apply their newly chosen instances to the state machines, with the applied index, in one
   transaction; clients get their results from it. In a turn with votes, the groups nobody on
   this node waits for apply later (``backlog.py``);
6. ``advance()`` every replica, which counts its held-back self-votes.

Steps 3 and 5 are one transaction, a synchronous one (the fsync) when the turn holds votes. Votes
then wait for the turn's applications too, but one commit and one trip to the writer thread per
turn cost less than letting the votes go first and applying in a second transaction: that split
made 4 groups led from three nodes 0.84x as fast and nothing faster (docs/performance.md, "What
the numbers say"). While the writer thread works, new messages pile up in the inbox and go into
the next turn: that is the batching that makes it fast. The loop never blocks on the database or the
network.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction

from consensus.config import DATA_PERSISTENCE_OFF_WARNING, ClusterConfig
from consensus.core import (
    ChosenEntry,
    Command,
    Forward,
    LearnReply,
    LogRead,
    Message,
    Ready,
    RemoteProtocolError,
    Replica,
    ReplicaConfig,
    ResultDigest,
)
from consensus.core.messages import value_size
from consensus.core.result_digest import DEFAULT_WINDOW as DEFAULT_DIGEST_WINDOW
from consensus.core.result_digest import Checkpoint
from consensus.request_ids import new_request_id, request_id_problem
from consensus.statemachine import StateMachine
from consensus.storage.store import DjangoStorage
from consensus.storage.writer import GroupCommitWriter
from consensus.transport.client import LinkOptions
from consensus.transport.hub import PeerTransport, install, uninstall
from consensus.transport.peers import PeerAddress

from .apply import (
    BARRIER_PREFIX,
    PRUNE_PREFIX,
    RESERVED_PREFIX,
    Applier,
    Outcome,
    UnguardedBatchFailed,
    with_guard_on_failure,
)
from .backlog import ApplicationBacklog
from .clock import TickClock
from .divergence import DivergenceCheck
from .errors import (
    CommandTooLargeError,
    InvalidRequestIdError,
    NoQuorumError,
    OverloadedError,
    RequestIdReusedError,
    SubmitError,
    UnknownGroupError,
)
from .notices import NodeNotices
from .observer import NodeObserver
from .plausible import CHECKS as PLAUSIBILITY_CHECKS
from .pruning import ResultPruning
from .reach import no_majority, reachable_peers
from .state_checks import STATE_CHECK_INTERVAL, StateChecks
from .waiters import Waiters, as_duplicate, reused, same_command

logger = logging.getLogger("consensus.runtime")

T = TypeVar("T")

REPLAY_CHUNK = 1000
DEFAULT_MAX_COMMAND_BYTES = 1024 * 1024
"""Bytes of one command's payload (UTF-8) a node takes at most; at most half a peer frame."""
LOCAL_READ_MAX_LAG = 100
"""Instances a node may be behind what it knows is chosen and still answer local reads (the
followers' backlog stays within 64; PAXOS_READY_MAX_LAG's default, for ``/readyz``, is 100)."""
INBOUND_FRAMES = 4
"""Full frames' worth of bytes (``max_frame_size``) one peer's frames may pile up in the inbox
while a turn waits for the disk (``LinkOptions.inbound_bytes``): 64 MiB with the default 16 MiB
frames. Beyond that its frames are dropped until the next turn takes the inbox. Without a bound,
a peer that sent faster than a stalled writer wrote (a slow disk, a state check, PostgreSQL
failing over) made the inbox grow for as long as the stall lasted."""
LOG_READS_PER_PEER = 4
"""Catch-up reads from the database (a LearnRequest for values no longer in memory) that may be
in progress for one peer and group; a further one is not served (the peer asks again, and its
link's ``last_error`` names the refusal). A peer catching up on large values asks again as each
reply chunk arrives, so it can have tens out at once and meets this bound in a healthy catch-up
(a review), which then goes at four reads at a time. Without a bound, a flood of such requests
became background tasks waiting for the writer thread: 340 MB in 10 s, and /api/status/ timed
out."""
HAND_OVER_TIMEOUT = 0.5
"""Seconds ``stop()`` waits at most, for all groups together, until the groups this node leads
have a new leader (``_hand_over_leadership``); 0: no hand-over (the others wait for their
election timeout, as before)."""


def replica_config(
    config: ClusterConfig, group_id: int, tick_ms: int, max_frame_size: int = 16 * 1024 * 1024
) -> ReplicaConfig:
    """Map the seed's millisecond settings onto ticks of ``tick_ms``; a sixteenth of a peer
    frame in flight (``ReplicaConfig.max_inflight_bytes``: a Promise must fit in one frame, and
    ``value_size`` counts characters, up to 4 bytes each in UTF-8)."""
    election = max(4, config.timeout_ms // tick_ms)
    return ReplicaConfig(
        node_id=config.my_id,
        node_ids=config.node_ids,
        group_id=group_id,
        election_ticks=election,
        heartbeat_ticks=max(1, election // 5),
        learn_ticks=max(1, config.learning_interval_ms // tick_ms),
        retry_ticks=max(2, election // 4),
        max_inflight_bytes=max(1, max_frame_size // 16),
        preferred_leader=config.preferred_leader(group_id),
    )


@dataclass
class GroupStatus:
    group_id: int
    role: str
    leader: int | None
    ballot: str
    promised: str
    chosen_upto: int
    applied: int
    pending: int
    rebuilding: bool = False
    """The node's storage for the group is new and it does not vote yet (core/rebuild.py)."""
    rebuild_target: int | None = None
    rebuild_waiting_for: list[int] = field(default_factory=list)
    """While rebuilding: the nodes that have not answered yet (all must, once)."""


def _check_request_id(request_id: str) -> None:
    """Refuse an id the results table cannot hold; the runtime's own (reserved) ids are fine."""
    if not request_id.startswith(RESERVED_PREFIX):
        problem = request_id_problem(request_id)
        if problem is not None:
            raise InvalidRequestIdError(problem)


@dataclass(frozen=True, slots=True)
class _Ticks:
    """Protocol ticks in a node's inbox, between the messages that arrived before and after."""

    count: int


class PaxosNode:
    def __init__(
        self,
        config: ClusterConfig,
        machines: dict[int, StateMachine],
        *,
        tick_ms: int = 10,
        request_timeout: float = 5.0,
        storage: DjangoStorage | None = None,
        observer: NodeObserver | None = None,
        max_frame_size: int = 16 * 1024 * 1024,
        max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES,
        read_mode: str = "index",
        result_ttl: float | None = None,
        result_max: float | None = None,
        prune_interval: float = 60.0,
        hand_over_timeout: float = HAND_OVER_TIMEOUT,
        digest_window: int = DEFAULT_DIGEST_WINDOW,
        state_check_interval: float = STATE_CHECK_INTERVAL,
    ) -> None:
        self.config = config
        self.node_id = config.my_id
        self.tick_ms = tick_ms
        self.max_frame_size = max_frame_size
        self.max_command_bytes = min(max_command_bytes, max_frame_size // 2)
        self.request_timeout = request_timeout
        self.machines = machines
        self.storage = storage or DjangoStorage()
        self.applier = Applier(machines, self.storage.using, digest_window)
        self.divergence = DivergenceCheck(self.node_id, config.node_ids)
        """Compares this node's result digests with its peers' (``divergence.py``)."""
        self.state_checks = StateChecks(self, state_check_interval)
        self.observer = observer or NodeObserver()
        self._notices = NodeNotices(self.node_id, self.observer)
        self.replicas: dict[int, Replica] = {}
        self.applied: dict[int, int] = {}
        self.started_at = time.monotonic()
        self._inbox: list[Message | _Ticks] = []
        self._wake = asyncio.Event()
        self._waiters = Waiters()
        self._heard_since_start: set[int] = set()
        """Groups whose local reads this node may answer: it has heard from another node (or
        leads) since it started (``check_local_reads``)."""
        self._writer: GroupCommitWriter | None = None
        self._transport: PeerTransport | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._barriers: dict[int, asyncio.Future[Outcome]] = {}
        self._next_barriers: dict[int, asyncio.Future[int]] = {}
        self.read_mode = read_mode
        self.pruning = ResultPruning(self, result_ttl, result_max, prune_interval)
        self._read_ids = 0
        self._read_waiters: dict[int, asyncio.Future[int]] = {}
        self._applied_waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = {}
        self._reads_in_progress: dict[int, int] = {}
        self._backlog = ApplicationBacklog()
        self._log_reads: dict[tuple[int, int], int] = {}
        """(group, peer) -> catch-up reads in progress for it (``LOG_READS_PER_PEER``)."""
        self._stopping = False
        """The loop stops (set by ``stop()`` once leadership is handed over)."""
        self._closing = False
        """``stop()`` began: requests are refused (``_replica``), the loop still runs."""
        self._stop_task: asyncio.Future[None] | None = None
        """The one stop (``stop()``), which every caller waits for."""
        self.hand_over_timeout = hand_over_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: Exception | None = None
        """The storage failed: the loop stopped (or stops) and requests are refused."""
        self.on_failure: Callable[[Exception], None] | None = None
        """Called (on the loop) once the node stopped after a storage failure: ``runpaxos``
        exits then, so that a supervisor restarts the node (see ``_fail``)."""
        self._applications_stopped = False
        """Set on the writer thread when an application failed: no later one may run."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = self._waiters.loop = asyncio.get_running_loop()
        if not self.config.enable_data_persistence:
            logger.warning("node %s: %s", self.node_id, DATA_PERSISTENCE_OFF_WARNING)
        self._writer = GroupCommitWriter(self.storage)
        writer = self._writer
        await self._sync_config(writer)
        for group_id in self.config.group_ids:
            state = await writer.run(self.storage.load, group_id)
            if state.rebuilding and getattr(settings, "PAXOS_UNSAFE_SKIP_REBUILD", False):
                logger.error(
                    "node %s group %s: PAXOS_UNSAFE_SKIP_REBUILD: voting at once with a new "
                    "database (a test's negative control; it can lose acknowledged writes)",
                    self.node_id,
                    group_id,
                )
                state = dataclasses.replace(state, rebuilding=False, rebuild_target=None)
            self.applier.state_checks_from[group_id] = state.chosen_upto + 1  # history
            self.applied[group_id] = await self._catch_up_state_machine(group_id, state.chosen_upto)
            rng = random.Random()
            self.replicas[group_id] = Replica(
                replica_config(self.config, group_id, self.tick_ms, self.max_frame_size),
                state,
                rng,
                first_read_token=rng.getrandbits(62),
            )
            logger.info(
                "node %s group %s: recovered promised=%s chosen_upto=%s applied=%s",
                self.node_id,
                group_id,
                state.promised,
                state.chosen_upto,
                self.applied[group_id],
            )
        self._transport = PeerTransport(
            node_id=self.node_id,
            nodes=[PeerAddress(n.node_id, n.host, n.port) for n in self.config.nodes],
            secret=self.config.secret,
            on_messages=self._on_messages,
            groups=[(g.group_id, g.state_machine) for g in self.config.groups],
            options=LinkOptions(
                max_frame_size=self.max_frame_size,
                inbound_bytes=INBOUND_FRAMES * self.max_frame_size,
            ),
        )
        install(self._transport)
        await self._transport.start()
        logger.info(
            "node %s: result digests in windows of %s instances, state checks every %s s (0: off)",
            self.node_id,
            self.applier.digests.window,
            f"{self.state_checks.interval:g}",
        )
        self._tasks = [
            asyncio.create_task(self._run(), name="paxos-loop"),
            asyncio.create_task(self._clock(), name="paxos-clock"),
            asyncio.create_task(self.pruning.run(), name="paxos-prune"),
            asyncio.create_task(self.state_checks.run(), name="paxos-state-checks"),
        ]

    async def _sync_config(self, writer: GroupCommitWriter) -> None:
        """Store the config's nodes and groups, or refuse to start (a ``CommandError``, which
        ``runpaxos`` prints as one line and exits 1) when the config changes what this database's
        history depends on: the node list, or a group's state machine (``ConfigChangeError``)."""
        from django.core.management.base import CommandError

        from consensus.storage.store import ConfigChangeError

        try:
            await writer.run(self.storage.sync_config, self.config.groups, self.config.nodes)
        except ConfigChangeError as error:
            raise CommandError(f"node {self.node_id}: {error}") from None

    async def stop(self) -> None:
        """Refuse requests, hand over the groups this node leads (``_hand_over_leadership``),
        then stop the loop, fail what still waits, close the peer links and the writer.

        Once begun, the stop runs to its end even if its caller is cancelled, and every caller
        waits for that one stop: a node left halfway (handing over, its replicas retiring, so
        promising nothing) while its loop and links run on would weaken every group it is in."""
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        if self._stopping:
            return
        self._closing = True
        try:
            await self._hand_over_leadership()
        except Exception:  # noqa: BLE001 - a failed hand-over must not keep the node running
            logger.exception("node %s: handing over leadership failed", self.node_id)
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # failures were logged
                await task
        self._waiters.fail_all(f"node {self.node_id} stopped")
        if self._transport is not None:
            await self._transport.stop()
            uninstall(self._transport)
        if self._writer is not None:
            await self._writer.close()

    async def _hand_over_leadership(self) -> None:
        """Before the peer links close: ask a peer to take over every group this node leads
        (``Replica.hand_over``: ``TimeoutNow`` to the most up-to-date reachable peer), then wait
        until each of them has a new leader, ``hand_over_timeout`` at most for all together.

        Without it the other nodes learn at once that this one stops (its links close with
        SHUTTING_DOWN) but elect a leader only after their election timeout: its groups took
        no writes for 1.4-2 s with the default ``timeout`` of 1 s. Requests are refused from the
        start of ``stop()`` (503: clients retry on another node); commands already waiting here
        may still be chosen, through the new leader, and answered. A group that gets no new
        leader in time is left to the election timeout, as before."""
        if (
            self.hand_over_timeout <= 0
            or self._transport is None
            or not self._tasks
            or self._failure is not None  # the loop stopped: nothing would be sent
        ):
            return
        started = time.monotonic()
        reachable = reachable_peers(self._transport.status())  # links up both ways
        targets: dict[int, int] = {}
        for group_id, replica in self.replicas.items():
            target = replica.hand_over(reachable)  # also: a follower stops campaigning
            if target is not None:
                targets[group_id] = target
        self._wake.set()  # a turn sends the TimeoutNows (eager: before any write)
        if not targets:
            return
        logger.info(
            "node %s: handing over leadership before stopping: %s",
            self.node_id,
            ", ".join(f"group {g} to node {n}" for g, n in sorted(targets.items())),
        )
        waiting = set(targets)
        deadline = started + self.hand_over_timeout
        while True:
            waiting = {group_id for group_id in waiting if not self._has_new_leader(group_id)}
            if not waiting or self._failure is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.005, max(0.0, deadline - time.monotonic())))
        elapsed = (time.monotonic() - started) * 1000
        if waiting:
            logger.warning(
                "node %s: no new leader for group(s) %s within %.0f ms; stopping anyway (the "
                "other nodes elect one after their election timeout)",
                self.node_id,
                ", ".join(map(str, sorted(waiting))),
                elapsed,
            )
        else:
            logger.info("node %s: leadership handed over in %.0f ms", self.node_id, elapsed)

    def _has_new_leader(self, group_id: int) -> bool:
        """This node stepped down in the group and heard from the leader that followed it."""
        replica = self.replicas[group_id]
        return not replica.is_leader() and replica.leader_id not in (None, self.node_id)

    async def _catch_up_state_machine(self, group_id: int, chosen_upto: int) -> int:
        """Bring the state machine up to the chosen prefix found on disk. An in-memory machine
        starts empty, so it replays from instance 1 first (results come from storage)."""
        writer = self._writer
        assert writer is not None
        applied = await writer.run(self.storage.applied_index, group_id)
        in_memory = not self.machines[group_id].durable
        await writer.run(self.applier.resume_digest, group_id, 0 if in_memory else applied)
        seen: dict[str, int] | None = {} if in_memory else None
        instance = 1 if in_memory else applied + 1
        while instance <= chosen_upto:
            last = min(chosen_upto, instance + REPLAY_CHUNK - 1)
            entries = await writer.run(self.storage.chosen_values, group_id, instance, last)
            if not entries:
                break
            replayed = [entry for entry in entries if entry.instance <= applied]
            fresh = [entry for entry in entries if entry.instance > applied]
            if replayed:
                await writer.run(self._apply_in_transaction, group_id, replayed, seen)
            if fresh:
                await writer.run(self._apply_in_transaction, group_id, fresh, None)
            instance = entries[-1].instance + 1
        return max(applied, instance - 1)

    def _apply_in_transaction(
        self, group_id: int, entries: Sequence[Any], replay_seen: dict[str, int] | None
    ) -> list[Outcome]:
        with transaction.atomic(using=self.storage.using):
            return self.applier.apply(group_id, entries, replay_seen=replay_seen)

    # ------------------------------------------------------------------ inputs

    def _on_messages(self, src: int, messages: list[Message]) -> None:
        """Called by the transport for every inbound frame: enqueue only, never block."""
        self._inbox.extend(messages)
        self._wake.set()

    async def _clock(self) -> None:
        """Count protocol ticks in real time, except across a stall of the whole process
        (``clock.py``): a wake-up later than half an election timeout counts as one heartbeat
        interval, so a node that resumes from a pause does not depose a healthy leader."""
        configs = [replica.config for replica in self.replicas.values()]
        election_ticks = min((c.election_ticks for c in configs), default=2)
        heartbeat_ticks = min((c.heartbeat_ticks for c in configs), default=1)
        interval = self.tick_ms / 1000
        clock = TickClock.starting(
            time.monotonic(),
            interval=interval,
            stall_after=interval * max(1, election_ticks // 2),
            stall_ticks=heartbeat_ticks,
        )
        while True:
            await asyncio.sleep(clock.delay(time.monotonic()))
            ticks, stall = clock.advance(time.monotonic())
            if stall:
                self.observer.loop_stalled(stall)
                logger.warning(
                    "node %s: the event loop stalled for %.0f ms (a paused process, CPU "
                    "starvation or a blocking call); counted as %d ticks, so that the stall "
                    "alone does not start an election",
                    self.node_id,
                    stall * 1000,
                    ticks,
                )
            if ticks:
                self._inbox.append(_Ticks(ticks))
                self._wake.set()

    async def submit(
        self,
        group_id: int,
        payload: str,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Outcome:
        """Commit ``payload`` to ``group_id`` and return its state machine result.

        A request id that was already applied returns the first result without applying again.
        """
        self._replica(group_id)  # unknown group, starting, stopping: raise before any work
        self._check_size(payload)
        if request_id is None:
            request_id = new_request_id()
        elif not request_id.startswith(RESERVED_PREFIX):
            _check_request_id(request_id)  # before the look-up: the database may refuse it
            earlier = await self._writer.run(self._stored_outcome, group_id, request_id, payload)
            if earlier is not None:
                return earlier
        future = self.submit_nowait(group_id, payload, request_id)
        joined = self._waiters.future_of(group_id, request_id)  # what ``discard`` drops
        started = time.perf_counter()
        try:
            outcome = await asyncio.wait_for(
                asyncio.shield(future), timeout if timeout is not None else self.request_timeout
            )
        except OverloadedError:
            self.observer.request_finished(group_id, time.perf_counter() - started, "overloaded")
            raise
        except asyncio.CancelledError:  # the client went away: stop waiting for it
            self._waiters.discard(group_id, request_id, joined)
            raise
        except TimeoutError:
            self.observer.request_finished(group_id, time.perf_counter() - started, "timeout")
            self._waiters.discard(group_id, request_id, joined)
            error = self.commit_timeout_error(group_id, request_id, self.request_timeout)
            error.request_id = request_id
            raise error from None
        kind = "duplicate" if outcome.duplicate else "ok"
        self.observer.request_finished(group_id, time.perf_counter() - started, kind)
        return outcome

    def submit_nowait(
        self, group_id: int, payload: str, request_id: str
    ) -> asyncio.Future[Outcome]:
        """Start committing ``payload``; the future resolves with its ``Outcome``, or fails with
        ``OverloadedError``. Nothing more: no timeout and no look-up of an earlier result.

        For callers that keep many commands in flight (the pipelined client stream): they time
        out whole batches themselves and call ``forget`` for what they stop waiting for.

        A retry of a command this node already saw chosen is not proposed again (the leader
        would drop it as a late duplicate and nobody would answer): its first result comes from
        storage, or from the application still to run. A retry of an older one is proposed again
        and the applier answers it with the stored result.
        """
        replica = self._replica(group_id)
        self._check_size(payload)
        _check_request_id(request_id)
        future = self._waiters.get(group_id, request_id, payload)
        self._wake.set()  # a turn, even with nothing to propose: its backlog may hold the answer
        chosen_in = replica.chosen_instance(request_id)
        if chosen_in is None:
            replica.submit(Command(request_id, payload))
            return future
        self._run_in_background(self._answer_from_storage(group_id, payload, request_id))
        return as_duplicate(future, chosen_in)  # the first application may not have run yet

    def _check_size(self, payload: str) -> None:
        limit = self.max_command_bytes
        if len(payload) * 4 > limit and len(payload.encode("utf-8", "surrogatepass")) > limit:
            raise CommandTooLargeError(f"command too large (limit {limit} bytes)")

    async def _answer_from_storage(self, group_id: int, payload: str, request_id: str) -> None:
        """Resolve a chosen command's waiter with its stored result. The look-up runs on the
        writer thread after every application already handed to it; if the result is not there
        yet, the application still to come resolves the waiter, unless a pruning marker applied
        meanwhile deleted it: then the command is new again and is proposed."""
        assert self._writer is not None
        try:
            earlier = await self._writer.run(self._stored_outcome, group_id, request_id, payload)
        except RequestIdReusedError as error:
            self._waiters.fail(group_id, request_id, error)
            return
        if earlier is not None:
            self._waiters.resolve(earlier)
            return
        replica = self.replicas.get(group_id)
        if replica is not None and not replica.was_chosen_recently(request_id):
            replica.submit(Command(request_id, payload))
            self._wake.set()

    def _run_in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run_between_applications(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the storage writer thread, where the state machines are applied: an
        in-memory state machine can be read there without locks (``StateMachine.query``)."""
        if self._writer is None:
            raise SubmitError("the node is not running")
        return await self._writer.run(fn, *args)

    def check_serving(self, group_id: int) -> None:
        """Raise what a request for ``group_id`` would raise now: ``UnknownGroupError``, or
        ``SubmitError`` while the group is starting or the node stopping."""
        self._replica(group_id)

    def check_local_reads(self, group_id: int) -> None:
        """``check_serving``, and a ``SubmitError`` (503) while this node's state may be far
        behind: while it rebuilds the group (core/rebuild.py: it may have applied nothing yet,
        "not found" for every key), after a start until it has heard from another node (a node
        down for a while answered from state thousands of instances old), and while it is more
        than ``LOCAL_READ_MAX_LAG`` instances behind what it knows is chosen (catching up).
        Linearizable reads wait for the log instead. Once a group has heard from another node,
        a node cut off later still answers (stale, as local reads may be)."""
        replica = self._replica(group_id)
        applied = self.applied.get(group_id, 0)
        if replica.rebuilding:
            raise SubmitError(
                f"group {group_id}: this node is new to the group and is still learning the "
                f"log (rebuilding; applied {applied}): read with consistency=linearizable, or "
                "from another node"
            )
        heard = self._heard_since_start
        if group_id not in heard:
            if replica.leader_id is None and not replica.peer_chosen_upto and self.config.peers:
                raise SubmitError(
                    f"group {group_id}: this node has heard from no other node since it started, "
                    "so it cannot tell how far behind it is: read with "
                    "consistency=linearizable, or from another node",
                    retry_after=0.5,
                )
            heard.add(group_id)
        known = replica.known_chosen_upto
        if known - applied > LOCAL_READ_MAX_LAG:
            raise SubmitError(
                f"group {group_id}: this node is catching up (applied {applied}, "
                f"{known - applied} instances behind {known}): read with "
                "consistency=linearizable, or from another node",
                retry_after=0.5,
            )

    def forget(self, group_id: int, request_id: str) -> None:
        """Stop waiting for a command given to ``submit_nowait`` (it may still be applied)."""
        self._waiters.discard(group_id, request_id)

    async def read_barrier(self, group_id: int, timeout: float | None = None) -> int:
        """Wait until this node has applied every command acknowledged anywhere before the call
        started; return that instance. Linearizable reads serve local state after it.

        By default through a read index (``read_mode="index"``): the leader's chosen prefix,
        confirmed by a majority heartbeat round, no disk write. ``read_mode="log"`` sends a
        marker command through the log instead (see ``log_barrier``).
        """
        replica = self._replica(group_id)  # unknown group, starting, stopping: raise first
        limit = timeout if timeout is not None else self.request_timeout
        reading = self._reads_in_progress
        reading[group_id] = reading.get(group_id, 0) + 1  # the group's backlog waits for nobody
        try:
            async with asyncio.timeout(limit):
                if self.read_mode == "log":
                    index = await self.log_barrier(group_id, timeout)
                else:
                    index = await self._read_index(replica)
                # Either barrier's answer may come before the transaction that applies what it
                # covers commits (a marker's result does, see ``_apply_all``); ``applied``
                # moves after the commit.
                await self._applied_to(group_id, index)
        except TimeoutError:
            raise self.no_quorum_error(group_id, "confirm a read", limit) from None
        finally:
            reading[group_id] -= 1
        return index

    async def _read_index(self, replica: Replica) -> int:
        """The read index of a read starting now (``Replica.read_index``)."""
        self._read_ids += 1
        read_id = self._read_ids
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._read_waiters[read_id] = future
        replica.read_index(read_id)
        self._wake.set()
        try:
            return await future
        finally:
            self._read_waiters.pop(read_id, None)  # the reply's turn popped it, unless we gave up

    def commit_timeout_error(self, group_id: int, request_id: str, seconds: float) -> NoQuorumError:
        """A command not answered within ``seconds``: not committed (no leader, no majority), or
        chosen but not applied yet here (a slow state machine, a long backlog), which the
        message says, since the command will be applied whatever the client does."""
        chosen_in = self.replicas[group_id].chosen_instance(request_id)
        if chosen_in is None:
            return self.no_quorum_error(group_id, "commit", seconds)
        return NoQuorumError(
            f"group {group_id}: the command was chosen (instance {chosen_in}) but this node has "
            f"not applied it within {seconds:g}s (a slow state machine or a long backlog); "
            "retry with the same request_id for its result"
        )

    def no_quorum_error(self, group_id: int, action: str, seconds: float) -> NoQuorumError:
        """The timeout error of a command ("commit") or a read ("confirm a read")."""
        leader = self.replicas[group_id].leader_id
        reason = "no leader is known" if leader is None else f"leader {leader} did not {action}"
        hint = "; retry with the same request_id" if action == "commit" else ""
        return NoQuorumError(f"group {group_id}: {reason} within {seconds:g}s{self._reach()}{hint}")

    def _reach(self) -> str:
        """`` (this node reaches 1 of 3 nodes; a majority is 2)`` when it reaches no majority:
        the likelier cause of a timeout than a slow leader, and what ``/readyz`` says too."""
        transport = self._transport
        if transport is None:
            return ""
        reached = 1 + len(reachable_peers(transport.status()))
        problem = no_majority(reached, len(self.config.node_ids))
        return "" if problem is None else f" (this node {problem})"

    def is_starting(self, group_id: int) -> bool:
        """A configured group whose replica is not up yet (the node serves HTTP meanwhile)."""
        return group_id not in self.replicas and group_id in self.config.group_ids

    def _replica(self, group_id: int) -> Replica:
        """The replica of a group that takes requests; a clear error when there is none."""
        replica = self.replicas.get(group_id)
        if replica is None:
            if self.is_starting(group_id) and not self.stopping:
                # daphne serves while start() still recovers the groups one by one
                raise SubmitError(f"group {group_id} is still starting", retry_after=0.5)
            raise UnknownGroupError(group_id)
        if self._closing or self._stopping or self._writer is None:
            raise SubmitError("the node is shutting down")
        if self._failure is not None:
            raise SubmitError(
                f"node {self.node_id} stopped after a storage failure ({self._failure}); "
                "see its log, then restart it",
                retry_after=5.0,
            )
        return replica

    async def _applied_to(self, group_id: int, index: int) -> None:
        if self.applied.get(group_id, 0) >= index:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied_waiters.setdefault(group_id, []).append((index, future))
        self._wake.set()  # a turn applies the group's backlog (see _somebody_waits)
        await future

    def _wake_appliers(self, group_id: int) -> None:
        waiters = self._applied_waiters.get(group_id)
        if not waiters:
            return
        applied = self.applied.get(group_id, 0)
        still = []
        for index, future in waiters:
            if index <= applied:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((index, future))
        self._applied_waiters[group_id] = still

    async def log_barrier(self, group_id: int, timeout: float | None = None) -> int:
        """The read barrier through the log: a marker command is chosen like any other, and
        everything acknowledged before it is ordered before it.

        Readers share markers, but only one submitted after they began: a reader that arrives
        while a marker is in flight waits for the next one, submitted once that one is done
        (sharing the marker in flight could order the read before a write acknowledged in
        between)."""
        current = self._barriers.get(group_id)
        if current is None or current.done():
            current = self._new_barrier(group_id, timeout)
            self._barriers[group_id] = current
            return (await asyncio.shield(current)).instance
        following = self._next_barriers.get(group_id)
        if following is None:
            following = asyncio.ensure_future(self._barrier_after(group_id, current, timeout))
            self._next_barriers[group_id] = following
        return await asyncio.shield(following)

    def _new_barrier(self, group_id: int, timeout: float | None) -> asyncio.Future[Outcome]:
        return asyncio.ensure_future(
            self.submit(group_id, "", f"{BARRIER_PREFIX}{new_request_id()}", timeout)
        )

    async def _barrier_after(
        self, group_id: int, current: asyncio.Future[Outcome], timeout: float | None
    ) -> int:
        with contextlib.suppress(Exception):
            await asyncio.shield(current)
        self._next_barriers.pop(group_id, None)
        barrier = self._new_barrier(group_id, timeout)
        self._barriers[group_id] = barrier
        return (await asyncio.shield(barrier)).instance

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            self._feed_replicas()
            readies = [
                (replica, replica.ready())
                for replica in self.replicas.values()
                if replica.has_ready()
            ]
            if readies or self._backlog:
                try:
                    await self._handle(readies)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    # A storage failure must not leave votes half-handled: stop the node; a
                    # restart recovers from what was committed.
                    logger.exception("node %s: storage failed; stopping the node", self.node_id)
                    self._fail(error)
                    raise
            self._notices.role_changes(self.replicas)
            if any(replica.has_ready() for replica in self.replicas.values()) or self._inbox:
                self._wake.set()

    def _feed_replicas(self) -> None:
        """Hand the replicas what arrived since the last turn, messages and ticks in the order
        they arrived: after a turn that waited long for the disk, a follower must see its
        leader's heartbeats before the ticks that came after them, not after all of them (that
        would look like a silent leader and start an election)."""
        inbox, self._inbox = self._inbox, []
        if self._transport is not None:
            self._transport.inbound_taken()  # the peers' frames in the inbox are ours now
        checks = PLAUSIBILITY_CHECKS.get
        for msg in inbox:
            if type(msg) is ResultDigest:  # for the runtime, not the replica
                if msg.group_id in self.replicas:
                    self.divergence.received(msg)
                continue
            if isinstance(msg, _Ticks):
                for _ in range(msg.count):
                    for replica in self.replicas.values():
                        replica.tick()
                self._notices.rebuilds(
                    self.replicas
                )  # seconds matter here: once per tick, not per turn
                continue
            replica = self.replicas.get(msg.group_id)
            if replica is None:
                self._notices.unknown_group(msg)
                continue
            check = checks(type(msg))
            if check is not None:  # values too far from what we know: a lost message (plausible.py)
                problem = check(replica, msg)
                if problem is not None:
                    self._drop_implausible(msg, problem)
                    continue
            try:
                replica.step(msg)
            except RemoteProtocolError as error:
                logger.warning("node %s: dropped message from %s: %s", self.node_id, msg.src, error)

    def _drop_implausible(self, msg: Message, problem: str) -> None:
        if self._transport is not None:
            self._transport.record_inbound_drop(
                msg.src, 1, f"dropped {type(msg).__name__} for group {msg.group_id}: {problem}"
            )
        self._notices.implausible(msg, problem)

    async def _handle(self, readies: list[tuple[Replica, Ready]]) -> None:
        writer = self._writer
        transport = self._transport
        assert writer is not None and transport is not None
        batch = [ready for _replica, ready in readies]
        for ready in batch:
            transport.send(ready.eager_messages)  # no votes: they overlap the write below
            forwarded = sum(len(m.commands) for m in ready.eager_messages if isinstance(m, Forward))
            if forwarded:
                self.observer.forwarded(ready.group_id, forwarded)
        votes = any(ready.persist.must_sync for ready in batch)
        applying = self._backlog.release(
            ((ready.group_id, ready.committed) for ready in batch if ready.committed),
            may_hold=lambda group_id: votes and not self._somebody_waits(group_id),
        )
        if not applying and not any(ready.persist for ready in batch):
            self._release(readies)  # nothing to write or apply: no trip to the writer thread
            for replica, ready in readies:
                replica.advance(ready)
            return
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        on_applied = functools.partial(loop.call_soon_threadsafe, self._resolve)
        for group_id, entries in applying:
            self._skip_old_state_checks(group_id, entries[-1].instance)
        finished = await writer.run(self._commit, batch, applying, on_applied)
        self._release(readies)
        self._note_applied(applying)
        self.observer.storage_committed(
            time.perf_counter() - started, len(batch), sum(len(entries) for _, entries in applying)
        )
        for replica, ready in readies:
            replica.advance(ready)
        if finished:
            transport.send(self.divergence.finished(finished))

    def _skip_old_state_checks(self, group_id: int, applying_upto: int) -> None:
        """A node far behind what it knows is chosen catches up: the state checks it meets
        are history, and each would scan the whole state (``Applier.state_checks_from``)."""
        known = self.replicas[group_id].known_chosen_upto
        if known - applying_upto > LOCAL_READ_MAX_LAG:
            self.applier.state_checks_from[group_id] = known + 1

    def _somebody_waits(self, group_id: int) -> bool:
        """A client or a read on this node waits for the group's state machine: its
        applications may not wait in the backlog (``backlog.py``)."""
        return self._waiters.waiting(group_id) or self._reads_in_progress.get(group_id, 0) > 0

    def _note_applied(self, applying: list[tuple[int, tuple[ChosenEntry, ...]]]) -> None:
        for group_id, entries in applying:
            self.applied[group_id] = max(self.applied.get(group_id, 0), entries[-1].instance)
            self._wake_appliers(group_id)
            self.observer.commands_applied(
                group_id, sum(len(entry.value) for entry in entries), entries[-1].instance
            )

    @property
    def stopping(self) -> bool:
        """``stop()`` began."""
        return self._closing or self._stopping

    @property
    def failure(self) -> Exception | None:
        """The storage failure that stopped this node, if one did."""
        return self._failure

    def _fail(self, error: Exception) -> None:
        """Stop serving after a storage failure: every waiting and later request gets an error
        at once instead of a timeout, and ``on_failure`` is told. Restarting the node recovers
        from what was committed, and is the only way: a transaction that failed halfway leaves
        the replicas ahead of the disk, so going on would answer from state that is not durable.
        A database that restarted (PostgreSQL) or a full disk that was cleaned up is then back
        to normal, like etcd, which exits on a failed write for its supervisor to restart it."""
        self._failure = error
        self._waiters.fail_all(f"node {self.node_id} stopped after a storage failure")
        if self.on_failure is not None:
            self.on_failure(error)

    def _resolve(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.request_id.startswith(PRUNE_PREFIX) and outcome.result:
                replica = self.replicas.get(outcome.group_id)
                if replica is not None:
                    replica.forget_chosen_before(outcome.result)
            self._waiters.resolve(outcome)

    def _release(self, readies: list[tuple[Replica, Ready]]) -> None:
        """The Readies' writes are durable: send their messages, answer what does not wait for
        the state machine."""
        transport = self._transport
        assert transport is not None
        for replica, ready in readies:
            ready.mark_persisted()
            transport.send(ready.messages)
            for read in ready.reads:
                waiter = self._read_waiters.pop(read.read_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(read.index)
            for read in ready.log_reads:
                self._serve_log_read(replica.group_id, read)
            for failure in ready.failed:
                self._waiters.fail(
                    replica.group_id, failure.request_id, OverloadedError(failure.reason)
                )

    # On the writer thread -------------------------------------------------------------

    def _stored_outcome(self, group_id: int, request_id: str, payload: str) -> Outcome | None:
        """The stored first result of ``request_id``, if any; ``RequestIdReusedError`` if the
        command first sent with it was a different one (read from the chosen log: only a
        request id seen before pays for this)."""
        earlier = self.applier.lookup(group_id, request_id)
        if earlier is None:
            return None
        for entry in self.storage.chosen_values(group_id, earlier.instance, earlier.instance):
            for command in entry.value:
                if command.request_id == request_id and not same_command(command.payload, payload):
                    raise reused(group_id, request_id, earlier.instance)
        return earlier

    def _commit(
        self,
        readies: list[Ready],
        applying: list[tuple[int, tuple[ChosenEntry, ...]]],
        on_applied: Callable[[list[Outcome]], object],
    ) -> list[Checkpoint]:
        """One transaction for the Readies' writes and their applications (if any); returns
        the result digests' windows finished so far (taken here, on the writer thread that
        feeds them).

        A transaction without votes (only chosen marks and applications) commits without waiting
        for the disk on SQLite: all of it can be learned and replayed again, see
        ``relaxed_durability`` (and why PostgreSQL waits anyway).
        One with votes waits for the disk, and its messages wait for it (``_handle``). Either
        applies first, so the clients' results leave before the turn's rows are written
        (``_apply_all``)."""
        votes = any(ready.persist.must_sync for ready in readies)

        def attempt(guarded: bool) -> None:
            relaxed = contextlib.nullcontext() if votes else self.storage.relaxed_durability()
            # savepoint=False: the turn is one transaction, never a savepoint inside another
            # (on PostgreSQL one costs two more round trips to the server per turn).
            with relaxed, transaction.atomic(using=self.storage.using, savepoint=False):
                self._apply_all(applying, on_applied, guarded=guarded)
                self.storage.persist(readies)

        with_guard_on_failure(attempt, self.storage.using)
        return self.applier.digests.take_checkpoints()

    def _apply_all(
        self,
        applying: list[tuple[int, tuple[ChosenEntry, ...]]],
        on_applied: Callable[[list[Outcome]], object],
        *,
        guarded: bool,
    ) -> None:
        """Apply in log order, after every earlier application (the writer thread runs jobs in
        the order they were handed to it).

        The clients' results are handed to ``on_applied`` before the commit: the commands are
        chosen (durable on a majority) and applying them is deterministic, so a crash before
        the commit replays them to the same results. Reads still wait: ``applied`` moves after
        the commit.

        After an application failed, nothing is applied any more: a later instance applied
        without the failed one would make this node's state differ from the others'. (A
        state machine that fails unguarded is not such a failure: the caller applies again,
        guarded, see ``with_guard_on_failure``.)"""
        if not applying:
            return
        if self._applications_stopped:
            raise RuntimeError("an earlier application failed; the node is stopping")
        try:
            self.applier.apply_groups(applying, on_outcomes=on_applied, guarded=guarded)
        except UnguardedBatchFailed:
            raise
        except BaseException:
            self._applications_stopped = True
            raise

    def _serve_log_read(self, group_id: int, read: LogRead) -> None:
        """Catch-up for values older than the replica's in-memory tail: read, then reply (at
        most ``LOG_READS_PER_PEER`` at a time for one peer and group)."""
        key = (group_id, read.dst)
        in_progress = self._log_reads.get(key, 0)
        if in_progress >= LOG_READS_PER_PEER:
            if self._transport is not None:
                self._transport.record_inbound_drop(
                    read.dst,
                    1,
                    f"did not serve a catch-up read of group {group_id}: {in_progress} for node "
                    f"{read.dst} in progress",
                )
            return
        self._log_reads[key] = in_progress + 1

        async def serve() -> None:
            try:
                await reply()
            finally:
                left = self._log_reads.pop(key) - 1
                if left:
                    self._log_reads[key] = left

        async def reply() -> None:
            writer, transport = self._writer, self._transport
            assert writer is not None and transport is not None
            entries = await writer.run(
                self.storage.chosen_values, group_id, read.first_instance, read.last_instance
            )
            limit = self.replicas[group_id].config.learn_max_bytes
            chunk: list[ChosenEntry] = []
            size = 0
            replies = []
            for entry in entries:
                size += value_size(entry.value)
                if chunk and size > limit:
                    replies.append(tuple(chunk))
                    chunk, size = [], value_size(entry.value)
                chunk.append(entry)
            replies.append(tuple(chunk))
            transport.send(
                LearnReply(
                    group_id=group_id,
                    src=self.node_id,
                    dst=read.dst,
                    entries=reply,
                    chosen_upto=self.replicas[group_id].chosen_upto,
                )
                for reply in replies
            )

        self._run_in_background(serve())

    # ------------------------------------------------------------------ status

    def group_status(self, group_id: int) -> GroupStatus:
        replica = self.replicas[group_id]
        return GroupStatus(
            group_id=group_id,
            role=replica.role.value,
            leader=replica.leader_id,
            ballot=str(replica.ballot),
            promised=str(replica.promised),
            chosen_upto=replica.chosen_upto,
            applied=self.applied.get(group_id, 0),
            pending=replica.pending_count,
            rebuilding=replica.rebuilding,
            rebuild_target=replica.rebuild_target,
            rebuild_waiting_for=replica.rebuild_waiting_for,
        )

    def status(self) -> dict[str, Any]:
        transport = self._transport
        return {
            "node_id": self.node_id,
            "uptime_seconds": round(time.monotonic() - self.started_at, 1),
            "groups": [vars(self.group_status(g)) for g in list(self.replicas)],
            "peers": transport.status() if transport is not None else {},
            "result_digests": {
                "window": self.applier.digests.window,
                "windows_compared": self.divergence.compared,
            },
            "divergences": [found.as_json() for found in self.divergence.divergences()],
        }

    @property
    def transport(self) -> PeerTransport | None:
        """The peer links, once ``start()`` made them."""
        return self._transport

    def event_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop that runs this node, once ``start()`` began (else None).

        The in-memory state (replicas, transport stats) is only consistent on that loop: other
        threads read it through ``consensus.health.read_on_loop``."""
        return self._loop
