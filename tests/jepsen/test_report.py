"""The run report's verdict: a linearizable history is not enough for VALID when the run itself
went wrong (a crash, an ERROR in a node's log, a fault the nemesis could not inject or heal, a
client thread that never finished)."""

from __future__ import annotations

import pytest

from .checker import VALID, CheckResult
from .workloads import Report, Settings


def checked_report() -> Report:
    return Report(Settings(seed=1), linearizability=CheckResult(VALID))


def test_a_clean_run_is_valid() -> None:
    report = checked_report()
    assert report.problems == []
    assert report.verdict == "VALID" and report.valid


@pytest.mark.parametrize(
    ("field", "entry"),
    [
        ("nemesis_errors", "kill-leader: OSError('boom')"),
        ("errors", "client threads still running: ['jepsen-client-3']"),
        ("node_errors", "node 2: ERROR consensus.api: GET /api/kv/1/r0 failed"),
        ("crashes", "node 1 exited with 1"),
    ],
)
def test_a_run_that_went_wrong_is_invalid(field: str, entry: str) -> None:
    report = checked_report()
    getattr(report, field).append(entry)
    assert report.verdict == "INVALID", report.render()
    assert any(entry in problem for problem in report.problems)
    assert entry in report.render()


def test_skipped_faults_and_rebuilds_are_reported() -> None:
    report = checked_report()
    report.faults["wipe-random"] += 1
    report.skipped_faults["wipe-random (a node down, starting or rebuilding)"] += 2
    report.rebuilt = 2
    text = report.render()
    assert "(wipe-random 1); skipped: wipe-random (a node down, starting or rebuilding) 2" in text
    assert "rebuilds of a deleted database logged: 2" in text
    assert report.valid  # skipping is not an error: the tests require the faults they need
