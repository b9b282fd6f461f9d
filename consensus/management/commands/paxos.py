"""``manage.py paxos``: the Python client (``consensus.client``) for shells and scripts.

    python manage.py paxos --config demo-cluster/cluster.json put name Mike
    python manage.py paxos --url http://127.0.0.1:33333 --token T get name
    python manage.py paxos submit '{"type": "put", "key": "name", "value": "Neo"}' --group 2
    python manage.py paxos status
    python manage.py paxos put name - < value.txt     # VALUE from standard input, as it is

Which nodes: ``--url`` (repeatable or comma separated), else every node of ``--config``, else of
the node config this process was started with, else of ``demo-cluster/cluster.json`` in the
current folder (what ``runpaxos --demo`` writes), else http://127.0.0.1:33333. The token:
``--token``, else ``$PAXOS_API_TOKEN``, else the config's first apiToken. These options and
``--timeout`` and ``--json`` go before the action or after it (``submit X --json``).
Output is the value (get) or JSON. A value, or a result that is a string, is written as its
UTF-8 bytes and nothing else when standard output is no terminal (``get k > file`` gives back
what ``put k - < file`` stored); on a terminal a newline follows unless it ends with one.
Failures are one-line errors with exit status 1 (``cas`` that found another value and
``submit`` whose result is an error, ``{"error": ...}``, too: the result printed all the same),
and arguments the command cannot use (a group id out of range, a timeout of nan, a key that is
empty or no UTF-8, an empty ``--url`` or ``--request-id``, a token with a newline) a usage
error with exit status 2, before anything is sent (``EXIT_STATUS``).
A VALUE (``put``, ``cas``), ``--expected`` or COMMAND (``submit``) given as ``-`` is read from
standard input: all of it, decoded as UTF-8 (else a usage error), kept as it is, a trailing
newline included (etcdctl and ``curl --data-binary @-`` do the same: ``echo`` adds one, ``printf
'%s'`` does not); at most one argument per call may be ``-``, and a literal ``-`` is sent the
same way (``printf -``). No argument can exceed the system's limit (128 KiB on Linux): values
up to the node's limit (``PAXOS_MAX_VALUE_BYTES``) go through standard input. A server that does
not answer as a Paxos node does (JSON) is named in one line: its status, content type and the
start of its body (``NotAPaxosNode``), not the whole HTML page. A write
(put, delete, cas, submit) gets its request id here, before the first attempt (or
``--request-id``): when its outcome is unknown, the error names it and the command that retries
the write with it. When every node refused the connection, nothing was sent: the command
fails at once (no retrying for ``--timeout``) and says so (a write was not applied).
``status`` asks every node at once (one attempt each, at most 5 s), prints what it got and, for
each group with a divergence alarm, which node differs; it exits 1 when a node did not answer or
a node reports an alarm (as ``check`` exits 1 when a node's state differs). ``check`` compares
the nodes' state of every group now, and exits 1 when a node's differs, 2 when a node could not
be compared (and on any other failure: 1 says "differs" and nothing else).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
import textwrap
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    DjangoHelpFormatter,
)

from consensus import version_text
from consensus.client import (
    DEFAULT_PORT,
    TOKEN_ENVIRONMENT_VARIABLE,
    NoQuorum,
    NotAPaxosNode,
    PaxosClient,
    PaxosError,
    Unavailable,
    new_request_id,
    parse_address,
)
from consensus.config import MAX_ID, ClusterConfig, ConfigError, load_config

from .runpaxos import DEFAULT_DEMO_DIR

DEMO_CONFIG = f"{DEFAULT_DEMO_DIR}/cluster.json"
"""Where ``runpaxos --demo`` keeps its cluster config (relative to the current folder)."""

STATUS_TIMEOUT = 5.0
"""Seconds ``status`` waits for each node (at most; ``--timeout`` if shorter): one attempt."""

DIVERGENCE_README = 'README "Nodes whose state machines differ"'
"""Where an operator reads what a divergence alarm means and what to do."""

WRITES = frozenset({"submit", "put", "delete", "cas"})
"""The actions that write: the CLI picks their request id before the first attempt."""

DEFAULT_TIMEOUT = 30.0
"""``--timeout``'s default (a retry command repeats the option only when it differs)."""


CLUSTER_OPTIONS = "--url, --config, --token, --timeout and --json"
"""The options every action takes, before or after the action's name."""

KEY_HELP = "the key (a non-empty string without '/')"

MAX_STDIN_BYTES = 64 * 2**20
"""The most of standard input read for a ``-`` argument: far above what a node takes (its
limits are settings, 1 MiB of body by default), and a bound for ``put k - < /dev/zero``, which
read until memory ran out."""

