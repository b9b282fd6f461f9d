"""Every thread of a running node is under ``SCHED_BATCH`` (``server.yield_cpu_on_wakeup``):
the loop, the storage writer and the read thread, which wake each other while holding the GIL."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path

import pytest

from consensus.management.server import yield_cpu_on_wakeup
from tests.fixtures.cluster import Cluster
from tests.fixtures.logs import consensus_logs

SCHED_BATCH = 3
"""The policy's number in ``/proc/<pid>/task/<tid>/stat`` (Linux)."""

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux scheduling policies")


def policies(pid: int) -> dict[str, int]:
    """Each thread's scheduling policy (field 41 of its stat line; the name may hold spaces),
    but for the kernel's io_uring pollers that uvloop's libuv starts (``iou-sqp-<pid>``): they
    run no Python and take no GIL."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().startswith("iou-"):
            continue
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        found[task.name] = int(fields[41 - 3])
    return found


def test_every_thread_of_a_node_yields_on_wakeup(shared_cluster: Cluster) -> None:
    key = f"sched-{uuid.uuid4().hex[:8]}"
    assert shared_cluster.request(1, "PUT", f"/api/kv/1/{key}", {"value": "v"})[0] == 200
    for node_id in (1, 2, 3):  # a linearizable read on every node starts its read thread
        assert shared_cluster.request(node_id, "GET", f"/api/kv/1/{key}")[0] == 200
    for node in shared_cluster.nodes.values():
        assert node.pid is not None
        threads = policies(node.pid)
        assert len(threads) >= 3, threads  # the loop, the writer and the read thread at least
        assert set(threads.values()) == {SCHED_BATCH}, threads


def test_a_node_starts_where_the_policy_cannot_be_set(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(*args: object) -> None:
        raise PermissionError("not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refused)
    with consensus_logs(caplog), caplog.at_level(logging.INFO, logger="consensus.runtime"):
        yield_cpu_on_wakeup()
    assert "default CPU scheduling policy" in caplog.text
