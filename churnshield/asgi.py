"""ASGI entry point: HTTP through Django, WebSocket through Channels (one process serves both)."""

import os

import django
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.sessions import SessionMiddlewareStack
from django.urls import path, re_path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "churnshield.settings.local")
django.setup(set_prefix=False)

from core.handler import SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from churnshield.routing import websocket_urlpatterns  # noqa: E402  (needs Django set up first)
from core.api.body_limit import BoundedBody  # noqa: E402
from integrations.asgi import WEBHOOK_ROUTE, WebhookConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Integrations: signed webhooks skip the middleware chain for an async receiver
        # with group commit (see integrations/asgi.py); everything else is Django.
        "http": URLRouter(
            [
                path(WEBHOOK_ROUTE, WebhookConsumer.as_asgi()),
                # Bodies bounded before Django reads them (chunked ones included): 413 JSON.
                re_path(r"", BoundedBody(django_asgi_app)),
            ]
        ),
        # Cookies and the Django session (for the admin's bell); the consumer checks the Origin
        # and the credentials itself (alerts.consumers).
        "websocket": SessionMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
