"""``manage.py paxosbench``: throughput and latency of a cluster (started here or given by URL),
optionally side by side with etcd, by the same load generator in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from django.core.management.base import BaseCommand, CommandError, CommandParser

from consensus import version_text
from consensus.bench.cpu import cpu_meter
from consensus.bench.loadgen import Workload, run
from consensus.bench.plot import write_plot
from consensus.bench.report import compare_with_etcd, median_of_runs, table
from consensus.bench.targets import EtcdTarget, PaxosClientTarget, PaxosRestTarget, Target
from consensus.config import ClusterConfig, ConfigError, load_config, write_demo_config
from consensus.management.processes import (
    NodeProcesses,
    start_nodes,
    stop_nodes,
    wait_until_serving,
)

PLOT_FORMATS = ("png", "svg", "pdf")


class Command(BaseCommand):
    help = (
        "Benchmark the KV API: N closed-loop clients for a fixed time after a warm-up; prints "
        "ops/s, p50/p90/p99/max latency and the nodes' CPU per operation as a table (and JSON "
        "with --json). Without --urls it starts a local cluster of --nodes nodes on free ports "
        "and stops it afterwards. --clients, --groups and --value-size take comma-separated "
        "lists and sweep every combination (--plot draws them). With --etcd URL the same "
        "workload also runs against etcd's JSON gateway, interleaved, and each row's vs_etcd is "
        "its ops/s over etcd's."
    )

    def get_version(self) -> str:
        return version_text()  # --version: this release, not Django's

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--urls", help="comma-separated node URLs of a running cluster")
        parser.add_argument("--token", help="API token for --urls (default: from --config)")
        parser.add_argument("--config", help="cluster config of --urls (for the token)")
        parser.add_argument("--nodes", type=int, default=3, help="size of the local cluster (3)")
        parser.add_argument(
            "--groups",
            default="1",
            help="groups to spread keys over; comma-separated counts run one after another, "
            "each on a local cluster of its own (1)",
        )
        parser.add_argument(
            "--clients", default="1,32", help="concurrent clients, comma-separated (1,32)"
        )
        parser.add_argument("--duration", type=float, default=5.0, help="seconds measured (5)")
        parser.add_argument("--warmup", type=float, default=1.0, help="seconds not measured (1)")
        parser.add_argument(
            "--value-size", default="100", help="bytes per value, comma-separated (100)"
        )
        parser.add_argument("--reads", type=float, default=0.0, help="fraction of gets (0.0)")
        parser.add_argument("--keys", type=int, default=1000, help="distinct keys (1000)")
        parser.add_argument(
            "--consistency",
            choices=("linearizable", "local"),
            default="linearizable",
            help="how gets read (with --reads): linearizable goes through the leader and sees "
            "every acknowledged write; local answers from the node's own copy, faster but maybe "
            "stale (for etcd: a serializable read) (default: linearizable)",
        )
        parser.add_argument(
            "--path",
            choices=("rest", "client", "both"),
            default="rest",
            help="drive the REST API with aiohttp (rest), the pipelining asyncio client "
            "AsyncPaxosClient over the node's websocket stream, one client shared by all "
            "(client), or both (default: rest)",
        )
        parser.add_argument("--etcd", help="comma-separated etcd client URLs to compare with")
        parser.add_argument(
            "--etcd-pids",
            help="comma-separated PIDs of the etcd members, to report their CPU per operation "
            "as for the local cluster's nodes (scripts/etcd-cluster.sh pids prints them)",
        )
        parser.add_argument("--runs", type=int, default=1, help="repeat and report medians (1)")
        parser.add_argument(
            "--server",
            choices=("daphne", "uvicorn"),
            help="ASGI server of the local cluster's nodes (default: $PAXOS_SERVER, else daphne)",
        )
        parser.add_argument(
            "--leader",
            type=int,
            help="node of the local cluster that every group prefers as its leader (default: "
            "spread, group g on node g); one node leading all groups does less work in all "
            "when the nodes share one machine's cores",
        )
        parser.add_argument(
            "--keep-data",
            action="store_true",
            help="keep each local cluster's folder (config, node logs, databases) instead of "
            "deleting it after the run; it is always kept when the run fails",
        )
        parser.add_argument(
            "--json",
            help="also write the results to this JSON file ('-': to stdout, and the table and "
            "progress lines to stderr)",
        )
        parser.add_argument(
            "--plot",
            help="also draw ops/s against every swept dimension (clients, groups, value size) "
            "into this image file (PNG, SVG or PDF, by its extension)",
        )

    writes = 0
    """Writes acknowledged by this service (not etcd) in the current cluster's runs, warm-ups
    included."""

    def handle(self, *args: Any, **options: Any) -> None:
        json_out = None
        if options["json"] == "-":  # JSON alone on stdout, for a pipe; people read stderr
            json_out, self.stdout = self.stdout, self.stderr
        clients = _numbers(options["clients"], "--clients", "1,32,128")
        group_counts = _numbers(options["groups"], "--groups", "1,2,4")
        value_sizes = _numbers(options["value_size"], "--value-size", "100,1000,10000")
        if options["runs"] < 1 or options["duration"] <= 0:
            raise CommandError("--runs and --duration must be positive")
        if not 0.0 <= options["reads"] <= 1.0:
            raise CommandError("--reads is a fraction between 0 and 1")
        etcd_pids = _pids(options["etcd_pids"])
        if options["urls"] is not None:
            _urls(options["urls"])
        elif options["nodes"] < 1:
            raise CommandError(f"--nodes takes a positive number, not {options['nodes']}")
        for option in ("config", "token"):
            if options[option] and not options["urls"]:
                raise CommandError(
                    f"--{option} is for the cluster of --urls; without --urls paxosbench "
                    "starts a cluster of its own"
                )
        leader = options["leader"]
        if leader is not None and options["urls"]:
            raise CommandError(
                "--leader is for a local cluster; with --urls, name each group's "
                '"leader" in that cluster\'s config'
            )
        if leader is not None and not 1 <= leader <= options["nodes"]:
            raise CommandError(
                f"--leader {leader} is not a node of the {options['nodes']}-node local cluster"
            )
        for option in ("json", "plot"):
            if options[option] and not Path(options[option]).resolve().parent.is_dir():
                raise CommandError(f"--{option}: the folder of {options[option]} does not exist")
        if options["plot"]:  # before the run, not after it: matplotlib only knows these
            suffix = Path(options["plot"]).suffix.lower().lstrip(".")
            if suffix not in PLOT_FORMATS:
                raise CommandError(
                    f"--plot: {options['plot']} must end in "
                    f"{', '.join('.' + name for name in PLOT_FORMATS)} (the image format)"
                )
        rows: list[dict[str, object]] = []
        clusters: list[dict[str, Any]] = []
        for group_count in group_counts:
            groups = list(range(1, group_count + 1))
            self.writes = 0
            with self._cluster(options, groups) as (urls, token, children, folder):
                targets = [Recorded(target) for target in _targets(urls, token, groups, options)]
                meters = {
                    "paxos": cpu_meter([process.pid for process in (children or {}).values()]),
                    "etcd": cpu_meter(etcd_pids),
                }
                measured = self._measure(targets, clients, value_sizes, options, meters)
                rows += [{**row, "groups": group_count} for row in measured]
                if children and folder:
                    clusters.append(
                        {
                            "groups": group_count,
                            **node_resources(children, folder, self.writes),
                            **leaders_and_batching(urls[0], token, self.writes),
                        }
                    )
        rows = compare_with_etcd(rows, etcd=EtcdTarget.name)
        self.stdout.write(table(rows))
        for resources in clusters:
            self.stdout.write(
                f"local cluster with {resources['groups']} group(s) at the end: RSS MB per node "
                f"{resources['rss_mb']}, data MB per node {resources['data_mb']}, "
                f"writes chosen {resources['writes']} in {resources['instances']} instances "
                f"({resources['commands_per_instance']} per instance)"
            )
        if options["json"]:
            # clusters: every local one (none with --urls); nodes: the last one's, as before sweeps
            nodes = clusters[-1] if clusters else None
            document = {"rows": rows, "nodes": nodes, "clusters": clusters}
            if json_out is not None:
                json_out.write(json.dumps(document, indent=2))
            else:
                Path(options["json"]).write_text(json.dumps(document, indent=2) + "\n")
                self.stdout.write(f"wrote {options['json']}")
        if options["plot"]:
            title = _plot_title(options, clients, group_counts, value_sizes)
            write_plot(rows, options["plot"], title=title)
            self.stdout.write(f"wrote {options['plot']}")

    @contextlib.contextmanager
    def _cluster(
        self, options: dict[str, Any], groups: list[int]
    ) -> Iterator[tuple[list[str], str, NodeProcesses | None, Path | None]]:
        """The cluster to measure: ``--urls``, or a local one with ``groups``, started here and
        stopped (by PID) on the way out, whatever happens in between."""
        if options["urls"]:
            urls = _urls(options["urls"])
            token = options["token"] or self._token_from(options["config"])
            _check_groups(urls[0], token, groups)
            yield urls, token, None, None
            return
        folder = Path(tempfile.mkdtemp(prefix="paxosbench-"))
        config = load_config(
            write_demo_config(
                folder, options["nodes"], None, groups=groups, leader=options["leader"]
            )
        )
        self.stdout.write(
            f"starting {options['nodes']} nodes with {len(groups)} group(s) in {folder} ..."
        )
        children = start_nodes(config, folder, dict(os.environ), server=options["server"])
        failed = True
        try:
            wait_until_serving(config, children, folder)
            _wait_for_leaders(config)
            yield [node.http_url for node in config.nodes], config.api_tokens[0], children, folder
            failed = False
        finally:
            stop_nodes(children)
            if failed or options["keep_data"]:
                where = self.stderr if failed else self.stdout
                where.write(f"the local cluster's config, logs and data are kept in {folder}")
            else:  # a long run leaves gigabytes of SQLite files
                shutil.rmtree(folder, ignore_errors=True)

    def _measure(
        self,
        targets: list[Recorded],
        clients: list[int],
        value_sizes: list[int],
        options: dict[str, Any],
        meters: dict[str, Any],
    ) -> list[dict[str, object]]:
        results: dict[tuple[str, int, int], list[dict[str, object]]] = {}
        for repetition in range(options["runs"]):
            for count in clients:
                for value_size in value_sizes:
                    workload = Workload(
                        clients=count,
                        duration=options["duration"],
                        warmup=options["warmup"],
                        value_size=value_size,
                        read_fraction=options["reads"],
                        keys=options["keys"],
                    )
                    for target in targets:  # interleaved: both systems see the same noise
                        etcd = isinstance(target.target, EtcdTarget)
                        meter = meters["etcd" if etcd else "paxos"]
                        target.reset()
                        outcome = asyncio.run(run(target, workload, seed=repetition, cpu=meter))
                        target.raise_if_all_failed()
                        if target.failed:
                            self.stderr.write(target.failures())
                        if not etcd:
                            self.writes += outcome.writes
                        summary = outcome.summary()
                        results.setdefault((target.name, count, value_size), []).append(summary)
                        self.stdout.write(
                            f"run {repetition + 1}: {target.name} clients={count} "
                            f"value_size={value_size} {summary['ops_per_s']} ops/s "
                            f"p50={summary['p50_ms']} ms"
                        )
        return [median_of_runs(runs) for runs in results.values()]

    def _token_from(self, config_path: str | None) -> str:
        if not config_path:
            raise CommandError("with --urls give --token or --config")
        try:
            config = load_config(config_path)
        except ConfigError as error:
            raise CommandError(f"--config: {error}") from None
        if not config.api_tokens:
            raise CommandError(f"{config_path} has no apiTokens")
        return config.api_tokens[0]


class Recorded:
    """A target that counts its requests and keeps the first error: the load generator counts
    failures but forgets why, and a run where every request failed (a wrong --urls, --token or
    --etcd, groups the cluster does not have) must end with that reason, not with 0 ops/s; a run
    where some failed says so, with the first one's reason, next to its rate."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.name = target.name
        self.reset()

    def reset(self) -> None:
        self.succeeded = 0
        self.failed = 0
        self.first_error: BaseException | None = None

    async def put(self, session: Any, key: str, value: str) -> None:
        await self._counted(self.target.put(session, key, value))

    async def get(self, session: Any, key: str) -> None:
        await self._counted(self.target.get(session, key))

    async def _counted(self, request: Awaitable[Any]) -> None:
        try:
            await request
        except Exception as error:
            self._failure(error)
            raise
        self.succeeded += 1

    async def close(self) -> None:
        close = getattr(self.target, "close", None)
        if close is not None:
            await close()

    def _failure(self, error: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = error

    def failures(self) -> str:
        """One line: how many requests of the run failed, and why the first one did."""
        return (
            f"{self.name}: {self.failed} of {self.failed + self.succeeded} requests failed; "
            f"first error: {describe_error(self.first_error or RuntimeError('unknown'))}"
        )

    def raise_if_all_failed(self) -> None:
        if self.succeeded or self.first_error is None:
            return
        raise CommandError(
            f"{self.name}: all {self.failed} requests failed; first error: "
            f"{describe_error(self.first_error)}"
        )


def describe_error(error: BaseException) -> str:
    """One line for a failed request, with the likely mistake behind the usual ones."""
    text = str(error).strip() or type(error).__name__
    hints = {
        "HTTP 401": "unauthorized: a wrong --token (or --config)?",
        "HTTP 403": "forbidden: a wrong --token (or --config)?",
        "HTTP 404": "not found: does the cluster have every group of --groups?",
    }
    if text in hints:
        return f"{text} {hints[text]}"
    if isinstance(error, aiohttp.ClientConnectionError | OSError):
        return f"{text} (is the URL right and the server up?)"
    return text


def node_resources(children: NodeProcesses, folder: Path, writes: int) -> dict[str, Any]:
    """What the local cluster's nodes hold after the runs: resident memory (Linux ``/proc``),
    the size of each node's SQLite files, and ``writes``: how many the benchmark made to it."""
    rss = {}
    for node_id, process in sorted(children.items()):
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            kilobytes = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
            rss[node_id] = round(kilobytes / 1024, 1)
        except (OSError, StopIteration, ValueError):
            rss[node_id] = None
    data: dict[str, float] = {}  # SQLite: node1.sqlite3 and its -wal/-shm; empty on PostgreSQL
    for path in sorted((folder / "dataDir").rglob("*")):
        if path.is_file():
            node = path.name.split(".")[0]
            data[node] = data.get(node, 0.0) + path.stat().st_size / 2**20
    data = {node: round(size, 1) for node, size in data.items()}
    return {"rss_mb": rss, "data_mb": data, "writes": writes}


def leaders_and_batching(url: str, token: str, writes: int) -> dict[str, Any]:
    """How many Paxos instances the cluster's groups have chosen, and ``writes`` (the benchmark's,
    warm-ups included) per instance: the leaders' batching factor. Every instance costs its
    messages, rows and turns on every node, so this says how far those costs were shared.
    ``leaders`` says which node led each group at the end."""
    groups = _status(url, token)["groups"]
    instances = sum(group["chosen_upto"] for group in groups)
    per_instance = round(writes / instances, 1) if instances else None
    return {
        "instances": instances,
        "commands_per_instance": per_instance,
        "leaders": {group["group_id"]: group["leader"] for group in groups},
    }


def _check_groups(url: str, token: str, groups: list[int]) -> None:
    """Refuse ``--groups`` beyond the groups of the cluster of ``--urls``, or groups that do not
    run the ``kv`` state machine (the only one the benchmark's puts and gets are for): the
    requests to those would fail while the others' rate went into the table, and the run would
    end with a plausible number. A node that cannot be asked is left to the run, which says why."""
    try:
        present = {group["group_id"] for group in _status(url, token)["groups"]}
    except (OSError, ValueError, KeyError, TypeError):
        return
    missing = ", ".join(str(group) for group in groups if group not in present)
    if missing:
        has = ", ".join(str(group) for group in sorted(present))
        raise CommandError(
            f"--groups {len(groups)} uses groups 1..{len(groups)}, but the cluster at {url} has "
            f"no group {missing} (it has {has})"
        )
    try:
        machines = {
            group["group_id"]: group["state_machine"]
            for group in _get_json(url, token, "/api/groups/")
        }
    except (OSError, ValueError, KeyError, TypeError):
        return
    others = [f"group {g} runs {machines[g]!r}" for g in groups if machines.get(g, "kv") != "kv"]
    if others:
        raise CommandError(
            f"--groups {len(groups)}: at {url} {', '.join(others)}, not the 'kv' state machine "
            "(paxosbench puts and gets keys)"
        )


def _status(url: str, token: str) -> dict[str, Any]:
    """A node's ``/api/status/``."""
    return _get_json(url, token, "/api/status/")


def _get_json(url: str, token: str, path: str) -> Any:
    """A node's answer to ``GET path``, decoded."""
    request = urllib.request.Request(f"{url}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _targets(
    urls: list[str], token: str, groups: list[int], options: dict[str, Any]
) -> list[Target]:
    """What ``--path`` and ``--etcd`` ask to drive, in the order the runs interleave them."""
    consistency = options["consistency"]
    targets: list[Target] = []
    if options["path"] in ("rest", "both"):
        targets.append(PaxosRestTarget(urls, token, groups, consistency=consistency))
    if options["path"] in ("client", "both"):
        targets.append(PaxosClientTarget(urls, token, groups, consistency=consistency))
    if options["etcd"]:
        etcd_urls = [u.strip().rstrip("/") for u in options["etcd"].split(",")]
        targets.append(EtcdTarget(etcd_urls, consistency=consistency))
    return targets


def _numbers(text: str, option: str, example: str) -> list[int]:
    """A comma-separated list of positive whole numbers, e.g. ``--clients 1,32,128``."""
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"{option} takes numbers, e.g. {example}, not {text!r}") from None
    if not numbers or min(numbers) < 1:
        raise CommandError(f"{option} takes positive numbers, e.g. {example}, not {text!r}")
    return numbers


