"""Admin of the KV store: read-only, because writes go through consensus.

An entry edited here would change this node's copy only: its state machine would silently diverge
from its peers'. To change a key, use the API (``PUT /api/kv/<g>/<key>``) or the client.
"""

from __future__ import annotations

from django.contrib import admin

from consensus.admin import ReadOnlyAdmin

from .models import Entry

PREVIEW_CHARS = 80


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ["key", "group_id", "value_preview", "instance"]
    list_filter = ["group_id"]
    search_fields = ["key", "value"]
    ordering = ["group_id", "key"]
    readonly_fields = ["group_id", "key", "value", "instance"]
    list_per_page = 100
    show_full_result_count = False  # COUNT(*) on a big table costs more than the page itself

    @admin.display(description="value")
    def value_preview(self, entry: Entry) -> str:
        value = entry.value
        return value if len(value) <= PREVIEW_CHARS else value[: PREVIEW_CHARS - 1] + "…"
