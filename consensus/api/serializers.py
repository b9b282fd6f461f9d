"""Serializers of the consensus API (explicit fields, netbox style).

The request serializers validate the DRF endpoints and *describe* the lean ones in the OpenAPI
schema (the lean views validate by hand with the same rules, see ``fastpath``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from consensus.models import Group, Instance, Node
from consensus.request_ids import MAX_REQUEST_ID_LENGTH

#
# Fields
#


class DecimalIntegerField(serializers.IntegerField):
    """An integer written in decimal digits, with an optional minus (query parameters such
    as ``after``): DRF's ``IntegerField`` took whatever ``int()`` takes, after dropping a
    ``.0``, so ``1_0`` was 10 and ``+3``, `` 3``, ``3.0`` and ``٣`` were 3."""

    DIGITS = re.compile(r"-?[0-9]+")

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, str) and not self.DIGITS.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)


#
# Errors
#


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What went wrong, in one line.")


#
# Commands
#


class CommandRequestSerializer(serializers.Serializer):
    command = serializers.CharField(
        allow_blank=True,
        trim_whitespace=False,
        help_text="The command for the group's state machine, usually JSON text. For the KV "
        'store: {"op": "put"|"get"|"delete"|"cas", "key": ..., "value": ..., "expected": ...} '
        'or the seed\'s {"type": "put"|"get"|"delete", "key": ..., "value": ...}.',
    )
    request_id = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=MAX_REQUEST_ID_LENGTH,
        help_text="Optional, unique per command. Sending the same id again (to any node) returns "
        "the first result and does not apply the command twice. Ids starting with 'paxos:' "
        "are reserved. Also accepted as the X-Request-Id header.",
    )


class CommandResponseSerializer(serializers.Serializer):
    instance = serializers.IntegerField(help_text="The log instance the command was chosen in.")
    request_id = serializers.CharField()
    result = serializers.JSONField(help_text="What the state machine returned.")
    duplicate = serializers.BooleanField(
        help_text="True when the request id had already been applied: this is the first result."
    )


class QueryRequestSerializer(serializers.Serializer):
    query = serializers.CharField(
        allow_blank=True,
        trim_whitespace=False,
        help_text="The query for the group's state machine (its query() method), usually JSON "
        'text. For the KV store: {"op": "get", "key": ...}.',
    )
    consistency = serializers.ChoiceField(
        choices=["linearizable", "local"],
        required=False,
        help_text="linearizable (default): the answer reflects every write acknowledged before "
        "the query began. local: this node's applied state, faster, maybe stale.",
    )


class QueryResponseSerializer(serializers.Serializer):
    result = serializers.JSONField(help_text="What the state machine's query() returned.")
    consistency = serializers.CharField()


class StateCheckResponseSerializer(serializers.Serializer):
    group_id = serializers.IntegerField()
    instance = serializers.IntegerField(help_text="The state check's instance in the log.")
    first = serializers.IntegerField(
        allow_null=True,
        help_text="The first instance of the result digest window that ends with the check "
        "(null: this node did not digest it).",
    )
    state = serializers.CharField(
        allow_null=True, help_text="This node's state_digest() at the check (null: none)."
    )
    peers = serializers.DictField(
        child=serializers.ChoiceField(["same", "differs", "not compared"]),
        help_text="Peer node id -> how its digest of the window compares with this node's "
        "('not compared': it did not report it in time, or did not digest it).",
    )
    note = serializers.CharField(allow_null=True)


#
# Groups and the commit log
#


class GroupSerializer(serializers.ModelSerializer):
    """A group as this node sees it: durable counters plus, when the node runs, live state."""

    role = serializers.SerializerMethodField()
    leader = serializers.SerializerMethodField()
    ballot = serializers.SerializerMethodField()
    applied = serializers.SerializerMethodField()
    rebuilding = serializers.SerializerMethodField()

    class Meta:
        model = Group
        fields = [
            "group_id",
            "state_machine",
            "role",
            "leader",
            "ballot",
            "chosen_upto",
            "applied",
            "rebuilding",
        ]

    def _live(self, group: Group) -> dict[str, Any] | None:
        live: dict[int, dict[str, Any]] = self.context.get("live", {})
        return live.get(group.group_id)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_role(self, group: Group) -> str | None:
        live = self._live(group)
        return live["role"] if live else None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_leader(self, group: Group) -> int | None:
        live = self._live(group)
        return live["leader"] if live else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_ballot(self, group: Group) -> str | None:
        live = self._live(group)
        return live["ballot"] if live else None

    @extend_schema_field(serializers.BooleanField(allow_null=True))
    def get_rebuilding(self, group: Group) -> bool | None:
        """True while this node's database is new and it does not vote yet (core/rebuild.py)."""
        live = self._live(group)
        return bool(live["rebuilding"]) if live else None

    @extend_schema_field(OpenApiTypes.INT)
    def get_applied(self, group: Group) -> int:
        live = self._live(group)
        if live:
            return int(live["applied"])
        applied = getattr(group, "applied_index", None)
        return applied.applied if applied is not None else 0

    def to_representation(self, group: Group) -> dict[str, Any]:
        data = super().to_representation(group)
        live = self._live(group)
        if live:  # the replica is ahead of the last durable chosen_upto between commits
            data["chosen_upto"] = max(data["chosen_upto"], int(live["chosen_upto"]))
        return data


