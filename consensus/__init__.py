"""Multi-Paxos replication as a Django app.

``__version__`` is this release (``pyproject.toml``'s version; a test keeps the two equal). Every
node of a cluster runs the same release (README "Upgrades"): ``manage.py runpaxos --version``,
``GET /api/status/`` and ``/metrics``'s ``paxos_build_info`` say which one a node runs.
"""

__version__ = "0.1.0"
PROJECT_NAME = "paxos-service"


def wire_version() -> int:
    """The peer wire format this release speaks (``consensus.transport.codec.VERSION``)."""
    from consensus.transport.codec import VERSION  # not at import: ``consensus`` stays light

    return VERSION


def version_text() -> str:
    """What ``--version`` prints, e.g. ``paxos-service 0.1.0 (wire format 7)``."""
    return f"{PROJECT_NAME} {__version__} (wire format {wire_version()})"
