"""Project-wide test setup; keep it generic (fixtures of one level live in that level's folder,
shared helpers in ``tests/fixtures/``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _postgres_configured() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres`` need ``DATABASE_URL`` to point at a PostgreSQL server."""
    if _postgres_configured():
        return
    skip = pytest.mark.skip(reason="needs DATABASE_URL=postgres://... (PostgreSQL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


# Real-cluster fixtures (nodes as processes on 127.0.0.1) and an in-process node, shared by every
# test level.
pytest_plugins = ["tests.fixtures.cluster", "tests.fixtures.loop_node"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        type=float,
        default=0,
        metavar="SECONDS",
        help="run the Jepsen soak tests (tests/jepsen) for SECONDS per cluster size",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Django deletes its SQLite test database at the end, but not the WAL and shared-memory
    files beside it (connections on other threads still hold them): delete those too, so that a
    test run leaves nothing behind in the temporary directory."""
    from django.conf import settings

    if not settings.configured:
        return
    database = settings.DATABASES.get("default", {})
    name = database.get("TEST", {}).get("NAME")
    if database.get("ENGINE", "").endswith("sqlite3") and name:
        for suffix in ("-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)
