"""What one turn of a node's storage writer costs, without the network or the event loop.

A turn persists the votes and chosen marks of every group that had something to write and
applies the chosen commands to the state machines, in one transaction (``PaxosNode._commit``).
This repeats such a turn on a fresh SQLite file (WAL, as a node's) and prints the CPU and wall
time per turn and per command (medians of interleaved rounds), so that the fixed price of a turn
and the price of one more command can be told apart (docs/performance.md). Usage, from the
project root:

    .venv/bin/python scripts/storage_turn_bench.py --groups 4 --commands 1,8,32
    .venv/bin/python scripts/storage_turn_bench.py --groups 1 --commands 1 --sync NORMAL
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=4, help="groups written per turn (4)")
    parser.add_argument(
        "--commands", default="1,8,32", help="KV puts per group and turn, comma-separated (1,8,32)"
    )
    parser.add_argument("--turns", type=int, default=300, help="turns measured per round (300)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds over every --commands; medians (3)"
    )
    parser.add_argument(
        "--sync",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="SQLite synchronous mode: FULL is a vote's (an fsync per commit), NORMAL none",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="paxos-turn-bench-"))
    try:
        os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'bench.sqlite3'}"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paxos_site.settings")
        sys.path.insert(0, str(PROJECT))
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        counts = [int(text) for text in args.commands.split(",")]
        samples: dict[int, list[tuple[float, float]]] = {count: [] for count in counts}
        for _round in range(args.rounds):  # interleaved: the machine's noise hits every count
            for count in counts:
                samples[count].append(_measure(args.groups, count, args.turns, args.sync))
        for count in counts:
            cpu = statistics.median(cpu for cpu, _wall in samples[count])
            wall = statistics.median(wall for _cpu, wall in samples[count])
            print(
                f"{args.groups} group(s) x {count} command(s), synchronous={args.sync}: "
                f"per turn {cpu * 1e6:.0f} us CPU, {wall * 1e6:.0f} us wall; "
                f"per command {cpu / (args.groups * count) * 1e6:.1f} us CPU "
                f"(medians of {args.rounds} rounds)"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _measure(groups: int, commands: int, turns: int, sync: str) -> tuple[float, float]:
    """CPU and wall seconds per turn, after 20 turns of warm-up."""
    import random

    import orjson
    from django.db import connection, transaction

    from consensus.core import ChosenEntry, Command, Ready
    from consensus.core.ballot import Ballot
    from consensus.core.ready import AcceptedWrite, Persist
    from consensus.runtime.apply import Applier
    from consensus.storage.store import DjangoStorage
    from kvstore.statemachines import KVStateMachine

    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA synchronous={sync}")
    storage = DjangoStorage()
    group_ids = range(1, groups + 1)
    applier = Applier({group_id: KVStateMachine(group_id) for group_id in group_ids})
    ballot = Ballot(1, 1)
    rng = random.Random(0)
    numbers = iter(range(10**12))
    instance = dict.fromkeys(group_ids, _highest_instance(group_ids))
    previous: dict[int, ChosenEntry] = {}

    def value() -> tuple[Command, ...]:
        return tuple(
            Command(
                f"bench-{next(numbers)}",
                orjson.dumps(
                    {"op": "put", "key": f"k{rng.randrange(1000)}", "value": "x" * 100}
                ).decode(),
            )
            for _ in range(commands)
        )

    def turn() -> None:
        # Each group votes for its next instance and learns that its previous one was chosen,
        # as a follower does from its leader's Accept; the previous one is applied.
        readies, applying = [], []
        for group_id in group_ids:
            instance[group_id] += 1
            proposal = value()
            chosen = (previous[group_id],) if group_id in previous else ()
            accepted = (AcceptedWrite(instance[group_id], ballot, proposal),)
            persist = Persist(accepted=accepted, chosen=chosen)
            readies.append(Ready(group_id=group_id, persist=persist, _messages=()))
            if chosen:
                applying.append((group_id, chosen))
            previous[group_id] = ChosenEntry(instance[group_id], proposal)
        with transaction.atomic():
            applier.apply_groups(applying, on_outcomes=lambda _outcomes: None, guarded=False)
            storage.persist(readies)

    for _ in range(20):
        turn()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(turns):
        turn()
    cpu, wall = (time.process_time() - cpu) / turns, (time.perf_counter() - wall) / turns
    # The last votes chosen too: a gap in the chosen log would slow every later measurement.
    with transaction.atomic():
        storage.persist(
            [
                Ready(group_id=group_id, persist=Persist(chosen=(entry,)), _messages=())
                for group_id, entry in previous.items()
            ]
        )
    return cpu, wall


def _highest_instance(group_ids: range) -> int:
    """Where the previous measurement of this run left off (instances must keep growing)."""
    from consensus.models import Instance

    last = Instance.objects.filter(group_id__in=group_ids).order_by("-instance").first()
    return last.instance if last is not None else 0


if __name__ == "__main__":
    main()
