"""The KV store's hottest endpoints as raw ASGI routes (``consensus.api.lean.RawRoute``).

``GET`` and ``PUT /api/kv/<group>/<key>`` with a bearer token are answered straight from the
ASGI scope, without Django's request object, URL resolution or response: that is most of what a
REST put costs a node besides the command itself (see ``consensus/api/lean.py``). The answers
come from the same functions as the views' (``views.read`` and ``views.put``); anything else
(other methods, a session cookie, a path the regex does not take) goes on to Django.
"""

from __future__ import annotations

import re
from typing import Any

from consensus.api import fastpath
from consensus.api.converters import GROUP_ID_REGEX
from consensus.api.lean import RawRequest, RawRoute

from . import views

ENTRY = re.compile(rf"^/api/kv/(?P<group_id>{GROUP_ID_REGEX})/(?P<key>[^/]+)$")
"""The path of ``urls.py``'s ``entry`` route (``<group:group_id>/<str:key>`` under ``api/kv/``)."""


async def entry(request: RawRequest, match: re.Match[str]) -> dict[str, Any]:
    group_id, key = int(match["group_id"]), fastpath.check_key(match["key"])
    if request.method == "GET":
        return await views.read(group_id, key, request.query.get("consistency", "linearizable"))
    limit = fastpath.max_body_bytes()
    fastpath.check_content_length(request.headers.get("content-length"), limit)
    data = fastpath.parse_json_object(request.body, limit)
    return await views.put(group_id, key, data, request.headers.get("x-request-id"))


raw_routes = (RawRoute(ENTRY, frozenset({"GET", "PUT"}), entry),)
