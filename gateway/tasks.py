"""Celery tasks of the gateway app: thin wrappers over its services.

- `gateway.responses_prune()`: periodic (hourly) — delete stored Responses API answers older than
  `responses.retention_days`.

The periodic entry is added to the beat schedule below, like media/tasks.py's (django-celery-beat's
DatabaseScheduler copies `beat_schedule` into its tables at start, where operators can edit it).
"""
from __future__ import annotations

from celery import shared_task

from grok2api.celery import app

BEAT_SCHEDULE = {
    "gateway-responses-prune": {"task": "gateway.responses_prune", "schedule": 3600.0},
}
for _name, _entry in BEAT_SCHEDULE.items():
    app.conf.beat_schedule.setdefault(_name, _entry)


@shared_task(name="gateway.responses_prune", ignore_result=True)
def responses_prune() -> int:
    from gateway.stored_responses import responses_prune as prune

    return prune()
