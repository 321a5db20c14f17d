"""`manage.py setup_periodic_tasks`: reconcile the managed Celery beat rows now.

Rarely needed: the rows are also reconciled after every `migrate` and by beat itself, at start
and whenever the runtime config changes (grok2api/schedule.py). Managed rows follow the runtime
config: one per pool ("accounts: quota refresh <pool>", every `account.refresh.<pool>_interval_sec`)
and the worker heartbeat. `--force` is accepted for compatibility; the config always wins.
"""
from core.management.base import DatabaseCommand
from grok2api.schedule import quota_refresh_name, schedule_reconcile

task_name = quota_refresh_name  # the row name of a pool's quota refresh (kept for callers of the old command)


class Command(DatabaseCommand):
    help = "Create or correct the managed celery beat rows (quota refresh per pool, worker heartbeat) from the runtime config."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="accepted for compatibility: managed rows always follow the config")

    def handle(self, *args, force=False, **options):
        changes = schedule_reconcile()
        for line in changes:
            self.stdout.write(line)
        if not changes:
            self.stdout.write("managed beat rows already match the runtime config")
