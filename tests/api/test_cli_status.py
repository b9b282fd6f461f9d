"""``manage.py paxos status`` and ``PaxosClient.status_of`` with nodes that are down (a free port:
connection refused) or hang (a socket that listens but never answers): one attempt per node, the
nodes asked in parallel, the live ones printed, the others named, and a non-zero exit. And with
nodes that report divergence alarms (tiny HTTP servers answering a made-up ``/api/status/``): a
line per group naming the odd node, and a non-zero exit."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from consensus.client import PaxosClient, Unavailable
from consensus.config import free_ports
from consensus.management.commands.paxos import _who_differs
from tests.fixtures.cluster import TOKEN, Cluster
from tests.fixtures.http import answering_nodes, hanging_nodes


def status_cli(*urls: str, options: tuple[str, ...] = ()) -> tuple[str, CommandError, float]:
    """Run ``paxos status`` (which must fail); its output, its error and how long it took."""
    out = io.StringIO()
    started = time.monotonic()
    with pytest.raises(CommandError) as raised:
        call_command(
            "paxos", "--url", ",".join(urls), "--token", TOKEN, *options, "status", stdout=out
        )
    return out.getvalue(), raised.value, time.monotonic() - started


def test_status_of_a_dead_port_raises_unavailable_at_once() -> None:
    (dead,) = free_ports(1)
    with PaxosClient("127.0.0.1", dead, TOKEN, retry_timeout=30, discover=False) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable, match=f"127.0.0.1:{dead}"):
            client.status_of("127.0.0.1", dead)
        assert time.monotonic() - started < 1.0


def test_status_of_a_hanging_node_makes_one_attempt() -> None:
    """Bounded by ``timeout`` (one attempt), not by ``retry_timeout``."""
    with hanging_nodes(1) as [(host, port)]:
        client = PaxosClient(host, port, TOKEN, timeout=0.5, retry_timeout=30, discover=False)
        started = time.monotonic()
        with client, pytest.raises(Unavailable, match="timed out"):
            client.status_of(host, port)
        assert time.monotonic() - started < 1.5


def test_status_asks_the_nodes_in_parallel() -> None:
    """Three nodes that hang for the whole per-node timeout (1 s): about 1 s, not 3."""
    with hanging_nodes(3) as nodes:
        urls = [f"http://{host}:{port}" for host, port in nodes]
        output, error, elapsed = status_cli(*urls, options=("--timeout", "1"))
    assert elapsed < 2.5, elapsed
    assert str(error) == "3 of 3 nodes unreachable: " + ", ".join(f"{h}:{p}" for h, p in nodes)
    assert [line.split()[0] for line in output.splitlines()[1:]] == [f"{h}:{p}" for h, p in nodes]


@pytest.mark.e2e
def test_status_with_a_dead_node_prints_the_live_ones_and_exits_non_zero(
    shared_cluster: Cluster,
) -> None:
    """The default ``--timeout`` (30 s) must not apply to a node that refuses connections."""
    (dead,) = free_ports(1)
    live = [node.url for node in shared_cluster.nodes.values()]
    urls = [live[0], f"http://127.0.0.1:{dead}", *live[1:]]  # printed in this order
    output, error, elapsed = status_cli(*urls)
    assert elapsed < 5.0, elapsed
    assert str(error) == f"1 of 4 nodes unreachable: 127.0.0.1:{dead}"
    lines = output.splitlines()
    assert lines[0].split() == ["node", "group", "role", "leader", "chosen", "applied"]
    live_addresses = [url.removeprefix("http://") for url in live]
    assert [line.split()[0] for line in lines[1:]] == [
        live_addresses[0],
        live_addresses[0],
        f"127.0.0.1:{dead}",
        *[address for address in live_addresses[1:] for _ in range(2)],  # groups 1 and 2
    ]
    assert f"127.0.0.1:{dead}" in lines[3] and "unreachable:" in lines[3]
    assert all(len(line.split()) == 6 for line in lines[1:] if "unreachable:" not in line)

    output, error, elapsed = status_cli(*urls, options=("--json",))
    assert elapsed < 5.0, elapsed
    answers = json.loads(output)
    assert list(answers) == [url.removeprefix("http://") for url in urls]
    assert "error" in answers[f"127.0.0.1:{dead}"]
    assert all(answers[address]["groups"] for address in live_addresses)


@pytest.mark.e2e
def test_status_tells_a_node_that_answered_with_an_error_from_an_unreachable_one(
    shared_cluster: Cluster,
) -> None:
    """A 401 (a wrong token) is an answer: "error", not "unreachable"."""
    (dead,) = free_ports(1)
    live = next(iter(shared_cluster.nodes.values())).url
    output, error, _elapsed = status_cli(
        live, f"http://127.0.0.1:{dead}", options=("--token", "wrong")
    )
    lines = output.splitlines()
    assert " error: " in lines[1] and "HTTP 401" in lines[1], lines
    assert " unreachable: " in lines[2], lines
    assert str(error).startswith("2 of 2 nodes without a status (unreachable or failing): ")


# -- divergence alarms ---------------------------------------------------------------------------

README = '(see README "Nodes whose state machines differ")'


def node_status(node_id: int, nodes: int, differs_from: dict[int, list[int]]) -> dict[str, Any]:
    """What ``/api/status/`` of node ``node_id`` of a cluster of ``nodes`` says, with an alarm
    for each peer of ``differs_from`` (group -> peers)."""
    return {
        "node_id": node_id,
        "uptime_seconds": 10.0,
        "groups": [
            {"group_id": g, "role": "follower", "leader": 1, "chosen_upto": 8, "applied": 8}
            for g in (1, 2)
        ],
        "peers": {
            "node_id": node_id,
            "peers": [{"node_id": peer} for peer in range(1, nodes + 1) if peer != node_id],
        },
        "divergences": [
            {"group_id": group, "peer": peer, "first": 5, "last": 8, "mine": "0a", "theirs": "0b"}
            for group, peers in differs_from.items()
            for peer in peers
        ],
    }


def test_status_names_the_odd_node_and_exits_1() -> None:
    """Nodes 1 and 2 differ from node 3 in group 1, and node 3 from both: node 3 is the odd one.
    Group 2 is fine: no line for it."""
    with answering_nodes(
        node_status(1, 3, {1: [3]}), node_status(2, 3, {1: [3]}), node_status(3, 3, {1: [1, 2]})
    ) as urls:
        output, error, _elapsed = status_cli(*urls)
    lines = output.splitlines()
    assert len([line for line in lines if line.startswith("ALARM ")]) == 4
    assert lines[-1] == f"group 1: node 3 differs from nodes 1, 2 {README}"
    assert not any(line.startswith("group 2:") for line in lines)
    assert error.returncode == 1
    assert str(error) == (
        "group(s) 1: a divergence alarm, some node's state machine differs (README \"Nodes "
        'whose state machines differ")'
    )


def test_status_names_the_odd_node_when_it_is_down_and_says_both_problems() -> None:
    """Node 3 does not answer: its peers' alarms still name it."""
    (dead,) = free_ports(1)
    with answering_nodes(node_status(1, 3, {2: [3]}), node_status(2, 3, {1: [3], 2: [3]})) as urls:
        output, error, _elapsed = status_cli(*urls, f"http://127.0.0.1:{dead}")
    assert output.splitlines()[-2:] == [
        f"group 1: no single odd node; these differ: nodes 2 and 3 {README}",
        f"group 2: node 3 differs from nodes 1, 2 {README}",
    ]
    assert error.returncode == 1
    assert str(error).startswith(f"1 of 3 nodes unreachable: 127.0.0.1:{dead}; group(s) 1, 2: ")


