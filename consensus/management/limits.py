"""The open-files limit of a node process.

Every client connection, peer link and database file is a file descriptor. Linux's default soft
limit is 1,024 (systemd services included, unless ``LimitNOFILE`` says otherwise) while the hard
limit is usually far higher. A node at its limit resets every new connection (clients, and a
peer whose link dropped) and cannot dial a peer or open a file until some close; it recovers
then. So, as Go programs do since Go 1.19, a node raises its soft limit towards the hard one at
start, and says so when the result is still small.
"""

from __future__ import annotations

import logging

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

logger = logging.getLogger("consensus.runtime")

WANTED_OPEN_FILES = 65_536
"""What the soft limit is raised to (at most the hard limit)."""
FEW_OPEN_FILES = 4_096
"""Below this, the node warns at start: a busy node holds one per client connection."""


def raise_open_files_limit(node_id: int) -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``WANTED_OPEN_FILES``; return the limit now (None
    where the platform has none). Never lowers it; a refusal leaves it as it was."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = WANTED_OPEN_FILES if hard == resource.RLIM_INFINITY else min(WANTED_OPEN_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            logger.info("node %s: open-files limit raised from %s to %s", node_id, soft, target)
            soft = target
        except (OSError, ValueError) as error:
            logger.debug("node %s: could not raise the open-files limit: %s", node_id, error)
    if soft != resource.RLIM_INFINITY and soft < FEW_OPEN_FILES:
        logger.warning(
            "node %s: this process may open only %s files (client connections, peer links, "
            "database files); raise the limit (ulimit -n, or LimitNOFILE= in a systemd unit) to "
            "%s or more",
            node_id,
            soft,
            FEW_OPEN_FILES,
        )
    return None if soft == resource.RLIM_INFINITY else soft
