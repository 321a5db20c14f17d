"""`{% pool_health as health %}` for the admin index: accounts per pool and status, open operator
alerts with their hints, and configuration warnings (/v1 open without a key, app.app_url unset, static x-statsig-id)."""
from __future__ import annotations

from django import template
from django.db.models import Count

register = template.Library()


@register.simple_tag
def pool_health() -> dict:
    from core.config import config
    from accounts.models import Account, AccountStatus, Pool
    from core.models import OperatorAlert

    statuses = [s.value for s in AccountStatus]
    counts = {(row["pool"], row["status"]): row["n"] for row in
              Account.objects.filter(deleted_at__isnull=True).values("pool", "status").annotate(n=Count("id"))}
    pools = []
    for pool in Pool:
        cells = [counts.get((pool.value, status), 0) for status in statuses]
        pools.append({"name": pool.value, "cells": cells, "total": sum(cells)})
    cfg = config()
    from gateway.auth import api_open
    from grok2api.health import OPEN_API_WARNING

    warnings = []
    if api_open():
        warnings.append(OPEN_API_WARNING)
    if not cfg.get("app.app_url"):
        warnings.append("app.app_url is not set: local media links (image_format/video_format local_*, /v1/files/…) "
                        "are relative, and clients outside this host cannot open them. Set it under Runtime config → app.")
    if not any(p["total"] for p in pools):
        warnings.append("No accounts yet: add SSO tokens under Accounts before sending API requests.")
    return {
        "statuses": statuses,
        "pools": pools,
        "alerts": list(OperatorAlert.objects.filter(resolved=False).order_by("-last_at")[:20]),
        "warnings": warnings,
        "statsig": bool(cfg.get("upstream.static_statsig_id")),
        "clearance": cfg.get("proxy.clearance.mode"),
        "egress": cfg.get("proxy.egress.mode"),
    }