def test_status_with_an_alarm_and_json_prints_the_answers_and_exits_1() -> None:
    with answering_nodes(node_status(1, 2, {1: [2]}), node_status(2, 2, {})) as urls:
        output, error, _elapsed = status_cli(*urls, options=("--json",))
    answers = json.loads(output)  # the answers only: no summary line in the JSON
    assert [status["node_id"] for status in answers.values()] == [1, 2]
    assert error.returncode == 1 and "group(s) 1: a divergence alarm" in str(error)


def test_status_without_alarms_exits_0() -> None:
    with answering_nodes(*(node_status(n, 3, {}) for n in (1, 2, 3))) as urls:
        out = io.StringIO()
        call_command("paxos", "--url", ",".join(urls), "--token", TOKEN, "status", stdout=out)
    assert len(out.getvalue().splitlines()) == 1 + 3 * 2  # the header, 2 groups per node
    assert "ALARM" not in out.getvalue() and "differ" not in out.getvalue()


@pytest.mark.parametrize(
    ("pairs", "nodes", "summary"),
    [
        ({(1, 3), (2, 3)}, {1, 2, 3}, "node 3 differs from nodes 1, 2"),
        ({(1, 5), (2, 5), (3, 5)}, {1, 2, 3, 4, 5}, "node 5 differs from nodes 1, 2, 3"),
        # one pair of three nodes compared so far: either of them may be the odd one
        ({(1, 3)}, {1, 2, 3}, "no single odd node; these differ: nodes 1 and 3"),
        ({(1, 2)}, {1, 2}, "no single odd node; these differ: nodes 1 and 2"),  # two nodes
        (
            {(1, 2), (1, 3), (2, 3)},
            {1, 2, 3},
            "no single odd node; these differ: nodes 1 and 2, nodes 1 and 3, nodes 2 and 3",
        ),
        # 5 differs from 1 and 2 only: not from a majority of the other four
        (
            {(1, 5), (2, 5)},
            {1, 2, 3, 4, 5},
            "no single odd node; these differ: nodes 1 and 5, nodes 2 and 5",
        ),
    ],
)
def test_who_differs(pairs: set[tuple[int, int]], nodes: set[int], summary: str) -> None:
    """The odd node by the rule a node judges itself by (``DivergenceCheck.odd_one_out``)."""
    assert _who_differs(pairs, nodes) == f"{summary} {README}"


