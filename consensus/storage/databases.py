"""Database URLs of nodes: one database per node, created on demand on PostgreSQL.

Nodes never share a database: each acceptor's promises and votes must fail independently, or a
quorum is one disk. A local cluster on one PostgreSQL server therefore gets one database per node,
from a single ``DATABASE_URL`` with a ``{node_id}`` placeholder (``.../paxos_node{node_id}``).
This module is imported by the settings, before Django is set up: no models here.
"""

from __future__ import annotations

import logging
from typing import Any

import dj_database_url

logger = logging.getLogger(__name__)

NODE_ID_PLACEHOLDER = "{node_id}"
POSTGRES_ENGINES = frozenset(
    {"django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis"}
)


def expand_database_url(url: str, node_id: int | None) -> str:
    """Replace ``{node_id}`` in ``url`` with the node id (with no node, with ``0``)."""
    return url.replace(NODE_ID_PLACEHOLDER, str(node_id if node_id is not None else 0))


def is_postgres_url(url: str) -> bool:
    return dj_database_url.parse(url)["ENGINE"] in POSTGRES_ENGINES


def ensure_postgres_database(url: str, maintenance_db: str = "postgres") -> bool:
    """Create the database named in a PostgreSQL ``url`` unless it exists; True if it created it.

    Connects to the ``maintenance_db`` of the same server with the same credentials, in autocommit
    mode (``CREATE DATABASE`` cannot run in a transaction). A concurrent creator is not an error.
    Any other URL (SQLite creates its file itself) is left alone and returns False.
    """
    database = dj_database_url.parse(url)
    if database["ENGINE"] not in POSTGRES_ENGINES:
        return False
    import psycopg
    from psycopg import errors, sql

    name = database["NAME"]
    if not name:
        raise ValueError("the database URL names no database")
    with psycopg.connect(**_connect_kwargs(database, maintenance_db), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except errors.DuplicateDatabase:
            return False
    logger.info("created PostgreSQL database %s", name)
    return True


def _connect_kwargs(database: dict[str, Any], dbname: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dbname": dbname}
    for setting, keyword in (
        ("USER", "user"),
        ("PASSWORD", "password"),
        ("HOST", "host"),
        ("PORT", "port"),
    ):
        if database.get(setting):
            kwargs[keyword] = database[setting]
    kwargs.update(database.get("OPTIONS") or {})
    return kwargs