NOT_PASSED_ON = frozenset({501, 505})
"""Server errors that say the request was not handled at all (method, HTTP version): from a
server that is no Paxos node, such an answer means the write was not applied."""

STDIN_HELP = (
    "- reads it from standard input: all of it, as UTF-8, kept as it is (a trailing newline "
    "too: echo adds one, printf '%%s' does not); a literal - goes that way too (printf -); "
    "one argument at most may be -"
)
"""The end of the help of each argument that ``-`` reads from standard input (argparse's
``%`` escaped)."""

FROM_STDIN = {"put": ("value",), "cas": ("value", "expected"), "submit": ("command",)}
"""The arguments of each action that ``-`` reads from standard input (``_read_stdin``)."""

ARGUMENT_NAMES = {"value": "VALUE", "expected": "--expected", "command": "COMMAND"}

USAGE_ERROR = "a usage error (an argument it cannot use, refused before anything is sent)"

EXIT_STATUS = f"""\
exit status:
  0  done
  1  failed, and a one-line error on standard error says why: no node answered (a write's \
error then names the command that retries it at most once), a node refused the request, get \
found no such key, cas found another value, submit's result is an error ({{"error": ...}}: \
the result is printed all the same, and the command was applied: a retry with its request id \
gets the same error); status: a node did not answer or reports an alarm; check: a node's \
state differs
  2  {USAGE_ERROR}; check: also a node that could not be compared, and any other failure \
(1 says "differs" and nothing else)"""
"""The command's ``--help`` epilog (each action's says its own: ``ACTION_EXITS``)."""

ACTION_EXITS = {
    "submit": '1 the state machine\'s result is an error ({"error": ...}: printed all the '
    "same; the command was applied, and a retry with its request id gets the same error), or "
    "it failed (a one-line error says why)",
    "get": "1 no such key, or it failed (a one-line error says why)",
    "cas": "1 the key has another value (the answer is printed all the same), or it failed (a "
    "one-line error says why)",
    "status": "1 a node did not answer or reports a divergence alarm",
    "check": "1 a node's state differs; 2 a node could not be compared (down, slow, or "
    "digesting nothing), the check could not run at all, or a usage error",
}
"""What exit status 1 (and ``check``'s 2) means for each action, in its ``--help`` epilog;
"failed" for the others."""

OUTPUT_HELP = (
    "A value is printed as it is: its UTF-8 bytes and nothing else when standard output is no "
    "terminal ('get k > file' gives back what 'put k - < file' stored), with a newline after "
    "it on a terminal unless it ends with one."
)


