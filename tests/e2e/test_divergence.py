"""The result digests against real nodes: a node whose state machine differs (here, other code
under the same name) is found by every node within a window of the log, and reported in the
log, ``/readyz``, ``/api/status/`` and ``/metrics``; so is a node whose rows were changed behind
Paxos' back, which puts alone do not show (the state checks do); nodes that agree, through a
crash in the middle of a window, report nothing."""

from __future__ import annotations

import io
import re
import sqlite3
import time
import urllib.request

import pytest
from django.core.management import CommandError, call_command

from tests.fixtures.cluster import TOKEN, Cluster, kv_put, wait_for

pytestmark = pytest.mark.e2e

WINDOW = 4
DIGESTS = {"PAXOS_DIGEST_WINDOW": str(WINDOW), "PAXOS_STATE_CHECK_INTERVAL": "0.2"}


def readyz(cluster: Cluster, node_id: int) -> tuple[int, dict]:
    return cluster.request(node_id, "GET", "/readyz", token=None, timeout=5)


def divergent_peers(cluster: Cluster, node_id: int) -> list[int]:
    return sorted(found["peer"] for found in cluster.status(node_id)["divergences"])


def compared(cluster: Cluster, node_id: int) -> int:
    return cluster.status(node_id)["result_digests"]["windows_compared"]


