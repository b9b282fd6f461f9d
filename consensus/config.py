"""The cluster config file: parsing and validation (DESIGN.md §5, compatible with the seed's).

The file is JSON plus ``//`` line comments (the seed's examples use them). Every mistake raises
``ConfigError`` (a ``ValueError``) whose message is one line naming the file and the field, so
``runpaxos`` can print it as a ``CommandError`` instead of a traceback. This module imports only the
standard library: ``paxos_site.settings`` loads it before Django is set up.

Strictness: unknown keys are rejected (a typo such as ``"learninginterval"`` would otherwise fall
back to the default silently). Node and group ids are integers in 1..2**31-1 (they are stored in
PostgreSQL ``integer`` columns; a bigger id would pass here and crash the node's first write); ports
are 1..65535; ``timeout`` and ``learningInterval`` at most an hour. Two nodes may not share an
address, counting ``localhost``, ``127.0.0.1`` and ``::1`` as one. A key given twice in one object
is refused (``json`` would keep the last one silently). ``dataDir`` must not name an existing
file (the node creates the folder at start).

Some configs are valid but probably a mistake: ``startup_warnings`` lists those (no API token, the
README's example secret, a short secret) for ``runpaxos`` to log and for ``manage.py check
--deploy`` to show.

What ``"enableDataPersistence": false`` means
---------------------------------------------
In the seed it switched off writing to ``dataDir``. Here it does **not** touch acceptor durability:
DESIGN.md says no setting may let a node forget a promise or a vote across a process crash, because
a node that forgets its votes can let two different values be chosen for one instance. So with the
flag off, the promise, the accepted values and the chosen log are still committed to the database
before any reply leaves the node, exactly as with the flag on. What is left to switch off is
derived state (the state machines' rows, the stored results of requests), and keeping that out
of the database would save nothing: it is written in the transaction that already commits the
votes. So the flag is accepted, for the seed's config files, and changes nothing; a node started
with it off says so once (``DATA_PERSISTENCE_OFF_WARNING``; the runtime logs it, not this parser,
which may run several times per process). The data folder is never wiped at start: wiping it
would forget promises.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import secrets
import socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT_MS = 1000
DEFAULT_LEARNING_INTERVAL_MS = 1000
DEFAULT_DATA_DIR = "./dataDir/"
DEFAULT_GROUPS = (1,)
DEFAULT_STATE_MACHINE = "kv"
DEFAULT_BASE_PORT = 33333
"""The seed's first port."""
MAX_MILLISECONDS = 3_600_000
"""The longest ``timeout`` or ``learningInterval``: an hour. Anything longer is a typo (a node
would wait that long before its first election), not a setting anyone needs."""
MAX_CONFIG_BYTES = 1024 * 1024
"""The largest config file read: a config of 9 nodes and a hundred groups is a few KiB, so a
bigger file is the wrong one (a log, a database), and is refused before it is read."""
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""Host names that all mean this machine: two nodes on one port under two of them would be one
listening socket (``localhost`` may resolve to either address), so a node would dial itself."""
MAX_ID = 2**31 - 1
"""The largest node or group id: ids are stored in 32-bit integer columns (PostgreSQL's
``integer``, Django's ``PositiveIntegerField``)."""
EXAMPLE_SECRET = "change-me"
MIN_SECRET_CHARS = 16
"""Shorter secrets are warned about at start (``startup_warnings``)."""
"""The README's example ``secret``: anyone who read the README can join such a cluster."""

DATA_PERSISTENCE_OFF_WARNING = (
    "enableDataPersistence is false, which changes nothing here: a node must never forget a "
    "promise or a vote, and the state machines and request results are written in the same "
    "transactions as the votes, so everything stays in the database (remove the key to silence "
    "this)"
)

_TOP_LEVEL_KEYS = frozenset(
    {
        "nodes",
        "myid",
        "timeout",
        "learningInterval",
        "dataDir",
        "enableDataPersistence",
        "groups",
        "secret",
        "apiTokens",
    }
)
_NODE_KEYS = frozenset({"id", "host", "port"})
_GROUP_KEYS = frozenset({"id", "stateMachine", "leader"})


class ConfigError(ValueError):
    """A cluster config that cannot be used; the message is one line naming file and field."""


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """Where one member of the cluster serves HTTP and websockets (one port for both)."""

    node_id: int
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port``, with IPv6 hosts in brackets, as it appears in a URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.address}"


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A replicated log hosted by every node, and the state machine its commands are applied to."""

    group_id: int
    state_machine: str = DEFAULT_STATE_MACHINE
    leader: int | None = None
    """The node that should lead this group (``"leader"`` in the config); None: spread."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A validated cluster config, seen from one node (``my_id``).

    ``data_path`` is ``dataDir`` resolved against the config file's folder, so a node finds its data
    wherever it is started from.
    """

    path: Path
    nodes: tuple[NodeAddress, ...]
    my_id: int
    secret: str = field(repr=False)
    """Shared by the nodes; peer links authenticate with it. Never printed."""
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    learning_interval_ms: int = DEFAULT_LEARNING_INTERVAL_MS
    data_dir: str = DEFAULT_DATA_DIR
    data_path: Path = Path(DEFAULT_DATA_DIR)
    enable_data_persistence: bool = True
    groups: tuple[GroupSpec, ...] = (GroupSpec(1),)
    api_tokens: tuple[str, ...] = field(default=(), repr=False)

    @property
    def me(self) -> NodeAddress:
        return self.node(self.my_id)

    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(node.node_id for node in self.nodes)

    @property
    def peers(self) -> tuple[NodeAddress, ...]:
        return tuple(node for node in self.nodes if node.node_id != self.my_id)

    @property
    def group_ids(self) -> tuple[int, ...]:
        return tuple(group.group_id for group in self.groups)

    @property
    def sqlite_path(self) -> Path:
        """This node's SQLite file when no ``DATABASE_URL`` is set."""
        return self.data_path / f"node{self.my_id}.sqlite3"

    def node(self, node_id: int) -> NodeAddress:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def group(self, group_id: int) -> GroupSpec:
        for group in self.groups:
            if group.group_id == group_id:
                return group
        raise KeyError(group_id)

    def preferred_leader(self, group_id: int) -> int:
        """The node that campaigns first for ``group_id`` and that a leader hands over to.

        The group's ``"leader"`` if the config names one; otherwise the ``g``-th node (mod the
        cluster size), which spreads the leaders of several groups, and their CPU work, over
        the machines. Naming the same node for every group instead keeps all leader work (and
        all client traffic of the ``AsyncPaxosClient``) on one node: cheaper when the nodes
        share one machine's cores, see the README's benchmarks."""
        spec = self.group(group_id)
        if spec.leader is not None:
            return spec.leader
        ids = self.node_ids
        return ids[(group_id - 1) % len(ids)]


