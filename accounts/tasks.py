"""Celery tasks of the account pool: thin wrappers named like the services they call.

Scheduled per pool by beat (grok2api.schedule.ManagedScheduler; rows managed by the runtime config
`account.refresh.<pool>_interval_sec`, seeded after migrate and at beat start):
`accounts.tasks.quota_refresh` with kwargs {"pool": "basic"|"super"|"heavy"}. Also queued on demand (after a 429, at most once per
`account.refresh.on_demand_min_interval_sec`), after use (single mode, throttled) and after import.
"""
from __future__ import annotations

from celery import shared_task

from accounts import quota, writer


@shared_task(name="accounts.tasks.quota_refresh", ignore_result=True)
def quota_refresh(account_ids: list[int] | None = None, pool: str | None = None, modes: list[str] | None = None) -> int:
    return len(quota.quota_refresh(account_ids=account_ids, pool=pool, modes=modes))


@shared_task(name="accounts.tasks.account_flush", ignore_result=True)
def account_flush() -> int:
    return writer.account_flush()