class HelpFormatter(DjangoHelpFormatter):
    """Django's, filling each line of a description or epilog on its own: ``EXIT_STATUS`` stays
    one status a line (argparse filled them into one paragraph), each line's leading spaces
    kept and, after a status ("  1  "), its continuation lines indented under its text."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            match = re.fullmatch(r"(\s*)(\d+\s+)?(.*)", line)
            assert match is not None  # any line (splitlines leaves no line break in one)
            lead, status, words = match.groups()
            first = indent + lead + (status or "")
            lines.append(
                textwrap.fill(
                    " ".join(words.split()),
                    width,
                    initial_indent=first,
                    subsequent_indent=" " * len(first),
                )
            )
        return "\n".join(lines)


class StateDiffers(CommandError):
    """``check``'s exit status 1: a node's state differs. Every other failure of ``check`` exits
    2, so that cron reads 1 as "differs" and nothing else."""


class Command(BaseCommand):
    help = (
        "Talk to a Paxos cluster: submit a command, query a group's state machine, "
        "get/put/delete/cas a key of the KV store, show the nodes' status, or check that their "
        "state machines agree. Run 'manage.py paxos ACTION --help' for an action's options; "
        f"{CLUSTER_OPTIONS} may come before or after ACTION. Exit status: 0 done, 1 failed "
        "(a one-line error says why), 2 a usage error (an argument it cannot use): below, "
        "and each action's --help says its own. A VALUE, --expected or COMMAND given as '-' is "
        f"read from standard input (put, cas, submit). {OUTPUT_HELP}"
    )

    def get_version(self) -> str:
        return version_text()  # --version: this release, not Django's

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", EXIT_STATUS)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        _cluster_options(parser)
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

        submit = _action(
            actions,
            "submit",
            help="submit a command string to a group",
            description="Submit a command string to a group's state machine and print its "
            "result: a string as it is (as get prints a value), anything else as JSON; with "
            "--json the instance, request id, result and duplicate flag.",
        )
        submit.add_argument(
            "command",
            metavar="COMMAND",
            type=_text,
            help='the command, e.g. the seed\'s \'{"type": "put", "key": "k", "value": "v"}\' '
            f'("op" works too); {STDIN_HELP}',
        )
        self._group_options(submit, request_id=True)

        query = _action(
            actions,
            "query",
            help="ask a group's state machine (its query(); nothing is written)",
            description="Ask a group's state machine (its query(); nothing is written) and "
            "print its answer: a string as it is (as get prints a value), anything else as JSON.",
        )
        query.add_argument(
            "query",
            metavar="QUERY",
            type=_text,
            help='the query, e.g. \'{"op": "get", "key": "k"}\'',
        )
        query.add_argument(
            "--local",
            action="store_true",
            help="answer from the first node's applied state at once (may miss the latest writes)",
        )
        self._group_options(query)

        get = _action(
            actions,
            "get",
            help="read a key (linearizable unless --local)",
            description="Print a key's value (linearizable unless --local). "
            + OUTPUT_HELP
            + ' --json prints {"key", "value"} instead.',
        )
        get.add_argument("key", metavar="KEY", type=_key, help=KEY_HELP)
        get.add_argument(
            "--local",
            action="store_true",
            help="answer from the first node's applied state at once: no round to the leader, "
            "but it may miss the latest writes",
        )
        self._group_options(get)

        put = _action(
            actions,
            "put",
            help="set a key",
            description='Set a key; print {"key", "instance"} (the instance it was chosen in).',
        )
        put.add_argument("key", metavar="KEY", type=_key, help=KEY_HELP)
        put.add_argument(
            "value", metavar="VALUE", type=_text, help=f"the new value (a string); {STDIN_HELP}"
        )
        self._group_options(put, request_id=True)

        delete = _action(
            actions,
            "delete",
            help="delete a key",
            description='Delete a key; print {"key", "deleted"} (false: it did not exist).',
        )
        delete.add_argument("key", metavar="KEY", type=_key, help=KEY_HELP)
        self._group_options(delete, request_id=True)

        cas = _action(
            actions,
            "cas",
            help="set a key only if it has an expected value",
            description="Set a key only if it has an expected value (or none: --absent); print "
            '{"succeeded", "value", "instance"} (value: the key\'s value now).',
        )
        cas.add_argument("key", metavar="KEY", type=_key, help=KEY_HELP)
        cas.add_argument("value", metavar="VALUE", type=_text, help=f"the new value; {STDIN_HELP}")
        expected = cas.add_mutually_exclusive_group(required=True)
        expected.add_argument(
            "--expected", type=_text, help=f"the value the key must have now; {STDIN_HELP}"
        )
        expected.add_argument(
            "--absent", action="store_true", help="succeed only if the key does not exist"
        )
        self._group_options(cas, request_id=True)

        status_help = (
            "each node's groups: role, leader, chosen, applied; and which node's state machine "
            "differs, if a node reports a divergence alarm; exit 1 if a node did not answer or "
            "reports an alarm"
        )
        _action(actions, "status", help=status_help, description=status_help)

        check_help = (
            "compare the nodes' state machines now: a state check through the log of each group "
            "(or --group), and a line per group saying how each other node compares with the one "
            "that answered; exit 1 if a node's state differs, 2 if a node could not be compared "
            "(down, slow, or digesting nothing) or the check could not run at all"
        )
        check = _action(actions, "check", help=check_help, description=check_help)
        check.add_argument("--group", "-g", type=_group_id, help="only this group (default: all)")

    def _group_options(self, parser: CommandParser, *, request_id: bool = False) -> None:
        parser.add_argument("--group", "-g", type=_group_id, default=1, help="group id (1)")
        if request_id:
            parser.add_argument(
                "--request-id",
                type=_request_id,
                help="send this request id (a retry with it applies once)",
            )

    # ------------------------------------------------------------------ running

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the action; for ``check``, every failure but "a node's state differs" exits 2
        (its --help: 1 means differs, and cron must not read a node that is down as that)."""
        try:
            self._handle(options)
        except CommandError as error:
            if options["action"] != "check" or isinstance(error, StateDiffers):
                raise
            raise CommandError(str(error), returncode=2) from None

    def _handle(self, options: dict[str, Any]) -> None:
        # --url after the action adds to those before it (see _cluster_options)
        options["url"] = [*options["url"], *options.pop("more_urls", [])]
        stdin = _stdin_argument(options)  # a usage error before the cluster's
        addresses, config_token = self._nodes(options)
        token = self._api_token(options, config_token)
        if stdin is not None:  # read once the rest is known good (a terminal waits for it)
            options[stdin] = _read_stdin(ARGUMENT_NAMES[stdin])
        options["from_stdin"] = stdin
        options["request_id_given"] = bool(options.get("request_id"))
        if options["action"] in WRITES and not options.get("request_id"):
            # Chosen here, not by the client, so that an error can name it (_explain).
            options["request_id"] = new_request_id()
        host, port = addresses[0]
        client = PaxosClient(
            host,
            port,
            token=token,
            nodes=addresses[1:],
            timeout=min(10.0, options["timeout"]),
            retry_timeout=options["timeout"],
            discover=False,  # the config or --url says which nodes
            retry_refused=False,  # every node refused: say so now, not after --timeout
        )
        try:
            with client:
                self._run(client, addresses, options)
        except PaxosError as error:
            raise CommandError(_explain(error, options, len(client.nodes))) from None
        except ValueError as error:  # a key with '/', an empty key...
            raise CommandError(str(error)) from None

    def _api_token(self, options: dict[str, Any], config_token: str | None) -> str | None:
        """The token to send. ``--token`` was checked by argparse (``_token``); one from the
        environment or the config is checked here, before anything is sent: http.client would
        refuse it with a message that prints it."""
        if options["token"]:
            return str(options["token"])
        token = os.environ.get(TOKEN_ENVIRONMENT_VARIABLE)
        source = f"${TOKEN_ENVIRONMENT_VARIABLE}"
        if not token:
            token, source = config_token, "the config's apiTokens"
        if token and not _header_safe(token):
            raise CommandError(f"the API token in {source} {UNSAFE_TOKEN}")
        return token

    def _run(
        self, client: PaxosClient, addresses: list[tuple[str, int]], options: dict[str, Any]
    ) -> None:
        action = options["action"]
        group = options.get("group", 1)
        request_id = options.get("request_id")
        if action == "submit":
            outcome = client.submit_command(options["command"], group, request_id)
            self._print(vars_of(outcome) if options["json"] else outcome.result, options)
            if isinstance(outcome.result, dict) and outcome.result.get("error") is not None:
                # the state machine's way of saying no (consensus.statemachine): exit 1, as a
                # cas that found another value does, so that a script sees it
                raise CommandError(
                    f"the state machine's result is an error: {outcome.result['error']!r} (the "
                    f"command was applied, in instance {outcome.instance} of group {group}: a "
                    f"retry with --request-id {outcome.request_id} gets the same error)"
                )
        elif action == "query":
            consistency = "local" if options["local"] else "linearizable"
            self._print(client.query(options["query"], group, consistency=consistency), options)
        elif action == "get":
            consistency = "local" if options["local"] else "linearizable"
            missing = object()
            value = client.get(options["key"], group, consistency=consistency, default=missing)
            if value is missing:
                raise CommandError(f"key {options['key']!r} not found in group {group}")
            if options["json"]:
                self._print({"key": options["key"], "value": value}, options)
            else:
                self._write_value(str(value))
        elif action == "put":
            instance = client.put(options["key"], options["value"], group, request_id=request_id)
            self._print({"key": options["key"], "instance": instance}, options)
        elif action == "delete":
            deleted = client.delete(options["key"], group, request_id=request_id)
            self._print({"key": options["key"], "deleted": deleted}, options)
        elif action == "cas":
            expected = None if options["absent"] else options["expected"]
            result = client.cas(
                options["key"], expected, options["value"], group, request_id=request_id
            )
            self._print(result._asdict(), options)
            if not result.succeeded:
                raise CommandError(f"cas failed: the value is {result.value!r}")
        elif action == "status":
            self._status(client, addresses, options)
        elif action == "check":
            self._check(client, options)

    def _status(
        self, client: PaxosClient, addresses: list[tuple[str, int]], options: dict[str, Any]
    ) -> None:
        """Every node's status, asked in parallel (one short-lived client per node: a client is
        not thread-safe), one attempt each of at most ``STATUS_TIMEOUT`` seconds; then a line
        per group with a divergence alarm naming the odd node, and a non-zero exit naming the
        nodes that did not answer and the groups with an alarm (exit 1 for both, as ``check``
        exits 1 when a node's state differs: scripts and cron need no new code to catch it)."""
        timeout = min(options["timeout"], STATUS_TIMEOUT)

        def ask(address: tuple[str, int]) -> dict[str, Any]:
            host, port = address
            node = PaxosClient(
                host,
                port,
                token=client.token,
                timeout=timeout,
                retry_timeout=timeout,
                discover=False,
            )
            try:
                with node:
                    return node.status_of(host, port)
            except Unavailable as error:
                return {"error": str(error), "unreachable": True}
            except PaxosError as error:  # it answered, with an error (401, 503 while starting)
                return {"error": str(error), "unreachable": False}

        unique = list(dict.fromkeys(addresses))
        with ThreadPoolExecutor(max_workers=len(unique)) as pool:
            results = list(pool.map(ask, unique))
        answers = {f"{h}:{p}": status for (h, p), status in zip(unique, results, strict=True)}
        failed = [address for address, status in answers.items() if "error" in status]
        nodes, differing = _divergent_pairs(answers.values())
        if options["json"]:
            self._print(answers, options)
        else:
            self.stdout.write(
                f"{'node':<22} {'group':>5} {'role':<10} {'leader':>6} {'chosen':>8} {'applied':>8}"
            )
            for address, status in answers.items():
                if "error" in status:
                    label = "unreachable" if status["unreachable"] else "error"
                    self.stdout.write(f"{address:<22} {label}: {status['error']}")
                    continue
                for group in status.get("groups", []):
                    self.stdout.write(
                        f"{address:<22} {group['group_id']:>5} {_role(group):<10} "
                        f"{group['leader'] if group['leader'] is not None else '-':>6} "
                        f"{group['chosen_upto']:>8} {group['applied']:>8}"
                    )
            for address, status in answers.items():
                for found in status.get("divergences") or ():
                    self.stdout.write(
                        f"ALARM {address}: group {found['group_id']}: the state machine's "
                        f"results for instances {found['first']}..{found['last']} differ from "
                        f"node {found['peer']}'s ({DIVERGENCE_README})"
                    )
            for group, pairs in differing.items():
                self.stdout.write(f"group {group}: {_who_differs(pairs, nodes)}")
        problems = []
        if failed:
            unreachable = all(answers[address]["unreachable"] for address in failed)
            what = "unreachable" if unreachable else "without a status (unreachable or failing)"
            problems.append(f"{len(failed)} of {len(answers)} nodes {what}: {', '.join(failed)}")
        if differing:
            groups = ", ".join(str(group) for group in differing)
            problems.append(
                f"group(s) {groups}: a divergence alarm, some node's state machine differs "
                f"({DIVERGENCE_README})"
            )
        if problems:
            raise CommandError("; ".join(problems))

    def _check(self, client: PaxosClient, options: dict[str, Any]) -> None:
        """A state check of each group through the node that answers; a line per group."""
        group = options["group"]
        groups = [group] if group is not None else [g["group_id"] for g in client.groups()]
        checks = [client.check_state(group) for group in groups]
        if options["json"]:
            self._print(checks, options)
        else:
            for check in checks:
                peers = ", ".join(f"node {n} {verdict}" for n, verdict in check["peers"].items())
                note = f" ({check['note']})" if check["note"] else ""
                self.stdout.write(
                    f"group {check['group_id']} at instance {check['instance']}, seen from "
                    f"node {check['node_id']}: {peers}{note}"
                )
        differ = [str(c["group_id"]) for c in checks if "differs" in c["peers"].values()]
        if differ:
            raise StateDiffers(
                f"group(s) {', '.join(differ)}: some node's state machine differs "
                f"({DIVERGENCE_README})"
            )
        # A note alone is no failure: a machine without state_digest was compared by its
        # results. Not compared is a window this node did not digest, or a peer's missing.
        unknown = [
            str(c["group_id"])
            for c in checks
            if c["first"] is None or "not compared" in c["peers"].values()
        ]
        if unknown:
            raise CommandError(
                f"group(s) {', '.join(unknown)}: not every node was compared (a node down or "
                "slow to answer, or one that digests nothing or in windows of another size: "
                "see its log and /api/status/ result_digests)",
                returncode=2,
            )

    def _print(self, data: Any, options: dict[str, Any]) -> None:
        if isinstance(data, str) and not options["json"]:
            self._write_value(data)
        else:
            self.stdout.write(json.dumps(data, indent=2 if options["json"] else None))

    def _write_value(self, value: str) -> None:
        """A value (or a result that is a string) as it is: its UTF-8 bytes and nothing else
        when standard output is no terminal, so that ``get k > file`` gives back the bytes
        ``put k - < file`` stored, whatever the locale's encoding; on a terminal a newline
        after it unless it ends with one (the shell's prompt then starts a line of its own).
        Django's ``write`` added a newline to every value that did not end with one.

        A stream without bytes under it (``call_command(..., stdout=StringIO())``) gets the
        text. A lone surrogate, which no stored value has (the KV store refuses them), is
        written as "?" rather than failing with a traceback."""
        data = value.encode("utf-8", "replace")
        if self.stdout.isatty() and not value.endswith("\n"):
            data += b"\n"
        buffer = getattr(self.stdout, "buffer", None)  # OutputWrapper passes it on
        if buffer is None:
            self.stdout.write(data.decode(), ending="")
            return
        self.stdout.flush()  # text written before goes first
        buffer.write(data)
        buffer.flush()

    # ------------------------------------------------------------------ which cluster

    def _nodes(self, options: dict[str, Any]) -> tuple[list[tuple[str, int]], str | None]:
        urls = [url.strip() for item in options["url"] for url in item.split(",") if url.strip()]
        config: ClusterConfig | None = None
        if options["config"]:
            try:
                config = load_config(options["config"])
            except ConfigError as error:
                raise CommandError(str(error)) from None
        else:  # with --url, the config only lends its token
            config = getattr(settings, "PAXOS_CLUSTER", None)
            if config is None and Path(DEMO_CONFIG).is_file():
                try:
                    config = load_config(DEMO_CONFIG)
                except ConfigError as error:
                    if not urls:
                        raise CommandError(
                            f"{error} (or say which nodes: --config, --url)"
                        ) from None
        token = config.api_tokens[0] if config is not None and config.api_tokens else None
        if urls:
            try:
                return [parse_address(url) for url in urls], token
            except ValueError as error:
                raise CommandError(f"--url: {error}") from None
        if config is not None:
            return [(node.host, node.port) for node in config.nodes], token
        return [("127.0.0.1", DEFAULT_PORT)], token


