"""Deterministic simulation of whole clusters over the real sans-IO core (FoundationDB style)."""

from .cluster import SCENARIOS, SimCluster, SimResult, SimSettings, run_seed, scenario_settings
from .invariants import InvariantViolation
from .mutants import MUTANTS

__all__ = [
    "MUTANTS",
    "SCENARIOS",
    "InvariantViolation",
    "SimCluster",
    "SimResult",
    "SimSettings",
    "run_seed",
    "scenario_settings",
]
