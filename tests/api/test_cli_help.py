"""``manage.py paxos --help``: its description names every action the command has."""

from __future__ import annotations

import argparse
import re

from consensus.management.commands.paxos import Command


def test_the_description_names_every_action() -> None:
    """It named submit, get/put/delete/cas and status, but not query and check."""
    parser = Command().create_parser("manage.py", "paxos")
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    actions = set(subparsers.choices)
    assert actions >= {"submit", "query", "get", "put", "delete", "cas", "status", "check"}
    description = parser.description or ""
    missing = {action for action in actions if not re.search(rf"\b{action}\b", description)}
    assert not missing, description
