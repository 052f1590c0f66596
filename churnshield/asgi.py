"""ASGI entry point: HTTP through Django, WebSocket through Channels (one process serves both)."""

import os

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.sessions import SessionMiddlewareStack
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "churnshield.settings.local")
django_asgi_app = get_asgi_application()

from churnshield.routing import websocket_urlpatterns  # noqa: E402  (needs Django set up first)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Cookies and the Django session (for the admin's bell); the consumer checks the Origin
        # and the credentials itself (alerts.consumers).
        "websocket": SessionMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
