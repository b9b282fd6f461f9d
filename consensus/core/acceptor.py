"""The acceptor: the only code that casts a vote.

Rules (Lamport, "Paxos Made Simple", phase 1b and 2b):
- Promise a ballot only if it is at least the current promise; then never vote below it.
- Vote (accept) in a ballot only if it is at least the current promise; voting raises the promise.
- Report every vote at or above the Prepare's first instance, so a new leader re-proposes them.

Every change is recorded for the next ``Ready.persist``; the replies built here leave the node only
after that write is durable (see ready.py).
"""

from __future__ import annotations

from .ballot import Ballot
from .log import InstanceLog
from .messages import (
    Accept,
    Accepted,
    ChosenEntry,
    LearnReply,
    Message,
    Nack,
    Prepare,
    Promise,
)
from .ready import AcceptedWrite, LogRead


class Acceptor:
    def __init__(self, promised: Ballot, log: InstanceLog) -> None:
        self.promised = promised
        self._log = log
        self._promise_dirty = False
        self._writes: dict[int, AcceptedWrite] = {}

    @property
    def dirty(self) -> bool:
        return self._promise_dirty or bool(self._writes)

    def promise(self, ballot: Ballot) -> None:
        if ballot < self.promised:
            raise AssertionError(f"promise would go backwards: {ballot} < {self.promised}")
        if ballot != self.promised:
            self.promised = ballot
            self._promise_dirty = True

    def on_prepare(self, msg: Prepare) -> Message:
        if msg.ballot < self.promised:
            return self._nack(msg)
        self.promise(msg.ballot)
        return Promise(
            group_id=msg.group_id,
            src=msg.dst,
            dst=msg.src,
            ballot=msg.ballot,
            first_instance=msg.first_instance,
            chosen_upto=self._log.chosen_upto,
            accepted=self._log.votes_from(msg.first_instance),
            nonce=msg.nonce,
        )

    def on_accept(self, msg: Accept) -> Message | LogRead | None:
        """A vote, a Nack, or (for an instance already chosen here) the chosen value instead."""
        if msg.ballot < self.promised:
            return self._nack(msg)
        self.promise(msg.ballot)
        if self._log.is_chosen(msg.instance):
            return self._answer_for_chosen(msg)
        self._log.record_vote(msg.instance, msg.ballot, msg.value)
        self._writes[msg.instance] = AcceptedWrite(msg.instance, msg.ballot, msg.value)
        return Accepted(
            group_id=msg.group_id,
            src=msg.dst,
            dst=msg.src,
            ballot=msg.ballot,
            instance=msg.instance,
        )

    def take_writes(self) -> tuple[Ballot | None, tuple[AcceptedWrite, ...]]:
        promised = self.promised if self._promise_dirty else None
        writes = tuple(self._writes.values())
        self._promise_dirty = False
        self._writes = {}
        return promised, writes

    def _answer_for_chosen(self, msg: Accept) -> Message | LogRead | None:
        """Voting for the chosen value is harmless (and needs no write: it is already decided).
        For any other value the proposer is stale: tell it what was chosen, so it steps down."""
        chosen = self._log.chosen_value(msg.instance)
        if chosen is None:
            return LogRead(msg.src, msg.instance, msg.instance)
        if chosen == msg.value:
            # Written (synchronously, as any vote) though nothing is left to decide: the
            # chosen mark alone may be a relaxed write that a power loss takes back, and the
            # restart audit (audit.py) takes an Accepted as proof the storage knows the instance.
            self._writes[msg.instance] = AcceptedWrite(msg.instance, msg.ballot, msg.value)
            return Accepted(
                group_id=msg.group_id,
                src=msg.dst,
                dst=msg.src,
                ballot=msg.ballot,
                instance=msg.instance,
            )
        return LearnReply(
            group_id=msg.group_id,
            src=msg.dst,
            dst=msg.src,
            entries=(ChosenEntry(msg.instance, chosen),),
            chosen_upto=self._log.chosen_upto,
        )

    def _nack(self, msg: Prepare | Accept) -> Nack:
        return Nack(
            group_id=msg.group_id,
            src=msg.dst,
            dst=msg.src,
            ballot=msg.ballot,
            promised=self.promised,
        )
