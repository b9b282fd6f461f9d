"""The soak run: ``pytest --soak=SECONDS tests/jepsen`` (the option is in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak tests (those using ``soak_seconds``) run only with ``--soak``, and get a timeout that
    fits their length."""
    seconds = config.getoption("soak")
    for item in items:
        if "soak_seconds" not in getattr(item, "fixturenames", ()):
            continue
        if not seconds:
            item.add_marker(pytest.mark.skip(reason="soak run: pass --soak=SECONDS"))
        else:
            item.add_marker(pytest.mark.timeout(seconds * 2 + 900))


@pytest.fixture
def soak_seconds(request: pytest.FixtureRequest) -> float:
    return float(request.config.getoption("soak"))
