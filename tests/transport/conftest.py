"""Fixtures shared by the transport tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog that also sees the ``consensus`` loggers: settings.LOGGING sets them to
    propagate=False, so pytest's root handler alone would miss them."""
    logger = logging.getLogger("consensus")
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
