"""``scripts/storage_turn_bench.py`` runs and reports (docs/performance.md quotes it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def test_storage_turn_bench_reports_the_cost_of_a_turn() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT / "scripts" / "storage_turn_bench.py")]
        + ["--groups", "2", "--commands", "1,4", "--turns", "5", "--rounds", "2"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2, result.stdout
    for line, count in zip(lines, (1, 4), strict=True):
        assert re.fullmatch(
            rf"2 group\(s\) x {count} command\(s\), synchronous=FULL: per turn \d+ us CPU, "
            r"\d+ us wall; per command [\d.]+ us CPU \(medians of 2 rounds\)",
            line,
        ), line
