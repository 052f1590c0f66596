"""WebSocket routes: the authenticated live alert feed (protocol in docs/alert-feed.md)."""

from django.urls import path

from alerts.consumers import AlertFeedConsumer

websocket_urlpatterns: list = [
    path("ws/alerts", AlertFeedConsumer.as_asgi()),
]
