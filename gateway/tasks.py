"""Celery tasks of the gateway app: thin wrappers over its services.

- `gateway.tasks.usage_rollup` / `gateway.tasks.usage_prune`: usage ledger retention
  (gateway/ledger.py). Managed beat rows (grok2api/schedule.py), every ROLLUP_EVERY and PRUNE_EVERY
  seconds, each with an expiry of its period so a backlog queued while no worker ran is dropped
  instead of replayed (one run catches up anyway).
- `gateway.responses_prune()`: periodic (hourly) — delete stored Responses API answers older than
  `responses.retention_days`. Its entry is added to the beat schedule below, like media/tasks.py's
  (django-celery-beat's DatabaseScheduler copies `beat_schedule` into its tables at start).
- `gateway.response_background_run(response_id)`: run one background response (gateway/background.py).
  `acks_late`: a message taken by a worker that dies before finishing is not acknowledged, so the
  broker can hand it out again; the claim (queued → in_progress) makes a second delivery a no-op.
- `gateway.responses_background_recover()`: periodic (every 30 s) and at worker start — re-queue
  background runs whose worker is gone, re-send queued ones whose message may have been lost.
"""
from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

from core.celery import app

log = logging.getLogger(__name__)

ROLLUP_EVERY = 600  # the current hour on the admin charts is at most this old
PRUNE_EVERY = 3600

BEAT_SCHEDULE = {
    "gateway-responses-prune": {"task": "gateway.responses_prune", "schedule": 3600.0},
    "gateway-responses-background-recover": {"task": "gateway.responses_background_recover", "schedule": 30.0},
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


@shared_task(name="gateway.response_background_run", ignore_result=True, acks_late=True, reject_on_worker_lost=False)
def response_background_run(response_id: str) -> None:
    from gateway.background import response_background_run as run

    run(response_id=response_id)


@shared_task(name="gateway.responses_background_recover", ignore_result=True)
def responses_background_recover() -> dict:
    from gateway.background import responses_background_recover as recover

    return recover()


@worker_ready.connect(dispatch_uid="gateway_background_recover_on_worker_start")
def _recover_on_start(sender=None, **kwargs) -> None:
    # A worker that starts takes over at once the runs a dead worker on this host left behind;
    # runs of other hosts follow the heartbeat rule.
    try:
        from gateway.background import responses_background_recover as recover

        recover()
    except Exception:
        log.exception("background response recovery at worker start failed")
