"""A client stream whose client asks and does not read (``consensus/api/stream.py``): the node
stops answering and reading it instead of holding every answer, stays responsive, and still
answers everything once the client reads.

Two frames of 1,000 gets of a 200 KB value used to take a node from about 115 MB to 3.9 GB and
stall its loop for 15 s (answers encoded and queued for a client that never read them)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
import websockets

from tests.fixtures.cluster import TOKEN, Cluster

pytestmark = pytest.mark.e2e

VALUE = "v" * 200_000
QUERIES = 2_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def healthz_seconds(port: int) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        assert answer.status == 200
    return time.monotonic() - started


def test_a_client_that_does_not_read_costs_the_node_little(shared_cluster: Cluster) -> None:
    key = f"big-{uuid.uuid4().hex[:8]}"
    code, answer = shared_cluster.request(1, "PUT", f"/api/kv/1/{key}", {"value": VALUE})
    assert code == 200, answer
    node = shared_cluster.nodes[1]
    assert node.process is not None
    before = rss_mb(node.process.pid)

    async def scenario() -> tuple[float, float, list[dict]]:
        url = f"ws://127.0.0.1:{node.port}/ws/client/"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with websockets.connect(
            url, additional_headers=headers, max_size=None, max_queue=1
        ) as ws:
            await ws.recv()  # hello
            query = orjson.dumps({"op": "get", "key": key}).decode()
            for frame in range(QUERIES // 1_000):
                requests = [
                    {
                        "id": frame * 1_000 + i,
                        "op": "query",
                        "group": 1,
                        "query": query,
                        "consistency": "local",
                    }
                    for i in range(1_000)
                ]
                await ws.send(orjson.dumps(requests).decode())
            slowest = 0.0
            for _ in range(6):  # 3 s of not reading
                await asyncio.sleep(0.5)
                slowest = max(slowest, await asyncio.to_thread(healthz_seconds, node.port))
            grown = rss_mb(node.process.pid) - before
            answers: list[dict] = []
            while len(answers) < QUERIES:
                answers += orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            return grown, slowest, answers

    grown, slowest, answers = asyncio.run(scenario())
    assert sorted(answer["id"] for answer in answers) == list(range(QUERIES))
    assert all(answer["ok"] and answer["result"]["value"] == VALUE for answer in answers)
    assert slowest < 1.0, f"/healthz took {slowest:.2f} s"
    assert grown < 150, f"the node grew by {grown:.0f} MB"
