"""Node settings derived from PAXOS_CONFIG / PAXOS_NODE_ID / DATABASE_URL.

Settings are read once per process, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consensus.config import write_demo_config

PROJECT = Path(__file__).resolve().parents[2]

SHOW = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "name": str(db["NAME"]), "options": db.get("OPTIONS", {}),
    "conn_max_age": db.get("CONN_MAX_AGE"), "secret_key": settings.SECRET_KEY,
    "allowed_hosts": settings.ALLOWED_HOSTS, "debug": settings.DEBUG,
    "node_id": settings.PAXOS_NODE_ID, "apps": settings.INSTALLED_APPS,
}))
"""


def run_with_settings(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter whose settings come from ``env`` alone (no PAXOS_* or
    DATABASE_URL of this process)."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PAXOS_") and key != "DATABASE_URL"
    }
    clean |= {"DJANGO_SETTINGS_MODULE": "paxos_site.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def show_settings(**env: str) -> dict[str, Any]:
    result = run_with_settings(SHOW, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_development_defaults() -> None:
    shown = show_settings()
    assert shown["engine"] == "django.db.backends.sqlite3"
    assert shown["name"] == str(PROJECT / "db.sqlite3")
    assert shown["options"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in shown["options"]["init_command"]
    assert "synchronous=FULL" in shown["options"]["init_command"]
    assert shown["secret_key"].startswith("django-insecure-")
    assert shown["debug"] is False
    assert shown["node_id"] is None
    # consensus first (its runserver wins), then daphne (its reactor before anything else's)
    assert shown["apps"][:2] == ["consensus", "daphne"]
    assert shown["allowed_hosts"] == ["127.0.0.1", "localhost", "[::1]"]


def test_node_settings_come_from_the_config(tmp_path: Path) -> None:
    config = write_demo_config(tmp_path, nodes=3, host="10.1.2.3")
    shown = show_settings(
        PAXOS_CONFIG=str(config),
        PAXOS_NODE_ID="2",
        PAXOS_DEBUG="1",
        PAXOS_ALLOWED_HOSTS="paxos.example, other",
    )
    data_dir = tmp_path / "dataDir"
    assert data_dir.is_dir()
    assert shown["name"] == str(data_dir / "node2.sqlite3")
    assert shown["node_id"] == 2
    assert shown["debug"] is True
    secret = json.loads(config.read_text().split("\n", 1)[1])["secret"]
    assert secret not in shown["secret_key"]
    assert not shown["secret_key"].startswith("django-insecure-")
    assert shown["allowed_hosts"][-3:] == ["10.1.2.3", "paxos.example", "other"]
    assert (
        show_settings(PAXOS_CONFIG=str(config), PAXOS_NODE_ID="1")["secret_key"]
        == (shown["secret_key"])
    )


def test_explicit_secret_key_wins(tmp_path: Path) -> None:
    config = write_demo_config(tmp_path)
    shown = show_settings(PAXOS_CONFIG=str(config), PAXOS_SECRET_KEY="from-env")
    assert shown["secret_key"] == "from-env"
    assert shown["node_id"] == 1


def test_database_url_with_node_placeholder(tmp_path: Path) -> None:
    config = write_demo_config(tmp_path)
    shown = show_settings(
        PAXOS_CONFIG=str(config),
        PAXOS_NODE_ID="3",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/paxos_node{node_id}",
    )
    assert shown["engine"] == "django.db.backends.postgresql"
    assert shown["name"] == "paxos_node3"
    assert shown["conn_max_age"] is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PAXOS_NODE_ID": "x"}, "PAXOS_NODE_ID must be an integer"),
        ({"PAXOS_NODE_ID": "9"}, "PAXOS_NODE_ID: node 9 is not in nodes"),  # what the user set
    ],
)
def test_bad_node_config_is_improperly_configured(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    config = write_demo_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=PROJECT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "paxos_site.settings",
            "PAXOS_CONFIG": str(config),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert expected in result.stderr


SHOW_SYNCHRONOUS_COMMIT = """
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SHOW synchronous_commit")
    print(cursor.fetchone()[0])
"""


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "expected"),
    [("", "on"), ("?options=-c%20synchronous_commit%3Dremote_apply", "remote_apply")],
)
def test_postgresql_commits_wait_for_the_disk_whatever_the_server_says(
    query: str, expected: str
) -> None:
    """A vote leaves only once it is on disk: a server (here libpq's PGOPTIONS, as a role's or
    a database's setting would) that turned synchronous_commit off does not get its way,
    a URL that asks for more does."""
    shown = run_with_settings(
        f"import django\ndjango.setup()\n{SHOW_SYNCHRONOUS_COMMIT}",
        DATABASE_URL=os.environ["DATABASE_URL"].split("?")[0] + query,
        PGOPTIONS="-c synchronous_commit=off",
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == expected
