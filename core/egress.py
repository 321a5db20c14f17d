"""The egress pool of the core: `proxy.egress.mode` and the Proxy rows -> the client's egress.

grokweb/egress.py chooses among candidates and counts outcomes in memory; this module gives it
the candidates — `direct`, `single_proxy` (`proxy.egress.proxy_url`) or `proxy_pool`
(`proxy.egress.proxy_pool` plus enabled Proxy rows, read from the "proxies" snapshot, never per
request) — and writes the counted outcomes to the Proxy rows in batches off the request path
(`egress_flush`, every EGRESS_FLUSH_INTERVAL seconds on a background thread).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone as dt_tz
from typing import Any

from django.db import close_old_connections
from django.db.models import F

from core.config import config
from core.models import Proxy
from core.snapshots import Snapshot
from grokweb.egress import (
    DIRECT,
    Egress,
    EgressConfigError,
    egress_choose,
    egress_outcomes_take,
    egress_state_reset,
    proxy_label,
    proxy_url_normalize,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _ProxyRow:
    id: int
    url: str
    label: str
    healthy: bool


def _load_proxies() -> tuple[_ProxyRow, ...]:
    rows = []
    for proxy in Proxy.objects.filter(enabled=True).order_by("id"):
        try:
            url = proxy_url_normalize(proxy.url)
        except ValueError as exc:
            log.warning("proxy #%s skipped: %s", proxy.pk, exc)
            continue
        rows.append(_ProxyRow(proxy.pk, url, proxy.label or f"proxy #{proxy.pk} ({proxy_label(url)})", proxy.healthy))
    return tuple(rows)


# Writers of Proxy rows (admin) call core.snapshots.stamp_bump("proxies").
proxies_snapshot: Snapshot[tuple[_ProxyRow, ...]] = Snapshot("proxies", _load_proxies)

_flusher_lock = threading.Lock()
_flusher_started = False


def _cfg(cfg: Any | None) -> Any:
    return cfg if cfg is not None else config()


def egress_candidates(*, cfg: Any | None = None) -> list[Egress]:
    """Every egress the current config allows, in pool order."""
    cfg = _cfg(cfg)
    mode = cfg.get("proxy.egress.mode", "direct")
    if mode == "single_proxy":
        raw = (cfg.get("proxy.egress.proxy_url") or "").strip()
        if not raw:
            raise EgressConfigError("proxy.egress.mode is single_proxy but proxy.egress.proxy_url is empty.")
        try:
            url = proxy_url_normalize(raw)
        except ValueError as exc:
            raise EgressConfigError(f"proxy.egress.proxy_url: {exc}") from None
        return [Egress(url, proxy_label(url))]
    if mode == "proxy_pool":
        out: list[Egress] = []
        for raw in cfg.get("proxy.egress.proxy_pool") or []:
            try:
                url = proxy_url_normalize(str(raw))
            except ValueError as exc:
                log.warning("proxy.egress.proxy_pool entry skipped: %s", exc)
                continue
            out.append(Egress(url, proxy_label(url)))
        seen = {e.proxy_url for e in out}
        for row in proxies_snapshot.get():
            if row.url not in seen:
                out.append(Egress(row.url, row.label, row.id))
                seen.add(row.url)
        if not out:
            raise EgressConfigError("proxy.egress.mode is proxy_pool but no proxy is configured or enabled.")
        return out
    return [DIRECT]


def egress_pick(*, cfg: Any | None = None) -> Egress:
    """The egress for the next upstream call under `cfg` (default: the runtime config)."""
    candidates = egress_candidates(cfg=cfg)
    unhealthy = () if len(candidates) == 1 else [row.id for row in proxies_snapshot.get() if not row.healthy]
    egress = egress_choose(candidates=candidates, unhealthy=unhealthy)
    if egress.proxy_id is not None:
        _ensure_flusher()  # outcomes through a proxy row will need writing
    return egress


def egress_flush() -> int:
    """Write the buffered proxy outcomes to the Proxy rows (sync; one UPDATE per proxy). Returns rows touched."""
    pending = egress_outcomes_take()
    touched = 0
    for proxy_id, (ok_n, fail_n, last_error, used_ts, fail_ts, healthy) in pending.items():
        values: dict[str, Any] = {}
        if ok_n:
            values["success_count"] = F("success_count") + ok_n
        if fail_n:
            values["fail_count"] = F("fail_count") + fail_n
        if last_error is not None:
            values["last_error"] = last_error
        if used_ts is not None:
            values["last_used_at"] = datetime.fromtimestamp(used_ts, dt_tz.utc)
        if fail_ts is not None:
            values["last_fail_at"] = datetime.fromtimestamp(fail_ts, dt_tz.utc)
        if healthy is not None:
            values["healthy"] = healthy
        if values:
            touched += Proxy.objects.filter(pk=proxy_id).update(**values)
    return touched


def _ensure_flusher() -> None:
    global _flusher_started
    if _flusher_started or os.environ.get("SNAPSHOT_POLLER", "1") == "0":
        return  # tests (no background threads) call egress_flush() themselves
    with _flusher_lock:
        if _flusher_started:
            return
        _flusher_started = True
    interval = float(os.environ.get("EGRESS_FLUSH_INTERVAL", "5"))

    def run() -> None:
        while True:
            time.sleep(interval)
            try:
                egress_flush()
            except Exception:
                log.warning("proxy health flush failed", exc_info=True)
            finally:
                close_old_connections()

    threading.Thread(target=run, name="egress-flush", daemon=True).start()


def _egress_reset_for_tests() -> None:
    egress_state_reset()
