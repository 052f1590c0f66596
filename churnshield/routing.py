"""WebSocket routes: the authenticated live alert feed (protocol in README.md, "Live alert feed")."""

from django.urls import path

from alerts.consumers import AlertFeedConsumer

websocket_urlpatterns: list = [
    path("ws/alerts", AlertFeedConsumer.as_asgi()),
]
