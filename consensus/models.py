"""Durable state of one node (DESIGN.md §4). Only ``consensus.storage`` writes these tables.

Each node has its own database, so none of the rows name the node they belong to. ``Group`` uses
the group number as its primary key: every ``group_id`` column in the other tables *is* the group
number, and the storage layer writes rows without looking groups up first.

Values are stored as JSON text, a list of ``[request_id, payload]`` pairs (``[]`` is the no-op);
``consensus.storage.values`` converts them to and from the core's ``Value``.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Node(models.Model):
    """A member of the cluster, mirrored from the config file so the admin and the API can list
    membership. The config file stays the source of truth; this table is rewritten at start."""

    node_id = models.PositiveIntegerField("node id", unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])

    class Meta:
        verbose_name = "node"
        verbose_name_plural = "nodes"

    def __str__(self) -> str:
        return f"node {self.node_id} ({self.host}:{self.port})"


class NodeIdentity(models.Model):
    """Which node this database belongs to: written when a node first starts on it, checked at
    every start after (``consensus.storage.identity``).

    A node must never run on another node's database: it would vote with that node's promises
    and votes, as a second copy of one acceptor, and two values could be chosen for one instance.
    That happens with a copied database file, or with a ``DATABASE_URL`` that gives every node
    the same database (no ``{node_id}``). One row (``id = 1``)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    node_id = models.PositiveIntegerField("node id")
    created_at = models.DateTimeField("created at", auto_now_add=True)

    class Meta:
        verbose_name = "node identity"
        verbose_name_plural = "node identity"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(id=1), name="consensus_nodeidentity_single_row"
            ),
        ]

    def __str__(self) -> str:
        return f"database of node {self.node_id}"


class Group(models.Model):
    """An independent replicated log and the state machine its chosen commands are applied to.

    ``chosen_upto`` is the contiguous chosen prefix ``1..chosen_upto``. It is derived data (the
    ``Instance`` rows say the same), kept in the same transaction as the chosen marks so a restart
    does not have to scan the whole log to find it.
    """

    group_id = models.PositiveIntegerField("group id", primary_key=True)
    state_machine = models.CharField("state machine", max_length=100)
    chosen_upto = models.PositiveBigIntegerField("chosen up to", default=0)

    class Meta:
        verbose_name = "group"
        verbose_name_plural = "groups"

    def __str__(self) -> str:
        return f"group {self.group_id}"


class AcceptorState(models.Model):
    """The acceptor's promise for a group: it never votes for a ballot below it.

    Committed before the Promise that reports it leaves the node. Forgetting it in a crash would
    let the node vote for an older leader's value after promising a newer one not to.
    ``promised_round = 0`` means no promise yet (``ZERO_BALLOT``).

    A row is created ``rebuilding``: a node whose database is new (a new cluster, or a replaced
    disk) must not vote before it knows what its lost votes may have been (core/rebuild.py).
    """

    group = models.OneToOneField(
        Group, on_delete=models.CASCADE, primary_key=True, related_name="acceptor_state"
    )
    promised_round = models.PositiveBigIntegerField("promised round", default=0)
    promised_node = models.PositiveIntegerField("promised node", default=0)
    rebuilding = models.BooleanField(
        default=True,
        help_text="This node's storage for the group is new: it votes once its peers have told "
        "it what the group has seen and it has learned that much (consensus/core/rebuild.py).",
    )
    rebuild_target = models.PositiveBigIntegerField(
        "rebuild target",
        null=True,
        blank=True,
        help_text="While rebuilding: the instance it must know chosen before it votes.",
    )

    class Meta:
        verbose_name = "acceptor state"
        verbose_name_plural = "acceptor states"

    def __str__(self) -> str:
        return f"group {self.group_id} promised {self.promised_round}.{self.promised_node}"


class Instance(models.Model):
    """One slot of a group's log: this acceptor's vote (``ballot_*``, ``value``) and whether the
    value is known to be chosen.

    Invariants (kept by ``DjangoStorage.persist``): once ``chosen`` is true it stays true and
    ``value`` never changes; a later vote only updates the ballot. ``ballot_*`` is null for an
    instance learned as chosen without this node voting in it.
    """

    # No index of its own on ``group``: the unique (group, instance) index serves every look-up
    # by group, and each index is one more B-tree that every vote writes (see "Indexes").
    group = models.ForeignKey(
        Group, on_delete=models.CASCADE, related_name="instances", db_index=False
    )
    instance = models.PositiveBigIntegerField()
    ballot_round = models.PositiveBigIntegerField("ballot round", null=True, blank=True)
    ballot_node = models.PositiveIntegerField("ballot node", null=True, blank=True)
    value = models.TextField(default="[]", help_text="JSON list of [request_id, payload] pairs")
    chosen = models.BooleanField(default=False)
    chosen_at = models.DateTimeField("chosen at", null=True, blank=True)

    class Meta:
        verbose_name = "instance"
        verbose_name_plural = "instances"
        constraints = [
            models.UniqueConstraint(
                fields=["group", "instance"], name="consensus_instance_group_instance"
            ),
        ]

    def __str__(self) -> str:
        return f"group {self.group_id} instance {self.instance}"

    @property
    def ballot_label(self) -> str:
        """The ballot as ``round.node``, or an empty string when this node never voted."""
        if self.ballot_round is None:
            return ""
        return f"{self.ballot_round}.{self.ballot_node}"


class AppliedIndex(models.Model):
    """How far a group's state machine has applied the chosen log on this node.

    A database-backed state machine updates this row in the same transaction as its own state, so
    a crash can neither lose nor repeat an application (DESIGN.md §4).
    """

    group = models.OneToOneField(
        Group, on_delete=models.CASCADE, primary_key=True, related_name="applied_index"
    )
    applied = models.PositiveBigIntegerField(default=0)
    digest = models.BigIntegerField(null=True, blank=True)
    """The digest of the state machine's results in the window of the log in progress
    (``consensus.core.result_digest``); null: the window began before it was recorded."""
    digest_window = models.PositiveIntegerField("digest window", default=0)
    """The window size ``digest`` was computed for (``PAXOS_DIGEST_WINDOW``)."""
    digest_from = models.PositiveBigIntegerField("digest from", default=0)
    """The first instance of the window in progress."""

    class Meta:
        verbose_name = "applied index"
        verbose_name_plural = "applied indexes"

    def __str__(self) -> str:
        return f"group {self.group_id} applied {self.applied}"


class RequestResult(models.Model):
    """The first result of a client request id: a retry returns it instead of applying again."""

    # No index of its own on ``group``: the unique (group, request id) index serves look-ups by
    # group (see Instance.group).
    group = models.ForeignKey(
        Group, on_delete=models.CASCADE, related_name="request_results", db_index=False
    )
    request_id = models.CharField("request id", max_length=255)
    instance = models.PositiveBigIntegerField()
    result = models.TextField(blank=True)
    created_at = models.DateTimeField("created at", auto_now_add=True)

    class Meta:
        verbose_name = "request result"
        verbose_name_plural = "request results"
        constraints = [
            models.UniqueConstraint(
                fields=["group", "request_id"],
                name="consensus_requestresult_group_request",
            ),
        ]
        # Pruning finds and deletes results by instance (storage/pruning.py): without this
        # index each prune scanned the whole table, seconds once it held a million rows.
        indexes = [models.Index(fields=["group", "instance"], name="consensus_result_instance")]

    def __str__(self) -> str:
        return f"group {self.group_id} request {self.request_id}"
