"""Per-node database URLs, and creating a node's PostgreSQL database on demand."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import psycopg
import pytest

from consensus.storage.databases import (
    ensure_postgres_database,
    expand_database_url,
    is_postgres_url,
)


def test_expand_database_url() -> None:
    url = "postgres://u@h:5432/paxos_node{node_id}"
    assert expand_database_url(url, 3) == "postgres://u@h:5432/paxos_node3"
    assert expand_database_url(url, None) == "postgres://u@h:5432/paxos_node0"
    assert expand_database_url("sqlite:///x.db", 3) == "sqlite:///x.db"


def test_is_postgres_url() -> None:
    assert is_postgres_url("postgres://u@h/db")
    assert is_postgres_url("postgresql://u@h/db")
    assert not is_postgres_url("sqlite:////tmp/x.sqlite3")


def test_other_engines_are_left_alone() -> None:
    assert ensure_postgres_database("sqlite:////tmp/never-created.sqlite3") is False


@pytest.mark.postgres
def test_creates_a_missing_database_once() -> None:
    server = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    name = f"paxos_test_create_{secrets.token_hex(4)}"
    url = f"{server}/{name}"
    try:
        assert ensure_postgres_database(url) is True
        assert ensure_postgres_database(url) is False
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_a_sqlite_database_url_gets_the_settings_of_the_default_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``DATABASE_URL=sqlite:///...`` is the same SQLite as the default ``nodeN.sqlite3``: WAL
    with synchronous=FULL (the rollback journal commits about six times slower here, and
    ``relaxed_durability`` expects WAL), IMMEDIATE transactions (no lock upgrade failing
    mid-transaction) and a busy timeout; dj-database-url alone gives none of them."""
    from paxos_site import settings as project_settings

    path = tmp_path / "node{node_id}.sqlite3"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setattr(project_settings, "PAXOS_NODE_ID", 2)
    database = project_settings._database()
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert str(database["NAME"]) == str(tmp_path / "node2.sqlite3")
    assert "PRAGMA journal_mode=WAL" in database["OPTIONS"]["init_command"]
    assert "PRAGMA synchronous=FULL" in database["OPTIONS"]["init_command"]
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert database["CONN_MAX_AGE"] is None


def test_a_sqlite_url_keeps_its_own_options_on_top(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from paxos_site import settings as project_settings

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'node.sqlite3'}?timeout=60")
    database = project_settings._database()
    assert database["OPTIONS"]["timeout"] == 60
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_an_in_memory_sqlite_url_is_refused_for_a_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sqlite://x.db`` (two slashes) is ``:memory:``: every thread of a node (the writer, the
    reads) would get its own empty database. Fine for a tool without a node, refused for one."""
    from django.core.exceptions import ImproperlyConfigured

    from paxos_site import settings as project_settings

    monkeypatch.setenv("DATABASE_URL", "sqlite://x.db")
    monkeypatch.setattr(project_settings, "PAXOS_CLUSTER", None)
    assert project_settings._database()["NAME"] == ":memory:"
    monkeypatch.setattr(project_settings, "PAXOS_CLUSTER", object())
    with pytest.raises(ImproperlyConfigured, match="in-memory SQLite database; a node needs a"):
        project_settings._database()
