"""The managed Celery beat schedule: rows the runtime config owns, and the scheduler that keeps them.

Managed rows (django-celery-beat PeriodicTask, interval schedules):

| row | task | every |
|---|---|---|
| `accounts: quota refresh <pool>` (basic, super, heavy) | `accounts.tasks.quota_refresh` {"pool": …} | `account.refresh.<pool>_interval_sec` (≥ 60 s) |
| `grok2api: worker heartbeat` | `grok2api.worker_heartbeat` | 30 s, fixed (core/heartbeat.py) |
| `gateway: usage rollup` | `gateway.tasks.usage_rollup` | 600 s, fixed (gateway/ledger.py) |
| `gateway: usage prune` | `gateway.tasks.usage_prune` | 3600 s, fixed; the retention is `usage.raw_retention_days` |

`schedule_reconcile()` makes the rows match: it creates missing ones and puts back interval, task,
arguments and `enabled` on edited ones — the runtime config wins over an admin edit of a managed
row (the admin shows those rows read-only, naming the key). It runs from three places, so every
way of starting the project gets the schedule without a manual step:
- after `migrate` (post_migrate; `serve` migrates on every start);
- when beat starts, and then on every beat tick whose config snapshot differs from the last
  applied one (at most BEAT_RECONCILE_EVERY seconds apart otherwise): `ManagedScheduler`, a
  DatabaseScheduler subclass that `serve`'s embedded worker, docker compose and
  CELERY_BEAT_SCHEDULER use. A changed row is saved with `.save()`, which marks django-celery-beat's
  PeriodicTasks change stamp, so the scheduler reloads it on its next tick;
- by hand: `manage.py setup_periodic_tasks`.
Rows that are not managed (the media tasks from `app.conf.beat_schedule`, the operator's own)
are left alone.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from django.db import transaction
from django_celery_beat.schedulers import DatabaseScheduler

log = logging.getLogger(__name__)

POOLS = ("basic", "super", "heavy")
POOL_DEFAULT_INTERVAL = {"basic": 86400, "super": 7200, "heavy": 7200}
MIN_INTERVAL = 60
BEAT_RECONCILE_EVERY = 60.0  # also undo admin edits that slipped past the read-only form (API, shell)


@dataclass(frozen=True)
class ManagedTask:
    name: str
    task: str
    every: int  # seconds
    config_key: str | None  # the runtime config key that sets `every`; None = fixed by the code
    kwargs: dict = field(default_factory=dict)
    expire_seconds: int | None = None
    description: str = ""


def quota_refresh_name(pool: str) -> str:
    return f"accounts: quota refresh {pool}"


WORKER_HEARTBEAT_NAME = "grok2api: worker heartbeat"
USAGE_ROLLUP_NAME = "gateway: usage rollup"
USAGE_PRUNE_NAME = "gateway: usage prune"


def schedule_managed(*, cfg=None) -> list[ManagedTask]:
    """The managed rows as the runtime config `cfg` (default: the current snapshot) wants them."""
    from core.config import config
    from gateway.tasks import PRUNE_EVERY, ROLLUP_EVERY
    from core.heartbeat import WORKER_EVERY

    cfg = cfg if cfg is not None else config()
    out = []
    for pool in POOLS:
        key = f"account.refresh.{pool}_interval_sec"
        every = max(MIN_INTERVAL, int(cfg.get(key) or POOL_DEFAULT_INTERVAL[pool]))
        out.append(ManagedTask(
            name=quota_refresh_name(pool), task="accounts.tasks.quota_refresh", every=every, config_key=key,
            kwargs={"pool": pool}, description=f"Probe the rate-limit windows of the {pool} pool. Interval: runtime config {key}.",
        ))
    out.append(ManagedTask(
        name=WORKER_HEARTBEAT_NAME, task="grok2api.worker_heartbeat", every=WORKER_EVERY, config_key=None,
        expire_seconds=WORKER_EVERY, description="Tells /readyz and the admin index that a Celery worker is running.",
    ))
    out.append(ManagedTask(
        name=USAGE_ROLLUP_NAME, task="gateway.tasks.usage_rollup", every=ROLLUP_EVERY, config_key=None,
        expire_seconds=ROLLUP_EVERY, description="Recompute the hourly usage rollups of the recent hours.",
    ))
    out.append(ManagedTask(
        name=USAGE_PRUNE_NAME, task="gateway.tasks.usage_prune", every=PRUNE_EVERY, config_key=None,
        expire_seconds=PRUNE_EVERY,
        description="Delete raw usage rows older than runtime config usage.raw_retention_days (rolled up first).",
    ))
    return out


def schedule_config_read():
    """The runtime config read once from the database, without the snapshot (whose first use starts a
    poller thread): for the post_migrate path, which runs in `migrate` and in `serve`'s supervisor."""
    from core.config import build_view
    from core.models import RuntimeConfig

    row = RuntimeConfig.objects.filter(pk=1).first()
    return build_view(row.data if row else {})


