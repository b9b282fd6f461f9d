"""Throughput and latency of the API on a local 3-node cluster (until ``paxosbench`` exists).

    .venv/bin/python -m tests.api.bench_api [--seconds 3] [--runs 3]

Measures, as medians of ``--runs`` short runs each:
- REST path: ``POST /api/groups/1/commands/`` (KV puts) from a lean asyncio HTTP/1.1 keep-alive
  load generator, 1 and 32 requests in flight, connections spread over the three nodes;
- client path: ``PaxosClient.put`` from 1 and 32 threads (one client per thread);
- read latency: sequential ``GET /api/kv/1/<key>``, linearizable and ``consistency=local``.
Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from consensus.client import PaxosClient
from tests.fixtures.cluster import TOKEN, Cluster


class HttpConnection:
    """A minimal keep-alive HTTP/1.1 client (the load generator must cost less than the server)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:  # the server closed the connection: reconnect once and resend
            self.writer.close()
            self.writer = None
            return await self.request(method, path, body)
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        body = b""
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            body += await self.reader.readexactly(size + 2)
            if size == 0:
                return status, body


async def rest_commands(ports: list[int], in_flight: int, seconds: float) -> float:
    connections = [HttpConnection(ports[i % len(ports)]) for i in range(in_flight)]
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(index: int, connection: HttpConnection) -> None:
        nonlocal done
        sequence = 0
        while time.perf_counter() < stop_at:
            sequence += 1
            command = json.dumps({"op": "put", "key": f"bench{index}", "value": str(sequence)})
            body = json.dumps({"command": command}).encode()
            status, answer = await connection.request("POST", "/api/groups/1/commands/", body)
            if status != 200:
                raise RuntimeError(f"{status}: {answer[:200]!r}")
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(connections)))
    return done / (time.perf_counter() - started)


def client_puts(ports: list[int], threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop_at = time.perf_counter() + seconds

    def worker(index: int) -> None:
        first = ports[index % len(ports)]
        others = [("127.0.0.1", p) for p in ports if p != first]
        with PaxosClient("127.0.0.1", first, TOKEN, nodes=others) as client:
            sequence = 0
            while time.perf_counter() < stop_at:
                sequence += 1
                client.put(f"cbench{index}", str(sequence))
                counts[index] += 1

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


async def read_latency(port: int, consistency: str, count: int) -> float:
    connection = HttpConnection(port)
    path = "/api/kv/1/readbench" + ("?consistency=local" if consistency == "local" else "")
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        status, answer = await connection.request("GET", path)
        samples.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"{status}: {answer[:200]!r}")
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reads", type=int, default=1000)
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-api-"))
    cluster = Cluster(folder, groups=(1,), timeout_ms=1000, learning_interval_ms=1000)
    results: dict[str, list[float]] = {}
    try:
        cluster.start()
        leader = cluster.wait_for_leader(1)
        follower = next(n for n in cluster.nodes if n != leader)
        ports = [node.port for node in cluster.nodes.values()]
        cluster.request(leader, "PUT", "/api/kv/1/readbench", {"value": "x"})
        for _run in range(options.runs):  # interleaved, so drift hits every row alike
            for in_flight in (1, 32):
                rate = asyncio.run(rest_commands(ports, in_flight, options.seconds))
                results.setdefault(f"rest_commands_per_s_{in_flight}", []).append(rate)
                rate = client_puts(ports, in_flight, options.seconds)
                results.setdefault(f"client_puts_per_s_{in_flight}", []).append(rate)
            for consistency in ("linearizable", "local"):
                for role, node_id in (("leader", leader), ("follower", follower)):
                    port = cluster.nodes[node_id].port
                    p50 = asyncio.run(read_latency(port, consistency, options.reads))
                    results.setdefault(f"read_p50_ms_{consistency}_{role}", []).append(p50)
    finally:
        cluster.close()
    medians: dict[str, Any] = {name: round(statistics.median(v), 3) for name, v in results.items()}
    for name, value in medians.items():
        print(f"{name:<40} {value:>10}   runs: {[round(x, 2) for x in results[name]]}")
    print(json.dumps(medians))


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paxos_site.settings")
    django.setup()
    main()