def strip_comments(text: str) -> str:
    """Remove ``//`` comments that start outside JSON strings.

    A ``//`` inside a string (a URL, say) is kept, and so is every newline, so the line and column
    numbers of a later JSON error still point into the original file.
    """
    out: list[str] = []
    index = 0
    length = len(text)
    in_string = False
    while index < length:
        char = text[index]
        if in_string:
            out.append(char)
            if char == "\\" and index + 1 < length:
                out.append(text[index + 1])
                index += 2
                continue
            if char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif char == "/" and text.startswith("//", index):
            end = text.find("\n", index)
            index = length if end == -1 else end
            continue
        else:
            out.append(char)
        index += 1
    return "".join(out)


def load_config(
    path: str | Path,
    node_id: int | None = None,
    *,
    default_state_machine: str = DEFAULT_STATE_MACHINE,
    node_source: str = "--node",
) -> ClusterConfig:
    """Read and validate a cluster config; ``node_id`` overrides the file's ``myid``, and errors
    about it name ``node_source``, where the user gave it (``--node``, ``PAXOS_NODE_ID``).

    ``default_state_machine`` names the machine of groups listed as bare ids (the caller passes
    ``settings.PAXOS_DEFAULT_STATE_MACHINE``; this module does not import Django).
    """
    config_path = Path(path).expanduser().absolute()
    try:
        text = _read_config_file(config_path)
    except FileNotFoundError:
        raise ConfigError(f"{config_path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{config_path}: is a folder, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path}: cannot read config file: {exc}") from None
    return parse_config(
        text,
        config_path,
        node_id=node_id,
        default_state_machine=default_state_machine,
        node_source=node_source,
    )