class LogCommandSerializer(serializers.Serializer):
    request_id = serializers.CharField()
    command = serializers.CharField(help_text="The command as submitted.")


class LogEntrySerializer(serializers.ModelSerializer):
    """One chosen instance; ``commands`` is empty for a leader's no-op. The runtime's read-barrier
    markers are left out: they are chosen like commands but change nothing."""

    commands = serializers.SerializerMethodField()

    class Meta:
        model = Instance
        fields = ["instance", "chosen_at", "commands"]

    @extend_schema_field(LogCommandSerializer(many=True))
    def get_commands(self, entry: Instance) -> list[dict[str, str]]:
        pairs = orjson.loads(entry.value) if entry.value else []
        return [
            {"request_id": request_id, "command": payload}
            for request_id, payload in pairs
            if not request_id.startswith("paxos:")
        ]


class LogPageSerializer(serializers.Serializer):
    group_id = serializers.IntegerField()
    after = serializers.IntegerField(help_text="Entries have instance > after.")
    limit = serializers.IntegerField()
    chosen_upto = serializers.IntegerField(help_text="The contiguous chosen prefix on this node.")
    next = serializers.URLField(
        allow_null=True, help_text="The next page, or null when this page reached the end."
    )
    results = LogEntrySerializer(many=True)


#
# Nodes and status
#


class NodeSerializer(serializers.ModelSerializer):
    me = serializers.SerializerMethodField(help_text="True for the node that answered.")
    connected = serializers.SerializerMethodField(
        help_text="Peer link state seen from the node that answered (null for itself)."
    )
    url = serializers.SerializerMethodField()

    class Meta:
        model = Node
        fields = ["node_id", "host", "port", "url", "me", "connected"]

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_me(self, node: Node) -> bool:
        return node.node_id == self.context.get("my_id")

    @extend_schema_field(serializers.BooleanField(allow_null=True))
    def get_connected(self, node: Node) -> bool | None:
        peers: dict[int, dict[str, Any]] = self.context.get("peers", {})
        peer = peers.get(node.node_id)
        if peer is None:
            return None
        return bool(peer.get("connected_out")) and bool(peer.get("connected_in"))

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, node: Node) -> str:
        host = f"[{node.host}]" if ":" in node.host else node.host
        return f"http://{host}:{node.port}/"


class GroupStatusSerializer(serializers.Serializer):
    group_id = serializers.IntegerField()
    role = serializers.CharField(help_text="leader, candidate or follower")
    leader = serializers.IntegerField(allow_null=True)
    ballot = serializers.CharField()
    promised = serializers.CharField()
    chosen_upto = serializers.IntegerField()
    applied = serializers.IntegerField()
    pending = serializers.IntegerField(help_text="Commands waiting to be chosen on this node.")


class StatusSerializer(serializers.Serializer):
    node_id = serializers.IntegerField()
    uptime_seconds = serializers.FloatField()
    groups = GroupStatusSerializer(many=True)
    peers = serializers.JSONField(help_text="Peer links (the transport's counters).")
    result_digests = serializers.JSONField(
        help_text="The comparison of the state machines' results with the peers': the window "
        "size (instances; PAXOS_DIGEST_WINDOW, 0: off) and how many windows were compared."
    )
    divergences = serializers.ListField(
        child=serializers.JSONField(),
        help_text="Each (group, peer) whose state machine gave other results than this node's "
        "for the same window of the log (group_id, peer, first, last, mine, theirs, "
        "detected_at): an alarm, see /readyz.",
    )
