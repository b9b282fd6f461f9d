"""Deterministic simulation of whole clusters over the real sans-IO core (FoundationDB style)."""

from .cluster import SimCluster, SimResult, SimSettings, run_seed
from .invariants import InvariantViolation
from .mutants import MUTANTS

__all__ = ["MUTANTS", "InvariantViolation", "SimCluster", "SimResult", "SimSettings", "run_seed"]
