"""Per-key limits: requests and tokens per minute, requests in flight, daily and monthly token budgets.

A key's limits come from its ApiKey row through the in-memory key snapshot (gateway/auth.py), so a
change in the admin applies in every process within one snapshot poll. Empty or 0 = unlimited.

- requests per minute: a moving window (the requests admitted in the last 60 s);
- tokens per minute: prompt + completion tokens of the answers that ENDED in the last 60 s, in
  one-second buckets. Tokens are only known when an answer ends, so a request is admitted while
  the key is under the limit and the next one is refused once it is reached;
- concurrent requests: a slot taken when the request is admitted and released when its answer is
  over (the end of a stream). Each slot expires on its own after KEY_CONCURRENCY_TTL_SECONDS
  (default 900), so a process that died mid-request cannot hold it forever;
- daily / monthly token budgets: counters per UTC day and UTC calendar month.

With REDIS_URL the counters live in Redis and are exact across every worker and instance: one
Lua script (redis-py `register_script`) per request checks and takes the request-window and
concurrency entries and reads the token counters, atomically, in one round trip, which the request
waits for. The end of a request is one more script call that frees the slot and adds the answer's
tokens together: the usage ledger records the tokens on the request's `Grant` (`key_tokens_add`,
memory only) and the release (`key_limits_release`) sends both. The release is a task of its own,
started when the answer is over (gateway/requestid.py), so the client never waits for it; it only
talks to Redis (no sync_to_async), so it may outlive the request. If it fails, or the process stops
first, the slot expires on its own and that answer's tokens are not counted. A key with neither a
concurrency limit nor a token limit has nothing to settle: one round trip per request in all.
Because the release is not waited for, a client that sends its next request the instant an answer
ended can, rarely, find that answer's concurrency slot still held (429, retry-after 1).

Without REDIS_URL, or with KEY_LIMITS_SHARED=false, the same rules run on per-process counters
(in memory, settled at once): each worker process then enforces the limits on its own share of
the traffic only.

Why not the `limits` library: it keeps one counter per call (a moving window here, a fixed window
there), so checking five limits of one key would take several round trips and would not be atomic
across them (a request could take a window entry and then be refused for concurrency), and it
has no notion of a concurrency slot released at the end of a request.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from django.conf import settings

from redis.exceptions import RedisError

from grokweb.errors import RateLimited, ServiceUnavailable

log = logging.getLogger(__name__)

WINDOW_MS = 60_000


def _concurrency_ttl_ms() -> int:
    try:
        return max(1000, int(float(os.environ.get("KEY_CONCURRENCY_TTL_SECONDS", "900")) * 1000))
    except ValueError:
        return 900_000


def shared_counters_enabled() -> bool:
    return bool(getattr(settings, "REDIS_URL", None)) and os.environ.get("KEY_LIMITS_SHARED", "true").strip().lower() not in (
        "0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class KeyLimits:
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    concurrent: int = 0
    daily_tokens: int = 0
    monthly_tokens: int = 0

    @property
    def any(self) -> bool:
        return bool(self.requests_per_minute or self.tokens_per_minute or self.concurrent or self.daily_tokens
                    or self.monthly_tokens)

    @property
    def counts_tokens(self) -> bool:
        return bool(self.tokens_per_minute or self.daily_tokens or self.monthly_tokens)


NO_LIMITS = KeyLimits()


class KeyLimitReached(RateLimited):
    """429 for a key over one of its own limits; `grant` holds what the check saw (for the headers)."""

    def __init__(self, message: str, *, grant: "Grant", retry_after: int) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after)})
        self.grant = grant


@dataclass(slots=True)
class Grant:
    """One admitted request of a limited key: what the check saw (for the headers) and its slot."""

    key_id: int
    limits: KeyLimits
    member: str
    now_ms: int
    requests_used: int = 0  # in the window, this request included
    requests_oldest_ms: int = -1
    tokens_used: int = 0
    tokens_oldest_s: int = -1
    tokens: int = 0  # of the answer, recorded by the usage ledger; sent with the release
    released: bool = field(default=False)


_VERDICTS = {
    1: ("requests per minute limit of {limit} reached for this key", "requests_per_minute"),
    2: ("concurrent requests limit of {limit} reached for this key", "concurrent"),
    3: ("tokens per minute limit of {limit} reached for this key", "tokens_per_minute"),
    4: ("daily token budget of {limit} reached for this key", "daily_tokens"),
    5: ("monthly token budget of {limit} reached for this key", "monthly_tokens"),
}

# KEYS: request window (zset), slots (zset), token buckets (hash), day counter, month counter.
# ARGV: rpm, concurrent, tpm, day budget, month budget, member, slot ttl ms.
# Returns {verdict, now ms, requests used, oldest request ms, slots used, tokens used, oldest bucket s,
# day used, month used}; verdict 0 = admitted (window entry and slot taken), else the limit reached.
CHECK_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, conc, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local day, month = tonumber(ARGV[4]), tonumber(ARGV[5])
local member, slot_ttl, window = ARGV[6], tonumber(ARGV[7]), 60000
local req_used, req_oldest, conc_used, tok_used, tok_oldest, day_used, month_used = 0, -1, 0, 0, -1, 0, 0
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  req_used = redis.call('ZCARD', KEYS[1])
  if req_used > 0 then req_oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) end
end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  conc_used = redis.call('ZCARD', KEYS[2])
end
if tpm > 0 then
  local first = math.floor((now - window) / 1000)
  local flat = redis.call('HGETALL', KEYS[3])
  for i = 1, #flat, 2 do
    local sec = tonumber(flat[i])
    if sec <= first then
      redis.call('HDEL', KEYS[3], flat[i])
    else
      tok_used = tok_used + tonumber(flat[i + 1])
      if tok_oldest < 0 or sec < tok_oldest then tok_oldest = sec end
    end
  end
end
if day > 0 then day_used = tonumber(redis.call('GET', KEYS[4]) or '0') end
if month > 0 then month_used = tonumber(redis.call('GET', KEYS[5]) or '0') end
local verdict = 0
if rpm > 0 and req_used >= rpm then verdict = 1
elseif conc > 0 and conc_used >= conc then verdict = 2
elseif tpm > 0 and tok_used >= tpm then verdict = 3
elseif day > 0 and day_used >= day then verdict = 4
elseif month > 0 and month_used >= month then verdict = 5 end
if verdict == 0 then
  if rpm > 0 then
    redis.call('ZADD', KEYS[1], now, member)
    redis.call('PEXPIRE', KEYS[1], window)
    req_used = req_used + 1
    if req_oldest < 0 then req_oldest = now end
  end
  if conc > 0 then
    redis.call('ZADD', KEYS[2], now + slot_ttl, member)
    redis.call('PEXPIRE', KEYS[2], slot_ttl)
    conc_used = conc_used + 1
  end
end
return {verdict, now, req_used, req_oldest, conc_used, tok_used, tok_oldest, day_used, month_used}
"""

