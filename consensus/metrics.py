"""Prometheus metrics of one node (``GET /metrics``).

Two sources, because they change in two different ways:

- **Events** (commits, proposals, elections, storage commit and request latencies, forwards) are
  counters and histograms that ``PrometheusObserver`` updates from the runtime's observer hooks,
  as they happen. A scrape cannot reconstruct them after the fact.
- **State** (role, leader, ballot, chosen and applied index, peer links and lag) is read from the
  running node by ``NodeCollector`` *at scrape time*, so a gauge can never be stale or forgotten
  by a code path that did not update it.

Everything lives in this module's own ``REGISTRY`` (one process is one node), not in
prometheus-client's global one, so importing this module twice in tests or alongside other
libraries cannot register a metric twice. The process collectors (CPU, memory, open files) are
added to it too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consensus import __version__, wire_version
from consensus.health import NodeUnavailableError, node_started, read_on_loop
from consensus.runtime import PaxosNode, get_node
from consensus.runtime.observer import NodeObserver

logger = logging.getLogger("consensus.metrics")

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

BUILD_INFO = Gauge(
    "paxos_build_info",
    "Always 1, labelled with this node's release and the peer wire format it speaks (every node "
    "of a cluster runs the same release).",
    ["version", "wire_version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(__version__, str(wire_version())).set(1)

# -- events (updated by PrometheusObserver) -------------------------------------------------------

COMMITS = Counter(
    "paxos_commits",
    "Commands applied to a group's state machine on this node (no-ops and read barriers excluded "
    "by the runtime's count).",
    ["group"],
    registry=REGISTRY,
)
PROPOSALS = Counter(
    "paxos_proposals",
    "Client commands proposed through this node (REST, client stream, dashboard), counted when "
    "they finish, by outcome: ok, duplicate, timeout, overloaded, error.",
    ["group", "outcome"],
    registry=REGISTRY,
)
ELECTIONS = Counter(
    "paxos_elections",
    "Elections this node took part in as a candidate, by result: started, won, lost.",
    ["group", "result"],
    registry=REGISTRY,
)
STEP_DOWNS = Counter(
    "paxos_step_downs",
    "Times this node stopped leading a group (higher ballot seen, quorum lost, stale).",
    ["group"],
    registry=REGISTRY,
)
LEADER_CHANGES = Counter(
    "paxos_leader_changes",
    "Times the leader this node believes in changed (including to unknown).",
    ["group"],
    registry=REGISTRY,
)
FORWARDED = Counter(
    "paxos_forwarded_commands",
    "Client commands this node forwarded to the leader over a peer link.",
    ["group"],
    registry=REGISTRY,
)
LOOP_STALLS = Counter(
    "paxos_event_loop_stalls",
    "Times this node's event loop woke more than half an election timeout late (a paused or "
    "CPU-starved process, a blocking call); each counted as one heartbeat interval of protocol "
    "time.",
    registry=REGISTRY,
)
LOOP_STALLED_SECONDS = Counter(
    "paxos_event_loop_stalled_seconds",
    "Total length of those stalls.",
    registry=REGISTRY,
)
STORAGE_COMMIT_SECONDS = Histogram(
    "paxos_storage_commit_seconds",
    "Duration of one group-commit transaction (persist votes, apply chosen commands).",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
STORAGE_COMMIT_READIES = Counter(
    "paxos_storage_commit_readies",
    "Replica outputs (Readies) written by group-commit transactions; divided by the "
    "transaction count it is the batching factor.",
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "paxos_request_seconds",
    "Latency of client commands submitted to this node, from submit to result, by outcome.",
    ["group", "outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)


class PrometheusObserver(NodeObserver):
    """Runtime hooks -> counters and histograms. Cheap and never raises (runs in the Ready loop)."""

    def __init__(self) -> None:
        self._request_children: dict[tuple[int, str], tuple[Any, Any]] = {}

    def role_changed(self, group_id: int, old: str, new: str, ballot: str) -> None:
        group = str(group_id)
        # Roles are sampled once per loop iteration, so a whole election can happen between two
        # samples (follower -> leader): count what must have happened.
        if new == "candidate" or (new == "leader" and old != "candidate"):
            ELECTIONS.labels(group, "started").inc()
        if new == "leader":
            ELECTIONS.labels(group, "won").inc()
        elif old == "candidate":
            ELECTIONS.labels(group, "lost").inc()
        if old == "leader":
            STEP_DOWNS.labels(group).inc()

    def leader_changed(self, group_id: int, leader: int | None) -> None:
        LEADER_CHANGES.labels(str(group_id)).inc()

    def storage_committed(self, seconds: float, readies: int, instances_applied: int) -> None:
        STORAGE_COMMIT_SECONDS.observe(seconds)
        STORAGE_COMMIT_READIES.inc(readies)

    def commands_applied(self, group_id: int, commands: int, applied: int) -> None:
        COMMITS.labels(str(group_id)).inc(commands)

    def request_finished(self, group_id: int, seconds: float, outcome: str) -> None:
        # Once per command: the labelled children are looked up once (``labels`` costs more
        # than the increment itself).
        key = (group_id, outcome)
        children = self._request_children.get(key)
        if children is None:
            labels = (str(group_id), outcome)
            children = PROPOSALS.labels(*labels), REQUEST_SECONDS.labels(*labels)
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def forwarded(self, group_id: int, commands: int) -> None:
        FORWARDED.labels(str(group_id)).inc(commands)

    def loop_stalled(self, seconds: float) -> None:
        LOOP_STALLS.inc()
        LOOP_STALLED_SECONDS.inc(seconds)


# -- state (read from the node at scrape time) ---------------------------------------------------

ROLES = ("follower", "candidate", "leader")


def _ballot_parts(text: str) -> tuple[int, int]:
    """``"3.2"`` -> ``(3, 2)``; anything else -> ``(0, 0)``."""
    round_text, _, node_text = str(text).partition(".")
    try:
        return int(round_text), int(node_text or 0)
    except ValueError:
        return 0, 0


class NodeCollector(Collector):
    """Gauges (and transport counters) read from ``get_node()`` when Prometheus scrapes.

    The node's state is snapshotted on the event loop that runs the node (``read_on_loop``): the
    ``/metrics`` view renders on a worker thread, which hops onto the loop for the read, so the
    collector reads a consistent state without locks (and the rendering stays off the loop).
    """

    def describe(self) -> list[Metric]:
        return []  # the families depend on the node; nothing to check for duplicates up front

    def collect(self) -> Iterator[Metric]:
        node = get_node()
        up = GaugeMetricFamily(
            "paxos_node_up", "1 while this process runs a started Paxos node.", labels=["node"]
        )
        if node is None:
            up.add_metric(["0"], 0)
            yield up
            return
        state = None
        try:
            state = read_on_loop(node, _node_state)
        except NodeUnavailableError as error:
            logger.warning("node %s: no metrics of the node: %s", node.node_id, error)
        except Exception:  # a scrape must not fail because one structure changed shape
            logger.exception("node %s: reading the node for metrics failed", node.node_id)
        node_label = str(node.node_id)
        if state is None:
            up.add_metric([node_label], 0)
            yield up
            return
        up.add_metric([node_label], 1)
        yield up
        try:
            yield from self._collect(*state)
        except Exception:
            logger.exception("node %s: collecting metrics failed", node.node_id)

    def _collect(
        self, status: dict[str, Any], peer_chosen_upto: dict[int, dict[int, int]]
    ) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "paxos_uptime_seconds",
            "Seconds since the node started.",
            value=status["uptime_seconds"],
        )
        role = GaugeMetricFamily(
            "paxos_role", "1 for this node's current role in the group.", labels=["group", "role"]
        )
        is_leader = GaugeMetricFamily(
            "paxos_is_leader", "1 if this node leads the group.", labels=["group"]
        )
        leader = GaugeMetricFamily(
            "paxos_leader_node", "The leader this node believes in (0: unknown).", labels=["group"]
        )
        ballot_round = GaugeMetricFamily(
            "paxos_ballot_round",
            "Round of the ballot this node leads or campaigns with, else of the leader's ballot.",
            labels=["group"],
        )
        ballot_node = GaugeMetricFamily(
            "paxos_ballot_node", "Node id part of that ballot.", labels=["group"]
        )
        promised_round = GaugeMetricFamily(
            "paxos_promised_round", "Round of the ballot this acceptor promised.", labels=["group"]
        )
        chosen = GaugeMetricFamily(
            "paxos_chosen_index", "Contiguous chosen prefix of the group's log.", labels=["group"]
        )
        applied = GaugeMetricFamily(
            "paxos_applied_index", "Last instance applied to the state machine.", labels=["group"]
        )
        pending = GaugeMetricFamily(
            "paxos_pending_commands", "Client commands waiting to be chosen.", labels=["group"]
        )
        rebuilding = GaugeMetricFamily(
            "paxos_rebuilding",
            "1 while this node's database is new and it does not vote in the group yet.",
            labels=["group"],
        )
        peer_chosen = GaugeMetricFamily(
            "paxos_peer_chosen_index",
            "How far each peer is known to have chosen (from its messages; absent if unknown).",
            labels=["group", "peer"],
        )
        peer_lag = GaugeMetricFamily(
            "paxos_peer_lag_instances",
            "Instances a peer is known to be behind this node's chosen index.",
            labels=["group", "peer"],
        )
        diverged = GaugeMetricFamily(
            "paxos_result_divergence",
            "1 while the peer's state machine gave other results than this node's for the same "
            "window of the group's log (an alarm: the machines differ; see /api/status/), else 0.",
            labels=["group", "peer"],
        )
        # Every (group, peer) pair has a series, 0 without an alarm: a series that appeared
        # only with its alarm would vanish when it cleared, and a scraper would keep its last 1
        # until it went stale ("== 1 for 5m" rules would see no data instead of a plain 0).
        alarms = {(found["group_id"], found["peer"]) for found in status.get("divergences") or ()}
        peers = [peer["node_id"] for peer in (status.get("peers") or {}).get("peers", [])]
        for group in status["groups"]:
            label = str(group["group_id"])
            for name in ROLES:
                role.add_metric([label, name], 1 if group["role"] == name else 0)
            is_leader.add_metric([label], 1 if group["role"] == "leader" else 0)
            leader.add_metric([label], group["leader"] or 0)
            b_round, b_node = _ballot_parts(group["ballot"])
            ballot_round.add_metric([label], b_round)
            ballot_node.add_metric([label], b_node)
            promised_round.add_metric([label], _ballot_parts(group["promised"])[0])
            chosen.add_metric([label], group["chosen_upto"])
            applied.add_metric([label], group["applied"])
            pending.add_metric([label], group["pending"])
            rebuilding.add_metric([label], 1 if group.get("rebuilding") else 0)
            alarmed = {peer for group_id, peer in alarms if group_id == group["group_id"]}
            for peer_id in sorted(set(peers) | alarmed):  # an alarm has a series, listed or not
                diverged.add_metric([label, str(peer_id)], 1 if peer_id in alarmed else 0)
            known = peer_chosen_upto.get(group["group_id"], {})
            for peer_id, upto in sorted(known.items()):
                peer_chosen.add_metric([label, str(peer_id)], upto)
                peer_lag.add_metric([label, str(peer_id)], max(0, group["chosen_upto"] - upto))
        yield from (role, is_leader, leader, ballot_round, ballot_node, promised_round)
        yield from (chosen, applied, pending, rebuilding, peer_chosen, peer_lag, diverged)
        yield from _peer_metrics(status.get("peers") or {})


def _node_state(node: PaxosNode) -> tuple[dict[str, Any], dict[int, dict[int, int]]] | None:
    """What the gauges need, copied on the node's event loop; None while the node starts."""
    if not node_started(node):
        return None
    status = node.status()
    peer_chosen_upto = {
        group_id: dict(replica.peer_chosen_upto) for group_id, replica in node.replicas.items()
    }
    return status, peer_chosen_upto


