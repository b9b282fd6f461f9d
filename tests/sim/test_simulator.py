"""The simulator over the real core: safety and liveness on many seeds, determinism, and the
negative controls that prove the checks can fail.

More seeds: ``PAXOS_SIM_SEEDS=5000 pytest tests/sim`` (or ``python -m consensus.sim --seeds N``).
"""

from __future__ import annotations

import os
import re

import pytest

from consensus.sim import MUTANTS, SimSettings, run_seed, scenario_settings
from consensus.sim.__main__ import main

SEEDS = int(os.environ.get("PAXOS_SIM_SEEDS", "300"))


LEFT_DOWN_SEEDS = SEEDS // 3
"""Seeds of the runs that leave a minority down (each runs 600 more ticks, with load)."""

WIPE_SEEDS = SEEDS // 3
"""Seeds of the runs that replace disks (a third of the restarts come back with new storage)."""


def repro(seed: int, settings: SimSettings) -> str:
    command = (
        f"python -m consensus.sim --seed-start {seed} --seeds 1 --nodes {settings.nodes} "
        f"--groups {settings.groups} --steps {settings.steps}"
    )
    if settings.left_down:
        command += f" --left-down {settings.left_down}"
    if settings.wipe_rate:
        command += f" --wipe-rate {settings.wipe_rate}"
    if settings.scenario != "chaos":
        command += f" --scenario {settings.scenario}"
    elif settings.graceful_stop_rate:
        command += f" --graceful-stop-rate {settings.graceful_stop_rate}"
    return command + (f" --mutant {settings.mutant}" if settings.mutant else "")


@pytest.mark.parametrize("nodes", [3, 5], ids=lambda n: f"nodes={n}")
@pytest.mark.parametrize("seed", range(SEEDS), ids=lambda s: f"seed={s}")
def test_safety_and_liveness(seed: int, nodes: int) -> None:
    settings = SimSettings(nodes=nodes, groups=2)
    result = run_seed(seed, settings)
    assert result.violation is None, f"{result.violation}\nrepro: {repro(seed, settings)}"
    assert result.chosen > 0


