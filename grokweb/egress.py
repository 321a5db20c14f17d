"""Egress: where upstream traffic leaves (direct or one proxy) and which one to use next.

Pure and in memory. `proxy.egress.mode` (direct, single_proxy, proxy_pool) and the proxy rows are
the core's business (core/egress.py builds the candidates and writes the outcomes to the rows);
this module normalises proxy URLs, keeps the sticky per-process choice among candidates and counts
the outcome of every call. HTTP(S) and SOCKS5 proxies; `socks5://` is normalised to `socks5h://`
(remote DNS) and `socks4://` to `socks4a://`. Pool mode keeps a sticky cursor and advances it when
a call through the current proxy fails; a proxy that fails FAIL_STREAK_DOWN times in a row is
skipped for DOWN_SECONDS.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from grokweb.errors import GatewayError


@dataclass(frozen=True, slots=True)
class Egress:
    """Where upstream traffic leaves: `proxy_url` None = direct. `label` never contains credentials."""

    proxy_url: str | None
    label: str
    proxy_id: int | None = None


DIRECT = Egress(None, "direct", None)

PROXY_SCHEMES = ("http", "https", "socks5h", "socks4a")


class EgressConfigError(GatewayError):
    """The configured egress cannot be used (bad proxy URL, unsupported proxy type)."""

    status = 502
    type = "upstream_error"
    code = "egress_misconfigured"


def proxy_url_normalize(url: str) -> str:
    """Validate a proxy URL and normalise SOCKS URLs to their remote-DNS forms.

    `socks5://` and `socks://` → `socks5h://`; `socks4://` → `socks4a://`. Raises ValueError with
    a one-line reason for anything else than http, https, socks5(h), socks4(a).
    """
    text = (url or "").strip()
    if "://" not in text:
        raise ValueError(f"proxy URL needs a scheme (http://, https://, socks5://): {proxy_label(text)!r}")
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    scheme = {"socks5": "socks5h", "socks": "socks5h", "socks4": "socks4a"}.get(scheme, scheme)
    if scheme not in PROXY_SCHEMES:
        raise ValueError(f"unsupported proxy scheme {scheme!r} (use http, https or socks5)")
    parts = urlsplit(f"{scheme}://{rest}")
    if not parts.hostname:
        raise ValueError("proxy URL has no host")
    try:
        parts.port
    except ValueError:
        raise ValueError("proxy URL has an invalid port") from None
    return f"{scheme}://{rest}"


def proxy_label(url: str) -> str:
    """scheme://host:port of a proxy URL, credentials removed (safe to log and show)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}" if parts.scheme else host
    except ValueError:
        return "<invalid proxy url>"


FAIL_STREAK_DOWN = 3  # consecutive failures before a proxy is skipped for a while
DOWN_SECONDS = 60.0


@dataclass
class _EgressState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    cursor: int = 0
    streak: dict[str, int] = field(default_factory=dict)
    down_until: dict[str, float] = field(default_factory=dict)
    # proxy_id -> [successes, failures, last_error, last_used_ts, last_fail_ts, healthy or None]
    pending: dict[int, list[Any]] = field(default_factory=dict)


_state = _EgressState()
_flusher_started = False


def egress_choose(*, candidates: Sequence[Egress], unhealthy: Collection[int] = ()) -> Egress:
    """The egress for the next upstream call among `candidates` (in pool order): sticky per
    process, advanced by failures. `unhealthy` holds the ids of proxy rows marked unhealthy by an
    earlier run or another process."""
    if len(candidates) == 1:
        return candidates[0]
    unhealthy_rows = set(unhealthy)
    now = time.monotonic()
    with _state.lock:
        n = len(candidates)
        start = _state.cursor % n
        fallback = None
        for i in range(n):
            egress = candidates[(start + i) % n]
            if _state.down_until.get(egress.proxy_url or "", 0.0) > now:
                continue
            if egress.proxy_id in unhealthy_rows and _state.streak.get(egress.proxy_url or "", 0) == 0:
                # marked unhealthy by an earlier run or another process: use it only as a last resort
                fallback = fallback or egress
                continue
            _state.cursor = (start + i) % n
            return egress
        return fallback or candidates[start]


def egress_report(*, egress: Egress, ok: bool, error: str = "") -> None:
    """Feed back the outcome of one call through `egress` (memory only: the outcomes of proxies
    that have an id wait for `egress_outcomes_take`, which the core writes to its rows)."""
    if egress.proxy_url is None:
        return
    key = egress.proxy_url
    now = time.monotonic()
    wall = time.time()
    with _state.lock:
        if ok:
            _state.streak[key] = 0
            _state.down_until.pop(key, None)
        else:
            streak = _state.streak.get(key, 0) + 1
            _state.streak[key] = streak
            if streak >= FAIL_STREAK_DOWN:
                _state.down_until[key] = now + DOWN_SECONDS
            _state.cursor += 1  # sticky until it fails: rotate to the next proxy
        if egress.proxy_id is not None:
            entry = _state.pending.setdefault(egress.proxy_id, [0, 0, None, None, None, None])
            if ok:
                entry[0] += 1
                entry[3] = wall
                entry[5] = True
            else:
                entry[1] += 1
                entry[2] = error[:300]
                entry[4] = wall
                if _state.streak[key] >= FAIL_STREAK_DOWN:
                    entry[5] = False


def egress_outcomes_take() -> dict[int, list[Any]]:
    """The outcomes buffered since the last call, by proxy id, and an empty buffer:
    proxy_id -> [successes, failures, last_error, last_used_ts, last_fail_ts, healthy or None]."""
    with _state.lock:
        pending, _state.pending = _state.pending, {}
    return pending


def egress_state_reset() -> None:
    """Forget every streak, cursor and buffered outcome (tests)."""
    with _state.lock:
        _state.cursor = 0
        _state.streak.clear()
        _state.down_until.clear()
        _state.pending.clear()