# KEYS: slots, token buckets, day counter, month counter. ARGV: member, tokens (0 = release only),
# day counter ttl s, month counter ttl s.
SETTLE_LUA = """
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
local n = tonumber(ARGV[2])
if n > 0 then
  local t = redis.call('TIME')
  redis.call('HINCRBY', KEYS[2], t[1], n)
  redis.call('EXPIRE', KEYS[2], 120)
  redis.call('INCRBY', KEYS[3], n)
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[3]))
  redis.call('INCRBY', KEYS[4], n)
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[4]))
end
return 0
"""


def _periods(now: datetime) -> tuple[str, str]:
    return now.strftime("%Y%m%d"), now.strftime("%Y%m")


class _RedisCounters:
    def __init__(self, url: str) -> None:
        self.url = url
        name = str(settings.DATABASES["default"].get("NAME", ""))
        self.prefix = "g2a:keys:" + hashlib.sha1(name.encode()).hexdigest()[:8] + ":"
        self._clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple]" = weakref.WeakKeyDictionary()
        self._sync = None
        self._lock = threading.Lock()

    def keys(self, key_id: int) -> list[str]:
        day, month = _periods(datetime.now(timezone.utc))
        p = f"{self.prefix}{key_id}:"
        return [p + "rq", p + "slots", p + "tok", p + "day:" + day, p + "mon:" + month]

    def _scripts(self):
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            client = aioredis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
            entry = (client, client.register_script(CHECK_LUA), client.register_script(SETTLE_LUA))
            self._clients[loop] = entry
        return entry

    def sync_client(self):
        import redis

        with self._lock:
            if self._sync is None:
                self._sync = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        return self._sync

    async def check(self, key_id: int, limits: KeyLimits, member: str) -> list[int]:
        _, check, _ = self._scripts()
        args = [limits.requests_per_minute, limits.concurrent, limits.tokens_per_minute, limits.daily_tokens,
                limits.monthly_tokens, member, _concurrency_ttl_ms()]
        return [int(v) for v in await check(keys=self.keys(key_id), args=args)]

    def _settle_args(self, key_id: int, member: str, tokens: int) -> tuple[list[str], list]:
        k = self.keys(key_id)
        return [k[1], k[2], k[3], k[4]], [member, max(0, tokens), 2 * 86400, 32 * 86400]

    async def settle(self, key_id: int, member: str, tokens: int) -> None:
        _, _, settle = self._scripts()
        keys, args = self._settle_args(key_id, member, tokens)
        await settle(keys=keys, args=args)

    def settle_sync(self, key_id: int, member: str, tokens: int) -> None:
        keys, args = self._settle_args(key_id, member, tokens)
        self.sync_client().eval(SETTLE_LUA, len(keys), *keys, *args)