@pytest.mark.parametrize("nodes", [3, 5], ids=lambda n: f"nodes={n}")
@pytest.mark.parametrize("seed", range(LEFT_DOWN_SEEDS), ids=lambda s: f"seed={s}")
def test_a_majority_alone_keeps_applying_under_load(seed: int, nodes: int) -> None:
    settings = SimSettings(nodes=nodes, groups=2, left_down=(nodes - 1) // 2)
    result = run_seed(seed, settings)
    assert result.violation is None, f"{result.violation}\nrepro: {repro(seed, settings)}"


@pytest.mark.parametrize("nodes", [3, 5], ids=lambda n: f"nodes={n}")
@pytest.mark.parametrize("seed", range(WIPE_SEEDS), ids=lambda s: f"seed={s}")
def test_replaced_disks_rebuild_before_voting(seed: int, nodes: int) -> None:
    settings = SimSettings(nodes=nodes, groups=2, wipe_rate=0.3)
    result = run_seed(seed, settings)
    assert result.violation is None, f"{result.violation}\nrepro: {repro(seed, settings)}"


@pytest.mark.parametrize("nodes", [1, 2], ids=lambda n: f"nodes={n}")
def test_clusters_too_small_to_partition_run_too(nodes: int) -> None:
    """``--nodes 1`` used to fail with a traceback: a partition needs two nodes."""
    for seed in range(20):
        settings = SimSettings(nodes=nodes, groups=2)
        result = run_seed(seed, settings)
        assert result.violation is None, f"{result.violation}\nrepro: {repro(seed, settings)}"


def test_same_seed_same_run() -> None:
    settings = SimSettings(nodes=3, groups=2)
    first, second = run_seed(1234, settings), run_seed(1234, settings)
    assert first == second
    assert run_seed(1235, settings).digest != first.digest


HAND_OVER_SEEDS = SEEDS // 10
"""Seeds of the hand-over-reads scenario (each runs about twice as long as a chaos seed)."""


@pytest.mark.parametrize("nodes", [3, 5], ids=lambda n: f"nodes={n}")
@pytest.mark.parametrize("seed", range(HAND_OVER_SEEDS), ids=lambda s: f"seed={s}")
def test_reads_stay_linearizable_through_hand_overs(seed: int, nodes: int) -> None:
    """``--scenario hand-over-reads``: leaders stop gracefully while the node they hand over to
    cannot reach them, with reads everywhere and heartbeats far apart (``SCENARIOS``)."""
    settings = scenario_settings("hand-over-reads", nodes=nodes, groups=2)
    result = run_seed(seed, settings)
    assert result.violation is None, f"{result.violation}\nrepro: {repro(seed, settings)}"
    assert result.chosen > 0


STALE_ACK_SEEDS = SEEDS // 10
"""Seeds of the stale-acks scenario (a 5-node seed runs about as long as two chaos seeds)."""


@pytest.mark.parametrize("nodes", [3, 5], ids=lambda n: f"nodes={n}")
@pytest.mark.parametrize("seed", range(STALE_ACK_SEEDS), ids=lambda s: f"seed={s}")
def test_stale_acks_never_count_across_ballots(seed: int, nodes: int) -> None:
    """``--scenario stale-acks``: leaders crash part-way through sending their Accepts, lead
    again, and the network hands them old acks of the instances they propose in (``SCENARIOS``)."""
    settings = scenario_settings("stale-acks", nodes=nodes, groups=2)
    result = run_seed(seed, settings)
    assert result.violation is None, f"{result.violation}\nrepro: {repro(seed, settings)}"
    assert result.chosen > 0


EXPECTED_VIOLATION: dict[str, str | dict[int, str]] = {
    "skip-recovery": "agreement: ",
    "no-rebuild": "agreement: ",
    # A vote below the promise overwrites the node's higher vote, maybe its own as leader
    # (counted, so checked at restart since on_own_vote_counted: seed 7 with 3 nodes, where
    # agreement broke first at seed 19 before).
    "accept-below-promise": "durability: ",
    "send-before-persist": "durability: ",
    "forget-promise": "promise went backwards: ",
    "stale-ballot-write": r"promise: node \d+ group \d+ persisted ",
    "drop-own-vote": r"own vote not durable: node \d+ group \d+ counted its own vote in ballot ",
    "drop-own-promise": r"own vote not durable: node \d+ group \d+ counted its own promise ",
    "any-ballot-acks": "quorum: ",
    "unconfirmed-reads": "linearizable read: ",
    "early-seq": "linearizable read: ",
    "all-votes": "liveness with nodes ",
    "divergent-results": "result digests: ",
    "over-reporting-audit": (
        r"node \d+ group \d+: its intact storage was found older than its votes"
    ),
}
"""How the first violation of each mutant must begin (a regular expression): a mutant caught by
another check than the one its broken rule feeds is caught for the wrong reason (as
over-reporting-audit was, by liveness, when it broke a new cluster's first rebuild), and if that
check stopped working nobody would notice."""


def negative_control_settings(mutant: str, nodes: int) -> SimSettings:
    if mutant == "early-seq":  # the race needs a hand-over at the worst moment
        return scenario_settings("hand-over-reads", nodes=nodes, groups=2, mutant=mutant)
    if mutant == "any-ballot-acks":  # a stale ack while the same leader proposes there again
        return scenario_settings("stale-acks", nodes=nodes, groups=2, mutant=mutant)
    left_down = (nodes - 1) // 2 if mutant == "all-votes" else 0
    wipe_rate = 0.3 if mutant == "no-rebuild" else 0.0
    # Stale reads need a read at the wrong moment: more reads, more such moments (with the
    # restart audit's quiet spells, the default rate needed 200-340 seeds).
    read_rate = 0.5 if mutant == "unconfirmed-reads" else SimSettings.read_rate
    return SimSettings(
        nodes=nodes,
        groups=2,
        mutant=mutant,
        left_down=left_down,
        wipe_rate=wipe_rate,
        read_rate=read_rate,
    )


def test_every_mutant_has_an_expected_violation() -> None:
    assert set(EXPECTED_VIOLATION) == set(MUTANTS) - {"none"}


# Negative controls: the seed (within the CI range) that first catches each broken variant, found
# with ``python -m consensus.sim --seeds 300 --mutant NAME``. If a change to the simulator makes a
# mutant slip through the whole range, or be caught by another check first, this fails: the
# simulator lost its teeth.
@pytest.mark.parametrize("mutant", sorted(set(MUTANTS) - {"none"}))
@pytest.mark.parametrize("nodes", [3, 5], ids=lambda n: f"nodes={n}")
def test_negative_control_is_caught(mutant: str, nodes: int) -> None:
    settings = negative_control_settings(mutant, nodes)
    expected = EXPECTED_VIOLATION[mutant]
    if isinstance(expected, dict):
        expected = expected[nodes]
    for seed in range(SEEDS):
        result = run_seed(seed, settings)
        if result.violation is not None:
            print(f"{mutant} with {nodes} nodes caught by seed {seed}: {result.violation}")
            assert re.match(expected, result.violation), (
                f"mutant {mutant!r} was caught, but not as expected ({expected!r}): "
                f"{result.violation}\nrepro: {repro(seed, settings)}"
            )
            return
    pytest.fail(f"the simulator did not catch mutant {mutant!r} in {SEEDS} seeds")


def test_cli_reports_a_violation_with_a_repro_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "30", "--mutant", "skip-recovery"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("repro: python -m consensus.sim --seed-start ")
    assert lines[-1].startswith("seeds=") and "violations=1" in lines[-1]


def test_cli_replays_a_scenarios_violation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "5", "--scenario", "hand-over-reads", "--mutant", "early-seq"]) == 1
    repro_line = capsys.readouterr().out.strip().splitlines()[-2]
    assert repro_line.startswith("repro: python -m consensus.sim --seed-start ")
    assert "--scenario hand-over-reads --mutant early-seq" in repro_line
    assert main(repro_line.split()[4:]) == 1  # the line replays it


