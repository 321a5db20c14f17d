"""Chart data for the admin (issue 20): selectors that aggregate in the database, one query per
chart, never one per row, and return plain dicts that the templates embed with `json_script` and
static/grok2api/admin-charts.js draws with the vendored Chart.js.

Every chart is a "spec": {"canvas": element id, "kind": "bar" | "hbar", "labels": [...],
"datasets": [{"label", "data"}], "stacked": bool, "percent": bool, "notes": [...]} — notes are
the tooltip lines per label (e.g. "1,200 of 10,000 tokens"), so the page shows exact numbers
while the bars show proportions.

Token use against a key's budgets is read from the usage ledger, not from the enforcement
counters (gateway/limits.py): without Redis those live in each worker's memory, so no single
process could show them. The ledger has every request of every process: hours that are rolled up
come from UsageHourly, the hours since the newest rollup hour (which may be partial) from the raw
UsageRecord rows, which are never pruned before their hour is rolled up (gateway/ledger.py).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any, Iterable

from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from gateway.models import ApiKey, UsageHourly, UsageRecord

HOUR = timedelta(hours=1)
TOP_KEYS = 10
MODE_LABELS = {"grok-420-computer-use-sa": "4.3"}


def _hour_floor(value: datetime) -> datetime:
    return value.astimezone(dt_timezone.utc).replace(minute=0, second=0, microsecond=0)


def _periods(now: datetime) -> tuple[datetime, datetime]:
    """Start of the current UTC day and UTC calendar month (the budgets' periods, gateway/limits.py)."""
    day = now.astimezone(dt_timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


def _spec(canvas: str, labels: list[str], datasets: list[dict], *, kind: str = "bar", stacked: bool = True,
          percent: bool = False, notes: list[str] | None = None) -> dict:
    return {"canvas": canvas, "kind": kind, "labels": labels, "datasets": datasets, "stacked": stacked,
            "percent": percent, "notes": notes or []}


def _when(epoch: float | None, now: float) -> str:
    if not epoch:
        return ""
    at = datetime.fromtimestamp(epoch, tz=dt_timezone.utc).strftime("%m-%d %H:%M UTC")
    minutes = max(0, round((epoch - now) / 60))
    return f"{at} (in {minutes // 60} h {minutes % 60:02d} min)" if minutes >= 60 else f"{at} (in {minutes} min)"


# --------------------------------------------------------------------------- over time


def usage_hourly_charts(*, prefix: str, hours: int = 24, now: datetime | None = None, api_key_id: int | None = None,
                        account_id: int | None = None) -> list[dict]:
    """Requests, tokens and errors per hour by model over the last `hours` UTC hours (the current one
    last), for one key, one account or everything: three specs from one GROUP BY on the rollups."""
    now = now or timezone.now()
    end = _hour_floor(now) + HOUR
    slots = [end - (hours - i) * HOUR for i in range(hours)]
    index = {h: i for i, h in enumerate(slots)}
    rows = UsageHourly.objects.filter(hour__gte=slots[0], hour__lt=end)
    if api_key_id is not None:
        rows = rows.filter(api_key_id=api_key_id)
    if account_id is not None:
        rows = rows.filter(account_id=account_id)
    rows = (rows.order_by().values("hour", "model")
            .annotate(n=Sum("requests"), err=Sum("errors"), p=Sum("prompt_tokens"), c=Sum("completion_tokens")))
    series: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        i = index.get(_hour_floor(row["hour"]))
        if i is None:
            continue
        s = series.setdefault(row["model"], {"requests": [0] * hours, "tokens": [0] * hours, "errors": [0] * hours})
        s["requests"][i] += row["n"] or 0
        s["tokens"][i] += (row["p"] or 0) + (row["c"] or 0)
        s["errors"][i] += row["err"] or 0
    labels = [h.strftime("%H:00") for h in slots]
    if not series:
        return []
    return [_spec(f"{prefix}-{metric}", labels,
                  [{"label": model, "data": s[metric]} for model, s in sorted(series.items())])
            for metric in ("requests", "tokens", "errors")]


# --------------------------------------------------------------------------- keys against their limits


def key_tokens_used(*, key_ids: Iterable[int] | None = None, now: datetime | None = None) -> dict[int, dict[str, int]]:
    """Tokens (prompt + completion) per key in the current UTC day and month: {key id: {"day", "month"}}.
    Three queries whatever the number of keys: the newest rollup hour, the rollups before it, the raw
    rows from it on (see the module doc)."""
    now = now or timezone.now()
    day, month = _periods(now)
    newest = UsageHourly.objects.aggregate(h=Max("hour"))["h"]
    cut = max(newest, month) if newest is not None else month
    tokens = Sum("prompt_tokens") + Sum("completion_tokens")
    out: dict[int, dict[str, int]] = {}

    def add(rows) -> None:
        for row in rows:
            if row["api_key_id"] is None:
                continue
            entry = out.setdefault(row["api_key_id"], {"day": 0, "month": 0})
            entry["day"] += row["day"] or 0
            entry["month"] += row["month"] or 0

    hourly = UsageHourly.objects.filter(hour__gte=month, hour__lt=cut)
    raw = UsageRecord.objects.filter(created_at__gte=cut)
    if key_ids is not None:
        ids = list(key_ids)
        hourly, raw = hourly.filter(api_key_id__in=ids), raw.filter(api_key_id__in=ids)

    def today(field: str):
        since = Q(**{f"{field}__gte": day})
        return Sum("prompt_tokens", filter=since) + Sum("completion_tokens", filter=since)

    add(hourly.order_by().values("api_key_id").annotate(day=today("hour"), month=tokens))
    add(raw.order_by().values("api_key_id").annotate(day=today("created_at"), month=tokens))
    return out


def _limit_row(label: str, used: int, limit: int | None, unit: str) -> dict | None:
    if not limit:
        return None
    return {"label": label, "used": used, "limit": limit, "percent": round(100.0 * used / limit, 1),
            "note": f"{used:,} of {limit:,} {unit}"}


def key_limit_rows(*, key: ApiKey, now: datetime | None = None) -> list[dict]:
    """The key's use of each limit it has set: the last 60 s from the raw rows (one query), today and
    this month from the ledger (key_tokens_used)."""
    now = now or timezone.now()
    minute = UsageRecord.objects.filter(api_key_id=key.pk, created_at__gte=now - timedelta(seconds=60)).aggregate(
        n=Count("id"), p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
    used = key_tokens_used(key_ids=[key.pk], now=now).get(key.pk, {"day": 0, "month": 0})
    rows = [
        _limit_row("requests, last minute", minute["n"] or 0, key.requests_per_minute, "requests"),
        _limit_row("tokens, last minute", (minute["p"] or 0) + (minute["c"] or 0), key.tokens_per_minute, "tokens"),
        _limit_row("tokens today (UTC)", used["day"], key.daily_token_budget, "tokens"),
        _limit_row("tokens this month (UTC)", used["month"], key.monthly_token_budget, "tokens"),
    ]
    return [r for r in rows if r is not None]


def key_charts(*, key: ApiKey, now: datetime | None = None) -> dict:
    """Everything the key change page draws: its limits as % used, and its last 24 h."""
    now = now or timezone.now()
    limits = key_limit_rows(key=key, now=now)
    charts = usage_hourly_charts(prefix="key-usage", api_key_id=key.pk, now=now)
    if limits:
        charts.insert(0, _spec("key-limits", [r["label"] for r in limits],
                               [{"label": "% of the limit used", "data": [r["percent"] for r in limits]}],
                               kind="hbar", stacked=False, percent=True, notes=[r["note"] for r in limits]))
    return {"charts": charts, "limits": limits, "usage": len(charts) > bool(limits),
            "concurrent": key.max_concurrent_requests or 0}


def keys_budget_chart(*, now: datetime | None = None, top: int = TOP_KEYS) -> dict:
    """Admin index: the keys with a daily or monthly budget, the fullest first (by the larger of the
    two fractions), as % of each budget used."""
    now = now or timezone.now()
    keys = list(ApiKey.objects.filter(Q(daily_token_budget__gt=0) | Q(monthly_token_budget__gt=0))
                .only("id", "label", "daily_token_budget", "monthly_token_budget"))
    if not keys:
        return {"charts": [], "rows": []}
    used = key_tokens_used(key_ids=[k.pk for k in keys], now=now)
    rows = []
    for k in keys:
        u = used.get(k.pk, {"day": 0, "month": 0})
        day = _limit_row("today", u["day"], k.daily_token_budget, "tokens")
        month = _limit_row("this month", u["month"], k.monthly_token_budget, "tokens")
        rows.append({"id": k.pk, "label": k.label, "day": day, "month": month,
                     "fullest": max(r["percent"] for r in (day, month) if r is not None)})
    rows.sort(key=lambda r: (-r["fullest"], r["label"]))
    rows = rows[:top]
    datasets = [{"label": f"% of the {name} budget", "data": [(r[period] or {}).get("percent") for r in rows],
                 "notes": [(r[period] or {}).get("note", "no budget") for r in rows]}
                for period, name in (("day", "daily"), ("month", "monthly"))]
    spec = _spec("top-keys-budgets", [r["label"] for r in rows], datasets, kind="hbar", stacked=False, percent=True)
    return {"charts": [spec], "rows": rows}


# --------------------------------------------------------------------------- accounts and pools


def _windows(pool: str, quotas: Any) -> dict[str, dict]:
    """An account's quota windows per mode of its pool, the spec §9.3 defaults where none is known yet
    (as the selection and /metrics count them: accounts/pool.py default_window)."""
    from accounts.pool import default_window
    from grokweb.registry import POOL_MODES

    quotas = quotas if isinstance(quotas, dict) else {}
    out = {}
    for mode in sorted(POOL_MODES.get(pool, ())):
        w = quotas.get(mode)
        if isinstance(w, dict):
            out[mode] = {"remaining": max(0, int(w.get("remaining") or 0)), "total": int(w.get("total") or 0),
                         "reset_at": w.get("reset_at")}
        else:
            d = default_window(pool, mode)
            if d is not None:
                out[mode] = {"remaining": d.remaining, "total": d.total, "reset_at": None}
    return out


def _capacity_spec(canvas: str, rows: list[dict]) -> dict:
    labels = [r["label"] for r in rows]
    return _spec(canvas, labels, [
        {"label": "remaining", "data": [r["remaining"] for r in rows], "notes": [r["note"] for r in rows]},
        {"label": "used", "data": [max(0, r["total"] - r["remaining"]) for r in rows], "notes": [r["note"] for r in rows]},
    ], kind="hbar")


def account_charts(*, account, now: datetime | None = None) -> dict:
    """Account change page: its requests and errors over 24 h, its quota per mode with the next reset."""
    now = now or timezone.now()
    epoch = now.timestamp()
    rows = []
    for mode, w in _windows(account.pool, account.quotas).items():
        reset = _when(w["reset_at"], epoch) if w["reset_at"] and w["reset_at"] > epoch else ""
        rows.append({"label": MODE_LABELS.get(mode, mode), "remaining": w["remaining"], "total": w["total"],
                     "left": f"{w['remaining']:,} of {w['total']:,}",
                     "reset": reset, "note": f"{w['remaining']:,} of {w['total']:,} left"
                     + (f", resets {reset}" if reset else "")})
    charts = [c for c in usage_hourly_charts(prefix="account-usage", account_id=account.pk, now=now)
              if not c["canvas"].endswith("-tokens")]
    if rows:
        charts.insert(0, _capacity_spec("account-quota", rows))
    return {"charts": charts, "quota": rows, "usage": len(charts) > bool(rows)}


def pool_capacity(*, now: datetime | None = None) -> dict:
    """Admin index: remaining quota per pool and mode, summed over the usable accounts (active or
    cooling, not deleted), and the next reset of a used-up window. One query."""
    from accounts.models import Account
    from accounts.pool import POOLS, USABLE_STATUSES

    now = now or timezone.now()
    epoch = now.timestamp()
    agg: dict[tuple[str, str], dict] = {}
    for pool, quotas in (Account.objects.filter(deleted_at__isnull=True, status__in=USABLE_STATUSES)
                         .values_list("pool", "quotas").iterator(chunk_size=2000)):
        for mode, w in _windows(pool, quotas).items():
            a = agg.setdefault((pool, mode), {"remaining": 0, "total": 0, "accounts": 0, "exhausted": 0, "next": None})
            a["remaining"] += w["remaining"]
            a["total"] += max(w["total"], w["remaining"])
            a["accounts"] += 1
            if w["remaining"] == 0:
                a["exhausted"] += 1
                if w["reset_at"] and w["reset_at"] > epoch and (a["next"] is None or w["reset_at"] < a["next"]):
                    a["next"] = w["reset_at"]
    order = {p: i for i, p in enumerate(POOLS)}
    rows = []
    for (pool, mode), a in sorted(agg.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1])):
        reset = _when(a["next"], epoch)
        rows.append({"label": f"{pool} · {MODE_LABELS.get(mode, mode)}", "pool": pool, "mode": MODE_LABELS.get(mode, mode),
                     "remaining": a["remaining"], "total": a["total"], "accounts": a["accounts"],
                     "left": f"{a['remaining']:,} of {a['total']:,}",
                     "exhausted": a["exhausted"], "reset": reset,
                     "note": f"{a['remaining']:,} of {a['total']:,} left on {a['accounts']} account(s)"
                     + (f"; {a['exhausted']} used up, next reset {reset}" if a["exhausted"] else "")})
    return {"charts": [_capacity_spec("pool-capacity-chart", rows)] if rows else [], "rows": rows}
