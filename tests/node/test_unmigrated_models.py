"""``runpaxos`` refuses to start while an installed app's models have no migration: a state
machine of such an app met "no such table" in every ``apply``, and every command of its group
was applied, on every node and for good, as an error result (the client got 200 with it)."""

from __future__ import annotations

import os
from pathlib import Path

from consensus.config import write_demo_config
from tests.fixtures.ports import free_port_block
from tests.fixtures.procs import clean_env, run_manage

MODELS = """
from django.db import models


class Wallet(models.Model):
    owner = models.CharField(max_length=50, unique=True)
    coins = models.IntegerField(default=0)
"""


MACHINE = """
from consensus.registry import register
from consensus.statemachine import StateMachine


@register("wallet")
class WalletStateMachine(StateMachine):
    def apply(self, command, context):
        return None
"""


def an_app(folder: Path, *, migrated: bool) -> dict[str, str]:
    """A ``wallet`` app with one model and a state machine (and its first migration if
    ``migrated``); the environment that installs it."""
    app = folder / "wallet"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text(MODELS)
    (app / "statemachines.py").write_text(MACHINE)
    env = clean_env() | {
        "PAXOS_EXTRA_APPS": "wallet",
        "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]),
    }
    if migrated:
        made = run_manage("makemigrations", "wallet", env=env)
        assert made.returncode == 0, made.stderr
    return env


def runpaxos(folder: Path, env: dict[str, str]):
    path = write_demo_config(folder, nodes=1, base_port=free_port_block(1), groups=(1,))
    return run_manage("runpaxos", "--config", str(path), "--node", "1", env=env, timeout=30)


def test_an_app_without_migrations_stops_the_start_in_one_line(tmp_path: Path) -> None:
    result = runpaxos(tmp_path, an_app(tmp_path, migrated=False))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "CommandError: the models of wallet have changes without a migration: run `python "
        "manage.py makemigrations wallet` (with the PAXOS_EXTRA_APPS this node has), then start "
        "the node again; without its tables a state machine would apply every command of its "
        "group as an error, on every node"
    )
    assert "Traceback" not in result.stderr


def test_a_model_changed_after_its_migration_too(tmp_path: Path) -> None:
    env = an_app(tmp_path, migrated=True)
    models = tmp_path / "wallet" / "models.py"
    models.write_text(models.read_text() + "    note = models.TextField(default='')\n")
    result = runpaxos(tmp_path, env)
    assert result.returncode == 1, result.stderr
    assert "the models of wallet have changes without a migration" in result.stderr


def test_the_project_s_own_apps_are_migrated() -> None:
    """The check passes for what ships (else no node would start): the negative control of
    the two above is this project's own test suite starting nodes."""
    from consensus.management.unmigrated import apps_missing_migrations

    assert apps_missing_migrations() == []
