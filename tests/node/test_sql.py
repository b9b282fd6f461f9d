"""``raw_cursor`` runs the project's ``%s`` statements on the driver's own cursor, inside Django's
transaction, with Django's exceptions (on SQLite and, in CI, PostgreSQL)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from consensus.models import Group
from consensus.storage.sql import raw_cursor

pytestmark = pytest.mark.django_db(transaction=True)

INSERT = "INSERT INTO consensus_group (group_id, state_machine, chosen_upto) VALUES (%s, %s, %s)"


def stored_groups() -> list[int]:
    return sorted(Group.objects.values_list("group_id", flat=True))


def test_statements_with_placeholders_run_and_return_rows() -> None:
    with raw_cursor() as cursor:
        cursor.executemany(INSERT, [(7, "kv", 0), (8, "kv", 3)])
        cursor.execute(
            "SELECT group_id, chosen_upto FROM consensus_group WHERE group_id IN (%s, %s) "
            "ORDER BY group_id",
            [7, 8],
        )
        assert cursor.fetchall() == [(7, 0), (8, 3)]
    assert stored_groups() == [7, 8]  # Django's ORM sees the rows


def insert_then_fail() -> None:
    with transaction.atomic(), raw_cursor() as cursor:
        cursor.execute(INSERT, (9, "kv", 0))
        raise RuntimeError("roll back")


def test_statements_commit_and_roll_back_with_the_django_transaction() -> None:
    with pytest.raises(RuntimeError):
        insert_then_fail()
    assert stored_groups() == []
    with transaction.atomic(), raw_cursor() as cursor:
        cursor.execute(INSERT, (9, "kv", 0))
    assert stored_groups() == [9]


def test_driver_errors_are_djangos_exceptions() -> None:
    with raw_cursor() as cursor:
        cursor.execute(INSERT, (10, "kv", 0))
    with pytest.raises(IntegrityError), transaction.atomic(), raw_cursor() as cursor:
        cursor.execute(INSERT, (10, "kv", 0))
    assert stored_groups() == [10]