def schedule_managed_names() -> dict[str, str | None]:
    """{row name: config key or None} of every managed row (the admin marks these)."""
    keys = {quota_refresh_name(p): f"account.refresh.{p}_interval_sec" for p in POOLS}
    return {**keys, WORKER_HEARTBEAT_NAME: None, USAGE_ROLLUP_NAME: None, USAGE_PRUNE_NAME: None}


def schedule_reconcile(*, cfg=None) -> list[str]:
    """Create or correct the managed rows; return one line per row created or changed."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    changes: list[str] = []
    with transaction.atomic():
        for m in schedule_managed(cfg=cfg):
            interval = (IntervalSchedule.objects.filter(every=m.every, period=IntervalSchedule.SECONDS).order_by("id").first()
                        or IntervalSchedule.objects.create(every=m.every, period=IntervalSchedule.SECONDS))
            want = {
                "task": m.task, "interval_id": interval.id, "crontab_id": None, "solar_id": None, "clocked_id": None,
                "kwargs": json.dumps(m.kwargs), "args": "[]", "enabled": True, "one_off": False,
                "expire_seconds": m.expire_seconds, "expires": None, "description": m.description,
            }
            row = PeriodicTask.objects.filter(name=m.name).first()
            if row is None:
                PeriodicTask(name=m.name, **want).save()
                changes.append(f"created {m.name!r} every {m.every} s")
                continue
            wrong = [k for k, v in want.items() if getattr(row, k) != v]
            if wrong:
                for k in wrong:
                    setattr(row, k, want[k])
                row.save()  # save(), not update(): it moves PeriodicTasks.last_update, which beat watches
                changes.append(f"reset {m.name!r} to every {m.every} s ({', '.join(k.removesuffix('_id') for k in wrong)})")
    for line in changes:
        # Creating the rows on a new database is routine; putting back a changed row is news.
        log.log(logging.DEBUG if line.startswith("created") else logging.INFO, "beat schedule: %s", line)
    return changes


class ManagedScheduler(DatabaseScheduler):
    """django-celery-beat's DatabaseScheduler that also keeps the managed rows and stamps beat's heartbeat.

    Both run in `tick()` (beat's loop calls it at least every 5 s) and are throttled here; a
    failure is logged and retried on a later tick, never allowed to stop beat."""

    _applied: tuple | None = None
    _reconciled_at = 0.0
    _stamped_at = 0.0

    def setup_schedule(self):
        self._maintain(force=True)
        super().setup_schedule()

    def tick(self, *args, **kwargs):
        self._maintain()
        return super().tick(*args, **kwargs)

    def _maintain(self, *, force: bool = False) -> None:
        from core.heartbeat import BEAT_EVERY, heartbeat_stamp

        now = time.monotonic()
        try:
            wanted = tuple(schedule_managed())
            if force or wanted != self._applied or now - self._reconciled_at >= BEAT_RECONCILE_EVERY:
                schedule_reconcile()
                self._applied, self._reconciled_at = wanted, now
        except Exception:
            log.exception("beat schedule: reconciling the managed rows failed; retrying on the next tick")
        if force or now - self._stamped_at >= BEAT_EVERY:
            try:
                heartbeat_stamp(name="beat")  # host: this machine's name
                self._stamped_at = now
            except Exception:
                log.exception("beat heartbeat failed; retrying on the next tick")
