"""Usage ledger retention: hourly rollups kept long, raw UsageRecord rows pruned after
`usage.raw_retention_days` (runtime config; 0 = keep raw rows forever).

Both run from beat (grok2api/schedule.py managed rows, gateway/tasks.py):
- `usage_rollup` recomputes whole UTC hours of UsageHourly from the raw rows: every row of those
  hours is deleted and rebuilt from one GROUP BY in one transaction, so running it twice, or
  after late rows arrived, gives the same table. It covers the hours from the newest rollup hour
  (minus one, for rows flushed just after an hour turned) to the current hour, so a beat that was
  down for a day catches up on its next run;
- `usage_prune` deletes raw rows older than the retention, cut at an hour boundary so an hour is
  either complete or gone: an hour with some raw rows is never partial and can always be
  recomputed. Before deleting, it rolls those hours up, so nothing is lost even if the rollup task
  never ran for them.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db import transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from gateway.models import UsageHourly, UsageRecord, UsageStatus

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)


def _hour_floor(value: datetime) -> datetime:
    return value.astimezone(dt_timezone.utc).replace(minute=0, second=0, microsecond=0)


def _retention_cutoff(now: datetime, cfg=None) -> datetime | None:
    """Start of the oldest hour whose raw rows are kept, or None when raw rows are kept forever."""
    from core.config import config

    days = int((cfg if cfg is not None else config()).get("usage.raw_retention_days") or 0)
    return _hour_floor(now - timedelta(days=days)) if days > 0 else None


def usage_rollup_hours(*, start: datetime, end: datetime) -> int:
    """Rebuild UsageHourly for the whole hours in [start, end) from UsageRecord; returns rows written."""
    start, end = _hour_floor(start), _hour_floor(end)
    if end <= start:
        return 0
    groups = (
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
        .order_by()
        .annotate(hour=TruncHour("created_at", tzinfo=dt_timezone.utc))
        .values("hour", "api_key_id", "api_key_label", "model", "account_id")
        .annotate(
            n=Count("id"), n_err=Count("id", filter=Q(status=UsageStatus.ERROR)),
            prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"),
        )
    )
    rows = [
        UsageHourly(
            hour=g["hour"], api_key_id=g["api_key_id"], api_key_label=g["api_key_label"], model=g["model"],
            account_id=g["account_id"], requests=g["n"], errors=g["n_err"],
            prompt_tokens=g["prompt"] or 0, completion_tokens=g["completion"] or 0,
        )
        for g in groups
    ]
    with transaction.atomic():
        UsageHourly.objects.filter(hour__gte=start, hour__lt=end).delete()
        UsageHourly.objects.bulk_create(rows, batch_size=500)
    return len(rows)


def usage_rollup(*, now: datetime | None = None) -> int:
    """Recompute the hours that may have changed since the last run (see the module doc)."""
    now = now or timezone.now()
    end = _hour_floor(now) + HOUR  # the current, unfinished hour too: dashboards see it
    newest = UsageHourly.objects.aggregate(h=Max("hour"))["h"]
    if newest is not None:
        start = min(newest - HOUR, end - 2 * HOUR)
    else:
        start = UsageRecord.objects.aggregate(t=Min("created_at"))["t"] or end - HOUR
    cutoff = _retention_cutoff(now)
    if cutoff is not None:
        start = max(start, cutoff)  # older hours have no raw rows left: their rollups stay as they are
    written = usage_rollup_hours(start=start, end=end)
    log.info("usage rollup: %d hourly rows for %s .. %s", written, _hour_floor(start).isoformat(), end.isoformat())
    return written


def usage_prune(*, now: datetime | None = None) -> int:
    """Delete raw rows older than the retention (after rolling their hours up); returns rows deleted."""
    now = now or timezone.now()
    cutoff = _retention_cutoff(now)
    if cutoff is None:
        return 0
    oldest = UsageRecord.objects.filter(created_at__lt=cutoff).aggregate(t=Min("created_at"))["t"]
    if oldest is None:
        return 0
    usage_rollup_hours(start=oldest, end=cutoff)
    deleted, _ = UsageRecord.objects.filter(created_at__lt=cutoff).delete()
    log.info("usage prune: %d raw rows before %s deleted (rolled up first)", deleted, cutoff.isoformat())
    return deleted


def usage_hourly_series(*, now: datetime | None = None, hours: int = 24) -> dict:
    """The last `hours` UTC hours (the current one last) from the rollups, per model: requests,
    tokens (prompt + completion) and errors per hour, zeros where a model had no traffic. For the
    admin index charts; one query over at most hours × keys × models × accounts rows."""
    now = now or timezone.now()
    end = _hour_floor(now) + HOUR
    start = end - hours * HOUR
    slots = [start + i * HOUR for i in range(hours)]
    index = {h: i for i, h in enumerate(slots)}
    models: dict[str, dict[str, list[int]]] = {}
    rows = (UsageHourly.objects.filter(hour__gte=start, hour__lt=end).order_by()
            .values("hour", "model").annotate(n=Sum("requests"), err=Sum("errors"), p=Sum("prompt_tokens"), c=Sum("completion_tokens")))
    for row in rows:
        i = index.get(_hour_floor(row["hour"]))
        if i is None:
            continue
        series = models.setdefault(row["model"], {"requests": [0] * hours, "tokens": [0] * hours, "errors": [0] * hours})
        series["requests"][i] += row["n"] or 0
        series["tokens"][i] += (row["p"] or 0) + (row["c"] or 0)
        series["errors"][i] += row["err"] or 0
    return {"hours": [h.strftime("%H:00") for h in slots], "models": dict(sorted(models.items()))}