NO_STATE_DIGEST = "the state machine has no state_digest: its results were compared, not its state"


@pytest.mark.parametrize(
    ("first", "peers", "note", "code"),
    [
        (4, {"2": "same", "3": "same"}, None, 0),
        (4, {"2": "same", "3": "same"}, NO_STATE_DIGEST, 0),  # compared by its results: a pass
        (4, {"2": "same", "3": "differs"}, None, 1),
        (4, {"2": "same", "3": "not compared"}, None, 2),
        (None, {"2": "not compared", "3": "not compared"}, "this node did not digest", 2),
    ],
)
def test_check_exits_0_only_when_every_node_was_compared_and_is_the_same(
    first: int | None, peers: dict[str, str], note: str | None, code: int
) -> None:
    """A machine without ``state_digest`` (the README's counter) is compared by its results:
    its note is no reason to exit 2, which cron would take for a failed check for ever."""
    check = {"group_id": 3, "node_id": 1, "instance": 9, "first": first, "state": None}
    with answering_nodes(check | {"peers": peers, "note": note}) as (url,):
        out = io.StringIO()
        arguments = ("paxos", "--url", url, "--token", TOKEN, "check", "-g", "3")
        if code == 0:
            call_command(*arguments, stdout=out)
        else:
            with pytest.raises(CommandError) as raised:
                call_command(*arguments, stdout=out)
            assert raised.value.returncode == code
    assert out.getvalue().startswith("group 3 at instance 9, seen from node 1: node 2 ")