def _plot_title(
    options: dict[str, Any], clients: list[int], group_counts: list[int], value_sizes: list[int]
) -> str:
    """What the plot's lines have in common: workload, the dimensions not swept, the runs."""
    reads = options["reads"]
    parts = [f"{reads:.0%} {options['consistency']} reads" if reads else "puts"]
    if len(clients) == 1:
        parts.append(f"{clients[0]} client{'' if clients[0] == 1 else 's'}")
    if len(value_sizes) == 1:
        parts.append(f"{value_sizes[0]}-byte values")
    if len(group_counts) == 1:
        parts.append(f"{group_counts[0]} group{'' if group_counts[0] == 1 else 's'}")
    parts.append(f"{options['nodes']} nodes" if not options["urls"] else "given cluster")
    runs = f"median of {options['runs']} runs" if options["runs"] > 1 else "1 run"
    return f"paxosbench: {', '.join(parts)}; {runs} of {options['duration']:g} s each"


def _urls(text: str) -> list[str]:
    """``--urls``: the nodes' base URLs, comma-separated (a CommandError for anything else: a
    word without a scheme made every request fail with a URL the user never wrote)."""
    urls = [url.strip().rstrip("/") for url in text.split(",") if url.strip()]
    if not urls:
        raise CommandError("--urls names no URL, e.g. http://127.0.0.1:8001,http://127.0.0.1:8002")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise CommandError(f"--urls takes http:// or https:// URLs, not {url!r}")
    return urls


def _pids(text: str | None) -> list[int]:
    try:
        return [int(pid) for pid in (text or "").split(",") if pid.strip()]
    except ValueError:
        raise CommandError(f"--etcd-pids takes process ids, e.g. 4242,4243, not {text!r}") from None


def _wait_for_leaders(config: ClusterConfig, timeout: float = 30.0) -> None:
    """Until every group is led by its preferred node: whoever wins the first election hands
    over to it about a second later, and that hand-over must not fall into a measurement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = _status(config.nodes[0].http_url, config.api_tokens[0])
            if all(
                group["leader"] == config.preferred_leader(group["group_id"])
                for group in status["groups"]
            ):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise CommandError("the local cluster's groups were not led by their preferred nodes in time")
