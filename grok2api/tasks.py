"""Celery tasks of the project app: the worker heartbeat (core/heartbeat.py).

`grok2api.worker_heartbeat` is a managed beat row (grok2api/schedule.py) sent every
heartbeat.WORKER_EVERY seconds with an expiry of the same length, so a backlog queued while no
worker ran is dropped instead of replayed. A worker also stamps at start (`worker_ready`), so
/readyz clears as soon as one is up rather than at the next beat tick.
"""
from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

log = logging.getLogger(__name__)


@shared_task(name="grok2api.worker_heartbeat", ignore_result=True, bind=True)
def worker_heartbeat(self) -> None:
    from core.heartbeat import heartbeat_stamp

    heartbeat_stamp(name="worker", host=self.request.hostname or "")


@worker_ready.connect(dispatch_uid="grok2api_heartbeat_on_worker_start")
def _stamp_on_start(sender=None, **kwargs) -> None:
    try:
        from core.heartbeat import heartbeat_stamp

        heartbeat_stamp(name="worker", host=getattr(sender, "hostname", "") or "")
    except Exception:  # a database hiccup at start must not stop the worker; the periodic stamp follows
        log.exception("worker heartbeat at start failed")
