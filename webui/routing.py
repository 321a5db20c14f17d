"""WebSocket routes of the web pages (grok2api/asgi.py wraps them in AuthMiddlewareStack)."""
from django.urls import path

from webui.consumers import ImagineWallConsumer

websocket_urlpatterns = [
    path("webui/ws/imagine", ImagineWallConsumer.as_asgi()),
]
