"""Rule 4 for the votes a node gives itself (invariants.py): a candidate's promise of its own
ballot and a leader's vote for its own proposal never leave the node, so the checks fed by the
network never saw them. The cluster shows them to ``Checker.on_own_vote_counted`` as the replica
counts them (``Replica.advance``); the disk must hold them then, and at every restart after.

The negative controls ``drop-own-vote`` and ``drop-own-promise`` are pinned in test_simulator.py;
here: the check's two halves one by one, and what caught those mutants before it existed."""

from __future__ import annotations

import re

import pytest

from consensus.core import Ballot, MemoryStorage, Persist
from consensus.core.ready import AcceptedWrite
from consensus.sim import SimSettings, run_seed
from consensus.sim.invariants import Checker, InvariantViolation

B1 = Ballot(1, 1)
B2 = Ballot(2, 1)
VALUE = ()


def disk(promised: Ballot | None = None, votes: tuple[AcceptedWrite, ...] = ()) -> MemoryStorage:
    storage = MemoryStorage()
    storage.apply(Persist(promised=promised, accepted=votes))
    return storage


def test_an_own_promise_counts_only_once_on_disk() -> None:
    checker = Checker()
    with pytest.raises(InvariantViolation, match=r"^own vote not durable: .* own promise in "):
        checker.on_own_vote_counted(1, 1, B2, None, disk(B1))
    checker.on_own_vote_counted(1, 1, B2, None, disk(B2))
    checker.on_restart(1, 1, B2)
    with pytest.raises(InvariantViolation, match=r"^promise went backwards: node 1 group 1 "):
        checker.on_restart(1, 1, B1)  # the disk went back after it was counted


def test_an_own_vote_counts_only_once_on_disk() -> None:
    checker = Checker()
    with pytest.raises(InvariantViolation, match=r"^own vote not durable: .* vote in ballot 2.1 "):
        checker.on_own_vote_counted(1, 1, B2, 7, disk(B2))  # promised, but no vote
    with pytest.raises(InvariantViolation, match=r"holds a vote in ballot 1.1 there$"):
        checker.on_own_vote_counted(1, 1, B2, 7, disk(B2, (AcceptedWrite(7, B1, VALUE),)))
    with pytest.raises(InvariantViolation, match=r"storage promises only 1.1$"):
        checker.on_own_vote_counted(1, 1, B2, 7, disk(B1, (AcceptedWrite(7, B2, VALUE),)))
    held = disk(B2, (AcceptedWrite(7, B2, VALUE),))
    checker.on_own_vote_counted(1, 1, B2, 7, held)
    checker.on_recover(1, 1, held)
    with pytest.raises(InvariantViolation, match=r"^durability: node 1 group 1 restarted without"):
        checker.on_recover(1, 1, disk(B2, (AcceptedWrite(7, B1, VALUE),)))
    checker.forget_node(1)  # a replaced disk: its votes are gone by the nemesis's hand
    checker.on_recover(1, 1, disk())


RESTART_HALF = {
    "drop-own-vote": r"durability: node \d+ group \d+ restarted without its vote in ballot ",
    "drop-own-promise": r"promise went backwards: node \d+ group \d+ restarted with promise ",
}
AUDIT = r"node \d+ group \d+: its intact storage was found older than its votes: "


@pytest.mark.parametrize("mutant", sorted(RESTART_HALF))
def test_the_restart_half_alone_catches_the_lost_own_votes(
    mutant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted own votes are compared with the disk at restart too: with the check at counting
    time turned off (the votes only recorded), the mutants are caught there, not by the audit
    (the restart checks run before the restarted replica's audit asks anybody)."""
    monkeypatch.setattr(
        Checker,
        "on_own_vote_counted",
        lambda self, node_id, group_id, ballot, instance, storage: self._record_vote(
            node_id, group_id, ballot, instance
        ),
    )
    violation = run_seed(0, SimSettings(nodes=3, groups=2, mutant=mutant)).violation
    assert violation is not None and re.match(RESTART_HALF[mutant], violation), violation


@pytest.mark.parametrize("mutant", sorted(RESTART_HALF))
def test_before_the_check_only_the_audit_noticed(
    mutant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gap this check closes: with it turned off (the checker as it was), the first seeds
    catch the mutants only through the restart audit's alarm (mutants.py gives the rates)."""
    monkeypatch.setattr(Checker, "on_own_vote_counted", lambda self, *args: None)
    violations = [
        run_seed(seed, SimSettings(nodes=3, groups=2, mutant=mutant)).violation for seed in range(3)
    ]
    caught = [violation for violation in violations if violation is not None]
    assert caught, violations
    assert all(re.match(AUDIT, violation) for violation in caught), caught
