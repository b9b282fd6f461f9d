"""When a node answers ``consistency=local`` reads (``PaxosNode.check_local_reads``): a node
restarted after an outage answered them from state thousands of instances old ("not found" for
keys that exist) for the seconds before it heard from its peers and caught up."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from consensus.config import GroupSpec, NodeAddress
from consensus.registry import registry
from consensus.runtime import SubmitError
from consensus.runtime.node import LOCAL_READ_MAX_LAG
from tests.fixtures.loop_node import one_node_config, running_node
from tests.fixtures.ports import free_port_block

pytestmark = pytest.mark.django_db(transaction=True)


def test_local_reads_wait_until_the_node_knows_how_far_behind_it_is(
    tmp_path: Path, settings: Any
) -> None:
    settings.PAXOS_UNSAFE_SKIP_REBUILD = True  # an old database's group, not a rebuilding one
    first = free_port_block(3)
    nodes = tuple(NodeAddress(n, "127.0.0.1", first + n - 1) for n in (1, 2, 3))
    config = dataclasses.replace(  # peers 2 and 3 never answer
        one_node_config(tmp_path, groups=(GroupSpec(1, "kv"),)), nodes=nodes
    )
    with running_node(config, {1: registry.create("kv", 1)}) as running:
        node = running.node

        def local_read_refusal() -> str | None:
            async def check() -> str | None:
                try:
                    node.check_local_reads(1)
                except SubmitError as error:
                    return str(error)
                return None

            return running.call(check())

        assert local_read_refusal() == (
            "group 1: this node has heard from no other node since it started, so it cannot "
            "tell how far behind it is: read with consistency=linearizable, or from another node"
        )

        async def hear(chosen_upto: int) -> None:  # what a peer's heartbeat would report
            node.replicas[1].peer_chosen_upto[2] = chosen_upto

        running.call(hear(LOCAL_READ_MAX_LAG + 50))
        assert local_read_refusal() == (
            f"group 1: this node is catching up (applied 0, {LOCAL_READ_MAX_LAG + 50} instances "
            f"behind {LOCAL_READ_MAX_LAG + 50}): read with consistency=linearizable, or from "
            "another node"
        )
        running.call(hear(LOCAL_READ_MAX_LAG))
        assert local_read_refusal() is None  # close enough: stale by at most the bound
