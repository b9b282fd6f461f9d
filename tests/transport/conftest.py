"""Fixtures shared by the transport tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.logs import consensus_logs


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog that also sees the ``consensus`` loggers (``consensus_logs``)."""
    with consensus_logs(caplog):
        yield caplog
