"""Per-node database URLs, and creating a node's PostgreSQL database on demand."""

from __future__ import annotations

import os
import secrets

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