def _peer_metrics(transport: dict[str, Any]) -> Iterator[Metric]:
    connected = GaugeMetricFamily(
        "paxos_peer_connected",
        "1 while the peer link is up; direction out = we can send, in = it can send to us.",
        labels=["peer", "direction"],
    )
    sent = CounterMetricFamily(
        "paxos_peer_messages_sent", "Protocol messages sent to the peer.", labels=["peer"]
    )
    received = CounterMetricFamily(
        "paxos_peer_messages_received", "Protocol messages received from the peer.", labels=["peer"]
    )
    reconnects = CounterMetricFamily(
        "paxos_peer_reconnects", "Outbound links re-established after a drop.", labels=["peer"]
    )
    failures = CounterMetricFamily(
        "paxos_peer_connect_failures", "Failed outbound connection attempts.", labels=["peer"]
    )
    dropped = CounterMetricFamily(
        "paxos_peer_dropped_messages",
        "Messages dropped on the link, by reason (overflow, unsendable, inbound).",
        labels=["peer", "reason"],
    )
    for peer in transport.get("peers", []):
        label = str(peer["node_id"])
        connected.add_metric([label, "out"], 1 if peer.get("connected_out") else 0)
        connected.add_metric([label, "in"], 1 if peer.get("connected_in") else 0)
        sent.add_metric([label], peer.get("messages_sent", 0))
        received.add_metric([label], peer.get("messages_received", 0))
        reconnects.add_metric([label], peer.get("reconnects", 0))
        failures.add_metric([label], peer.get("connect_failures", 0))
        for reason in ("overflow", "unsendable", "inbound"):
            dropped.add_metric([label, reason], peer.get(f"dropped_{reason}", 0))
    yield from (connected, sent, received, reconnects, failures, dropped)


REGISTRY.register(NodeCollector())


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
