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


def _argument_help(action: str, dest: str) -> str:
    parser = Command().create_parser("manage.py", "paxos")
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    (argument,) = [a for a in subparsers.choices[action]._actions if a.dest == dest]
    return " ".join((argument.help or "").split())


def test_the_arguments_a_dash_reads_from_standard_input_say_so() -> None:
    """put's VALUE, cas's VALUE and --expected, submit's COMMAND: '-' reads standard input,
    kept as it is (echo's newline too)."""
    for action, dest in [("put", "value"), ("cas", "value"), ("cas", "expected"),
                         ("submit", "command")]:  # fmt: skip
        text = _argument_help(action, dest)
        assert "- reads it from standard input" in text, (action, dest, text)
        assert "trailing newline" in text and "printf" in text, (action, dest, text)
    description = Command().create_parser("manage.py", "paxos").description or ""
    assert "standard input" in description, description
