"""Cluster config parsing: the seed's format with comments, defaults, and one clear error per
mistake (a ConfigError naming the file and the field, on one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consensus.config import (
    DEFAULT_STATE_MACHINE,
    MAX_ID,
    ConfigError,
    GroupSpec,
    NodeAddress,
    load_config,
    startup_warnings,
    strip_comments,
    write_demo_config,
)

PROJECT = Path(__file__).resolve().parents[2]

GOOD = """\
// A three-node cluster, as in the seed's README.
{
  "nodes": [
    {
      // Node 1, server port is 33333
      "id": 1,
      "host": "localhost",
      "port": 33333
    },
    {"id": 2, "host": "localhost", "port": 33334},
    {"id": 3, "host": "localhost", "port": 33335}  // trailing comment
  ],
  "myid": 2,
  //The id of this node
  "timeout": 1500,
  "learningInterval": 700, // learning interval of learner
  "dataDir": "./data//dir/",
  "enableDataPersistence": false,
  "groups": [1, {"id": 7, "stateMachine": "counter"}],
  "secret": "s3cret // not a comment \\" // still not",
  "apiTokens": ["https://example.invalid//token"]
}
"""


def base_document() -> dict[str, Any]:
    return {
        "nodes": [
            {"id": 1, "host": "127.0.0.1", "port": 33333},
            {"id": 2, "host": "127.0.0.1", "port": 33334},
            {"id": 3, "host": "127.0.0.1", "port": 33335},
        ],
        "myid": 1,
        "secret": "a-shared-cluster-secret",
    }


def write(tmp_path: Path, text: str, name: str = "cluster.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_good_config_with_comments(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.nodes == (
        NodeAddress(1, "localhost", 33333),
        NodeAddress(2, "localhost", 33334),
        NodeAddress(3, "localhost", 33335),
    )
    assert config.my_id == 2
    assert config.me == NodeAddress(2, "localhost", 33334)
    assert [peer.node_id for peer in config.peers] == [1, 3]
    assert config.timeout_ms == 1500
    assert config.learning_interval_ms == 700
    assert config.data_dir == "./data//dir/"
    assert config.data_path == (tmp_path / "data" / "dir").resolve()
    assert config.sqlite_path == config.data_path / "node2.sqlite3"
    assert config.enable_data_persistence is False
    assert config.groups == (GroupSpec(1, DEFAULT_STATE_MACHINE), GroupSpec(7, "counter"))
    assert config.group_ids == (1, 7)
    assert config.secret == 's3cret // not a comment " // still not'
    assert config.api_tokens == ("https://example.invalid//token",)


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert "s3cret" not in repr(config)
    assert "example.invalid" not in repr(config)


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, json.dumps(base_document())))
    assert config.timeout_ms == 1000
    assert config.learning_interval_ms == 1000
    assert config.data_dir == "./dataDir/"
    assert config.data_path == (tmp_path / "dataDir").resolve()
    assert config.enable_data_persistence is True
    assert config.groups == (GroupSpec(1, "kv"),)
    assert config.api_tokens == ()


def test_node_id_overrides_myid(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(base_document()))
    assert load_config(path, node_id=3).my_id == 3
    document = base_document()
    del document["myid"]
    assert load_config(write(tmp_path, json.dumps(document)), node_id=2).my_id == 2


def test_default_state_machine_is_the_callers(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(base_document() | {"groups": [1, 2]}))
    config = load_config(path, default_state_machine="echo")
    assert config.groups == (GroupSpec(1, "echo"), GroupSpec(2, "echo"))


def test_leaders_spread_over_the_nodes_unless_the_config_names_one(tmp_path: Path) -> None:
    groups = [1, 2, 3, 4, {"id": 5, "leader": 1}, {"id": 6, "stateMachine": "kv", "leader": 3}]
    config = load_config(write(tmp_path, json.dumps(base_document() | {"groups": groups})))
    assert config.group(5) == GroupSpec(5, "kv", leader=1)
    assert [config.preferred_leader(g) for g in config.group_ids] == [1, 2, 3, 1, 1, 3]


def test_ipv6_address(tmp_path: Path) -> None:
    document = base_document()
    document["nodes"][0]["host"] = "::1"
    config = load_config(write(tmp_path, json.dumps(document)))
    assert config.me.address == "[::1]:33333"
    assert config.me.http_url == "http://[::1]:33333"


def test_strip_comments_keeps_strings_and_lines() -> None:
    text = '{"a": "x//y", // gone\n "b": "\\"//"}  // end'
    stripped = strip_comments(text)
    assert json.loads(stripped) == {"a": "x//y", "b": '"//'}
    assert stripped.count("\n") == text.count("\n")
    assert strip_comments("// only a comment") == ""


def test_json_error_points_into_the_original_file(tmp_path: Path) -> None:
    path = write(tmp_path, '// comment\n{\n  "myid": 1,, // oops\n}\n')
    with pytest.raises(ConfigError, match=r"line 3 column 13") as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.json")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


def test_unreadable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "cluster.json"
    path.write_bytes(b'{"secret": "\xff\xfe"}')
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(path)


def _set(path: str, value: Any) -> Any:
    """A mutation of the base document: set ``a.b.0.c`` to ``value`` (``...`` deletes it)."""

    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) else last
        if value is ...:
            del target[key]
        else:
            target[key] = value

    return mutate


ERROR_CASES = [
    pytest.param(_set("nodes", ...), "nodes: missing", id="nodes-missing"),
    pytest.param(_set("nodes", []), "nodes: must be a non-empty list", id="nodes-empty"),
    pytest.param(_set("nodes", {"id": 1}), "nodes: must be a non-empty list", id="nodes-object"),
    pytest.param(_set("nodes.1", 5), r"nodes\[1\]: must be an object", id="node-not-object"),
    pytest.param(_set("nodes.1.id", "2"), r"nodes\[1\]\.id: must be an integer", id="id-str"),
    pytest.param(_set("nodes.1.id", 2.0), r"nodes\[1\]\.id: must be an integer", id="id-float"),
    pytest.param(_set("nodes.1.id", True), r"nodes\[1\]\.id: must be an integer", id="id-bool"),
    pytest.param(_set("nodes.1.id", 0), r"nodes\[1\]\.id: must be a positive", id="id-zero"),
    pytest.param(_set("nodes.1.id", 1), r"nodes\[1\]\.id: duplicate node id 1", id="id-dup"),
    pytest.param(_set("nodes.1.host", ""), r"nodes\[1\]\.host: must be a non-empty", id="host"),
    pytest.param(_set("nodes.1.port", "80"), r"nodes\[1\]\.port: must be an integer", id="port"),
    pytest.param(_set("nodes.1.port", 0), r"nodes\[1\]\.port: 0 is out of range", id="port-0"),
    pytest.param(_set("nodes.1.port", 65536), "65536 is out of range 1..65535", id="port-big"),
    pytest.param(
        _set("nodes.1.port", 33333),
        r"nodes\[1\]: duplicate address 127.0.0.1:33333 \(also used by node 1\)",
        id="address-dup",
    ),
    pytest.param(_set("nodes.1.name", "x"), r"nodes\[1\]\.name: unknown key", id="node-key"),
    pytest.param(_set("myid", ...), "myid: missing", id="myid-missing"),
    pytest.param(
        _set("myid", 9), r"myid: node 9 is not in nodes \(known ids: 1, 2, 3\)", id="myid"
    ),
    pytest.param(_set("myid", "1"), "myid: must be an integer", id="myid-str"),
    pytest.param(_set("timeout", -5), "timeout: must be a positive number", id="timeout-neg"),
    pytest.param(_set("timeout", 0), "timeout: must be a positive number", id="timeout-zero"),
    pytest.param(_set("timeout", "1s"), "timeout: must be an integer number", id="timeout-str"),
    pytest.param(_set("learningInterval", -1), "learningInterval: must be a positive", id="learn"),
    pytest.param(_set("dataDir", 3), "dataDir: must be a non-empty string", id="datadir"),
    pytest.param(_set("enableDataPersistence", "yes"), "must be true or false", id="persist"),
    pytest.param(_set("groups", []), "groups: must be a non-empty list", id="groups-empty"),
    pytest.param(_set("groups", 1), "groups: must be a non-empty list", id="groups-int"),
    pytest.param(_set("groups", [1, 1]), r"groups\[1\]: duplicate group id 1", id="group-dup"),
    pytest.param(
        _set("groups", [1, {"id": 1, "stateMachine": "kv"}]),
        r"groups\[1\]: duplicate group id 1",
        id="group-dup-object",
    ),
    pytest.param(_set("groups", [0]), r"groups\[0\]: must be a positive", id="group-zero"),
    pytest.param(_set("groups", ["a"]), r"groups\[0\]: must be a group id", id="group-str"),
    pytest.param(_set("groups", [{"stateMachine": "kv"}]), r"groups\[0\]\.id", id="group-no-id"),
    *(
        pytest.param(_set("groups", [{"id": 1, **group}]), rf"groups\[0\]\.{expected}", id=case)
        for group, expected, case in [
            ({"stateMachine": ""}, "stateMachine: must be a non-empty string", "group-machine"),
            ({"machine": "kv"}, "machine: unknown key", "group-key"),
            ({"leader": 4}, r"leader: node 4 is not in nodes \[1, 2, 3\]", "group-leader-unknown"),
            ({"leader": "1"}, "leader: must be an integer", "group-leader-str"),
        ]
    ),
    pytest.param(_set("secret", ...), "secret: missing", id="secret-missing"),
    pytest.param(_set("secret", ""), "secret: must be a non-empty string", id="secret-empty"),
    pytest.param(_set("secret", "  "), "secret: must be a non-empty string", id="secret-blank"),
    pytest.param(_set("secret", 42), "secret: must be a non-empty string", id="secret-int"),
    pytest.param(_set("apiTokens", "tok"), "apiTokens: must be a list of strings", id="tokens"),
    pytest.param(_set("apiTokens", ["a", ""]), r"apiTokens\[1\]: must be a non-empty", id="tok"),
    pytest.param(_set("learninginterval", 5), "learninginterval: unknown key", id="typo"),
    # ids live in 32-bit columns: a bigger one crashed PostgreSQL (and 2**63 SQLite)
    pytest.param(
        _set("groups", [2**31]),
        r"groups\[0\]: 2147483648 is out of range 1\.\.2147483647",
        id="group-too-big",
    ),
    pytest.param(
        _set("groups", [{"id": 2**64}]), r"groups\[0\]\.id: .* is out of range", id="group-big"
    ),
    pytest.param(
        _set("nodes.1.id", 2**31), r"nodes\[1\]\.id: .* is out of range", id="node-too-big"
    ),
    pytest.param(
        _set("groups", [{"id": 1, "leader": 2**31}]),
        r"groups\[0\]\.leader: .* is out of range",
        id="group-leader-too-big",
    ),
    pytest.param(_set("dataDir", "/etc/passwd"), "dataDir: /etc/passwd is a file", id="datadir-f"),
    pytest.param(
        _set("dataDir", "/etc/passwd/sub"),
        "dataDir: /etc/passwd/sub is inside /etc/passwd, which is a file",
        id="datadir-in-file",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), ERROR_CASES)
def test_config_errors(tmp_path: Path, mutate: Any, expected: str) -> None:
    document = base_document()
    mutate(document)
    path = write(tmp_path, json.dumps(document))
    with pytest.raises(ConfigError, match=expected) as excinfo:
        load_config(path)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert isinstance(excinfo.value, ValueError)
    assert "shared-secret" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2]", "must be a JSON object, not a list"),
        ('"text"', "must be a JSON object, not a string"),
        ("", "invalid JSON at line 1 column 1"),
        ("{", "invalid JSON at line 1 column 2"),
    ],
)
def test_not_an_object(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("node_id", "expected"),
    [(9, r"--node: node 9 is not in nodes \(known ids: 1, 2, 3\)"), ("2", "--node: must be")],
)
def test_bad_node_override(tmp_path: Path, node_id: Any, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, json.dumps(base_document())), node_id=node_id)


def test_demo_config_is_valid_and_random(tmp_path: Path) -> None:
    first = write_demo_config(tmp_path / "a", nodes=5, base_port=40000)
    second = write_demo_config(tmp_path / "b", nodes=3, base_port=None)
    config = load_config(first, node_id=4)
    assert [node.port for node in config.nodes] == [40000, 40001, 40002, 40003, 40004]
    assert config.my_id == 4
    assert config.data_path == (tmp_path / "a" / "dataDir").resolve()
    assert len(config.api_tokens) == 1
    assert len(config.secret) >= 32
    other = load_config(second)
    assert len({node.port for node in other.nodes}) == 3
    assert other.secret != config.secret
    assert other.api_tokens != config.api_tokens
    assert first.read_text().startswith("//")
    assert first.stat().st_mode & 0o077 == 0  # the file holds the secret


def test_demo_config_can_put_every_leader_on_one_node(tmp_path: Path) -> None:
    config = load_config(write_demo_config(tmp_path, nodes=3, groups=[1, 2, 3], leader=2))
    assert [config.preferred_leader(g) for g in config.group_ids] == [2, 2, 2]
    with pytest.raises(ValueError, match="leader 4 is not one of the 3 nodes"):
        write_demo_config(tmp_path, nodes=3, leader=4)


def test_demo_config_rejects_empty_cluster(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one node"):
        write_demo_config(tmp_path, nodes=0)


def test_largest_ids_are_accepted(tmp_path: Path) -> None:
    document = base_document() | {"groups": [MAX_ID]}
    document["nodes"][2]["id"] = MAX_ID
    config = load_config(write(tmp_path, json.dumps(document)), node_id=MAX_ID)
    assert config.group_ids == (MAX_ID,)
    assert config.my_id == MAX_ID


def test_data_dir_relative_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    path = write(tmp_path, json.dumps(base_document() | {"dataDir": "data"}))
    with pytest.raises(ConfigError, match=r"dataDir: .*data is a file, not a folder"):
        load_config(path)


def test_startup_warnings(tmp_path: Path) -> None:
    """No API token is allowed (a node for peers only) and the README's secret too, but both
    are worth a warning at start."""
    quiet = load_config(write(tmp_path, json.dumps(base_document() | {"apiTokens": ["t"]})))
    assert startup_warnings(quiet) == []
    config = load_config(
        write(tmp_path, json.dumps(base_document() | {"apiTokens": [], "secret": "change-me"}))
    )
    assert config.api_tokens == ()
    first, second = startup_warnings(config)
    assert "apiTokens is empty: no client can use this node's API" in first
    assert 'secret is the README\'s example "change-me"' in second
    assert all("\n" not in line for line in (first, second))
    short = load_config(
        write(tmp_path, json.dumps(base_document() | {"secret": "hunter2", "apiTokens": ["t"]}))
    )
    (warning,) = startup_warnings(short)
    assert "secret is 7 characters" in warning and "offline" in warning


def test_a_two_node_cluster_is_warned_about(tmp_path: Path) -> None:
    document = base_document() | {"apiTokens": ["t"]}
    document["nodes"] = document["nodes"][:2]
    (warning,) = startup_warnings(load_config(write(tmp_path, json.dumps(document)), node_id=1))
    assert "2 nodes: a majority is both" in warning and "3 nodes tolerate one failure" in warning


def test_check_deploy_warns_about_the_example_secret(tmp_path: Path) -> None:
    """``manage.py check --deploy`` shows the warnings (plain ``check`` does not repeat them)."""
    path = write(tmp_path, json.dumps(base_document() | {"secret": "change-me", "apiTokens": []}))
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env |= {"PAXOS_CONFIG": str(path), "PAXOS_NODE_ID": "1"}
    manage = [sys.executable, str(PROJECT / "manage.py"), "check"]
    deploy = subprocess.run(
        [*manage, "--deploy"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
    )
    assert "consensus.W001" in deploy.stderr + deploy.stdout
    assert 'README\'s example "change-me"' in deploy.stderr + deploy.stdout
    assert "apiTokens is empty" in deploy.stderr + deploy.stdout
    plain = subprocess.run(manage, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert "consensus.W001" not in plain.stderr + plain.stdout