def test_cli_summary_on_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "3", "--seed-start", "7", "--nodes", "5", "--groups", "3"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("seeds=3 violations=0 chosen=")


def test_all_votes_is_caught_far_sooner_with_a_node_left_down() -> None:
    """Why ``all-votes`` runs with ``left_down``: with every node back it is caught only where a
    node rebuilding new storage waits for the broken leader (12 of the first 100 seeds), with a
    node left down on the first seed."""
    healed = SimSettings(nodes=3, groups=2, mutant="all-votes")
    left_down = SimSettings(nodes=3, groups=2, mutant="all-votes", left_down=1)
    assert all(run_seed(seed, healed).violation is None for seed in range(4))
    assert all(run_seed(seed, left_down).violation is not None for seed in range(4))


def test_any_ballot_acks_needs_the_stale_acks_scenario() -> None:
    """Why ``any-ballot-acks`` runs in ``--scenario stale-acks``: the chaos never hands a leader
    an old ack while the same instance is in flight again (none in 600 seeds), the scenario
    does in about a quarter of the 3-node seeds (a twelfth with 5 nodes)."""
    chaos = SimSettings(nodes=3, groups=2, mutant="any-ballot-acks")
    stale_acks = scenario_settings("stale-acks", nodes=3, groups=2, mutant="any-ballot-acks")
    assert all(run_seed(seed, chaos).violation is None for seed in range(10))
    assert sum(run_seed(seed, stale_acks).violation is not None for seed in range(10)) >= 2


def test_cli_rejects_bad_arguments() -> None:
    assert main(["--seeds", "0"]) == 2
    assert main(["--left-down", "2", "--nodes", "3"]) == 2
    assert main(["--wipe-rate", "1.5"]) == 2
    assert main(["--graceful-stop-rate", "-0.1"]) == 2
    with pytest.raises(SystemExit):
        main(["--nodes", "9"])