class _LocalCounters:
    """The same rules in this process's memory (no REDIS_URL, or KEY_LIMITS_SHARED=false)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[int, deque[int]] = {}  # key id -> admission times (ms), oldest first
        self._slots: dict[int, dict[str, int]] = {}  # key id -> member -> expiry (ms)
        self._tokens: dict[int, dict[int, int]] = {}  # key id -> second -> tokens
        self._periods: dict[tuple[int, str], int] = {}  # (key id, "d:YYYYMMDD" | "m:YYYYMM") -> tokens

    async def check(self, key_id: int, limits: KeyLimits, member: str) -> list[int]:
        return self.check_sync(key_id, limits, member)

    def check_sync(self, key_id: int, limits: KeyLimits, member: str) -> list[int]:
        now = time.time_ns() // 1_000_000
        day, month = _periods(datetime.now(timezone.utc))
        with self._lock:
            window = self._requests.setdefault(key_id, deque())
            while window and window[0] <= now - WINDOW_MS:
                window.popleft()  # oldest first: only the expired entries are touched
            slots = {m: exp for m, exp in self._slots.get(key_id, {}).items() if exp > now}
            first = (now - WINDOW_MS) // 1000
            buckets = {s: n for s, n in self._tokens.get(key_id, {}).items() if s > first}
            self._slots[key_id], self._tokens[key_id] = slots, buckets
            tok_used = sum(buckets.values())
            day_used = self._periods.get((key_id, "d:" + day), 0)
            month_used = self._periods.get((key_id, "m:" + month), 0)
            checks = [(limits.requests_per_minute, len(window)), (limits.concurrent, len(slots)),
                      (limits.tokens_per_minute, tok_used), (limits.daily_tokens, day_used),
                      (limits.monthly_tokens, month_used)]
            verdict = next((i for i, (limit, used) in enumerate(checks, 1) if limit and used >= limit), 0)
            if verdict == 0:
                if limits.requests_per_minute:
                    window.append(now)
                if limits.concurrent:
                    slots[member] = now + _concurrency_ttl_ms()
            return [verdict, now, len(window), window[0] if window else -1, len(slots), tok_used,
                    min(buckets) if buckets else -1, day_used, month_used]

    async def settle(self, key_id: int, member: str, tokens: int) -> None:
        self.settle_sync(key_id, member, tokens)

    def settle_sync(self, key_id: int, member: str, tokens: int) -> None:
        day, month = _periods(datetime.now(timezone.utc))
        with self._lock:
            if member:
                self._slots.get(key_id, {}).pop(member, None)
            if tokens > 0:
                second = time.time_ns() // 1_000_000_000
                buckets = self._tokens.setdefault(key_id, {})
                buckets[second] = buckets.get(second, 0) + tokens
                current = ("d:" + day, "m:" + month)
                if any(p not in current for _, p in self._periods):  # a new day or month: forget the old ones
                    self._periods = {k: v for k, v in self._periods.items() if k[1] in current}
                for period in current:
                    self._periods[(key_id, period)] = self._periods.get((key_id, period), 0) + tokens


_backend: _RedisCounters | _LocalCounters | None = None
_backend_lock = threading.Lock()
_pending: set[asyncio.Task] = set()


def _counters() -> _RedisCounters | _LocalCounters:
    global _backend
    if _backend is None:
        with _backend_lock:
            if _backend is None:
                _backend = _RedisCounters(settings.REDIS_URL) if shared_counters_enabled() else _LocalCounters()
    return _backend


def key_limits_reset() -> None:
    """Forget the counters backend (tests switch settings)."""
    global _backend
    _backend = None


def _retry_after_s(verdict: int, limits: KeyLimits, row: list[int]) -> int:
    _, now, _, req_oldest, _, _, tok_oldest, _, _ = row
    if verdict == 1 and req_oldest >= 0:
        return max(1, math.ceil((req_oldest + WINDOW_MS - now) / 1000))
    if verdict == 3 and tok_oldest >= 0:
        return max(1, tok_oldest + 61 - now // 1000)
    if verdict in (4, 5):
        today = datetime.fromtimestamp(now / 1000, timezone.utc)
        if verdict == 4:
            end = (today + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        else:
            end = (today.replace(day=28) + timedelta(days=4)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return max(1, math.ceil((end - today).total_seconds()))
    return 1  # concurrency: a slot frees when any request of the key ends


async def key_limits_acquire(*, key_id: int, limits: KeyLimits) -> Grant:
    """Admit one request of a limited key or raise RateLimited (429) naming the limit reached."""
    member = uuid.uuid4().hex
    try:
        row = await _counters().check(key_id, limits, member)
    except (OSError, asyncio.TimeoutError, RedisError) as exc:
        # Refused, not waved through: a key's budget must not be exceeded because Redis blinked.
        log.warning("key limits of key %s could not be checked: %r", key_id, exc)
        raise ServiceUnavailable("This key's limits cannot be checked right now; retry shortly.",
                                 headers={"retry-after": "1"}) from None
    verdict = row[0]
    grant = Grant(key_id=key_id, limits=limits, member=member if limits.concurrent else "", now_ms=row[1],
                  requests_used=row[2], requests_oldest_ms=row[3], tokens_used=row[5], tokens_oldest_s=row[6],
                  released=bool(verdict))
    if verdict:
        template, attr = _VERDICTS[verdict]
        raise KeyLimitReached(template.format(limit=getattr(limits, attr)), grant=grant,
                              retry_after=_retry_after_s(verdict, limits, row))
    return grant


def key_limits_release(*, grant: Grant) -> asyncio.Task | None:
    """End of a request: free its concurrency slot and count its answer's tokens, in one call (once;
    later calls do nothing). Not waited for: on Redis it is a task of its own (returned, so tests and
    the micro-benchmark can await it); per-process counters settle at once and return None."""
    if grant.released:
        return None
    grant.released = True
    return _settle(grant.key_id, grant.member, grant.tokens)


def key_tokens_add(*, grant: Grant, tokens: int) -> None:
    """Count an ended answer's tokens against the key's per-minute limit and budgets.

    Called from the usage ledger (sync, any thread, no I/O): the tokens wait on the grant for its
    release. Tokens of a grant already released (recorded after its answer was over) are sent on
    their own."""
    if tokens <= 0 or not grant.limits.counts_tokens:
        return
    if not grant.released:
        grant.tokens += tokens
        return
    _settle(grant.key_id, "", tokens)


def _settle(key_id: int, member: str, tokens: int) -> asyncio.Task | None:
    if not member and tokens <= 0:
        return None  # no slot, no tokens: nothing to send
    counters = _counters()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None or isinstance(counters, _LocalCounters):
        try:
            counters.settle_sync(key_id, member, tokens)
        except Exception:  # a slot then expires on its own (KEY_CONCURRENCY_TTL_SECONDS)
            log.warning("settling key %s (slot %r, %d tokens) failed", key_id, member, tokens, exc_info=True)
        return None
    task = loop.create_task(counters.settle(key_id, member, tokens))
    _pending.add(task)  # the loop keeps only a weak reference to a task
    task.add_done_callback(_settle_done)
    return task


def _settle_done(task: asyncio.Task) -> None:
    _pending.discard(task)
    if task.cancelled():
        log.warning("settling a key's slot and tokens was cancelled (the slot expires on its own)")
    elif task.exception() is not None:
        log.warning("settling a key's slot and tokens failed (the slot expires on its own): %r", task.exception())


def _duration(ms: int) -> str:
    """OpenAI's reset format: `1s`, `6m0s`, `1h2m3s` (whole seconds, at least 1s)."""
    s = max(1, math.ceil(ms / 1000))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(math.ceil(ms / 1000), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_limits_headers(*, grant: Grant, anthropic: bool) -> dict[str, str]:
    """OpenAI's x-ratelimit-* (or Anthropic's anthropic-ratelimit-* on /v1/messages) for the
    per-minute limits the key has; nothing for a limit it does not have."""
    out: dict[str, str] = {}
    limits, now = grant.limits, grant.now_ms
    parts = []
    if limits.requests_per_minute:
        oldest = grant.requests_oldest_ms if grant.requests_oldest_ms >= 0 else now
        parts.append(("requests", limits.requests_per_minute, limits.requests_per_minute - grant.requests_used,
                      oldest + WINDOW_MS))
    if limits.tokens_per_minute:
        reset = (grant.tokens_oldest_s + 61) * 1000 if grant.tokens_oldest_s >= 0 else now
        parts.append(("tokens", limits.tokens_per_minute, limits.tokens_per_minute - grant.tokens_used, reset))
    for kind, limit, remaining, reset_ms in parts:
        remaining = max(0, remaining)
        if anthropic:
            out[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
            out[f"anthropic-ratelimit-{kind}-remaining"] = str(remaining)
            out[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(max(reset_ms, now))
        else:
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            out[f"x-ratelimit-reset-{kind}"] = _duration(max(0, reset_ms - now))
    return out
