"""`manage.py setup_periodic_tasks [--force]`: seed the per-pool quota refresh schedule (idempotent).

Creates one django-celery-beat PeriodicTask per pool ("accounts: quota refresh <pool>") running
`accounts.tasks.quota_refresh` with kwargs {"pool": <pool>} every
`account.refresh.<pool>_interval_sec`. Existing rows are left alone (the operator may have edited
the interval in admin) unless --force, which resets them to the configured intervals.
"""
import json

from django.db import transaction

from accounts.config import config
from grok2api.management.base import DatabaseCommand

TASK = "accounts.tasks.quota_refresh"
POOLS = ("basic", "super", "heavy")


def task_name(pool: str) -> str:
    return f"accounts: quota refresh {pool}"


class Command(DatabaseCommand):
    help = "Create the per-pool quota refresh schedule for celery beat (DatabaseScheduler)."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="reset existing rows to the configured intervals")

    def handle(self, *args, force=False, **options):
        from django_celery_beat.models import IntervalSchedule, PeriodicTask

        cfg = config()
        with transaction.atomic():
            for pool in POOLS:
                seconds = max(60, int(cfg.get(f"account.refresh.{pool}_interval_sec") or 7200))
                schedule, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
                task = PeriodicTask.objects.filter(name=task_name(pool)).first()
                kwargs = json.dumps({"pool": pool})
                if task is None:
                    PeriodicTask.objects.create(name=task_name(pool), task=TASK, interval=schedule, kwargs=kwargs, enabled=True)
                    self.stdout.write(f"created {task_name(pool)!r} every {seconds} s")
                elif force:
                    task.task, task.interval, task.crontab, task.kwargs, task.enabled = TASK, schedule, None, kwargs, True
                    task.save()  # save() (not update()) so the scheduler notices the change
                    self.stdout.write(f"reset {task_name(pool)!r} to every {seconds} s")
                else:
                    self.stdout.write(f"kept {task_name(pool)!r} (exists; --force resets it)")
