"""The ``<group:...>`` path converter of the API's URLs (``consensus`` and ``kvstore`` alike),
registered when the app is ready (``ConsensusConfig.ready``), before any URLconf is loaded."""

from django.urls import register_converter
from django.urls.converters import IntConverter, get_converters

GROUP_ID_REGEX = "[0-9]{1,18}"
"""A group (or node) id in a path: 18 digits at most, so every id fits a 64-bit integer and a
path of thousands of digits is no endpoint (``int()`` refuses over 4300 digits, a 500) rather
than a lookup. The viewsets' lookups and the KV store's raw route (``kvstore/api/asgi.py``) use
it too."""


class GroupIdConverter(IntConverter):
    """``<group:group_id>``: an ``int`` of ``GROUP_ID_REGEX``."""

    regex = GROUP_ID_REGEX


def register() -> None:
    """Once per process: ``ready()`` may run again (tests do it), and Django deprecates
    registering a converter name twice."""
    if "group" not in get_converters():
        register_converter(GroupIdConverter, "group")
