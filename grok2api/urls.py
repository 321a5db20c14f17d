"""URL map: / (a small JSON for clients probing the base URL), /v1 (Ninja), /admin (Django admin),
/webui (pages), /healthz, /readyz and /metrics (core/metrics.py).

Static files (/static/) are served before Django, by grok2api/asgi.py. Django's own error pages
(400 bad Host, 404, 500) answer /v1 paths in JSON (grok2api/middleware.py)."""
from django.contrib import admin
from django.urls import include, path

from grok2api import health
from grok2api.metrics_view import metrics_view
from grok2api.api import api
from grok2api.middleware import api_error_page

urlpatterns = [
    path("v1/", api.urls),
    path("admin/", admin.site.urls),
    path("webui/", include("webui.urls")),
    path("", health.root),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("metrics", metrics_view),
]

handler400 = api_error_page(400)
handler404 = api_error_page(404)
handler500 = api_error_page(500)
