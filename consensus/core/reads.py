"""``ReadAsks``: a follower's side of linearizable reads (Raft's ReadIndex).

A read started on a follower needs an index from the leader: the leader's chosen prefix, which
the leader hands out only after a majority acked a heartbeat sent after the read began (the
leader's side is ``Replica._serve_reads``). Reads that start while an ask is in flight wait and
share the next ask, so a follower has at most one ReadIndexRequest in flight per group however
many reads arrive; each read needs an index asked for after it began, which is why a read never
joins an ask already sent.

No IO: the replica sends the asks this class numbers and feeds it the replies.
"""

from __future__ import annotations

from .ready import ReadState


class ReadAsks:
    """The reads started on this node that have no index yet, and the asks that cover them."""

    __slots__ = ("_asks", "_next_token", "_queue", "_waiting", "completed", "pending")

    def __init__(self, first_token: int) -> None:
        """``first_token`` must differ between incarnations of the node: a late reply addressed
        to a previous incarnation must not complete a read of this one with its older index."""
        self.pending: dict[int, int] = {}
        """Read id -> the tick it was last asked for (retried ``retry_ticks`` later)."""
        self.completed: list[ReadState] = []
        """Reads that got their index, drained into the next Ready."""
        self._queue: dict[int, None] = {}  # reads waiting for the next ask
        self._asks: dict[int, list[int]] = {}  # token of an ask -> the reads it covers
        self._waiting = False  # an ask is in flight and not yet due for a retry
        self._next_token = first_token

    def start(self, read_id: int, now: int) -> None:
        self.pending[read_id] = now

    def queue(self, read_id: int) -> None:
        """The read waits for the next ask (``next_ask``)."""
        self._queue[read_id] = None

    def next_ask(self) -> int | None:
        """The token of a new ask covering every queued read, or None if there is nothing to
        ask or an ask is still in flight."""
        if self._waiting or not self._queue:
            return None
        token = self._next_token
        self._next_token += 1
        self._asks[token] = list(self._queue)
        self._queue = {}
        self._waiting = True
        return token

    def retry_due(self, horizon: int, now: int) -> bool:
        """Whether a read has waited since ``horizon`` or earlier; if so, every pending read
        counts as asked again ``now`` (the caller requeues them all)."""
        if not any(sent_at <= horizon for sent_at in self.pending.values()):
            return False
        for read_id in self.pending:
            self.pending[read_id] = now
        return True

    def requeue(self) -> list[int]:
        """Forget the queue and let a new ask go (a new leader, or no answer in time); returns
        every pending read, for the caller to route again. Earlier asks stay valid: a late
        answer to one still covers its reads (it was asked after they began), so a slow link
        delays reads instead of starving them."""
        self._asks = {
            token: read_ids
            for token, read_ids in self._asks.items()
            if any(read_id in self.pending for read_id in read_ids)
        }
        self._queue = {}
        self._waiting = False
        return list(self.pending)

    def on_reply(self, token: int, index: int) -> bool:
        """A leader's ReadIndexReply: complete the reads of its ask. Returns whether it was an
        ask of ours (a late or foreign token is ignored)."""
        read_ids = self._asks.pop(token, None)
        if read_ids is None:
            return False
        for read_id in read_ids:
            self.complete(read_id, index)
        if token == self._next_token - 1:
            self._waiting = False  # the newest ask is answered: the next may go
        self._queue = {r: None for r in self._queue if r in self.pending}
        return True

    def complete(self, read_id: int, index: int) -> None:
        if self.pending.pop(read_id, None) is not None:
            self.completed.append(ReadState(read_id, index))
