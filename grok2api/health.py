"""GET /healthz (process alive) and GET /readyz (database and broker reachable), no auth.

/healthz: `{"status":"ok"}`, always 200 while the process serves requests.
/readyz: `{"status":"ok"|"unavailable","checks":{"database":{"ok":bool,"error"?},"broker":{...}},
"details":{"alerts":[{"kind","message","hint","endpoint","egress","count","last_at"}],
"warnings":[str]}}`; 200 when every check passes, else 503. Operator alerts and warnings
(e.g. `app.app_url` unset, /v1 open without a key, no Celery worker or beat seen lately —
core/heartbeat.py) are reported but do not make the process unready: they are problems the
operator must fix, not reasons for a load balancer to stop sending traffic.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

OPEN_API_WARNING = ("/v1 is open: no app.api_key and no enabled API key, so anyone who can reach this server "
                    "can use your accounts. Set app.api_key or create an API key.")


async def healthz(request):
    return JsonResponse({"status": "ok"})


async def root(request):
    """GET / and HEAD /: clients probe the base URL they were given before using it."""
    return JsonResponse({"name": "grok2api", "status": "ok", "api": "/v1", "admin": "/admin/"})


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # any driver error means "not reachable"
        return {"ok": False, "vendor": connection.vendor, "error": f"{type(exc).__name__}: {exc}".strip()[:300]}


def _check_broker() -> dict:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        try:
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            try:
                client.ping()
            finally:
                client.close()
            return {"ok": True, "transport": "redis"}
        except Exception as exc:
            return {"ok": False, "transport": "redis", "error": f"{type(exc).__name__}: {exc}"[:300]}
    # kombu filesystem transport: the folders must exist and be writable by this process.
    opts = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    for folder in {opts.get("data_folder_in"), opts.get("data_folder_out"), opts.get("processed_folder")} - {None}:
        probe = Path(folder) / f".readyz-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return {"ok": False, "transport": "filesystem", "error": f"{folder}: {exc.strerror or exc}"}
    return {"ok": True, "transport": "filesystem"}


def _details() -> dict:
    from core.config import config
    from core.models import OperatorAlert

    alerts = [
        {
            "kind": a.kind,
            "message": a.message,
            "hint": a.hint,
            "endpoint": a.endpoint,
            "egress": a.egress,
            "count": a.count,
            "last_at": a.last_at.isoformat(),
        }
        for a in OperatorAlert.objects.filter(resolved=False).order_by("-last_at")[:20]
    ]
    from gateway.auth import api_open

    warnings = []
    if api_open():
        warnings.append(OPEN_API_WARNING)
    if not config().get("app.app_url"):
        warnings.append("app.app_url is not set: local media links (/v1/files/...) cannot be built as absolute URLs")
    warnings.extend(_background_warnings())
    return {"alerts": alerts, "warnings": warnings}


def _background_warnings() -> list[str]:
    # A Celery worker or beat not seen within its heartbeat limit (core/heartbeat.py). Still
    # 200: chat does not need them; video jobs and scheduled maintenance wait until they run.
    from core.heartbeat import heartbeat_warnings

    return heartbeat_warnings()


def readyz(request):
    checks = {"database": _check_database(), "broker": _check_broker()}
    ready = all(c["ok"] for c in checks.values())
    body: dict = {"status": "ok" if ready else "unavailable", "checks": checks, "pid": os.getpid()}
    if checks["database"]["ok"]:
        try:
            body["details"] = _details()
        except Exception as exc:  # e.g. migrations not applied yet
            checks["database"] = {"ok": False, "vendor": connection.vendor, "error": f"{type(exc).__name__}: {exc}"[:300]}
            body["status"] = "unavailable"
            ready = False
    return JsonResponse(body, status=200 if ready else 503)
