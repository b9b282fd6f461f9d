"""Errors carry blame, as in h11: our own misuse of the API versus a peer sending nonsense."""


class ProtocolError(Exception):
    """Base class of every error the core raises."""


class LocalProtocolError(ProtocolError):
    """The caller broke the API contract (e.g. a second ready() before advance())."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something impossible (wrong group, unknown node). Drop it, keep running."""
