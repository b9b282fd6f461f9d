"""The errors a node raises to the callers of ``submit``, reads and barriers: the API, the
client stream and the dashboard turn each into its HTTP status (``SubmitError.http_status``)."""

from __future__ import annotations


class SubmitError(Exception):
    """A command could not be committed; ``retry_after`` (seconds) is a hint for the client.
    ``request_id``: the command's, when it may have been proposed (its outcome is unknown: only
    a retry with that id is safe)."""

    http_status = 503
    """What the API and the dashboard answer with: 503 (try again later) unless a subclass says
    the request itself is wrong."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.request_id: str | None = None


class NoQuorumError(SubmitError):
    """No leader, or no majority, answered within the request timeout."""


class OverloadedError(SubmitError):
    """The node refused the command (too many commands pending)."""


class CommandTooLargeError(SubmitError):
    """A command above the node's ``max_command_bytes``. Every command must fit, with room to
    spare, in one peer frame: an Accept that no follower can receive is retried for ever, and a
    new leader that recovers the value proposes it again, so one such command would stop its
    group on every node."""

    http_status = 413


class InvalidRequestIdError(SubmitError):
    """A request id the results table cannot hold (``request_ids.request_id_problem``):
    proposed, it would stop every node at the instance that holds it."""

    http_status = 400


class RequestIdReusedError(SubmitError):
    """The request id was first used for a different command. Answering with that command's
    stored result, as for a retry, would silently drop this one: a client whose counter of
    request ids started again would lose writes while every answer said they succeeded."""

    http_status = 409


class UnknownGroupError(KeyError):
    """The node has no group of that id (the API's 404)."""
