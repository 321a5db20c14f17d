"""Background quota refresh triggers of the account pool (docs/pool.md). They never block the event loop.

After a successful use a single-mode probe of the mode just used (throttled per account); after a
quota exhaustion, or when nothing can serve a model, one full refresh at most every
`account.refresh.on_demand_min_interval_sec` across processes; after an import, a probe of the new
accounts. All of them queue the Celery task `accounts.tasks.quota_refresh`.
"""
from __future__ import annotations

import asyncio
import logging

from django.core.cache import cache

from core.config import config
from accounts.tasks import quota_refresh

log = logging.getLogger(__name__)


_pending_tasks: set[asyncio.Future] = set()
_after_use_last: dict[int, float] = {}


def refresh_in_background(fn, *args) -> None:
    """Run a (sync, possibly I/O-bound) trigger off the event loop; inline from sync code."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        try:
            fn(*args)
        except Exception:
            log.warning("pool: background trigger %s failed", getattr(fn, "__name__", fn), exc_info=True)
        return

    def run() -> None:
        try:
            fn(*args)
        except Exception:
            log.warning("pool: background trigger %s failed", getattr(fn, "__name__", fn), exc_info=True)

    fut = loop.run_in_executor(None, run)
    _pending_tasks.add(fut)
    fut.add_done_callback(_pending_tasks.discard)


def refresh_after_use(account_id: int, mode: str, now: float, cfg) -> None:
    """Single-mode probe of the mode just used (a partial probe: it updates that window, never the tier)."""
    interval = float(cfg.get("account.refresh.after_use_min_interval_sec", 60))
    last = _after_use_last.get(account_id, 0.0)
    if now - last < interval:
        return
    _after_use_last[account_id] = now
    if len(_after_use_last) > 50000:
        _after_use_last.clear()
    refresh_in_background(refresh_enqueue, [account_id], [mode])


def refresh_enqueue(account_ids: list[int] | None, modes: list[str] | None) -> None:
    quota_refresh.delay(account_ids=account_ids, modes=modes)


def refresh_on_demand() -> None:
    """A full refresh, at most once per account.refresh.on_demand_min_interval_sec across processes."""
    interval = int(config().get("account.refresh.on_demand_min_interval_sec", 300) or 300)
    if cache.add("g2a:pool:on_demand_refresh", 1, timeout=interval):
        refresh_enqueue(None, None)


def _reset_for_tests() -> None:
    _after_use_last.clear()
