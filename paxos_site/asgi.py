"""ASGI entry point: plain Django for HTTP, channels' URL router for websockets.

``get_asgi_application()`` runs first: it sets Django up, and the websocket routes import consumers
that import models. Websockets are deliberately *not* wrapped in ``AllowedHostsOriginValidator``:
peers are not browsers and send no Origin; the transport authenticates them with the cluster
secret instead.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paxos_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from consensus.api.lean import LeanRouter  # noqa: E402
from consensus.routing import websocket_urlpatterns  # noqa: E402
from kvstore.api.asgi import raw_routes as kv_raw_routes  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Hot API requests (bearer token, no cookie) skip the middleware stack, KV gets and puts
        # Django's request handling too; see consensus/api/lean.py.
        "http": LeanRouter(django_asgi_app, raw_routes=kv_raw_routes),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
