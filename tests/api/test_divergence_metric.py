"""``paxos_result_divergence{group,peer}`` (``consensus.metrics.NodeCollector``) as a scraper sees
it before, during and after a divergence alarm, with the node's status made up: every (group,
peer) pair has a series, 1 while its alarm is raised and 0 otherwise, so a cleared alarm reads 0
instead of vanishing (a vanished series keeps its last 1 in the scraper until it goes stale)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consensus import metrics


class FakeNode:
    """A node of groups 1 and 2 with peers 2 and 3, and the alarms it has now."""

    node_id = 1

    def __init__(self) -> None:
        self.divergences: list[tuple[int, int]] = []
        """(group, peer) of the alarms the node has now."""

    def status(self) -> dict[str, Any]:
        group = {"role": "follower", "leader": 2, "ballot": "(1, 2)", "promised": "(1, 2)"}
        return {
            "uptime_seconds": 1.0,
            "groups": [
                {**group, "group_id": g, "chosen_upto": 5, "applied": 5, "pending": 0}
                for g in (1, 2)
            ],
            "peers": {"peers": [{"node_id": 2}, {"node_id": 3}]},
            "divergences": [{"group_id": g, "peer": p} for g, p in self.divergences],
        }


@pytest.fixture
def scrape(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``scrape(node)``: ``{(group, peer): value}`` of ``paxos_result_divergence``, with
    ``node`` as the running node."""
    registry = CollectorRegistry()
    registry.register(metrics.NodeCollector())
    monkeypatch.setattr(metrics, "read_on_loop", lambda node, _read: (node.status(), {}))

    def scrape(node: FakeNode) -> dict[tuple[str, str], float]:
        monkeypatch.setattr(metrics, "get_node", lambda: node)
        text = generate_latest(registry).decode()
        return {
            (sample.labels["group"], sample.labels["peer"]): sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "paxos_result_divergence"
            for sample in family.samples
        }

    return scrape


def test_every_pair_has_a_series_that_reads_1_only_while_its_alarm_is_raised(scrape: Any) -> None:
    node = FakeNode()
    none = {(g, p): 0.0 for g in ("1", "2") for p in ("2", "3")}
    assert scrape(node) == none
    node.divergences = [(1, 3)]
    assert scrape(node) == {**none, ("1", "3"): 1.0}
    node.divergences = []  # cleared (a later window ending with a state check agreed)
    assert scrape(node) == none
    node.divergences = [(2, 2), (1, 3)]
    assert scrape(node) == {**none, ("1", "3"): 1.0, ("2", "2"): 1.0}
