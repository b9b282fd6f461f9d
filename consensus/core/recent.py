"""``RecentlyChosen``: the request ids of the last commands this node saw chosen.

Why it exists: a client that lost an answer retries with the same request id. If the first
attempt was chosen, proposing the retry again would waste an instance (the applier would skip the
repeat anyway, DESIGN.md §3), so a leader drops a retry it knows was chosen and the node answers
it from the stored result. Memory is bounded: only the newest ``limit`` ids are remembered, in the
order they were chosen; an older retry is proposed again and skipped at apply time.
"""

from __future__ import annotations

from collections import OrderedDict

from .messages import Value


class RecentlyChosen:
    """Request id -> the instance its command was chosen in, for the newest ``limit`` ids."""

    __slots__ = ("_instances", "_limit")

    def __init__(self, limit: int) -> None:
        self._instances: OrderedDict[str, int] = OrderedDict()
        self._limit = limit

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._instances

    def __len__(self) -> int:
        return len(self._instances)

    def get(self, request_id: str) -> int | None:
        return self._instances.get(request_id)

    def record(self, instance: int, value: Value) -> None:
        """Remember the commands of ``value``, chosen in ``instance``; forget the oldest.

        A request id chosen again (a retry that raced its first attempt) keeps its first
        instance: that is where its stored result is, and what a pruning marker's cutoff is
        compared with (``forget_before``). Overwritten by the repeat, the id outlived its pruned
        result, and a later retry waited for an application that had already happened."""
        instances = self._instances
        for command in value:
            first = instances.get(command.request_id)
            if first is None or instance < first:
                instances[command.request_id] = instance
        while len(instances) > self._limit:
            instances.popitem(last=False)

    def forget_before(self, cutoff: int) -> None:
        """Forget the ids chosen below ``cutoff`` (their stored results were pruned: a retry of
        one is a new command again, storage/pruning.py)."""
        instances = self._instances
        for request_id in [rid for rid, instance in instances.items() if instance < cutoff]:
            del instances[request_id]
