"""URL map: / (a small JSON for clients probing the base URL), /v1 (Ninja), /admin (Django admin),
/webui (pages), /healthz, /readyz and /metrics (grok2api/metrics.py)."""
from django.contrib import admin
from django.urls import include, path

from grok2api import health
from grok2api.metrics import metrics_view
from grok2api.api import api

urlpatterns = [
    path("v1/", api.urls),
    path("admin/", admin.site.urls),
    path("webui/", include("webui.urls")),
    path("", health.root),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("metrics", metrics_view),
]
