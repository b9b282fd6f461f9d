"""A path whose percent-escapes are not UTF-8 (``/api/kv/1/%ff``) on a real node, under both
servers: the API's JSON 400, the same words on daphne (``daphne_http`` refuses it before the
application) and on uvicorn (which decodes leniently; ``LeanRouter`` refuses it), and the node
goes on serving. Other paths keep the server's own answer."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from consensus.api.lean import UNDECODABLE_PATH
from tests.fixtures.cluster import TOKEN, Cluster

pytestmark = pytest.mark.e2e


def fetch(cluster: Cluster, method: str, target: str, body: bytes = b"") -> tuple[int, str, bytes]:
    """Status, content type and body; ``target`` goes on the wire exactly as given."""
    connection = http.client.HTTPConnection("127.0.0.1", cluster.nodes[1].port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_an_undecodable_api_path_is_a_json_400_on_both_servers(
    cluster_factory: Any, server: str
) -> None:
    cluster = cluster_factory(size=1, server=server)
    value = json.dumps({"value": "v"}).encode()
    for method, target, body in [
        ("GET", "/api/kv/1/%ff", b""),
        ("PUT", "/api/kv/1/%fe", value),
        ("POST", "/api/groups/1/commands/%c3", value),
    ]:
        status, content_type, content = fetch(cluster, method, target, body)
        assert (status, content_type) == (400, "application/json"), (target, content[:300])
        assert json.loads(content) == {"error": UNDECODABLE_PATH}
    assert fetch(cluster, "GET", "/nope/%ff")[0] in (400, 404)  # the server's own page
    assert fetch(cluster, "PUT", "/api/kv/1/%EF%BF%BD", value)[0] == 200  # U+FFFD, escaped
    assert fetch(cluster, "GET", "/api/kv/1/%EF%BF%BD")[0] == 200
    assert fetch(cluster, "GET", "/api/kv/1/%ff")[0] == 400  # not the key just written