def _action(actions: Any, name: str, **kwargs: Any) -> CommandParser:
    """An action's parser, which takes the cluster options too (``paxos submit X --json``); its
    ``--help`` ends with its exit statuses (``ACTION_EXITS``)."""
    failed = ACTION_EXITS.get(name, "1 failed (a one-line error says why)")
    usage = "" if name == "check" else f"; 2 {USAGE_ERROR}"  # check's 2 says it
    kwargs.setdefault("epilog", f"exit status: 0 done; {failed}{usage}.")
    parser: CommandParser = actions.add_parser(name, formatter_class=HelpFormatter, **kwargs)
    _cluster_options(parser, after_action=True)
    return parser


def _cluster_options(parser: CommandParser, *, after_action: bool = False) -> None:
    """``CLUSTER_OPTIONS``, on the command's parser and (``after_action``) on each action's.

    After the action they default to nothing (``argparse.SUPPRESS``): the action's namespace is
    copied over the command's, and a default there would undo the same option given before the
    action. ``--url`` after it goes to ``more_urls``, which ``handle`` adds to those before."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if after_action else value

    parser.add_argument(
        "--url",
        action="append",
        dest="more_urls" if after_action else "url",
        metavar="URL",
        default=default([]),
        type=_urls,
        help="a node's URL, e.g. http://127.0.0.1:33333 (repeat, or separate with commas, "
        "to fail over between nodes)",
    )
    parser.add_argument(
        "--config",
        default=default(None),
        help="a cluster config file: use all its nodes and its first apiToken (default: "
        f"{DEMO_CONFIG} if it exists, else http://127.0.0.1:{DEFAULT_PORT})",
    )
    parser.add_argument(
        "--token",
        type=_token,
        default=default(None),
        help=f"API token (default: ${TOKEN_ENVIRONMENT_VARIABLE} or the config's)",
    )
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=default(DEFAULT_TIMEOUT),
        help="seconds to keep retrying across nodes before giving up (30; status: one "
        "attempt per node, of at most 5 s); when every node refuses the connection, the "
        "command fails at once",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the answer as indented JSON",
    )


def _group_id(text: str) -> int:
    """argparse type: a group id, 1..``MAX_ID`` as a cluster config allows (every action: an id
    out of range would reach a node only to be "no API endpoint at /api/kv/-1/k")."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_ID:
        raise argparse.ArgumentTypeError(
            f"a group id is a positive integer up to {MAX_ID}, not {text!r}"
        )
    return value


