"""Celery tasks of the gateway app: thin wrappers over its services.

- `gateway.tasks.usage_rollup` / `gateway.tasks.usage_prune`: usage ledger retention
  (gateway/ledger.py). Managed beat rows (grok2api/schedule.py), every ROLLUP_EVERY and PRUNE_EVERY
  seconds, each with an expiry of its period so a backlog queued while no worker ran is dropped
  instead of replayed (one run catches up anyway).
- `gateway.responses_prune()`: periodic (hourly) — delete stored Responses API answers older than
  `responses.retention_days`. Its entry is added to the beat schedule below, like media/tasks.py's
  (django-celery-beat's DatabaseScheduler copies `beat_schedule` into its tables at start).
"""
from __future__ import annotations

from celery import shared_task

from grok2api.celery import app

ROLLUP_EVERY = 600  # the current hour on the admin charts is at most this old
PRUNE_EVERY = 3600

BEAT_SCHEDULE = {
    "gateway-responses-prune": {"task": "gateway.responses_prune", "schedule": 3600.0},
}
for _name, _entry in BEAT_SCHEDULE.items():
    app.conf.beat_schedule.setdefault(_name, _entry)


@shared_task(name="gateway.tasks.usage_rollup", ignore_result=True)
def usage_rollup() -> int:
    from gateway.ledger import usage_rollup as rollup

    return rollup()


@shared_task(name="gateway.tasks.usage_prune", ignore_result=True)
def usage_prune() -> int:
    from gateway.ledger import usage_prune as prune

    return prune()


@shared_task(name="gateway.responses_prune", ignore_result=True)
def responses_prune() -> int:
    from gateway.stored_responses import responses_prune as prune

    return prune()
