"""Which node a database belongs to (``NodeIdentity``): a node refuses to run on another's.

Paxos's safety rests on each acceptor's votes being its own. Two nodes on one database are one
acceptor counted twice (a ``DATABASE_URL`` without ``{node_id}`` on a shared server); a node on
a copy of another's database votes with the other's promises (a copied ``nodeN.sqlite3``).
Either can let two values be chosen for one instance, and nothing in the protocol notices.
"""

from __future__ import annotations

from consensus.models import NodeIdentity


class ForeignDatabaseError(Exception):
    """The database belongs to another node. The message says what to do, in one paragraph."""


def claim_database(node_id: int, *, using: str = "default") -> None:
    """Record that the database belongs to ``node_id`` (on a new database), or check that it
    does; ``ForeignDatabaseError`` if it belongs to another node."""
    # Insert-if-absent, then read: of nodes starting at once on one database, the first insert
    # wins and every other node reads the winner (get_or_create could re-raise its conflict).
    NodeIdentity.objects.using(using).bulk_create(
        [NodeIdentity(id=1, node_id=node_id)], ignore_conflicts=True
    )
    identity = NodeIdentity.objects.using(using).get(id=1)
    if identity.node_id != node_id:
        since = identity.created_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
        raise ForeignDatabaseError(
            f"this database belongs to node {identity.node_id} (since {since}), not to node "
            f"{node_id}. A node must never run on another node's database: it would vote with "
            f"that node's promises and votes, and two values could be chosen for one instance. "
            f"Give every node its own database (a DATABASE_URL shared by the nodes needs "
            f"{{node_id}} in it; never copy a node's database file to another node). To rebuild "
            f"node {node_id}, start it with an empty database: it learns the log from its peers "
            f"(README: 'A node that lost its database')."
        )
