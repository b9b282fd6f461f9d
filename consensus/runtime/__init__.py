"""The asyncio runtime of a node. Views and commands reach it through ``get_node()`` only."""

from __future__ import annotations

from .apply import Outcome
from .errors import (
    CommandTooLargeError,
    InvalidRequestIdError,
    NoQuorumError,
    OverloadedError,
    RequestIdReusedError,
    SubmitError,
    UnknownGroupError,
)
from .node import PaxosNode, replica_config

_node: PaxosNode | None = None


def install_node(node: PaxosNode | None) -> None:
    """Make ``node`` the one this process serves (``runpaxos`` does this at start)."""
    global _node
    _node = node


def get_node() -> PaxosNode | None:
    return _node


__all__ = [
    "CommandTooLargeError",
    "InvalidRequestIdError",
    "NoQuorumError",
    "Outcome",
    "OverloadedError",
    "PaxosNode",
    "RequestIdReusedError",
    "SubmitError",
    "UnknownGroupError",
    "get_node",
    "install_node",
    "replica_config",
]
