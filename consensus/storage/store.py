"""``DjangoStorage``: a node's durable Paxos state in the database, as ``MemoryStorage`` does it.

Theory of operation
-------------------
The core hands out writes in ``Ready.persist`` and never writes itself. ``persist(readies)`` makes
the writes of many Readies (of any groups) durable in ONE transaction, so one commit (one fsync)
covers a whole burst of protocol messages. Its effect is exactly that of calling
``MemoryStorage.apply`` on each Ready's ``Persist`` in list order; the property tests check this.

To stay set-based, the batch is first folded in memory into at most one pending operation per
(group, instance), and then written with one statement shape:

- the promise of each group: an upsert of ``AcceptorState`` (the last promise in the batch wins,
  as in ``MemoryStorage``);
- every touched instance: an ``INSERT ... ON CONFLICT (group, instance) DO UPDATE`` whose
  ``SET`` clause merges with the stored row, because the fold cannot know it without a read:
  a vote updates the ballot but never un-chooses a chosen instance nor changes its value
  (``CASE WHEN chosen``), a chosen mark keeps the stored ballot when the batch has no vote for the
  instance (``COALESCE``), and ``chosen_at`` keeps the first time the instance was seen chosen.
  Both SQLite (3.24+) and PostgreSQL (9.5+) accept this statement, so it is written once;
- the contiguous chosen prefix, ``Group.chosen_upto``, when it advanced. After the upsert, one
  query (index ``(group, chosen, instance)``) reads the chosen instances above the stored prefix of
  every group the batch marked chosen; the prefix is kept current, so these are only the few
  chosen instances beyond a gap. Reading instead of caching keeps ``persist`` correct inside a
  caller's transaction (the runtime applies commands in the same transaction), with no state to
  invalidate when that transaction rolls back.

Use one object from one thread (``GroupCommitWriter`` owns one); it keeps no log state in memory.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from consensus.config import GroupSpec, NodeAddress
from consensus.core.ballot import ZERO_BALLOT, Ballot
from consensus.core.messages import ChosenEntry, Value
from consensus.core.ready import Persist, Ready, RebuildWrite
from consensus.core.storage import InitialState, StoredInstance
from consensus.models import AcceptorState, AppliedIndex, Group, Instance, Node

from .sql import raw_cursor
from .values import value_from_json, value_to_json

DEFAULT_RECENT_CHOSEN = 1024


class ConfigChangeError(Exception):
    """The config changes what this database's history depends on: the state machine of a group
    with a log, or the node list once the node voted. The message is one line for users (what
    changed, why it is refused, what to do)."""


@dataclass(slots=True)
class _Pending:
    """The folded effect of a batch on one instance, still to be merged with the stored row.

    ``ballot is None`` means "keep the stored ballot" (only chosen marks touched the instance).
    ``chosen`` means the batch marks it chosen with ``value``; otherwise ``value`` is a vote that
    applies only if the stored row is not chosen.
    """

    ballot: Ballot | None
    value: Value
    chosen: bool


@dataclass(slots=True)
class _GroupBatch:
    promised: Ballot | None = None
    rebuild: RebuildWrite | None = None
    instances: dict[int, _Pending] = field(default_factory=dict)

    def add(self, persist: Persist) -> None:
        """Fold one Persist in, with ``MemoryStorage.apply``'s rules and order."""
        if persist.rebuild is not None:
            self.rebuild = persist.rebuild
        if persist.promised is not None:
            self.promised = persist.promised
        for write in persist.accepted:
            pending = self.instances.get(write.instance)
            if pending is not None and pending.chosen:
                self.instances[write.instance] = _Pending(write.ballot, pending.value, True)
            else:
                self.instances[write.instance] = _Pending(write.ballot, write.value, False)
        for entry in persist.chosen:
            pending = self.instances.get(entry.instance)
            ballot = pending.ballot if pending is not None else None
            self.instances[entry.instance] = _Pending(ballot, entry.value, True)


