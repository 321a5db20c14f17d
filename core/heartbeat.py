"""Liveness of the background processes: a Celery worker and Celery beat.

- the worker: the periodic task `grok2api.worker_heartbeat` (every WORKER_EVERY seconds, sent by
  beat, run by whichever worker takes it) and the worker's start (`worker_ready`) stamp the row
  "worker";
- beat: the scheduler (grok2api/schedule.py) stamps the row "beat" every BEAT_EVERY seconds.

`heartbeat_warnings()` turns rows older than their limit into one sentence each, naming what to
start; /readyz and the admin index show them. A missing worker or beat stops video jobs and
scheduled maintenance, not chat, so /readyz stays 200 and lists them under `details.warnings`.
Rows live in the database (core.models.Heartbeat) so every web process sees them, with or
without Redis.
"""
from __future__ import annotations

import logging
import socket
from datetime import datetime

from django.utils import timezone

log = logging.getLogger(__name__)

WORKER_EVERY = 30  # seconds between worker heartbeats (the beat row "grok2api: worker heartbeat")
WORKER_STALE = 3 * WORKER_EVERY  # three missed heartbeats: the worker is gone (or is stuck)
BEAT_EVERY = 15  # seconds between beat stamps
BEAT_STALE = 4 * BEAT_EVERY  # beat's loop wakes at least every 5 s, so 60 s without a stamp is not jitter

START_WORKER = ("start `celery -A grok2api worker` (`manage.py serve` starts one with beat unless "
                "--no-worker; with REDIS_URL it needs --worker)")
START_BEAT = ("start `celery -A grok2api beat` (`manage.py serve`'s embedded worker runs beat unless "
              "--no-worker; with REDIS_URL it needs --worker)")


def heartbeat_stamp(*, name: str, host: str = "") -> None:
    """Record that process kind `name` ("worker" or "beat") is alive now."""
    from core.models import Heartbeat

    Heartbeat.objects.update_or_create(name=name, defaults={"seen_at": timezone.now(), "host": (host or socket.gethostname())[:200]})


def heartbeat_seen(*, now: datetime | None = None) -> dict[str, dict]:
    """{"worker"|"beat": {"seen_at": datetime|None, "age": seconds|None, "host": str, "stale": bool}}."""
    from core.models import Heartbeat

    now = now or timezone.now()
    rows = {h.name: h for h in Heartbeat.objects.filter(name__in=("worker", "beat"))}
    out: dict[str, dict] = {}
    for name, limit in (("worker", WORKER_STALE), ("beat", BEAT_STALE)):
        row = rows.get(name)
        age = None if row is None else max(0, int((now - row.seen_at).total_seconds()))
        out[name] = {
            "seen_at": row.seen_at if row else None, "age": age, "host": row.host if row else "",
            "stale": age is None or age > limit,
        }
    return out


def heartbeat_warnings(*, now: datetime | None = None) -> list[str]:
    """One sentence per background process not seen within its limit, naming what to start."""
    seen = heartbeat_seen(now=now)
    warnings: list[str] = []
    worker, beat = seen["worker"], seen["beat"]
    if worker["stale"]:
        since = "has been seen yet" if worker["age"] is None else f"seen for {worker['age']} s (last: {worker['host']})"
        warnings.append(f"no Celery worker {since} — {START_WORKER}; until then video jobs and background "
                        "responses stay queued and scheduled maintenance does not run")
    if beat["stale"]:
        since = "has been seen yet" if beat["age"] is None else f"seen for {beat['age']} s (last: {beat['host']})"
        warnings.append(f"no Celery beat {since} — {START_BEAT}; until then quotas are not refreshed on schedule "
                        "and the worker's heartbeat is not sent")
    return warnings
