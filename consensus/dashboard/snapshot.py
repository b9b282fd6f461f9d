"""What one dashboard update contains: a JSON-ready picture of this node.

The same snapshot goes over the websocket (pushed by the feed) and out of the polling endpoint
(``state.json``), so the page renders both the same way. Build it on the node's event loop: the
in-memory state is read without locks there.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from django.urls import reverse

from consensus.health import readiness
from consensus.models import Instance
from consensus.runtime import PaxosNode
from consensus.runtime.apply import BARRIER_PREFIX
from consensus.storage.values import value_from_json

if TYPE_CHECKING:
    from .feed import DashboardFeed

PREVIEW_COMMANDS = 3
PREVIEW_CHARS = 120


def _shorten(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def snapshot_frame(snapshot: dict[str, Any]) -> str:
    """The websocket text frame that carries ``snapshot`` to a browser. The feed encodes it once
    per broadcast and every open dashboard sends the same string: a dict sent through the
    in-memory channel layer is deep-copied per subscriber and was encoded by each consumer,
    about 0.7 ms per browser per broadcast on the node's event loop."""
    return json.dumps({"type": "snapshot", "snapshot": snapshot})


def load_latest_commits(
    using: str, group_id: int, applied: int, limit: int
) -> list[dict[str, Any]]:
    """The ``limit`` highest applied instances of a group, newest first (a database read)."""
    rows = (
        Instance.objects.using(using)
        .filter(group_id=group_id, chosen=True, instance__lte=applied)
        .order_by("-instance")
        .values_list("instance", "ballot_round", "ballot_node", "value", "chosen_at")[:limit]
    )
    latest = []
    for instance, ballot_round, ballot_node, value, chosen_at in rows:
        commands = value_from_json(value)
        latest.append(
            {
                "instance": instance,
                "ballot": f"{ballot_round}.{ballot_node}" if ballot_round is not None else "",
                "chosen_at": chosen_at.isoformat() if chosen_at else None,
                "commands": [
                    _command_preview(command.request_id, command.payload)
                    for command in commands[:PREVIEW_COMMANDS]
                ],
                "more": max(0, len(commands) - PREVIEW_COMMANDS),
                "noop": not commands,
            }
        )
    return latest


def _command_preview(request_id: str, payload: str) -> dict[str, Any]:
    if request_id.startswith(BARRIER_PREFIX):
        return {"request_id": "read barrier", "payload": "", "barrier": True}
    return {"request_id": _shorten(request_id, 64), "payload": _shorten(payload), "barrier": False}


def dashboard_url(http_url: str) -> str:
    return http_url + reverse("consensus-dashboard:dashboard")


async def build_snapshot(node: PaxosNode, feed: DashboardFeed | None) -> dict[str, Any]:
    status = node.status()
    state = readiness(node)
    groups = []
    for group in status["groups"]:
        group_id = group["group_id"]
        groups.append(
            {
                **group,
                "commit_rate": round(feed.window.rate(group_id), 2) if feed else None,
                "latest": await feed.latest_commits(node, group_id, group["applied"])
                if feed
                else [],
            }
        )
    leaders: dict[int, list[int]] = {}
    for group in groups:
        if group["leader"] is not None:
            leaders.setdefault(group["leader"], []).append(group["group_id"])
    links = {peer["node_id"]: peer for peer in (status.get("peers") or {}).get("peers", [])}
    peers = []
    for address in node.config.nodes:
        if address.node_id == node.node_id:
            continue
        link = links.get(address.node_id, {})
        progress = []
        for group in groups:
            replica = node.replicas.get(group["group_id"])
            known = replica.peer_chosen_upto.get(address.node_id) if replica else None
            progress.append(
                {
                    "group_id": group["group_id"],
                    "chosen": known,
                    "lag": None if known is None else max(0, group["chosen_upto"] - known),
                }
            )
        peers.append(
            {
                "node_id": address.node_id,
                "url": address.http_url,
                "dashboard_url": dashboard_url(address.http_url),
                "connected_out": bool(link.get("connected_out")),
                "connected_in": bool(link.get("connected_in")),
                "messages_sent": link.get("messages_sent", 0),
                "messages_received": link.get("messages_received", 0),
                "reconnects": link.get("reconnects", 0),
                "queue_length": link.get("queue_length", 0),
                "last_error": link.get("last_error"),
                "leads": leaders.get(address.node_id, []),
                "groups": progress,
            }
        )
    return {
        "node_id": node.node_id,
        "generated_at": time.time(),
        "uptime_seconds": status["uptime_seconds"],
        "ready": state.as_json(),
        "groups": groups,
        "peers": peers,
        "leads": leaders.get(node.node_id, []),
        "rate": {
            "seconds": feed.window.seconds if feed else 0,
            "series": {str(g["group_id"]): feed.window.series(g["group_id"]) for g in groups}
            if feed
            else {},
        },
        "events": list(feed.events) if feed else [],
    }