@dataclass(slots=True)
class _Prefix:
    """The contiguous chosen prefix ``1..upto`` and the chosen instances above it."""

    upto: int
    above: set[int]

    def advanced(self, chosen: Iterable[int]) -> _Prefix:
        """A new prefix with ``chosen`` marked (this one is left unchanged)."""
        upto = self.upto
        above = self.above | {instance for instance in chosen if instance > upto}
        while upto + 1 in above:
            upto += 1
            above.discard(upto)
        return _Prefix(upto, above)


class DjangoStorage:
    """Durable acceptor state and chosen log of every group on this node (one writer thread).

    ``using`` names the database alias; ``recent`` is how many chosen values ``load`` returns in
    ``InitialState.recent_chosen`` (MemoryStorage's ``initial_state(recent=...)``).
    """

    def __init__(self, *, using: str = "default", recent: int = DEFAULT_RECENT_CHOSEN) -> None:
        self.using = using
        self.recent = recent
        self._known_groups: set[int] = set()

    @contextlib.contextmanager
    def relaxed_durability(self) -> Iterator[None]:
        """Commit the transactions inside without waiting for the disk, where that is safe.

        Only for writes that hold no vote (chosen marks, state machine applications, applied
        index): after a power loss the newest of them may be gone, and are learned and replayed
        again; a later synchronous commit makes them durable too, in order. Votes are never
        written in here: the runtime uses this only for a batch whose ``Persist.must_sync`` is
        false.

        SQLite only (``synchronous=NORMAL``): its unflushed tail can only be lost with the
        machine, and so with the node, whose memory then goes too (a ``kill -9`` loses nothing:
        the OS has the data). A PostgreSQL server is a process of its own: it can crash and
        restart under a running node (an OOM kill, an immediate stop) and take back commits made
        without ``synchronous_commit``. The node would go on from its memory, which counts them:
        linearizable reads answered from rows that were rolled back, and later commands applied
        on top of a state no replica ever had. So on PostgreSQL every commit waits for the disk.
        """
        connection = connections[self.using]
        if connection.vendor != "sqlite":
            yield
            return
        with raw_cursor(self.using) as cursor:
            cursor.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            with raw_cursor(self.using) as cursor:
                cursor.execute("PRAGMA synchronous=FULL")

    # Setup

    def sync_config(self, groups: Iterable[int | GroupSpec], nodes: Iterable[NodeAddress]) -> None:
        """``sync_nodes`` and ``ensure_groups`` in one transaction: a node's start-up.

        Either raises ``ConfigChangeError`` before anything is written (a changed node list is
        reported first: it concerns every group), or stores the whole config.
        """
        with transaction.atomic(using=self.using):
            self.sync_nodes(nodes)
            self.ensure_groups(groups)

    def ensure_groups(self, groups: Iterable[int | GroupSpec]) -> None:
        """Create the rows of these groups (``Group``, ``AcceptorState``, ``AppliedIndex``).

        A ``GroupSpec`` also sets the group's state machine (the config file is the source of
        truth); a bare id creates the group with ``PAXOS_DEFAULT_STATE_MACHINE`` if missing.
        ``ConfigChangeError`` if a spec changes the machine of a group with history here (see
        ``_check_state_machines``): nothing is written then.
        """
        groups = list(groups)
        specs = [group for group in groups if isinstance(group, GroupSpec)]
        bare = [group for group in groups if not isinstance(group, GroupSpec)]
        with transaction.atomic(using=self.using):
            self._check_state_machines(specs)
            if specs:
                Group.objects.using(self.using).bulk_create(
                    [
                        Group(group_id=spec.group_id, state_machine=spec.state_machine)
                        for spec in specs
                    ],
                    update_conflicts=True,
                    unique_fields=["group_id"],
                    update_fields=["state_machine"],
                )
            self._create_missing_groups([*bare, *(spec.group_id for spec in specs)])

    def sync_nodes(self, nodes: Iterable[NodeAddress]) -> None:
        """Mirror the config's node list into ``Node`` (for the admin and the API).

        ``ConfigChangeError`` if the config's node ids differ from the stored ones and this
        database holds votes (see ``_check_node_list``): nothing is written then. A node's host
        and port may change.
        """
        nodes = list(nodes)
        with transaction.atomic(using=self.using):
            self._check_node_list(nodes)
            Node.objects.using(self.using).exclude(
                node_id__in=[node.node_id for node in nodes]
            ).delete()
            Node.objects.using(self.using).bulk_create(
                [Node(node_id=node.node_id, host=node.host, port=node.port) for node in nodes],
                update_conflicts=True,
                unique_fields=["node_id"],
                update_fields=["host", "port"],
            )

    # Reads

    def load(self, group_id: int) -> InitialState:
        """The state a replica of ``group_id`` starts from (``MemoryStorage.initial_state``).

        Reads the promise, the prefix (from ``Group.chosen_upto``, extended over chosen rows above
        it), every instance above the prefix and the last ``recent`` chosen values: the cost grows
        with the unchosen tail and ``recent``, not with the length of the log.
        """
        with transaction.atomic(using=self.using):
            promised, rebuilding, rebuild_target = self._acceptor_state(group_id)
            prefix = self._load_prefix(group_id)
            rows = (
                Instance.objects.using(self.using)
                .filter(group_id=group_id, instance__gt=prefix.upto)
                .order_by("instance")
                .values_list("instance", "ballot_round", "ballot_node", "value", "chosen")
            )
            instances = tuple(
                StoredInstance(
                    instance,
                    None if ballot_round is None else Ballot(ballot_round, ballot_node),
                    value_from_json(value),
                    chosen,
                )
                for instance, ballot_round, ballot_node, value, chosen in rows
            )
            recent = self.chosen_values(
                group_id, max(1, prefix.upto - self.recent + 1), prefix.upto
            )
        return InitialState(
            promised,
            prefix.upto,
            instances,
            tuple(recent),
            rebuilding,
            rebuild_target,
            audit=not rebuilding,  # storage it had: a restored backup? (core/audit.py)
        )

    def chosen_values(self, group_id: int, first: int, last: int) -> list[ChosenEntry]:
        """Chosen values of ``first..last``, contiguous from ``first``: stops at the first gap."""
        if last < first:
            return []
        rows = (
            Instance.objects.using(self.using)
            .filter(group_id=group_id, chosen=True, instance__gte=first, instance__lte=last)
            .order_by("instance")
            .values_list("instance", "value")
        )
        entries: list[ChosenEntry] = []
        for instance, value in rows:
            if instance != first + len(entries):
                break
            entries.append(ChosenEntry(instance, value_from_json(value)))
        return entries

    def chosen_upto(self, group_id: int) -> int:
        """The contiguous chosen prefix of ``group_id``, as far as this node knows."""
        return self._load_prefix(group_id).upto

    def applied_index(self, group_id: int) -> int:
        """How far the state machine of ``group_id`` has applied the chosen log (0: nothing)."""
        applied = (
            AppliedIndex.objects.using(self.using)
            .filter(group_id=group_id)
            .values_list("applied", flat=True)
            .first()
        )
        return applied or 0

    def set_applied_index(self, group_id: int, applied: int) -> None:
        """Record the applied index. Call it inside the transaction that changed the state
        machine's own tables, so the two cannot disagree after a crash."""
        AppliedIndex.objects.using(self.using).bulk_create(
            [AppliedIndex(group_id=group_id, applied=applied)],
            update_conflicts=True,
            unique_fields=["group"],
            update_fields=["applied"],
        )

    # Writes

    def persist(self, readies: Sequence[Ready]) -> None:
        """Make the ``persist`` part of every Ready durable, in one transaction, in list order.

        Called inside the caller's ``transaction.atomic`` block (to apply commands in the same
        transaction), the writes become durable when that block commits. Does not mark the Readies
        persisted: the caller does, once they are durable.
        """
        self.persist_writes((ready.group_id, ready.persist) for ready in readies)

    def persist_writes(self, writes: Iterable[tuple[int, Persist]]) -> None:
        """``persist`` for bare ``(group_id, Persist)`` pairs (tests, tools)."""
        batches: dict[int, _GroupBatch] = {}
        for group_id, persist in writes:
            if persist:
                batches.setdefault(group_id, _GroupBatch()).add(persist)
        if not batches:
            return
        # No savepoint inside the caller's transaction: a failure here stops the node anyway,
        # and the savepoint cost as much as the statements of a small batch.
        with transaction.atomic(using=self.using, savepoint=False):
            self._create_missing_groups(batches)
            self._write_promises(batches)
            self._write_rebuilds(batches)
            self._upsert_instances(batches, timezone.now())
            self._advance_prefixes(
                [
                    group_id
                    for group_id, batch in batches.items()
                    if any(pending.chosen for pending in batch.instances.values())
                ]
            )

    # Internals

    def _check_state_machines(self, specs: Sequence[GroupSpec]) -> None:
        """``ConfigChangeError`` if a spec names another state machine than the stored one for a
        group with history on this node: an instance row (a vote or a chosen value), a chosen
        prefix, or an applied index above 0.

        The nodes that applied the group's log keep the state the old machine built, while a node
        that rebuilds (a new database) would replay the same log through the new one: replicas
        would answer differently. A group without history may change (a typo fixed before first
        use)."""
        configured = {spec.group_id: spec.state_machine for spec in specs}
        if not configured:
            return
        db = self.using
        changed = {
            group_id: stored
            for group_id, stored in Group.objects.using(db)
            .filter(group_id__in=configured)
            .values_list("group_id", "state_machine")
            if stored != configured[group_id]
        }
        if not changed:
            return
        with_history = (
            set(
                Instance.objects.using(db)
                .filter(group_id__in=changed)
                .values_list("group_id", flat=True)
                .distinct()
            )
            | set(
                AppliedIndex.objects.using(db)
                .filter(group_id__in=changed, applied__gt=0)
                .values_list("group_id", flat=True)
            )
            | set(
                Group.objects.using(db)
                .filter(group_id__in=changed, chosen_upto__gt=0)
                .values_list("group_id", flat=True)
            )
        )
        if with_history:
            refused = {group_id: changed[group_id] for group_id in sorted(with_history)}
            raise ConfigChangeError(_state_machine_change(refused, configured))

    def _check_node_list(self, nodes: Sequence[NodeAddress]) -> None:
        """``ConfigChangeError`` if ``Node`` holds other node ids than the config's and this
        database holds votes (an instance row, a promise or a chosen prefix in any group).

        Membership changes are not supported: a majority of the new list need not overlap one of
        the old (a value chosen by nodes 3, 4 and 5 of five is unseen by nodes 1 and 2 of three),
        so chosen values could be lost. A database without votes (a first start with a mistaken
        config) is re-synced; an empty ``Node`` table has nothing to compare."""
        db = self.using
        stored = sorted(Node.objects.using(db).values_list("node_id", flat=True))
        configured = sorted({node.node_id for node in nodes})
        if not stored or stored == configured:
            return
        has_votes = (
            Instance.objects.using(db).exists()
            or AcceptorState.objects.using(db).filter(promised_round__gt=0).exists()
            or Group.objects.using(db).filter(chosen_upto__gt=0).exists()
        )
        if has_votes:
            raise ConfigChangeError(_node_list_change(stored, configured))

    def _create_missing_groups(self, group_ids: Iterable[int]) -> None:
        """Rows the foreign keys need, for groups this object has not seen yet.

        Every new group row starts rebuilding (core/rebuild.py), even in a database that holds
        other groups: the database cannot tell that this node never voted in the group (it may
        have, on a disk replaced while the group was out of the config, or before a backup was
        restored). A group added node by node therefore serves once every node lists it, as a
        new cluster's groups do; ``/readyz`` notes it meanwhile instead of counting it."""
        missing = sorted(set(group_ids) - self._known_groups)
        if not missing:
            return
        machine = getattr(settings, "PAXOS_DEFAULT_STATE_MACHINE", "kv")
        db = self.using
        Group.objects.using(db).bulk_create(
            [Group(group_id=group_id, state_machine=machine) for group_id in missing],
            ignore_conflicts=True,
        )
        AcceptorState.objects.using(db).bulk_create(
            [AcceptorState(group_id=group_id) for group_id in missing],
            ignore_conflicts=True,
        )
        AppliedIndex.objects.using(db).bulk_create(
            [AppliedIndex(group_id=group_id) for group_id in missing],
            ignore_conflicts=True,
        )
        transaction.on_commit(lambda: self._known_groups.update(missing), using=db)

    def _write_promises(self, batches: dict[int, _GroupBatch]) -> None:
        promises = [
            AcceptorState(
                group_id=group_id,
                promised_round=batch.promised.round,
                promised_node=batch.promised.node_id,
            )
            for group_id, batch in batches.items()
            if batch.promised is not None
        ]
        if promises:
            AcceptorState.objects.using(self.using).bulk_create(
                promises,
                update_conflicts=True,
                unique_fields=["group"],
                update_fields=["promised_round", "promised_node"],
            )

    def _write_rebuilds(self, batches: dict[int, _GroupBatch]) -> None:
        """Rare (a new database's first turns): one update per group whose rebuild moved."""
        for group_id, batch in batches.items():
            if batch.rebuild is not None:
                AcceptorState.objects.using(self.using).filter(group_id=group_id).update(
                    rebuilding=batch.rebuild.rebuilding,
                    rebuild_target=batch.rebuild.target,
                )

    def _acceptor_state(self, group_id: int) -> tuple[Ballot, bool, int | None]:
        """The promise, whether the group is rebuilding, and its target. A group with no row
        yet is new storage: rebuilding, like the row ``_create_missing_groups`` will add."""
        row = (
            AcceptorState.objects.using(self.using)
            .filter(group_id=group_id)
            .values_list("promised_round", "promised_node", "rebuilding", "rebuild_target")
            .first()
        )
        if row is None:
            return ZERO_BALLOT, True, None
        promised_round, promised_node, rebuilding, target = row
        promised = ZERO_BALLOT if promised_round == 0 else Ballot(promised_round, promised_node)
        return promised, rebuilding, target

    def _load_prefix(self, group_id: int) -> _Prefix:
        """The stored prefix, extended over the chosen rows above it (and stored if it moved).

        ``Group.chosen_upto`` is trusted as a lower bound: it is only ever written in the
        transaction that wrote the chosen marks it covers (and log compaction, later, deletes only
        rows below it).
        """
        stored = (
            Group.objects.using(self.using)
            .filter(group_id=group_id)
            .values_list("chosen_upto", flat=True)
            .first()
        )
        upto = stored or 0
        chosen_above = (
            Instance.objects.using(self.using)
            .filter(group_id=group_id, chosen=True, instance__gt=upto)
            .order_by("instance")
            .values_list("instance", flat=True)
        )
        prefix = _Prefix(upto, set()).advanced(chosen_above)
        if stored is not None and prefix.upto != stored:
            Group.objects.using(self.using).filter(group_id=group_id).update(
                chosen_upto=prefix.upto
            )
        return prefix

    def _advance_prefixes(self, group_ids: Sequence[int]) -> None:
        """Move ``Group.chosen_upto`` of these groups over their newly contiguous chosen rows.

        Hot path, so plain SQL (the ORM spends more time compiling than the database running):
        one read of the chosen rows above each stored prefix, then one update per group that moved.
        """
        if not group_ids:
            return
        select, update = _prefix_sql(self.using, len(group_ids))
        above: dict[int, tuple[int, list[int]]] = {}
        with raw_cursor(self.using) as cursor:
            cursor.execute(select, list(group_ids))
            for group_id, stored, instance in cursor.fetchall():
                above.setdefault(group_id, (stored, []))[1].append(instance)
            moved = [
                (upto, group_id)
                for group_id, (stored, instances) in above.items()
                if (upto := _Prefix(stored, set()).advanced(instances).upto) != stored
            ]
            if moved:
                cursor.executemany(update, moved)

    def _upsert_instances(self, batches: dict[int, _GroupBatch], now: datetime) -> None:
        chosen_at = None
        if any(
            pending.chosen for batch in batches.values() for pending in batch.instances.values()
        ):
            chosen_at = connections[self.using].ops.adapt_datetimefield_value(now)
        rows = [
            (
                group_id,
                number,
                None if pending.ballot is None else pending.ballot.round,
                None if pending.ballot is None else pending.ballot.node_id,
                value_to_json(pending.value),
                pending.chosen,
                chosen_at if pending.chosen else None,
            )
            for group_id, batch in batches.items()
            for number, pending in batch.instances.items()
        ]
        if rows:
            with raw_cursor(self.using) as cursor:
                cursor.executemany(_upsert_sql(self.using), rows)


