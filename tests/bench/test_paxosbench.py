"""Smoke test of the benchmark command: it starts a cluster, drives it, reports and stops it.
It checks that the command works (and stops every node it started), not how fast anything is."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.fixtures.http import answering_nodes, answering_paths
from tests.fixtures.ports import free_port_block
from tests.fixtures.procs import PROJECT, run_manage, runpaxos_pids

DEAD_PORT = free_port_block(1)
DEAD = ["--urls", f"http://127.0.0.1:{DEAD_PORT}", "--token", "t", "--clients", "1"]
"""A cluster that is not there: nothing listens on that port."""

pytestmark = pytest.mark.e2e


def benchmark_node_pids() -> set[int]:
    """PIDs of the nodes of paxosbench's local clusters (to check it leaves none behind)."""
    return runpaxos_pids("paxosbench-")


@pytest.fixture(autouse=True)
def no_node_left_behind() -> Iterator[None]:
    """paxosbench stops the nodes it starts; if a run fails or times out before it could, the
    test stops them here, by PID."""
    before = benchmark_node_pids()
    yield
    for pid in benchmark_node_pids() - before:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_paxosbench_runs_and_reports(tmp_path: Path) -> None:
    before = benchmark_node_pids()
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    result = run_manage(
        "paxosbench",
        *("--nodes", "3", "--groups", "1,2"),  # one cluster each
        *("--clients", "1,4", "--value-size", "100,300", "--duration", "0.3", "--warmup", "0.1"),
        *("--reads", "0.5", "--path", "both"),
        # every group's preferred leader (the run waits until node 2 took them over)
        *("--leader", "2"),
        *("--json", str(out), "--plot", str(plot)),
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ops_per_s" in result.stdout and "p99_ms" in result.stdout
    document = json.loads(out.read_text())
    rows = document["rows"]
    assert {(row["target"], row["groups"], row["clients"], row["value_size"]) for row in rows} == {
        (target, groups, clients, size)
        for target in ("paxos-rest", "paxos-client")
        for groups in (1, 2)
        for clients in (1, 4)
        for size in (100, 300)
    }
    assert all(row["ops"] > 0 and row["errors"] == 0 for row in rows), rows
    assert all(row["cpu_ms_per_op"] > 0 for row in rows), rows  # the nodes' CPU, from /proc
    clusters = document["clusters"]
    assert [cluster["groups"] for cluster in clusters] == [1, 2]
    for cluster in clusters:  # batching: commands per chosen instance, from the nodes' status
        assert 0 < cluster["instances"] <= cluster["writes"] + 10  # + a no-op per election
        assert cluster["commands_per_instance"] == round(
            cluster["writes"] / cluster["instances"], 1
        )
        assert set(cluster["leaders"].values()) == {2}, cluster["leaders"]
    nodes = document["nodes"]  # what the last local cluster held at the end
    assert set(nodes["rss_mb"]) == {"1", "2", "3"} and all(nodes["rss_mb"].values())
    assert set(nodes["data_mb"]) == {"node1", "node2", "node3"}
    assert nodes["writes"] > 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert benchmark_node_pids() <= before  # every node it started is gone
    folders = re.findall(r"group\(s\) in (\S+) \.\.\.", result.stdout)
    assert len(folders) == 2 and not any(Path(f).exists() for f in folders)  # data deleted


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--clients", "many"], "--clients takes numbers"),
        (["--groups", "0,2"], "--groups takes positive numbers"),
        (["--value-size", "1k"], "--value-size takes numbers"),
        (["--plot", "/nonexistent-folder/bench.png"], "--plot: the folder of"),
        (["--etcd-pids", "etcd"], "--etcd-pids takes process ids"),
        (["--leader", "4"], "--leader 4 is not a node of the 3-node local cluster"),
        (["--leader", "1", "--urls", "http://127.0.0.1:9"], "--leader is for a local cluster"),
        (["--nodes", "0"], "--nodes takes a positive number, not 0"),  # a traceback, a folder
        (["--urls", ",", "--token", "t"], "--urls names no URL"),  # an IndexError
        (["--urls", "nonsense", "--token", "t"], "--urls takes http:// or https:// URLs"),
        (["--urls", "http://127.0.0.1:9", "--config", "/nonexistent/cluster.json"], "--config: "),
        # it benchmarked a new local cluster instead, silently
        (
            ["--config", "cl/cluster.json"],
            "--config is for the cluster of --urls; without --urls paxosbench starts a cluster "
            "of its own",
        ),
        (
            ["--token", "secret"],
            "--token is for the cluster of --urls; without --urls paxosbench starts a cluster "
            "of its own",
        ),
        # checked before the run (it ran, then matplotlib failed with a traceback)
        (
            ["--plot", "bench.txt", *DEAD, "--duration", "0.2", "--warmup", "0"],
            "--plot: bench.txt must end in .png, .svg, .pdf",
        ),
    ],
)
def test_paxosbench_explains_bad_arguments(arguments: list[str], message: str) -> None:
    """In-process (a ``manage.py`` per case cost a second or two of the test run each): the
    command line's own handling of a ``CommandError`` is the next test's."""
    with pytest.raises(CommandError) as refused:
        call_command("paxosbench", *arguments)
    assert message in str(refused.value)


