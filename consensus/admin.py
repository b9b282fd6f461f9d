"""Read-only admin of the replicated state.

Nothing here may write: a promise or a vote edited by hand could let two values be chosen for one
instance, and an edited log would make this node's state machine diverge from its peers'. The
storage layer is the only writer.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import AcceptorState, AppliedIndex, Group, Instance, Node, RequestResult
from .storage.values import value_from_json

PREVIEW_COMMANDS = 3
PREVIEW_CHARS = 60


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
    list_display = ["group_id", "state_machine", "chosen_upto"]
    list_filter = ["state_machine"]
    ordering = ["group_id"]


@admin.register(AcceptorState)
class AcceptorStateAdmin(ReadOnlyAdmin):
    list_display = ["group", "promised"]
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