def _timeout(text: str) -> float:
    """argparse type: seconds, finite and positive. A deadline of nan is never reached (nan
    compares false with everything): the command would retry for ever; inf alike."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a timeout is a positive number of seconds, not {text!r}")
    return value


def _text(text: str) -> str:
    """argparse type: text that is valid UTF-8. A shell passes any bytes, and Python keeps those
    that are no UTF-8 as lone surrogates, which no request can carry (a URL cannot; JSON would
    send them escaped, for the node to refuse or store): refused here, before anything is sent,
    naming the byte rather than echoing the text."""
    try:
        text.encode()
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise argparse.ArgumentTypeError(
            f"not valid UTF-8 ({what} at position {error.start})"
        ) from None
    return text


def _key(text: str) -> str:
    """argparse type: a key (``KEY_HELP``): one no URL can carry was refused by the client
    with exit status 1, as if a node had, though nothing was sent."""
    text = _text(text)
    if not text:
        raise argparse.ArgumentTypeError("a key is a non-empty string")
    if "/" in text:
        raise argparse.ArgumentTypeError(f"keys cannot contain '/': {text!r}")
    return text


def _request_id(text: str) -> str:
    """argparse type: a request id to send, not empty. An empty one (``--request-id "$ID"``
    with ``ID`` unset) was taken as none: the write went with a new id, so the retry that was
    to apply it at most once could apply it a second time."""
    text = _text(text)
    if not text:
        raise argparse.ArgumentTypeError(
            "a request id cannot be empty (an empty one would send the write with a new id)"
        )
    return text


def _urls(text: str) -> str:
    """argparse type: one or more node URLs, separated with commas. One without any (``--url
    "$NODE"`` with ``NODE`` unset) was ignored: the command went to the config's nodes (or
    the demo's, or 127.0.0.1:33333) instead of the node it was told."""
    text = _text(text)
    if not any(url.strip() for url in text.split(",")):
        raise argparse.ArgumentTypeError(f"no URL in {text!r}")
    return text


