"""Which release a node runs: ``--version`` of the commands, ``GET /api/status/`` and the
``paxos_build_info`` gauge of ``/metrics`` all say it (README "Upgrades")."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from django.core.management import load_command_class

import consensus
from consensus import metrics
from consensus.transport.codec import VERSION
from tests.api.conftest import ApiClient

PROJECT = Path(__file__).resolve().parents[2]
EXPECTED = f"paxos-service {consensus.__version__} (wire format {VERSION})"


def test_the_version_is_pyproject_s_and_the_wire_format_the_codec_s() -> None:
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert (project["name"], project["version"]) == ("paxos-service", consensus.__version__)
    assert consensus.wire_version() == VERSION == 8
    assert consensus.version_text() == EXPECTED


@pytest.mark.parametrize("name", ["runpaxos", "paxos", "paxosbench"])
def test_commands_print_the_release_not_django_s(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = load_command_class("consensus", name).create_parser("manage.py", name)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == EXPECTED


@pytest.mark.django_db
def test_status_says_the_release_and_wire_format(api: ApiClient) -> None:
    status = api.call("GET", "/api/status/").json()
    assert status["version"] == consensus.__version__
    assert status["wire_version"] == VERSION
    assert status["node_id"] == 1  # and everything it said before


def test_metrics_carry_a_build_info_gauge() -> None:
    payload = metrics.render()[0].decode()
    line = f'paxos_build_info{{version="{consensus.__version__}",wire_version="{VERSION}"}} 1.0'
    assert line in payload.splitlines()
