"""Read-only admin of the replicated state.

Nothing here may write: a promise or a vote edited by hand could let two values be chosen for one
instance, and an edited log would make this node's state machine diverge from its peers'. The
storage layer is the only writer.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse_lazy
from django.utils.html import format_html, format_html_join

from .models import (
    AcceptorState,
    AppliedIndex,
    Group,
    Instance,
    Node,
    NodeIdentity,
    RequestResult,
)
from .runtime import get_node
from .storage.values import value_from_json

PREVIEW_COMMANDS = 3
PREVIEW_CHARS = 60

# Every node serves its own admin; the header says which one you are looking at.
_node_id = getattr(settings, "PAXOS_NODE_ID", None)
admin.site.site_header = f"Paxos node {_node_id}" if _node_id else "Paxos node"
admin.site.site_title = f"Paxos node {_node_id}" if _node_id else "Paxos node"
admin.site.index_title = "Replicated state (read-only: writes go through Paxos)"
admin.site.site_url = reverse_lazy("consensus-dashboard:dashboard")  # "View site": the live view


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: no add, change or delete, whatever the user's permissions say."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Node)
class NodeAdmin(ReadOnlyAdmin):
    list_display = ["node_id", "host", "port"]
    search_fields = ["host"]
    ordering = ["node_id"]


@admin.register(Group)
class GroupAdmin(ReadOnlyAdmin):
    list_display = ["group_id", "state_machine", "chosen_upto", "applied", "role", "leader"]
    list_filter = ["state_machine"]
    ordering = ["group_id"]
    list_select_related = ["applied_index"]

    @admin.display(description="applied")
    def applied(self, obj: Group) -> int:
        try:
            return obj.applied_index.applied
        except AppliedIndex.DoesNotExist:
            return 0

    @admin.display(description="role here (live)")
    def role(self, obj: Group) -> str:
        replica = _replica(obj.group_id)
        return replica.role.value if replica is not None else "-"

    @admin.display(description="leader (live)")
    def leader(self, obj: Group) -> str:
        replica = _replica(obj.group_id)
        if replica is None or replica.leader_id is None:
            return "-"
        return f"node {replica.leader_id}"


def _replica(group_id: int) -> Any:
    """The running replica of a group, for display only (a racy read of two plain attributes
    from the admin's thread is fine; anything more goes through the node's loop)."""
    node = get_node()
    return node.replicas.get(group_id) if node is not None else None


@admin.register(AcceptorState)
class AcceptorStateAdmin(ReadOnlyAdmin):
    list_display = ["group", "promised", "rebuilding", "rebuild_target"]
    ordering = ["group"]

    @admin.display(description="promised ballot")
    def promised(self, obj: AcceptorState) -> str:
        return f"{obj.promised_round}.{obj.promised_node}"


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    list_display = ["group", "instance", "ballot", "chosen", "chosen_at", "commands"]
    list_filter = ["group", "chosen"]
    search_fields = ["value__icontains"]
    search_help_text = "Search the commands (request ids and payloads)."
    ordering = ["group", "-instance"]
    list_select_related = ["group"]
    show_full_result_count = False  # counting a long log on every page view is slow
    list_per_page = 50
    fields = ["group", "instance", "ballot", "chosen", "chosen_at", "command_list"]
    readonly_fields = ["ballot", "command_list"]

    @admin.display(description="ballot", ordering="ballot_round")
    def ballot(self, obj: Instance) -> str:
        return obj.ballot_label or "-"

    @admin.display(description="commands")
    def commands(self, obj: Instance) -> str:
        """A short preview: the first few request ids and payloads, or ``no-op``."""
        value = value_from_json(obj.value)
        if not value:
            return "no-op"
        shown = ", ".join(
            _shorten(f"{command.request_id}: {command.payload}")
            for command in value[:PREVIEW_COMMANDS]
        )
        more = len(value) - PREVIEW_COMMANDS
        return f"{shown} (+{more} more)" if more > 0 else shown

    @admin.display(description="commands (request id: payload)")
    def command_list(self, obj: Instance) -> str:
        """Every command of the instance, one per line (the detail page)."""
        value = value_from_json(obj.value)
        if not value:
            return "no-op"
        return format_html(
            "<ol>{}</ol>",
            format_html_join(
                "",
                "<li><code>{}</code>: <code>{}</code></li>",
                ((command.request_id, command.payload) for command in value),
            ),
        )


@admin.register(AppliedIndex)
class AppliedIndexAdmin(ReadOnlyAdmin):
    list_display = ["group", "applied"]
    ordering = ["group"]


@admin.register(RequestResult)
class RequestResultAdmin(ReadOnlyAdmin):
    list_display = ["group", "request_id", "instance", "short_result", "created_at"]
    list_filter = ["group"]
    search_fields = ["request_id"]
    ordering = ["-created_at"]
    list_select_related = ["group"]
    show_full_result_count = False

    @admin.display(description="result")
    def short_result(self, obj: RequestResult) -> str:
        return _shorten(obj.result)


def _shorten(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


@admin.register(NodeIdentity)
class NodeIdentityAdmin(ReadOnlyAdmin):
    """Which node this database belongs to (consensus/storage/identity.py)."""

    list_display = ["node_id", "created_at"]
