"""A peer that knows the cluster secret sends extreme values, over a real socket into a real cluster
(``runpaxos`` processes): the link that carried them pays, the cluster does not.

Node 3 of a three-node cluster is stopped and the test takes its place on node 1's peer route.
What the same frames did before (a review reproduced each on such a cluster):

* a Prepare of round 2**63-1 (a hand-over's, which a node answers while it hears a leader): node
  1 promised it and wrote it; every campaign after it needed round 2**63, which no peer decodes:
  the links closed on every attempt and the group had no leader again, also after restarts;
* an Accept for instance 2**63-1: voted and written; the next leader filled the gap below it and
  grew to 23 GB in 160 s before it died, at every election;
* a ballot of node 2**40: promised, and on PostgreSQL the write failed ("integer out of range")
  and stopped the node;
* values in range but far off (a round 2**41 above the promise, an instance 2**20 above the
  chosen prefix): promised or voted and written, the same harm in slow motion.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from consensus.core.ballot import Ballot
from consensus.core.messages import Accept, Command, Message, Prepare
from consensus.transport.auth import ClientHandshake
from consensus.transport.closecodes import CloseCode
from consensus.transport.codec import encode_frame
from tests.fixtures.cluster import Cluster, kv_put

VALUE = (Command("fake-1", '{"op": "put", "key": "k", "value": "v"}'),)


@contextmanager
def as_node_3(cluster: Cluster) -> Iterator[ClientConnection]:
    """A peer link to node 1 that passed the handshake as node 3."""
    url = f"ws://127.0.0.1:{cluster.nodes[1].port}/ws/peer/"
    with connect(url, open_timeout=5, compression=None) as link:
        handshake = ClientHandshake(
            cluster.document["secret"].encode(),
            node_id=3,
            server_id=1,
            members=(1, 2, 3),
            groups=[(1, "kv")],
        )
        link.send(handshake.receive_challenge(link.recv(timeout=5)))
        handshake.receive_welcome(link.recv(timeout=5))
        yield link


def closed_by_node_1(cluster: Cluster, messages: list[Message]) -> Any:
    """Send one frame as node 3; return node 1's close frame (None: it kept the link)."""
    with as_node_3(cluster) as link:
        link.send(encode_frame(messages))
        try:
            link.recv(timeout=2)
        except TimeoutError:
            return None
        except ConnectionClosed as closed:
            return closed.rcvd
    raise AssertionError("node 1 sent data on a peer link")


def group_1(cluster: Cluster, node_id: int) -> dict[str, Any]:
    return cluster.group_states(node_id)[1]


def highest_row(cluster: Cluster, node_id: int) -> int:
    """The highest instance node 1's database holds for group 1 (a vote or a chosen value)."""
    path = cluster.folder / "data" / f"node{node_id}.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
        (top,) = conn.execute(
            "SELECT MAX(instance) FROM consensus_instance WHERE group_id = 1"
        ).fetchone()
    return int(top or 0)


def test_extreme_values_from_a_peer_cost_its_link_not_the_cluster(cluster_factory: Any) -> None:
    cluster = cluster_factory(groups=(1,))
    cluster.submit(cluster.wait_for_leader(1), 1, kv_put("before", "1"))
    cluster.stop_node(3)
    leader = cluster.wait_for_leader(1, among=[1, 2])
    round_, node = (int(part) for part in group_1(cluster, 1)["promised"].split("."))
    promised = Ballot(round_, node)
    chosen = group_1(cluster, 1)["chosen_upto"]
    header = {"group_id": 1, "src": 3, "dst": 1}

    # Out of their fields' ranges: malformed, the link is closed with BAD_FRAME.
    refused = {
        "Prepare.ballot.round": Prepare(
            **header, ballot=Ballot(2**63 - 1, 3), first_instance=1, force=True, nonce=1
        ),
        "Accept.instance": Accept(
            **header, ballot=promised, instance=2**63 - 1, value=VALUE, chosen_upto=0
        ),
        "Prepare.ballot.node_id": Prepare(
            **header, ballot=Ballot(round_ + 1, 2**40), first_instance=1, force=True, nonce=1
        ),
    }
    for field, message in refused.items():
        close = closed_by_node_1(cluster, [message])
        assert close is not None, f"node 1 took a {field} out of range"
        assert close.code == CloseCode.BAD_FRAME
        assert field in close.reason, close.reason

    # In range but far from anything node 1 knows: dropped, the link stays.
    far = [
        Prepare(**header, ballot=Ballot(round_ + 2**41, 3), first_instance=1, force=True, nonce=2),
        Accept(**header, ballot=promised, instance=chosen + 2**20, value=VALUE, chosen_upto=0),
    ]
    assert closed_by_node_1(cluster, far) is None

    # The cluster goes on, and node 1 kept none of it.
    assert cluster.submit(leader, 1, kv_put("after", "2"))["result"] is not None
    state = group_1(cluster, 1)
    assert int(state["promised"].split(".")[0]) < 2**40, state
    assert highest_row(cluster, 1) < chosen + 2**20
    peer_3 = next(p for p in cluster.status(1)["peers"]["peers"] if p["node_id"] == 3)
    assert peer_3["dropped_inbound"] == len(far)
    log = cluster.nodes[1].log_path.read_text()
    assert log.count("closing peer link from node 3") == len(refused)  # one line each
    assert log.count("dropped Prepare from node 3 for group 1") == 1
    assert log.count("dropped Accept from node 3 for group 1") == 1
    for node_id in (1, 2):
        assert cluster.nodes[node_id].alive()