UNSAFE_TOKEN = (
    "has characters an HTTP header cannot carry (a control character such as a newline, or "
    "one that is not ASCII); the token is not printed"
)


def _header_safe(token: str) -> bool:
    """Whether ``Authorization: Bearer <token>`` can carry the token: printable ASCII only
    (http.client refuses a newline with an error that prints the whole header)."""
    return all(" " <= char <= "~" for char in token)


def _token(text: str) -> str:
    """argparse type: an API token a header can carry (``_header_safe``), not echoed."""
    if not _header_safe(text):
        raise argparse.ArgumentTypeError(f"the token {UNSAFE_TOKEN}")
    return text


def _divergent_pairs(
    statuses: Iterable[dict[str, Any]],
) -> tuple[set[int], dict[int, set[tuple[int, int]]]]:
    """The cluster's node ids (those that answered and the peers they list) and, per group, the
    pairs of nodes whose results differ, (lower id, higher id), from every node's
    ``divergences``: each node lists only its own alarms, and one that did not answer is still
    named by its peers'."""
    nodes: set[int] = set()
    differing: dict[int, set[tuple[int, int]]] = {}
    for status in statuses:
        if "error" in status:
            continue
        node_id = int(status["node_id"])
        nodes.add(node_id)
        nodes.update(int(peer["node_id"]) for peer in (status.get("peers") or {}).get("peers", ()))
        for found in status.get("divergences") or ():
            peer = int(found["peer"])
            differing.setdefault(int(found["group_id"]), set()).add(
                (min(node_id, peer), max(node_id, peer))
            )
            nodes.add(peer)
    return nodes, dict(sorted(differing.items()))


