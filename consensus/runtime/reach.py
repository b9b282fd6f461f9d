"""Whether this node reaches a majority: one rule for ``/readyz`` and for the error of a write that
timed out (a node that reaches no majority is the likelier cause than a slow leader)."""

from __future__ import annotations

from typing import Any


def reachable_peers(transport_status: dict[str, Any]) -> list[int]:
    """Peers with an authenticated link both ways (we can send, and they can send to us), from
    ``PeerTransport.status()``."""
    return [
        peer["node_id"]
        for peer in transport_status.get("peers", [])
        if peer.get("connected_out") and peer.get("connected_in")
    ]


def no_majority(reached: int, cluster_size: int) -> str | None:
    """``reaches 1 of 3 nodes; a majority is 2`` when ``reached`` (this node included) is no
    majority of the cluster, else None."""
    majority = cluster_size // 2 + 1
    if reached >= majority:
        return None
    return f"reaches {reached} of {cluster_size} nodes; a majority is {majority}"
