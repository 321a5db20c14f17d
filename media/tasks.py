"""Celery tasks of the media app: thin wrappers over media/videos.py / media/cache.py.

- `media.video_job_run(job_id)`: run one video job (claims it with a conditional update).
- `media.video_jobs_recover()`: periodic (every 60 s) and at worker start — resume or fail jobs
  whose worker stopped (stale heartbeat), re-enqueue queued jobs whose message was lost.
- `media.media_cache_evict()`: periodic (every 10 min) — evict the local media cache down to
  60 % of its caps when over them.

The periodic entries are added to the beat schedule below (django-celery-beat's
DatabaseScheduler copies `beat_schedule` into its tables at start, where operators can edit them).
"""
from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

from core.celery import app
from media.cache import media_cache_evict_all
from media.videos import video_job_run as run_video_job
from media.videos import video_jobs_recover as recover_video_jobs

log = logging.getLogger(__name__)

BEAT_SCHEDULE = {
    "media-video-jobs-recover": {"task": "media.video_jobs_recover", "schedule": 60.0},
    "media-cache-evict": {"task": "media.media_cache_evict", "schedule": 600.0},
}
for _name, _entry in BEAT_SCHEDULE.items():
    app.conf.beat_schedule.setdefault(_name, _entry)


@shared_task(name="media.video_job_run", ignore_result=True, acks_late=True, reject_on_worker_lost=False)
def video_job_run(job_id: str) -> None:
    run_video_job(job_id=job_id)


@shared_task(name="media.video_jobs_recover", ignore_result=True)
def video_jobs_recover() -> dict:
    return recover_video_jobs()


@shared_task(name="media.media_cache_evict", ignore_result=True)
def media_cache_evict() -> dict:
    return media_cache_evict_all()


@worker_ready.connect(dispatch_uid="media_recover_on_worker_start")
def _recover_on_start(sender=None, **kwargs) -> None:
    # A worker that restarts picks up jobs its dead predecessor left behind (same host, pid gone)
    # right away; other stale jobs follow the heartbeat rule.
    try:
        recover_video_jobs()
    except Exception:
        log.exception("video job recovery at worker start failed")
