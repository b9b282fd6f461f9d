"""The KV store's state: one row per (group, key). Written only by the state machine, i.e. only
by applying chosen commands; the admin shows it read-only."""

from __future__ import annotations

from django.db import models


class Entry(models.Model):
    group_id = models.PositiveIntegerField("group id")
    key = models.CharField(max_length=1024)
    value = models.TextField()
    instance = models.PositiveBigIntegerField(help_text="instance that last wrote this key")

    class Meta:
        verbose_name = "entry"
        verbose_name_plural = "entries"
        constraints = [
            models.UniqueConstraint(fields=["group_id", "key"], name="kvstore_entry_group_key")
        ]

    def __str__(self) -> str:
        return f"{self.key} (group {self.group_id})"
