"""Celery tasks of the gateway: usage ledger retention (gateway/ledger.py).

Both are managed beat rows (grok2api/schedule.py): `gateway.tasks.usage_rollup` every
ROLLUP_EVERY seconds and `gateway.tasks.usage_prune` every PRUNE_EVERY seconds, each with an expiry
of its period so a backlog queued while no worker ran is dropped instead of replayed (one run
catches up anyway).
"""
from __future__ import annotations

from celery import shared_task

ROLLUP_EVERY = 600  # the current hour on the admin charts is at most this old
PRUNE_EVERY = 3600


@shared_task(name="gateway.tasks.usage_rollup", ignore_result=True)
def usage_rollup() -> int:
    from gateway.ledger import usage_rollup as rollup

    return rollup()


@shared_task(name="gateway.tasks.usage_prune", ignore_result=True)
def usage_prune() -> int:
    from gateway.ledger import usage_prune as prune

    return prune()