def _ids(ids: Iterable[int]) -> str:
    return ", ".join(str(i) for i in ids)


def _state_machine_change(stored: dict[int, str], configured: dict[int, str]) -> str:
    """The one-line refusal of ``_check_state_machines`` (``stored``: the refused groups)."""
    changes = " and ".join(
        f'of group {group_id} from "{machine}" to "{configured[group_id]}"'
        for group_id, machine in stored.items()
    )
    if len(stored) == 1:
        [(group_id, machine)] = stored.items()
        subject = "the group has"
        advice = (
            f'put back "stateMachine": "{machine}" for group {group_id}, or use a new group id '
            f'for "{configured[group_id]}"'
        )
    else:
        subject = f"groups {_ids(stored)} have"
        advice = "put back their old state machines, or use new group ids for the new ones"
    return (
        f"the config changes the state machine {changes}, but {subject} a log on this node: a "
        "group's state machine cannot change once it has a log (a node that rebuilds would "
        "replay it through the new machine and answer differently from the others); "
        f"{advice}"
    )


def _node_list_change(stored: Sequence[int], configured: Sequence[int]) -> str:
    """The one-line refusal of ``_check_node_list``."""
    return (
        f"the config lists nodes {_ids(configured)}, but this database has voted in a cluster of "
        f"nodes {_ids(stored)}: changing the node list is not supported (a majority of the new "
        "list need not overlap one of the old, and chosen values could be lost); start the node "
        f"with nodes {_ids(stored)} again (a node's host and port may change, not its id), or "
        "start a new cluster with new databases"
    )