def divergence_metric(cluster: Cluster, node_id: int) -> list[str]:
    """The node's ``paxos_result_divergence`` samples, as ``/metrics`` prints them."""
    with urllib.request.urlopen(cluster.nodes[node_id].url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return [line for line in text.splitlines() if line.startswith("paxos_result_divergence{")]


def test_a_node_whose_state_machine_differs_is_found_by_every_node(cluster_factory) -> None:
    cluster: Cluster = cluster_factory(
        groups=(1,),
        state_machine="flavoured",
        extra_env=DIGESTS | {"PAXOS_EXTRA_APPS": "tests.fixtures.flavoured"},
        node_env={3: {"PAXOS_TEST_FLAVOUR": "salted"}},
    )
    for n in range(3 * WINDOW):
        answer = cluster.submit(1 + n % 2, 1, f"command {n}")
        assert answer["result"]["flavour"] == "plain"  # nodes 1 and 2 answered

    wait_for(lambda: divergent_peers(cluster, 1) == [3], "node 1 to find node 3's results differ")
    wait_for(lambda: divergent_peers(cluster, 3) == [1, 2], "node 3 to find it differs from both")
    wait_for(lambda: divergent_peers(cluster, 2) == [3], "node 2 to find node 3's results differ")
    assert compared(cluster, 1) >= 2  # nodes 1 and 2 compared windows, and agree

    code, body = readyz(cluster, 3)
    assert code == 503
    first, second = body["reasons"]
    assert first.startswith("group 1: the state machine's results for instances ")
    assert "differ from node 1's" in first and "not the same code or not deterministic" in first
    assert "differ from node 2's" in second
    code, body = readyz(cluster, 1)  # most of its peers agree with node 1: it serves on
    assert code == 200
    [note] = body["notes"]
    assert "differ from node 3's" in note and note.endswith(
        "(most other nodes agree with this one)"
    )
    [found] = cluster.status(1)["divergences"]
    assert (found["group_id"], found["peer"]) == (1, 3)
    assert (found["last"] - found["first"] + 1, found["last"] % WINDOW) == (WINDOW, 0)
    assert divergence_metric(cluster, 1) == [
        'paxos_result_divergence{group="1",peer="2"} 0.0',
        'paxos_result_divergence{group="1",peer="3"} 1.0',
    ]
    assert "ERROR" in cluster.tail(3, 200) and "differ from node 1's" in cluster.tail(3, 200)
    out = io.StringIO()
    urls = ",".join(node.url for node in cluster.nodes.values())
    with pytest.raises(CommandError, match=r"group\(s\) 1: a divergence alarm") as raised:
        call_command("paxos", "--url", urls, "--token", TOKEN, "status", stdout=out)
    assert raised.value.returncode == 1
    alarms = [line for line in out.getvalue().splitlines() if line.startswith("ALARM")]
    assert len(alarms) == 4  # nodes 1 and 2 about node 3, node 3 about both
    assert out.getvalue().splitlines()[-1] == (
        'group 1: node 3 differs from nodes 1, 2 (see README "Nodes whose state machines differ")'
    )
    assert alarms[0] == (
        f"ALARM 127.0.0.1:{cluster.nodes[1].port}: group 1: the state machine's results for "
        f"instances {found['first']}..{found['last']} differ from node 3's (README \"Nodes whose "
        'state machines differ")'
    )


def test_nodes_that_agree_report_nothing_through_a_crash_in_the_middle_of_a_window(
    cluster_factory,
) -> None:
    """The window in progress is stored with the applied index: a restart carries it on (a
    restart that began it again from nothing would differ from the others')."""
    cluster: Cluster = cluster_factory(groups=(1,), extra_env=DIGESTS)
    for n in range(2 * WINDOW):
        cluster.submit(1, 1, kv_put(f"k{n % 3}", str(n)))
    for _ in range(WINDOW):  # stop node 2 with a window half applied
        applied = cluster.group_states(2)[1]["applied"]
        if applied % WINDOW:
            break
        cluster.submit(1, 1, kv_put("one-more", str(applied)))
    cluster.kill_node(2)
    cluster.submit(1, 1, kv_put("while-down", "1"))
    cluster.start_node(2)
    cluster.wait_until_ready()
    for n in range(3 * WINDOW):
        cluster.submit(1 + n % 3, 1, f'{{"op": "get", "key": "k{n % 3}"}}')
    target = cluster.group_states(1)[1]["chosen_upto"]
    cluster.wait_for_applied(1, target)
    wait_for(lambda: compared(cluster, 2) >= 2, "node 2 to compare windows after its restart")
    assert all(cluster.status(node_id)["divergences"] == [] for node_id in (1, 2, 3))
    assert all(readyz(cluster, node_id)[0] == 200 for node_id in (1, 2, 3))


def test_rows_changed_behind_paxos_back_are_found_by_the_state_checks(cluster_factory) -> None:
    cluster: Cluster = cluster_factory(groups=(1,), extra_env=DIGESTS)
    for n in range(WINDOW):
        cluster.submit(1, 1, kv_put(f"k{n}", "1"))
    cluster.wait_for_applied(1, cluster.group_states(1)[1]["chosen_upto"])
    # Group 1 prefers node 1: another leader hands over to it at some moment of the test, and
    # the end checks that the odd node's restart moved no leadership (it did once, that way).
    wait_for(lambda: cluster.leader(1) == 1, "node 1, group 1's preferred leader, to lead")
    leader = cluster.leader(1)
    odd = max(node for node in cluster.nodes if node != leader)  # a follower: see the restart
    others = sorted(set(cluster.nodes) - {odd})
    with sqlite3.connect(cluster.folder / "data" / f"node{odd}.sqlite3", timeout=10) as database:
        changed = database.execute("UPDATE kvstore_entry SET value = 'x' WHERE key = 'k0'")
        assert changed.rowcount == 1
    deadline = time.monotonic() + 30
    while not divergent_peers(cluster, leader) and time.monotonic() < deadline:
        cluster.submit(leader, 1, kv_put("other", "1"))  # puts only: they do not read "k0"
        time.sleep(0.05)
    for node in others:
        wait_for(lambda n=node: divergent_peers(cluster, n) == [odd], f"node {node} to find it")
        assert readyz(cluster, node)[0] == 200
    wait_for(lambda: divergent_peers(cluster, odd) == others, f"node {odd} to find it differs")
    assert readyz(cluster, odd)[0] == 503

    # A restart empties the odd node's memory of it, not its table: found again without a
    # write (the leader checks again when a peer reconnects, and while an alarm is pending).
    time.sleep(1)  # past the checks in flight when the alarm was raised
    cluster.stop_node(odd)
    cluster.start_node(odd)
    wait_for(lambda: divergent_peers(cluster, odd) == others, f"node {odd} to be found again")
    assert readyz(cluster, odd)[0] == 503 and cluster.leader(1) == leader


def test_paxos_check_compares_the_state_now(cluster_factory) -> None:
    """On demand (``paxos check``, ``POST /api/groups/<g>/state-check/``), with the periodic
    checks off: no need to wait for a window to fill."""
    cluster: Cluster = cluster_factory(groups=(1, 2), extra_env={"PAXOS_STATE_CHECK_INTERVAL": "0"})
    for n in range(5):
        cluster.submit(1, 1, kv_put(f"k{n}", "1"))
    urls = ",".join(node.url for node in cluster.nodes.values())
    out = io.StringIO()
    call_command("paxos", "--url", urls, "--token", TOKEN, "check", stdout=out)
    assert out.getvalue().splitlines() == [
        f"group {group} at instance {instance}, seen from node 1: node 2 same, node 3 same"
        for group, instance in re.findall(r"group (\d) at instance (\d+)", out.getvalue())
    ]
    assert len(out.getvalue().splitlines()) == 2

    cluster.wait_for_applied(1, cluster.group_states(1)[1]["chosen_upto"])
    with sqlite3.connect(cluster.folder / "data" / "node3.sqlite3", timeout=10) as database:
        database.execute("DELETE FROM kvstore_entry WHERE key = 'k1'")
    with pytest.raises(CommandError, match=r"group\(s\) 1: some node's state machine differs"):
        call_command("paxos", "--url", urls, "--token", TOKEN, "check", "-g", "1", stdout=out)
    code, answer = cluster.request(3, "POST", "/api/groups/1/state-check/")
    assert code == 200
    assert (answer["node_id"], answer["peers"]) == (3, {"1": "differs", "2": "differs"})
    assert answer["state"].startswith("4 rows ") and answer["note"] is None
    assert divergent_peers(cluster, 1) == [3] and readyz(cluster, 3)[0] == 503
    assert 'paxos_result_divergence{group="1",peer="3"} 1.0' in divergence_metric(cluster, 1)

    with sqlite3.connect(cluster.folder / "data" / "node3.sqlite3", timeout=10) as database:
        database.execute(  # repaired: the row as the other nodes have it
            "INSERT INTO kvstore_entry (group_id, key, value, instance) VALUES (1, 'k1', '1', 0)"
        )
    call_command("paxos", "--url", urls, "--token", TOKEN, "check", "-g", "1", stdout=out)
    wait_for(lambda: divergent_peers(cluster, 3) == [], "node 3's alarms to clear")
    assert divergent_peers(cluster, 1) == [] and readyz(cluster, 3)[0] == 200
    # cleared: the series reads 0 (a series that vanished would go stale in the scraper)
    assert 'paxos_result_divergence{group="1",peer="3"} 0.0' in divergence_metric(cluster, 1)
    assert "agree with this node's again" in cluster.tail(1, 50)


def test_paxos_check_exits_2_when_a_node_could_not_be_compared(cluster_factory) -> None:
    """Cron must not take "not compared" (a node down, or digesting nothing) for a pass."""
    cluster: Cluster = cluster_factory(groups=(1,), node_env={3: {"PAXOS_DIGEST_WINDOW": "0"}})
    cluster.submit(1, 1, kv_put("k", "1"))
    urls = ",".join(node.url for node in cluster.nodes.values())
    out = io.StringIO()
    with pytest.raises(CommandError, match="not every node was compared") as raised:
        call_command("paxos", "--url", urls, "--token", TOKEN, "check", stdout=out)
    assert raised.value.returncode == 2
    assert out.getvalue().endswith("node 2 same, node 3 not compared\n")
    with pytest.raises(CommandError, match="a group id is a positive integer"):
        call_command("paxos", "--url", urls, "--token", TOKEN, "check", "-g", "0")
