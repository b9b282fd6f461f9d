"""``python -m consensus.sim --mutant M``: a mutant whose fault needs an option the run lacks
passed with violations=0 and proved nothing; the CLI says so on stderr."""

from __future__ import annotations

import pytest

from consensus.sim.__main__ import build_parser, main
from consensus.sim.mutants import MUTANTS

QUICK = ["--seeds", "1", "--steps", "20", "--groups", "1"]


@pytest.mark.parametrize(
    ("arguments", "note"),
    [
        (["--mutant", "no-rebuild"], "note: the no-rebuild mutant shows only with --wipe-rate > 0"),
        (["--mutant", "all-votes"], "note: the all-votes mutant shows mostly with --left-down > 0"),
        (
            ["--mutant", "early-seq"],
            "note: the early-seq mutant shows only with --scenario hand-over-reads",
        ),
        (
            ["--mutant", "any-ballot-acks"],
            "note: the any-ballot-acks mutant shows only with --scenario stale-acks",
        ),
        (
            ["--mutant", "any-ballot-acks", "--scenario", "hand-over-reads"],
            "note: the any-ballot-acks mutant shows only with --scenario stale-acks",
        ),
    ],
)
def test_a_mutant_without_its_option_gets_a_note(
    capsys: pytest.CaptureFixture[str], arguments: list[str], note: str
) -> None:
    main([*QUICK, *arguments])
    assert capsys.readouterr().err.splitlines() == [note]


@pytest.mark.parametrize(
    "arguments",
    [
        ["--mutant", "no-rebuild", "--wipe-rate", "0.1"],
        ["--mutant", "all-votes", "--left-down", "1"],
        ["--mutant", "early-seq", "--scenario", "hand-over-reads"],
        ["--mutant", "any-ballot-acks", "--scenario", "stale-acks"],
        ["--mutant", "skip-recovery"],
        [],
    ],
)
def test_no_note_when_the_run_can_show_the_mutant(
    capsys: pytest.CaptureFixture[str], arguments: list[str]
) -> None:
    main([*QUICK, *arguments])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("mutant", ["no-rebuild", "all-votes", "early-seq", "any-ballot-acks"])
def test_the_notes_match_the_mutants_descriptions(mutant: str) -> None:
    """A renamed mutant, or one whose description names another option, fails here."""
    from consensus.sim.__main__ import MUTANT_NEEDS

    option = "--" + MUTANT_NEEDS[mutant][0].replace("_", "-")
    assert option in MUTANTS[mutant].description
    assert option in build_parser().format_help()
