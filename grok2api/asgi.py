"""ASGI entry point: Channels routes HTTP to Django and WebSockets to the webui consumers."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grok2api.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402

from webui.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi,
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
