"""WebSocket routes. The authenticated alert feed (`ws/alerts`) arrives with the notification issue."""

websocket_urlpatterns: list = []