def _who_differs(pairs: set[tuple[int, int]], nodes: set[int]) -> str:
    """The summary of a group's alarms: the odd node if the alarms agree on one, else the pairs.

    A node is the odd one when it is in every pair that differs and differs from more than half
    of the other nodes: the rule by which a node finds itself the odd one and turns unready
    (``DivergenceCheck.odd_one_out``), here over every node's alarms. In a cluster of three or
    more at most one node meets it; none does while, say, only one pair of three nodes has
    compared the window yet. In a cluster of two both nodes do: nothing tells which is right."""
    others = len(nodes) - 1

    def partners(node: int) -> list[int]:
        return sorted(a if b == node else b for a, b in pairs if node in (a, b))

    odd = [
        node
        for node in sorted(nodes)
        if all(node in pair for pair in pairs) and 2 * len(partners(node)) > others
    ]
    if len(odd) == 1:
        [node] = odd
        differs = partners(node)
        which = "node" if len(differs) == 1 else "nodes"
        which += " " + ", ".join(str(other) for other in differs)
        return f"node {node} differs from {which} (see {DIVERGENCE_README})"
    listed = ", ".join(f"nodes {a} and {b}" for a, b in sorted(pairs))
    return f"no single odd node; these differ: {listed} (see {DIVERGENCE_README})"


def vars_of(outcome: Any) -> dict[str, Any]:
    return {name: getattr(outcome, name) for name in outcome.__slots__}


def _role(group: dict[str, Any]) -> str:
    """The role column: a rebuilding node (core/rebuild.py) follows without voting."""
    return "rebuilding" if group.get("rebuilding") else str(group["role"])


def _explain(error: PaxosError, options: dict[str, Any], nodes: int = 1) -> str:
    """The error, and for a write whose outcome is unknown (no node answered in time, or a 503
    after it may have been proposed) the request id to retry with and the command that does:
    the CLI chose the id, so the user could not know it otherwise, and the same write run
    again without it would be a second write (a second submit or cas applied). A write that
    every one of the ``nodes`` refused a connection was not sent: no retry advice."""
    if isinstance(error, Unavailable) and error.refused:
        return _refused(error, options, nodes)
    request_id = options.get("request_id")
    unknown = isinstance(error, Unavailable | NoQuorum) or (error.status or 0) >= 500
    if isinstance(error, NotAPaxosNode):
        # An error page below 500 (or a 501, 505: a method or version it does not take) is
        # another server's: no node had the write, unless another node did first. A proxy's
        # 500, 502 or 504 may come after it passed the request on to a node.
        status = error.status or 0
        unknown = nodes > 1 or (status >= 500 and status not in NOT_PASSED_ON)
    if options["action"] in WRITES and request_id and unknown:
        notes = ["your token for TOKEN"] if options["token"] else []
        if options.get("from_stdin"):
            notes.append("the same standard input")
        return (
            f"{error}: the outcome is unknown (it may still be applied); retry with "
            f"--request-id {request_id} to apply it at most once: {_retry_command(options)}"
            + (f" (with {', and '.join(notes)})" if notes else "")
        )
    body = error.body  # a 503 of another action that names a request id
    named = body.get("request_id") if isinstance(body, dict) else None
    if isinstance(named, str) and named:
        return f"{error}: retry with --request-id {named} to apply it at most once"
    return str(error)