@functools.cache
def _prefix_sql(using: str, groups: int) -> tuple[str, str]:
    """``_advance_prefixes``' read of the chosen rows above the stored prefixes of ``groups``
    groups, and its update of one prefix (built once per shape: they run in every turn)."""
    quote = connections[using].ops.quote_name
    group_table, instance_table = quote(Group._meta.db_table), quote(Instance._meta.db_table)
    placeholders = ", ".join(["%s"] * groups)
    select = (
        f"SELECT g.group_id, g.chosen_upto, i.instance "
        f"FROM {instance_table} i JOIN {group_table} g ON g.group_id = i.group_id "
        f"WHERE i.group_id IN ({placeholders}) AND i.chosen AND i.instance > g.chosen_upto"
    )
    return select, f"UPDATE {group_table} SET chosen_upto = %s WHERE group_id = %s"


@functools.cache
def _upsert_sql(using: str) -> str:
    """The merge statement of the module docstring (one text for SQLite and PostgreSQL), quoted
    for the database ``using`` (built once: it runs in every turn)."""
    quote = connections[using].ops.quote_name
    meta = Instance._meta
    table = quote(meta.db_table)
    names = [
        "group",
        "instance",
        "ballot_round",
        "ballot_node",
        "value",
        "chosen",
        "chosen_at",
    ]
    group, instance, ballot_round, ballot_node, value, chosen, chosen_at = (
        quote(meta.get_field(name).column) for name in names
    )
    columns = ", ".join([group, instance, ballot_round, ballot_node, value, chosen, chosen_at])
    return (
        f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT ({group}, {instance}) DO UPDATE SET "
        f"{ballot_round} = COALESCE(excluded.{ballot_round}, {table}.{ballot_round}), "
        f"{ballot_node} = COALESCE(excluded.{ballot_node}, {table}.{ballot_node}), "
        f"{value} = CASE WHEN {table}.{chosen} AND NOT excluded.{chosen} "
        f"THEN {table}.{value} ELSE excluded.{value} END, "
        f"{chosen} = ({table}.{chosen} OR excluded.{chosen}), "
        f"{chosen_at} = COALESCE({table}.{chosen_at}, excluded.{chosen_at})"
    )
