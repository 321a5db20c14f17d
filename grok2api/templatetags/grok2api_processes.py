"""`{% background_processes as procs %}` for the admin index: when a Celery worker and beat were last
seen (core/heartbeat.py), and a warning naming what to start for each one that is missing."""
from __future__ import annotations

from django import template

register = template.Library()


@register.simple_tag
def background_processes() -> dict:
    from django.utils import timezone

    from core.heartbeat import heartbeat_seen, heartbeat_warnings

    now = timezone.now()
    seen = heartbeat_seen(now=now)
    rows = [{"name": name, **info} for name, info in (("Celery worker", seen["worker"]), ("Celery beat", seen["beat"]))]
    return {"rows": rows, "warnings": heartbeat_warnings(now=now)}