def _refused(error: Unavailable, options: dict[str, Any], nodes: int) -> str:
    """The error of a call whose every attempt was refused a connection (``Unavailable.refused``):
    no node received it, so a write of this run was not applied. Only a ``--request-id`` the
    user gave may have been applied, by the earlier run it retries."""
    up = "is the node up?" if nodes == 1 else f"all {nodes} nodes refused it: are they up?"
    if options["action"] not in WRITES:
        return f"{error} ({up})"
    if options["request_id_given"]:
        return (
            f"{error}: the write was not sent this time ({up}); an earlier run with "
            f"--request-id {options['request_id']} may have applied it: run this again to know"
        )
    return f"{error}: the write was not sent, so it was not applied ({up})"


def _retry_command(options: dict[str, Any]) -> str:
    """The command line that retries the write of ``options`` with its request id; the token,
    if it was given with ``--token``, as ``TOKEN`` (an error message is no place for it); the
    argument that was read from standard input as ``-`` (it may be megabytes)."""

    def given(dest: str) -> str:
        return "-" if dest == options.get("from_stdin") else str(options[dest])

    words = ["python", "manage.py", "paxos"]
    for url in options["url"]:
        words += ["--url", url]
    if options["config"]:
        words += ["--config", options["config"]]
    if options["token"]:
        words += ["--token", "TOKEN"]
    if options["timeout"] != DEFAULT_TIMEOUT:
        words += ["--timeout", f"{options['timeout']:g}"]
    if options["json"]:
        words.append("--json")
    action = options["action"]
    words.append(action)
    if action == "cas":  # "--expected=-1": a value that starts with "-" is no option
        words.append("--absent" if options["absent"] else f"--expected={given('expected')}")
    if options["group"] != 1:
        words += ["--group", str(options["group"])]
    words.append(f"--request-id={options['request_id']}")
    words.append("--")  # the rest is the arguments, even "-x"
    if action == "submit":
        words.append(given("command"))
    else:
        words.append(options["key"])
        if action in {"put", "cas"}:
            words.append(given("value"))
    return shlex.join(words)


def _stdin_argument(options: dict[str, Any]) -> str | None:
    """The destination of the argument to read from standard input (given as ``-``), if any;
    a usage error when more than one is (there is one standard input)."""
    dashes = [dest for dest in FROM_STDIN.get(options["action"], ()) if options.get(dest) == "-"]
    if len(dashes) > 1:
        names = " and ".join(ARGUMENT_NAMES[dest] for dest in dashes)
        raise CommandError(
            f"only one argument may be '-' (read from standard input), not both {names}",
            returncode=2,
        )
    return dashes[0] if dashes else None


def _read_stdin(name: str) -> str:
    """All of standard input, as it is, decoded as UTF-8: a usage error (exit status 2) naming
    the argument ``name`` when it cannot be read or is no UTF-8 (naming the byte, as ``_text``
    does, not echoing the input)."""
    stream = sys.stdin
    if stream is None:  # descriptor 0 closed
        raise CommandError(
            f"argument {name}: '-' reads standard input, and there is none", returncode=2
        )
    try:
        data = getattr(stream, "buffer", stream).read(MAX_STDIN_BYTES + 1)
    except (OSError, ValueError) as error:  # a directory, a closed stream...
        raise CommandError(
            f"argument {name}: cannot read standard input: {error}", returncode=2
        ) from None
    if len(data) > MAX_STDIN_BYTES:
        raise CommandError(
            f"argument {name}: standard input is larger than {MAX_STDIN_BYTES // 2**20} MiB, "
            "more than a node takes (PAXOS_MAX_BODY_BYTES, 1 MiB by default)",
            returncode=2,
        )
    if isinstance(data, str):  # a text stream without bytes under it (a program's StringIO)
        data = data.encode(errors="surrogatepass")  # a lone surrogate: the error below
    try:
        return data.decode()
    except UnicodeDecodeError as error:
        raise CommandError(
            f"argument {name}: standard input is not valid UTF-8 (byte "
            f"0x{data[error.start]:02x} at position {error.start})",
            returncode=2,
        ) from None