def test_paxosbench_on_the_command_line_says_what_is_wrong_without_a_traceback() -> None:
    result = run_manage("paxosbench", "--clients", "many")
    assert result.returncode != 0
    assert result.stderr.strip().startswith("CommandError: --clients takes numbers")
    assert "Traceback" not in result.stderr


def test_paxosbench_fails_when_every_request_failed() -> None:
    """A dead --urls: not "0 ops/s" and status 0, but the first error and a non-zero status."""
    result = run_manage("paxosbench", *DEAD, "--duration", "0.3", "--warmup", "0")
    assert result.returncode != 0, result.stdout
    first_error = rf"paxos-rest: all \d+ requests failed; first error: .*{DEAD_PORT}"
    assert re.search(first_error, result.stderr)
    assert "is the URL right and the server up?" in result.stderr
    assert "Traceback" not in result.stderr


def test_paxosbench_consistency_has_help() -> None:
    result = run_manage("help", "paxosbench")
    usage = " ".join(result.stdout.split())
    assert "local answers from the node's own copy" in usage


def test_paxosbench_json_to_stdout_is_json_alone() -> None:
    """``--json -`` for a pipe (``| jq``): stdout holds the JSON document and nothing else; the
    table and the progress lines go to stderr."""
    result = run_manage(
        "paxosbench",
        "--clients",
        "1",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--path",
        "client",
        "--json",
        "-",
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert [row["target"] for row in document["rows"]] == ["paxos-client"]
    assert "ops_per_s" in result.stderr and not (PROJECT / "-").exists()


def test_paxosbench_refuses_groups_the_cluster_does_not_have() -> None:
    """Against a cluster of groups 1 and 2, ``--groups 5`` made a fifth of the requests fail
    per missing group and printed the others' rate as the result, with status 0."""
    with answering_nodes({"groups": [{"group_id": 1}, {"group_id": 2}]}) as (url,):
        result = run_manage("paxosbench", "--urls", url, "--token", "t", "--groups", "5")
    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == (
        f"CommandError: --groups 5 uses groups 1..5, but the cluster at {url} has no group "
        "3, 4, 5 (it has 1, 2)"
    )


def test_paxosbench_refuses_groups_that_do_not_run_the_kv_store() -> None:
    """Against a group running another state machine, every request to it failed (or read
    nothing) while the rate went into the table, with status 0 and no word why."""
    answers = {
        "/api/status/": {"groups": [{"group_id": 1}, {"group_id": 2}]},
        "/api/groups/": [
            {"group_id": 1, "state_machine": "kv"},
            {"group_id": 2, "state_machine": "log"},
        ],
        "/api/kv/": {"value": "x"},
    }
    with answering_paths(answers) as url:
        result = run_manage(
            *("paxosbench", "--urls", url, "--token", "t", "--groups", "2", "--clients", "1"),
            *("--duration", "0.3", "--warmup", "0", "--path", "rest", "--reads", "1"),
        )  # reads only: the stand-in answers them all, so only the check can refuse
    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == (
        f"CommandError: --groups 2: at {url} group 2 runs 'log', not the 'kv' state machine "
        "(paxosbench puts and gets keys)"
    )


def test_paxosbench_names_the_first_error_when_some_requests_failed() -> None:
    """Half the requests failing (here every put: the stand-in answers GET only) printed a rate
    and an error count, but not why; the first error was shown only when all had failed."""
    answers = {
        "/api/status/": {"groups": [{"group_id": 1}]},
        "/api/groups/": [{"group_id": 1, "state_machine": "kv"}],
        "/api/kv/": {"value": "x"},
    }
    with answering_paths(answers) as url:
        result = run_manage(
            *("paxosbench", "--urls", url, "--token", "t", "--groups", "1", "--clients", "2"),
            *("--duration", "0.5", "--warmup", "0", "--path", "rest", "--reads", "0.5"),
        )
    assert result.returncode == 0, result.stderr
    failed = re.search(
        r"paxos-rest: (\d+) of (\d+) requests failed; first error: HTTP 501", result.stderr
    )
    assert failed, result.stderr
    assert 0 < int(failed[1]) < int(failed[2])