_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_config_file(config_path: Path) -> str:
    """The text of the config file, as ``read_text`` gives it (UTF-8, universal newlines); a
    ``ConfigError`` for anything but a regular file of at most ``MAX_CONFIG_BYTES``. The kind is
    checked with ``stat`` before opening: opening a named pipe for reading blocks until a writer
    comes (the node hung, silently), and ``/dev/zero`` never ends. The open is non-blocking and
    checked again (``fstat``), should the path have been replaced in between, and at most one byte
    past the bound is read, should the file grow meanwhile."""
    _check_regular_file(config_path, os.stat(config_path))
    descriptor = os.open(config_path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(descriptor, "rb") as file:
        _check_regular_file(config_path, os.fstat(descriptor))
        data = file.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_large(config_path, f"more than {MAX_CONFIG_BYTES:,}")
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()


def _check_regular_file(config_path: Path, status: os.stat_result) -> None:
    """A ``ConfigError`` for a folder, a named pipe, a device, a socket, or a file too large."""
    mode = status.st_mode
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{config_path}: is a folder, not a config file")
    if not stat.S_ISREG(mode):
        what = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
        raise ConfigError(
            f"{config_path}: is {what}, not a config file: give the path of a regular file"
        )
    if status.st_size > MAX_CONFIG_BYTES:
        raise _too_large(config_path, f"{status.st_size:,}")


def _too_large(config_path: Path, size: str) -> ConfigError:
    return ConfigError(
        f"{config_path}: config file too large: {size} bytes, a config file has at most 1 MiB "
        f"({MAX_CONFIG_BYTES:,} bytes): is this the right file?"
    )


def parse_config(
    text: str,
    path: Path,
    *,
    node_id: int | None = None,
    default_state_machine: str = DEFAULT_STATE_MACHINE,
    node_source: str = "--node",
) -> ClusterConfig:
    """Validate config ``text``; ``path`` names the file in errors and anchors ``dataDir``."""
    raw = decode_json(text, path)
    return _Parser(path, default_state_machine, node_source).build(raw, node_id)


class _DuplicateKey(Exception):
    """A key that appears twice in one JSON object (raised from ``json``'s pairs hook)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a second ``"myid"`` would otherwise replace the first silently."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKey(key)
        document[key] = value
    return document


def decode_json(text: str, path: Path) -> Any:
    """The config's JSON (``//`` comments removed), or a one-line ``ConfigError``: besides syntax
    errors, ``json`` raises ``RecursionError`` on deep nesting and ``ValueError`` on a number with
    more digits than Python converts (4300), which would otherwise end in a traceback."""
    try:
        return json.loads(strip_comments(text), object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except _DuplicateKey as exc:
        raise ConfigError(
            f"{path}: invalid config: the key {json.dumps(exc.key)} appears twice in one object "
            "(the last one would win silently): keep one"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"{path}: invalid JSON: nested too deeply (a config needs a few levels of [ and {{)"
        ) from None
    except ValueError:  # int("1" * 5000): past sys.get_int_max_str_digits()
        raise ConfigError(
            f"{path}: invalid JSON: a number has too many digits (no setting needs more than 10)"
        ) from None


class _Parser:
    """Validation with the file name at hand, so every error message can name it."""

    def __init__(self, path: Path, default_state_machine: str, node_source: str) -> None:
        self.path = path
        self.default_state_machine = default_state_machine
        self.node_source = node_source

    def error(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {problem}")

    def build(self, raw: Any, node_id: int | None) -> ClusterConfig:
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.path}: the config must be a JSON object, not {_kind(raw)}")
        unknown = sorted(set(raw) - _TOP_LEVEL_KEYS)
        if unknown:
            raise self.error(
                unknown[0],
                f"unknown key (known keys: {', '.join(sorted(_TOP_LEVEL_KEYS))})",
            )
        nodes = self.nodes(raw.get("nodes"))
        my_id = self.my_id(raw, nodes, node_id)
        data_dir = self.string(raw, "dataDir", DEFAULT_DATA_DIR)
        data_path = self.data_path(data_dir)
        return ClusterConfig(
            path=self.path,
            nodes=nodes,
            my_id=my_id,
            secret=self.secret(raw),
            timeout_ms=self.milliseconds(raw, "timeout", DEFAULT_TIMEOUT_MS),
            learning_interval_ms=self.milliseconds(
                raw, "learningInterval", DEFAULT_LEARNING_INTERVAL_MS
            ),
            data_dir=data_dir,
            data_path=data_path,
            enable_data_persistence=self.boolean(raw, "enableDataPersistence", True),
            groups=self.groups(raw.get("groups", list(DEFAULT_GROUPS)), nodes),
            api_tokens=self.api_tokens(raw.get("apiTokens", [])),
        )

    def nodes(self, raw: Any) -> tuple[NodeAddress, ...]:
        if raw is None:
            raise self.error("nodes", 'missing (a list of {"id", "host", "port"} objects)')
        if not isinstance(raw, list) or not raw:
            raise self.error("nodes", f"must be a non-empty list, not {_kind(raw)}")
        nodes: list[NodeAddress] = []
        seen_ids: set[int] = set()
        seen_addresses: dict[tuple[str, int], NodeAddress] = {}
        for position, item in enumerate(raw):
            where = f"nodes[{position}]"
            if not isinstance(item, dict):
                raise self.error(where, f"must be an object, not {_kind(item)}")
            unknown = sorted(set(item) - _NODE_KEYS)
            if unknown:
                raise self.error(f"{where}.{unknown[0]}", "unknown key (known: id, host, port)")
            node_id = self.positive_int(item.get("id"), f"{where}.id")
            host = item.get("host")
            if not isinstance(host, str) or not host.strip():
                raise self.error(f"{where}.host", f"must be a non-empty string, not {_kind(host)}")
            port = item.get("port")
            if not _is_int(port):
                raise self.error(f"{where}.port", f"must be an integer, not {_kind(port)}")
            if not 1 <= port <= 65535:
                raise self.error(f"{where}.port", f"{port} is out of range 1..65535")
            if node_id in seen_ids:
                raise self.error(f"{where}.id", f"duplicate node id {node_id}")
            key = (_same_machine(host), port)
            if key in seen_addresses:
                raise self.error(where, _duplicate_address(host, port, seen_addresses[key]))
            seen_ids.add(node_id)
            nodes.append(NodeAddress(node_id, host.strip(), port))
            seen_addresses[key] = nodes[-1]
        return tuple(nodes)

    def my_id(self, raw: dict[str, Any], nodes: tuple[NodeAddress, ...], node_id: Any) -> int:
        known = ", ".join(str(node.node_id) for node in nodes)
        if node_id is not None:
            if not _is_int(node_id):
                raise self.error(self.node_source, f"must be an integer, not {_kind(node_id)}")
            if all(node.node_id != node_id for node in nodes):
                raise self.error(
                    self.node_source, f"node {node_id} is not in nodes (known ids: {known})"
                )
            return int(node_id)
        if "myid" not in raw:
            raise self.error("myid", 'missing (set "myid" in the file or pass --node ID)')
        my_id = raw["myid"]
        if not _is_int(my_id):
            raise self.error("myid", f"must be an integer, not {_kind(my_id)}")
        if all(node.node_id != my_id for node in nodes):
            raise self.error("myid", f"node {my_id} is not in nodes (known ids: {known})")
        return int(my_id)

    def groups(self, raw: Any, nodes: tuple[NodeAddress, ...]) -> tuple[GroupSpec, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.error("groups", f"must be a non-empty list, not {_kind(raw)}")
        groups: list[GroupSpec] = []
        seen: set[int] = set()
        for position, item in enumerate(raw):
            where = f"groups[{position}]"
            if isinstance(item, dict):
                unknown = sorted(set(item) - _GROUP_KEYS)
                if unknown:
                    raise self.error(
                        f"{where}.{unknown[0]}", "unknown key (known: id, stateMachine, leader)"
                    )
                group_id = self.positive_int(item.get("id"), f"{where}.id")
                machine = item.get("stateMachine", self.default_state_machine)
                if not isinstance(machine, str) or not machine.strip():
                    raise self.error(
                        f"{where}.stateMachine",
                        f"must be a non-empty string, not {_kind(machine)}",
                    )
                spec = GroupSpec(
                    group_id, machine.strip(), self.leader(item.get("leader"), where, nodes)
                )
            elif _is_int(item):
                spec = GroupSpec(self.positive_int(item, where), self.default_state_machine)
            else:
                raise self.error(
                    where,
                    f'must be a group id or {{"id": ..., "stateMachine": ..., "leader": ...}}, '
                    f"not {_kind(item)}",
                )
            if spec.group_id in seen:
                raise self.error(f"{where}", f"duplicate group id {spec.group_id}")
            seen.add(spec.group_id)
            groups.append(spec)
        return tuple(groups)

    def leader(self, raw: Any, where: str, nodes: tuple[NodeAddress, ...]) -> int | None:
        if raw is None:
            return None
        node_id = self.positive_int(raw, f"{where}.leader")
        ids = [node.node_id for node in nodes]
        if node_id not in ids:
            raise self.error(f"{where}.leader", f"node {node_id} is not in nodes {ids}")
        return node_id

    def secret(self, raw: dict[str, Any]) -> str:
        if "secret" not in raw:
            raise self.error(
                "secret",
                "missing: add a random string, the same on every node (peer links "
                'authenticate with it); MyPaxos configs need it and "apiTokens" added',
            )
        secret = raw["secret"]
        if not isinstance(secret, str) or not secret.strip():
            raise self.error("secret", f"must be a non-empty string, not {_kind(secret)}")
        return secret

    def api_tokens(self, raw: Any) -> tuple[str, ...]:
        if not isinstance(raw, list):
            raise self.error("apiTokens", f"must be a list of strings, not {_kind(raw)}")
        for position, token in enumerate(raw):
            if not isinstance(token, str) or not token.strip():
                raise self.error(
                    f"apiTokens[{position}]",
                    f"must be a non-empty string, not {_kind(token)}",
                )
        return tuple(raw)

    def data_path(self, data_dir: str) -> Path:
        """``dataDir`` resolved against the config's folder; the node creates it at start
        (``make_data_folder``), which would fail if it or a parent is an existing file, or
        if the path cannot even be looked at (a folder on the way this user may not enter). A null
        character would reach the system's calls as a ``ValueError`` traceback."""
        if "\0" in data_dir:
            raise self.error(
                "dataDir", "contains a null character (\\u0000), which no path may hold: fix it"
            )
        try:
            path = (self.path.parent / Path(data_dir).expanduser()).resolve()
        except RuntimeError as error:  # pathlib's "Symlink loop from ..."
            raise self.error("dataDir", f"cannot access {data_dir}: {error}") from None
        try:
            for existing in (path, *path.parents):
                if existing.exists():
                    if not existing.is_dir():
                        what = "is" if existing == path else f"is inside {existing}, which is"
                        raise self.error(
                            "dataDir",
                            f"{path} {what} a file, not a folder (the node keeps its data there)",
                        )
                    break
        except OSError as error:  # exists() raises all but "no such file" (3.11): EACCES...
            raise self.error("dataDir", f"cannot access {os_problem(path, error)}") from None
        return path

    def milliseconds(self, raw: dict[str, Any], key: str, default: int) -> int:
        value = raw.get(key, default)
        if not _is_int(value):
            raise self.error(key, f"must be an integer number of milliseconds, not {_kind(value)}")
        if value <= 0:
            raise self.error(key, f"must be a positive number of milliseconds, not {value}")
        if value > MAX_MILLISECONDS:
            raise self.error(
                key,
                f"{_number(value)} ms is more than an hour: give at most {MAX_MILLISECONDS} "
                f"milliseconds (the default is {default})",
            )
        return int(value)

    def string(self, raw: dict[str, Any], key: str, default: str) -> str:
        value = raw.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, not {_kind(value)}")
        return value

    def boolean(self, raw: dict[str, Any], key: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_kind(value)}")
        return value

    def positive_int(self, value: Any, where: str) -> int:
        if not _is_int(value):
            raise self.error(where, f"must be an integer, not {_kind(value)}")
        if value < 1:
            raise self.error(where, f"must be a positive integer, not {value}")
        if value > MAX_ID:
            raise self.error(where, f"{value} is out of range 1..{MAX_ID} (2**31-1)")
        return int(value)


def startup_warnings(config: ClusterConfig) -> list[str]:
    """Valid settings that are probably a mistake, one line each (``runpaxos`` logs them at start,
    ``manage.py check --deploy`` shows them). An empty ``apiTokens`` is allowed, for a node that
    only serves its peers, but then no client can use the API."""
    warnings = []
    if not config.api_tokens:
        warnings.append(
            f"{config.path}: apiTokens is empty: no client can use this node's API "
            "(add a long random token to apiTokens)"
        )
    if config.secret.strip() == EXAMPLE_SECRET:
        warnings.append(
            f'{config.path}: secret is the README\'s example "{EXAMPLE_SECRET}": anyone who '
            "read it can join the cluster's peer links (use a long random string, the same on "
            "every node)"
        )
    elif len(config.secret) < MIN_SECRET_CHARS:
        warnings.append(
            f"{config.path}: secret is {len(config.secret)} characters: a node proves it knows "
            "the secret with an HMAC that an eavesdropper, or whoever answers on a stopped "
            "peer's address, can test guesses against offline (use a long random string: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if len(config.nodes) == 2:
        warnings.append(
            f"{config.path}: 2 nodes: a majority is both, so nothing is chosen while either is "
            "down, and a node that lost its database may be unable to rebuild (it needs its "
            "peer's unfinished proposals chosen, which needs its own vote); 3 nodes tolerate one "
            "failure"
        )
    return warnings


def make_data_folder(config: ClusterConfig) -> None:
    """Create the node's ``dataDir`` (and its parents) if missing; a ``ConfigError`` that names
    the path and the system's reason if that fails (``/proc/x``, a read-only disk...)."""
    try:
        config.data_path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"{config.path}: dataDir: cannot create {os_problem(config.data_path, error)}"
        ) from None


def os_problem(path: Path, error: OSError) -> str:
    """``path`` and why the system refused it, in words, for a one-line error: ``/x/data:
    permission denied``, with the file the error is about when that is another one (a parent
    folder): ``/x/data: /x: permission denied``."""
    reason = os.strerror(error.errno).lower() if error.errno else str(error)
    about = os.fsdecode(error.filename) if error.filename is not None else str(path)
    return f"{path}: {reason}" if about == str(path) else f"{path}: {about}: {reason}"


def _duplicate_address(host: str, port: int, other: NodeAddress) -> str:
    """Why two nodes cannot share ``host:port``; when the two spell this machine differently
    (``localhost`` and ``127.0.0.1``), say so, or the two addresses would look different."""
    problem = f"duplicate address {host}:{port} (also used by node {other.node_id}"
    if _same_machine(host) == "localhost" and other.host.lower() != host.strip().lower():
        names = ", ".join(sorted(LOOPBACK_NAMES))
        problem += f" as {other.address}; {names} all name this machine"
    return problem + ")"


def _same_machine(host: str) -> str:
    """``host`` as the duplicate-address check compares it: case, a trailing dot and IPv6 spellings
    do not matter, and every name in ``LOOPBACK_NAMES`` is one machine."""
    name = host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
    with contextlib.suppress(ValueError):  # a host name, not an address
        name = ipaddress.ip_address(name).compressed
    return "localhost" if name in LOOPBACK_NAMES else name


def _number(value: int | float) -> str:
    """A number for an error message: one with hundreds of digits is shortened, as it may be
    (up to 4300 digits parse)."""
    text = str(value)
    return text if len(text) <= 20 else f"{text[:10]}... ({len(text)} digits)"


def _is_int(value: Any) -> bool:
    """JSON integers only: ``true`` is an ``int`` to Python but never a valid id or port."""
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    """Describe a JSON value for an error message, without echoing long or secret content."""
    if value is None:
        return "null (or missing)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {_number(value)}"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the OS reports free right now (bound together, so they are distinct).

    Another process may grab one before the node binds it; good enough for demos and tests.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def write_demo_config(
    folder: str | Path,
    nodes: int = 3,
    base_port: int | None = DEFAULT_BASE_PORT,
    *,
    host: str = "127.0.0.1",
    groups: Sequence[int] = DEFAULT_GROUPS,
    filename: str = "cluster.json",
    leader: int | None = None,
) -> Path:
    """Write a valid config for a local cluster of ``nodes`` nodes into ``folder``; return its path.

    The secret and the API token are fresh random values (``secrets.token_urlsafe``), so two demo
    clusters never trust each other. ``base_port=None`` picks free ports instead of consecutive
    ones. The file starts with a ``//`` comment, which also exercises the comment stripping.
    ``leader`` names the node every group prefers as its leader (None: spread them).
    """
    if nodes < 1:
        raise ValueError("a cluster needs at least one node")
    if leader is not None and not 1 <= leader <= nodes:
        raise ValueError(f"leader {leader} is not one of the {nodes} nodes")
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    ports = (
        free_ports(nodes, host)
        if base_port is None
        else [base_port + offset for offset in range(nodes)]
    )
    document = {
        "nodes": [
            {"id": number, "host": host, "port": port} for number, port in enumerate(ports, start=1)
        ],
        "myid": 1,
        "timeout": DEFAULT_TIMEOUT_MS,
        "learningInterval": DEFAULT_LEARNING_INTERVAL_MS,
        "dataDir": DEFAULT_DATA_DIR,
        "enableDataPersistence": True,
        "groups": [g if leader is None else {"id": g, "leader": leader} for g in groups],
        "secret": secrets.token_urlsafe(32),
        "apiTokens": [secrets.token_urlsafe(24)],
    }
    path = target / filename
    header = "// Generated by runpaxos --demo. Start node N with: runpaxos --config THIS --node N\n"
    path.write_text(header + json.dumps(document, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path
