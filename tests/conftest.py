"""Project-wide test setup; keep it generic (fixtures of one level live in that level's folder,
shared helpers in ``tests/fixtures/``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _postgres_configured() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


CLUSTERS = {"cluster_factory", "shared_cluster"}
"""Fixtures that start node processes: their tests run on the processes' worker, marked or not."""


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres`` need ``DATABASE_URL`` to point at a PostgreSQL server.

    Under ``pytest -n 2 --dist loadgroup`` (pytest-xdist, as ``make test`` runs), the tests
    marked ``e2e`` or using a cluster (real node processes) run one after another on one
    worker, while the other runs the in-process tests: two clusters at once on two cores would
    starve each other's timers (elections, leases) and make timing tests flaky."""
    skip = pytest.mark.skip(reason="needs DATABASE_URL=postgres://... (PostgreSQL)")
    for item in items:
        if "postgres" in item.keywords and not _postgres_configured():
            item.add_marker(skip)
        if "e2e" in item.keywords or CLUSTERS.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("processes"))


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
