"""WebSocket routes of the web pages (filled by webui.consumers)."""
websocket_urlpatterns: list = []
