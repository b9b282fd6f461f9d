"""Digests of what a node's state machines answered, window by window of each group's log.

Why: Paxos makes every node apply the same commands in the same order, but only a deterministic
state machine that runs the same code everywhere turns them into the same state. A machine that
reads the clock, a node left on an older release of the machine's code, or a node whose tables
were swapped under it, diverges silently: each node answers from its own state. The results a
machine returns show it, and they cost nothing extra to look at: the runtime has them as JSON
text already (to store them for retries). So every node hashes them, window by window of
``window`` instances, and the nodes compare their windows (``consensus.runtime.divergence``),
like etcd's corruption check compares its members' hashes.

Windows are defined by positions in the log alone (one ends after every instance that is a
multiple of ``window``, and after every state check), never by how a node happened to batch its
applications, so every node gets the same digest for the same window however its turns split
the log. The digest chains the instances of the window in order:
``d = blake2b(d_before || instance || result texts)``, 63 bits (a wire integer).

What goes in: the JSON text of the result of every command the machine applied, in log order,
and the machine's ``state_digest`` at each state check (a marker the leaders put in the log now
and then, see ``apply.STATE_PREFIX``). Not in: repeats of a request id (answered from the stored
result, a decision every node takes alike) and the runtime's other markers. A command whose
``apply`` raised counts as one fixed token, not as its error text, which may quote a database's
words (SQLite and PostgreSQL say it differently). A state check this node could not take (its
``state_digest`` failed, or the node was catching up and skipped it) leaves its window
unreported: a comparison needs the same thing digested on both sides.

The running digest of the window in progress is stored with the applied index, in the same
transaction, so a restart resumes the window. A window begun before this node recorded digests
(a database from an earlier release, or a changed window size) is not reported: half a window's
digest would not match the others'.

Pure, like the rest of the core: a node's ``Applier`` feeds it on the writer thread and takes
the finished windows there at the end of each turn (``PaxosNode._commit``); the simulator feeds
one per node and checks that every node's windows agree through crashes and replaced disks.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from hashlib import blake2b

DEFAULT_WINDOW = 1000
"""Instances per window (``PAXOS_DIGEST_WINDOW``). Under load an instance holds tens to hundreds
of commands, so a window closes every few seconds; at one command per instance, after a
thousand writes."""

FAILED = b"\x00failed"
"""What a command whose ``apply`` raised adds to the digest instead of its error text."""
KEEP = 16
"""Finished windows kept per group until taken: after a long catch-up only the latest are worth
sending (the peers remember no more, ``divergence.KEEP``)."""

_MASK = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A finished window: the digest of the results of instances ``first .. last``."""

    group_id: int
    first: int
    last: int
    window: int
    """The window size it was digested with (``PAXOS_DIGEST_WINDOW``)."""
    digest: int
    state_checked: bool = False
    """It ends at a state check whose ``state_digest`` is in the digest: nodes that agree on
    it had the same state there."""


Running = tuple[int, int | None]
"""A group's window in progress: its first instance, and the digest so far (None: not
reported: it began before this node digested results, or holds something it could not
digest)."""


class ResultDigests:
    """The running digest of every group's window in progress, and the windows it finished.

    A window ends after every instance that is a multiple of ``window``, and after an instance
    that holds a state check (``ends`` in ``feed``): state checks come every few minutes, so a
    quiet group's nodes compare their states that often, not only after a thousand instances.
    Both are positions in the log, the same on every node."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 0:
            raise ValueError("the digest window is a number of instances, 0 or more")
        self.window = window
        """0: digest nothing (the check is off)."""
        self._running: dict[int, Running] = {}
        self._finished: list[Checkpoint] = []

    def resume(self, group_id: int, applied: int, stored: Running | None, window: int) -> None:
        """Carry on from what the applied index's row says after a restart: ``stored`` is the
        window in progress as ``running`` gave it, digested with windows of ``window``."""
        if applied == 0:
            self._running[group_id] = (1, 0)
        elif stored is not None and window == self.window and 0 < stored[0] <= applied + 1:
            self._running[group_id] = stored
        else:  # digested otherwise, or not at all: not reported until the next window
            self._running[group_id] = (applied + 1, None)

    def running(self, group_id: int) -> Running:
        """The group's window in progress, to store with the applied index."""
        return self._running.get(group_id, (0, None))

    def feed(
        self,
        group_id: int,
        instances: Iterable[int],
        results: Sequence[tuple[int, bytes | None]],
        ends: Container[int] = (),
        checked: Container[int] = (),
    ) -> None:
        """Add consecutive applied ``instances`` (every one, empty ones too: windows end at
        instance numbers) and the ``results`` of their commands, ``(instance, text)`` in log
        order. A text of None is something this node could not digest: its window is not
        reported. A window also ends after each instance in ``ends`` (state checks); those in
        ``checked`` digested the state machine's state."""
        if not self.window:
            return
        first, digest = self._running.get(group_id, (0, None))
        position = 0
        for instance in instances:
            if instance == 1:
                first, digest = 1, 0  # the log's first window: every node starts it alike
            if digest is not None:
                hasher = blake2b(digest.to_bytes(8, "big"), digest_size=8)
                hasher.update(instance.to_bytes(8, "big"))
                while position < len(results) and results[position][0] == instance:
                    text = results[position][1]
                    if text is None:
                        hasher = None
                        break
                    hasher.update(text)
                    hasher.update(b"\n")
                    position += 1
                digest = None if hasher is None else int.from_bytes(hasher.digest(), "big") & _MASK
            while position < len(results) and results[position][0] <= instance:
                position += 1  # a window not digested still consumes its results
            if instance % self.window == 0 or instance in ends:
                if digest is not None:
                    self._finished.append(
                        Checkpoint(
                            group_id, first, instance, self.window, digest, instance in checked
                        )
                    )
                first, digest = instance + 1, 0  # the next window begins
        self._running[group_id] = (first, digest)

    def save(self, group_ids: Iterable[int]) -> tuple[dict[int, Running | None], int]:
        """What ``restore`` needs to undo feeding these groups: a turn whose transaction is
        rolled back and applied again (``with_guard_on_failure``) must not digest twice."""
        return {g: self._running.get(g) for g in group_ids}, len(self._finished)

    def restore(self, saved: tuple[dict[int, Running | None], int]) -> None:
        running, finished = saved
        for group_id, state in running.items():
            if state is None:
                self._running.pop(group_id, None)
            else:
                self._running[group_id] = state
        del self._finished[finished:]

    def take_checkpoints(self) -> list[Checkpoint]:
        """The windows finished since the last call, the latest ``KEEP`` of each group."""
        finished, self._finished = self._finished, []
        if len(finished) <= KEEP:
            return finished
        kept: dict[int, int] = {}
        latest = []
        for checkpoint in reversed(finished):
            if kept.get(checkpoint.group_id, 0) < KEEP:
                kept[checkpoint.group_id] = kept.get(checkpoint.group_id, 0) + 1
                latest.append(checkpoint)
        return latest[::-1]
