"""``python -m consensus.sim --seeds N [--seed-start S] [--nodes 3|5] [--groups G] [--steps K]
[--left-down D] [--wipe-rate P] [--graceful-stop-rate P] [--scenario NAME]``

Runs the deterministic simulator over a range of seeds. Exits 1 on the first invariant violation
and prints the one-line command that replays it; the last line is always the summary.
"""

from __future__ import annotations

import argparse
import sys
import time

from .cluster import SCENARIOS, run_seed, scenario_settings
from .mutants import MUTANTS

MUTANT_NEEDS: dict[str, tuple[str, str]] = {
    "no-rebuild": ("wipe_rate", "only"),
    "all-votes": ("left_down", "mostly"),
    "early-seq": ("scenario", "only"),
    "any-ballot-acks": ("scenario", "only"),
}
"""Mutants whose fault shows (only, or mostly) when an option is above 0 (or, for
``scenario``, names the scenario their description gives), as their descriptions in
``mutants.py`` say: without it a run of them passes and proves nothing."""

MUTANT_SCENARIOS: dict[str, str] = {
    "early-seq": "hand-over-reads",
    "any-ballot-acks": "stale-acks",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m consensus.sim",
        description="Run the deterministic multi-Paxos simulator: real replicas, a simulated "
        "network and disk, random crashes and partitions, invariants checked after every step. "
        "The same seed gives the same run.",
    )
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run (100)")
    parser.add_argument("--seed-start", type=int, default=0, help="first seed (0)")
    parser.add_argument("--nodes", type=int, default=3, choices=(1, 2, 3, 4, 5, 6, 7))
    parser.add_argument("--groups", type=int, default=2, help="independent groups per node (2)")
    parser.add_argument("--steps", type=int, default=400, help="ticks of chaos per seed (400)")
    parser.add_argument(
        "--left-down",
        type=int,
        default=0,
        help="after the chaos, leave this many nodes (fewer than half) down for good while "
        "clients go on submitting: the others alone must apply every command soon (0)",
    )
    parser.add_argument(
        "--wipe-rate",
        type=float,
        default=0.0,
        help="chance that a restarting node comes back with an empty disk, as after a disk "
        "replacement; it must rebuild before it votes (0.0)",
    )
    parser.add_argument(
        "--graceful-stop-rate",
        type=float,
        default=0.0,
        help="chance per tick that a node leading a group stops gracefully: it hands its groups "
        "over (TimeoutNow), waits a few ticks, then goes down (0.0)",
    )
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="chaos",
        help="a preset of fault and load rates: chaos (every fault at random, the default), "
        "hand-over-reads (leaders hand over while the successor cannot reach them and clients "
        "read everywhere: the race of a read confirmed by a heartbeat sent before it) or "
        "stale-acks (leaders crash part-way through sending their Accepts, lead again, and get "
        "old acks of the instances they propose in again)",
    )
    parser.add_argument(
        "--mutant",
        choices=sorted(MUTANTS),
        default="none",
        help="run a deliberately broken variant (a negative control) instead of the real core",
    )
    parser.add_argument("--keep-going", action="store_true", help="do not stop at a violation")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per seed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seeds < 1 or args.groups < 1 or args.steps < 1:
        print("error: --seeds, --groups and --steps must be positive", file=sys.stderr)
        return 2
    if args.left_down < 0 or 2 * args.left_down >= args.nodes:
        print("error: --left-down must leave a majority of the nodes up", file=sys.stderr)
        return 2
    for option in ("wipe_rate", "graceful_stop_rate"):
        if not 0.0 <= getattr(args, option) <= 1.0:
            print(f"error: --{option.replace('_', '-')} must be between 0 and 1", file=sys.stderr)
            return 2
    note = mutant_note(args)
    if note:
        print(note, file=sys.stderr)
    options = {
        "nodes": args.nodes,
        "groups": args.groups,
        "steps": args.steps,
        "left_down": args.left_down,
        "wipe_rate": args.wipe_rate,
        "mutant": None if args.mutant == "none" else args.mutant,
    }
    if args.graceful_stop_rate or args.scenario == "chaos":  # else the scenario's own rate
        options["graceful_stop_rate"] = args.graceful_stop_rate
    settings = scenario_settings(args.scenario, **options)
    started = time.perf_counter()
    violations = chosen = ran = 0
    for seed in range(args.seed_start, args.seed_start + args.seeds):
        result = run_seed(seed, settings)
        ran += 1
        chosen += result.chosen
        if args.verbose:
            print(
                f"seed={seed} chosen={result.chosen} messages={result.messages} "
                f"crashes={result.crashes} partitions={result.partitions} digest={result.digest}"
            )
        if result.violation is not None:
            violations += 1
            print(f"VIOLATION seed={seed}: {result.violation}")
            print(f"repro: {repro_command(seed, args)}")
            if not args.keep_going:
                break
    elapsed = time.perf_counter() - started
    print(
        f"seeds={ran} violations={violations} chosen={chosen} elapsed={elapsed:.1f}s "
        f"seeds/s={ran / elapsed:.1f}"
    )
    return 1 if violations else 0


def mutant_note(args: argparse.Namespace) -> str | None:
    """A line for a ``--mutant`` that the other options leave (almost) unobservable."""
    if args.mutant not in MUTANT_NEEDS:
        return None
    option, how = MUTANT_NEEDS[args.mutant]
    flag = "--" + option.replace("_", "-")
    if option == "scenario":
        wanted = MUTANT_SCENARIOS[args.mutant]
        if args.scenario == wanted:
            return None
        return f"note: the {args.mutant} mutant shows {how} with {flag} {wanted}"
    if getattr(args, option) > 0:
        return None
    return f"note: the {args.mutant} mutant shows {how} with {flag} > 0"


def repro_command(seed: int, args: argparse.Namespace) -> str:
    command = (
        f"python -m consensus.sim --seed-start {seed} --seeds 1 --nodes {args.nodes} "
        f"--groups {args.groups} --steps {args.steps}"
    )
    if args.left_down:
        command += f" --left-down {args.left_down}"
    if args.wipe_rate:
        command += f" --wipe-rate {args.wipe_rate}"
    if args.graceful_stop_rate:
        command += f" --graceful-stop-rate {args.graceful_stop_rate}"
    if args.scenario != "chaos":
        command += f" --scenario {args.scenario}"
    if args.mutant != "none":
        command += f" --mutant {args.mutant}"
    return command


if __name__ == "__main__":
    sys.exit(main())
