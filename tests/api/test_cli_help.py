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


def _help(*action: str) -> str:
    parser = Command().create_parser("manage.py", "paxos")
    if action:
        (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = subparsers.choices[action[0]]
    return parser.format_help()


def test_the_exit_statuses_are_listed_one_a_line_at_the_end() -> None:
    """The epilog: 0, 1 and 2 each at the start of a line (argparse's filling ran them into
    one paragraph), 1 naming submit's error result."""
    text = _help()
    epilog = text[text.index("\nexit status:\n") :]
    starts = [line[:5] for line in epilog.splitlines() if line[:5].strip()]
    assert starts == ["exit ", "  0  ", "  1  ", "  2  "], epilog
    assert "submit's result is an error" in " ".join(epilog.split()), epilog


def test_each_action_says_what_it_does_and_its_exit_statuses() -> None:
    """Only status and check had a description; no action's --help gave its exit statuses,
    nor said how get prints a value."""
    parser = Command().create_parser("manage.py", "paxos")
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, action in subparsers.choices.items():
        assert action.description, name
        assert "exit status: 0 done; 1 " in " ".join(_help(name).split()), name
    assert "1 the state machine's result is an error" in " ".join(_help("submit").split())
    get = " ".join(_help("get").split())
    assert "its UTF-8 bytes and nothing else when standard output is no terminal" in get, get
    assert "with a newline after it on a terminal unless it ends with one" in get, get
