"""The dashboard, health and metrics endpoints, the admin and the feed, in-process (no cluster):
access rules, rendering, and the bookkeeping behind the live view."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from prometheus_client.parser import text_string_to_metric_families

from consensus import metrics
from consensus.dashboard.consumers import DashboardConsumer
from consensus.dashboard.feed import GROUP_NAME, CommitWindow, DashboardFeed
from consensus.dashboard.monitoring import ObserverChain
from consensus.dashboard.snapshot import snapshot_frame
from consensus.health import readiness
from consensus.models import Group, Instance
from consensus.runtime.observer import NodeObserver
from tests.fixtures.logs import consensus_logs

# ---------------------------------------------------------------- fakes


def fake_node(
    *,
    groups: list[dict[str, Any]],
    peers: list[dict[str, Any]],
    size: int = 3,
    peer_chosen: dict[int, dict[int, int]] | None = None,
) -> Any:
    """Just what ``readiness`` reads: ``status()``, ``replicas[g].known_chosen_upto``, the
    config."""
    status = {"node_id": 1, "uptime_seconds": 1.0, "groups": groups, "peers": {"peers": peers}}
    replicas = {
        g["group_id"]: SimpleNamespace(
            known_chosen_upto=max(
                [g["chosen_upto"], *(peer_chosen or {}).get(g["group_id"], {}).values()]
            )
        )
        for g in groups
    }
    return SimpleNamespace(
        node_id=1,
        status=lambda: status,
        replicas=replicas,
        config=SimpleNamespace(
            node_ids=tuple(range(1, size + 1)), group_ids=tuple(g["group_id"] for g in groups)
        ),
    )


def group(group_id: int = 1, leader: int | None = 2, chosen: int = 10, applied: int = 10) -> dict:
    return {
        "group_id": group_id,
        "role": "follower",
        "leader": leader,
        "ballot": "1.2",
        "promised": "1.2",
        "chosen_upto": chosen,
        "applied": applied,
        "pending": 0,
    }


def link(node_id: int, up: bool = True) -> dict:
    return {"node_id": node_id, "connected_out": up, "connected_in": up}


# ---------------------------------------------------------------- readiness


def test_ready_with_a_leader_a_majority_and_caught_up() -> None:
    state = readiness(fake_node(groups=[group()], peers=[link(2), link(3, up=False)]))
    assert state.ready, state.reasons
    assert state.reachable == 2


def test_unready_without_a_majority() -> None:
    state = readiness(fake_node(groups=[group()], peers=[link(2, up=False), link(3, up=False)]))
    assert not state.ready
    assert state.reasons == ["reaches 1 of 3 nodes; a majority is 2"]


def test_unready_without_a_leader_or_far_behind(settings) -> None:
    settings.PAXOS_READY_MAX_LAG = 5
    node = fake_node(
        groups=[group(1, leader=None), group(2, chosen=10, applied=4)],
        peers=[link(2), link(3)],
        peer_chosen={1: {2: 3}, 2: {2: 12}},
    )
    state = readiness(node)
    assert not state.ready
    assert state.reasons == [
        "group 1: no leader known",
        "group 2: applied 4, 8 instances behind 12 (bound 5)",
    ]


def test_a_group_some_peer_does_not_list_yet_is_a_note_not_a_reason() -> None:
    """A group added node by node serves once every node lists it: counted as a reason, it kept
    every restarted node unready until the last, and a rollout gated on readiness stopped at
    the first. Peers that said which groups they list are counted; one that said nothing may
    list it."""
    peers = [link(2) | {"groups": [1, 3]}, link(3) | {"groups": [1]}]
    adding = group(3, leader=None) | {"rebuilding": True}
    state = readiness(fake_node(groups=[group(1), adding], peers=peers))
    assert state.ready, state.reasons
    assert state.notes == ["group 3: node(s) 3 do not list it yet; it serves once every node does"]
    assert state.as_json()["notes"] == state.notes
    for listed in ([1, 3], None):  # node 3 lists it too, or has not said
        peers = [link(2) | {"groups": [1, 3]}, link(3) | {"groups": listed}]
        state = readiness(fake_node(groups=[group(1), adding], peers=peers))
        assert state.reasons[0] == "group 3: no leader known" and not state.notes
        assert "rebuilding (a new database" in state.reasons[1]


def test_unready_while_stopping() -> None:
    """A stopping node refuses every request while it hands its groups over (0.5 s)."""
    node = fake_node(groups=[group()], peers=[link(2), link(3)])
    node.stopping = True
    assert readiness(node).reasons == ["the node is stopping"]


def test_unready_without_a_node() -> None:
    assert readiness(None).reasons == ["this process runs no Paxos node"]


# ---------------------------------------------------------------- feed and observers


def test_commit_window_counts_per_second_and_forgets_after_a_minute() -> None:
    now = [1000.0]
    window = CommitWindow(seconds=60, clock=lambda: now[0])
    window.add(1, 3)
    now[0] += 0.5
    window.add(1, 2)
    window.add(2, 7)
    now[0] = 1001.0
    assert window.series(1)[-1] == 5
    assert window.series(2)[-1] == 7
    assert window.rate(1) == pytest.approx(5.0)  # one complete second since start
    now[0] = 1030.0
    assert window.rate(1) == pytest.approx(5 / 30)
    now[0] = 1062.0
    assert sum(window.series(1)) == 0


def test_feed_remembers_role_and_leader_changes_and_stalls_newest_first() -> None:
    feed = DashboardFeed()
    feed.role_changed(1, "follower", "candidate", "2.1")
    feed.leader_changed(1, 1)
    feed.loop_stalled(1.5)
    assert [event["text"] for event in feed.events] == [
        "event loop stalled for 1500 ms (process paused or starved)",
        "leader is node 1",
        "follower -> candidate (ballot 2.1)",
    ]


def test_feed_logs_catch_up_started_and_finished_once(caplog) -> None:
    replica = SimpleNamespace(known_chosen_upto=500, config=SimpleNamespace(window=32))
    feed = DashboardFeed()
    feed._node = SimpleNamespace(node_id=3, replicas={1: replica})
    feed._last_applied[1] = 0
    with consensus_logs(caplog, "consensus.dashboard"):
        for applied in (100, 200, 480):  # 480: within one window of 500, caught up
            feed.commands_applied(1, 100, applied)
        replica.known_chosen_upto = 530  # a peer reported more
        feed.commands_applied(1, 30, 510)  # normal operation: a window's worth is not a catch-up
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "node 3 group 1: catch-up started applied=0 target=500 behind=500",
        lines[1],
    ]
    assert lines[1].startswith("node 3 group 1: catch-up finished applied=480 instances=480 ")


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_prometheus_observer_counts_elections_and_step_downs() -> None:
    observer = metrics.PrometheusObserver()
    group_label = "97"
    observer.role_changed(97, "follower", "candidate", "1.1")
    observer.role_changed(97, "candidate", "leader", "1.1")
    observer.role_changed(97, "leader", "follower", "2.2")
    observer.role_changed(97, "follower", "leader", "3.1")  # a whole election between samples
    observer.role_changed(97, "leader", "candidate", "4.1")
    observer.role_changed(97, "candidate", "follower", "5.2")
    assert sample("paxos_elections_total", group=group_label, result="started") == 3
    assert sample("paxos_elections_total", group=group_label, result="won") == 2
    assert sample("paxos_elections_total", group=group_label, result="lost") == 1
    assert sample("paxos_step_downs_total", group=group_label) == 2
    observer.commands_applied(97, 4, 10)
    observer.request_finished(97, 0.003, "ok")
    observer.forwarded(97, 2)
    observer.storage_committed(0.002, 3, 1)
    assert sample("paxos_commits_total", group=group_label) == 4
    assert sample("paxos_proposals_total", group=group_label, outcome="ok") == 1
    assert sample("paxos_request_seconds_count", group=group_label, outcome="ok") == 1
    assert sample("paxos_forwarded_commands_total", group=group_label) == 2


def test_a_failing_observer_does_not_stop_the_others(caplog) -> None:
    class Broken(NodeObserver):
        def commands_applied(self, group_id: int, commands: int, applied: int) -> None:
            raise RuntimeError("bug")

    feed = DashboardFeed()
    with consensus_logs(caplog, "consensus.dashboard"):
        ObserverChain([Broken(), feed]).commands_applied(1, 3, 3)
    assert sum(feed.window._buckets[1].values()) == 3
    assert "Broken.commands_applied failed" in caplog.text


# ---------------------------------------------------------------- endpoints without a node


def test_metrics_parse_without_a_node(client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {"paxos_node_up", "paxos_commits", "paxos_storage_commit_seconds"} <= names


def test_readyz_and_healthz_without_a_node(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "this process runs no Paxos node"
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_dashboard_is_staff_only(client, django_user_model) -> None:
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get("/dashboard/state.json").status_code == 403
    assert client.post("/dashboard/submit/", {"group": 1, "command": "x"}).status_code == 403
    user = django_user_model.objects.create_user("visitor", password="pw", is_staff=False)
    client.force_login(user)
    assert client.get("/dashboard/").status_code == 302
    assert client.get("/dashboard/state.json").status_code == 403


@pytest.mark.django_db
def test_dashboard_page_and_admin_link_for_staff(admin_client) -> None:
    page = admin_client.get("/dashboard/")
    assert page.status_code == 200
    html = page.content.decode()
    for element in ("groups-table", "commit-chart", "submit-form", "peers-table", "events"):
        assert f'id="{element}"' in html
    assert "consensus/dashboard.js" in html
    assert 'id="dashboard-link"' in admin_client.get("/admin/").content.decode()
    # No node in this process: the JSON endpoints say so instead of failing.
    assert admin_client.get("/dashboard/state.json").status_code == 503
    assert admin_client.post("/dashboard/submit/", {"group": 1, "command": "x"}).status_code == 503


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("request_id", "message"),
    [
        ("r" * 256, "request_id must be 1..255 characters"),  # took a PostgreSQL cluster down
        ("a\x00b", "must not contain NUL"),
        ("paxos:x", "reserved"),
    ],
)
def test_dashboard_submit_refuses_a_request_id_the_log_cannot_take(
    admin_client, request_id: str, message: str
) -> None:
    """Checked before the node is even looked at, as the REST API does."""
    answer = admin_client.post(
        "/dashboard/submit/", {"group": 1, "command": "x", "request_id": request_id}
    )
    assert answer.status_code == 400 and message in answer.json()["error"]


@pytest.mark.django_db
def test_admin_commit_log_is_read_only_and_searchable_by_request_id(admin_client) -> None:
    group_row = Group.objects.create(group_id=1, state_machine="kv")
    Instance.objects.create(
        group=group_row,
        instance=7,
        ballot_round=3,
        ballot_node=2,
        value='[["req-abc", "{\\"op\\": \\"put\\", \\"key\\": \\"k\\", \\"value\\": \\"v\\"}"]]',
        chosen=True,
    )
    Instance.objects.create(group=group_row, instance=8, value="[]", chosen=True)
    listing = admin_client.get("/admin/consensus/instance/", {"q": "req-abc"})
    html = listing.content.decode()
    assert listing.status_code == 200
    assert "req-abc" in html and "3.2" in html
    assert "no-op" not in html  # instance 8 is filtered out by the search
    assert "no-op" in admin_client.get("/admin/consensus/instance/").content.decode()
    pk = Instance.objects.get(instance=7).pk
    detail = admin_client.get(f"/admin/consensus/instance/{pk}/change/")
    assert detail.status_code == 200
    assert "<code>req-abc</code>" in detail.content.decode()
    assert admin_client.get("/admin/consensus/instance/add/").status_code == 403


@pytest.mark.django_db
def test_admin_shows_whose_database_it_is_and_what_rebuilds(admin_client) -> None:
    from consensus.storage.identity import claim_database
    from consensus.storage.store import DjangoStorage

    claim_database(2)
    DjangoStorage().ensure_groups([1])
    identity = admin_client.get("/admin/consensus/nodeidentity/")
    assert identity.status_code == 200 and "field-node_id" in identity.content.decode()
    states = admin_client.get("/admin/consensus/acceptorstate/").content.decode()
    assert "field-rebuilding" in states and "field-rebuild_target" in states
    assert admin_client.get("/admin/consensus/nodeidentity/add/").status_code == 403


# ---------------------------------------------------------------- the websocket consumer


async def test_consumer_refuses_anonymous_browsers() -> None:
    communicator = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboard/")
    communicator.scope["user"] = SimpleNamespace(is_active=True, is_staff=False)
    connected, _ = await communicator.connect()
    assert not connected


@pytest.mark.django_db(transaction=True)  # channels' consumers close old connections
async def test_consumer_forwards_broadcast_snapshots_to_staff() -> None:
    communicator = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboard/")
    communicator.scope["user"] = SimpleNamespace(
        is_active=True, is_staff=True, get_username=lambda: "admin"
    )
    connected, _ = await communicator.connect()
    assert connected
    first = await communicator.receive_json_from()
    assert first["type"] == "unavailable"  # no node runs in the test process
    await get_channel_layer().group_send(
        GROUP_NAME, {"type": "dashboard.snapshot", "frame": snapshot_frame({"node_id": 1})}
    )
    assert await communicator.receive_json_from() == {
        "type": "snapshot",
        "snapshot": {"node_id": 1},
    }
    await communicator.disconnect()


def test_feed_notes_peer_links_going_down_and_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from consensus.dashboard import feed as feed_module

    monkeypatch.setattr(
        feed_module, "readiness", lambda node: SimpleNamespace(groups=[], ready=True, reasons=[])
    )
    links = {"connected_out": True, "connected_in": True}
    transport = SimpleNamespace(status=lambda: {"peers": [{"node_id": 2, **links}]})
    node = SimpleNamespace(node_id=1, transport=transport, replicas={})
    feed = DashboardFeed()
    feed.watch(node)  # type: ignore[arg-type]
    links["connected_in"] = False
    feed.watch(node)  # type: ignore[arg-type]
    links["connected_in"] = True
    feed.watch(node)  # type: ignore[arg-type]
    texts = [event["text"] for event in feed.events]
    assert texts[:2] == ["link to node 2 up", "link to node 2 down"]
