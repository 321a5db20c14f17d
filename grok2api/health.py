"""GET /healthz (process alive) and GET /readyz (database and broker reachable), no auth."""
from __future__ import annotations

from django.http import JsonResponse


async def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    # Filled in by the foundation issue: database, broker, operator alerts.
    return JsonResponse({"status": "ok"})
