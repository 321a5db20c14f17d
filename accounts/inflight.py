"""In-flight slots and per-(account, mode) cooldowns shared by every process of a deployment.

With `settings.REDIS_URL`: Redis (redis.asyncio on the request path, one round trip per acquire
and one per release). Keys, under the prefix `g2a:pool:<db hash>:`:
    if:<account id>          sorted set of lease ids scored by their expiry (ms, Redis clock); the
                             key's TTL is one lease, so a forgotten account's set goes away too
    cd:<account id>:<mode>   cooldown marker, value = end (epoch s), PX TTL = remaining cooldown
Acquire is a Lua script over up to K candidates: it drops expired leases, skips candidates in
cooldown (returning the cooldown's remaining ms so the caller learns it) or at the cap, and
takes a slot on the first free one, atomically. Without Redis: the same semantics in
process-local dicts (nothing to lose there).

A slot is held only while its request lives. A lease lasts POOL_SLOT_LEASE_SECONDS (default 60);
one renewer thread per process pushes the expiry of every live lease of that process forward
every lease/3. Releasing stops the renewal at once and removes the entry, retried with backoff
(tenacity) while Redis is unreachable. So a release lost to a network blip, or a process that
crashed, frees its slot when the lease runs out, never later. A lease alive for MAX_LEASE_MS is
no longer renewed (a request object that leaked without its release must not hold a slot forever).
Renewals that cannot reach Redis for longer than a lease let that lease expire while its request
still runs: the cap may then be exceeded briefly, which is the safe side (a 429 for nobody).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass

from django.conf import settings

log = logging.getLogger(__name__)

MAX_LEASE_MS = 30 * 60 * 1000  # longest upstream call (video generation) stays well below this
DEFAULT_LEASE_SECONDS = 60.0


def lease_ms_configured() -> int:
    """POOL_SLOT_LEASE_SECONDS in ms (validated at startup by core/envcheck.py)."""
    return max(1000, int(float(os.environ.get("POOL_SLOT_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)) * 1000))


ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[1])
local lease = ARGV[2]
local ttl_ms = tonumber(ARGV[3])
local out = {0}
for i = 1, #KEYS, 2 do
  local ttl = redis.call('PTTL', KEYS[i + 1])
  if ttl > 0 then
    table.insert(out, ttl)
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    if cap <= 0 or redis.call('ZCARD', KEYS[i]) < cap then
      redis.call('ZADD', KEYS[i], now + ttl_ms, lease)
      if redis.call('PTTL', KEYS[i]) < ttl_ms then
        redis.call('PEXPIRE', KEYS[i], ttl_ms)
      end
      out[1] = (i + 1) / 2
      table.insert(out, 0)
      return out
    end
    table.insert(out, -1)
  end
end
return out
"""

# KEYS: in-flight sets; ARGV: lease ms, then per key: the number of its lease ids, then the ids.
# XX: a lease released meanwhile is not brought back; GT: never shortens. Returns how many still existed.
RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl_ms = tonumber(ARGV[1])
local pos = 2
local renewed = 0
for i = 1, #KEYS do
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  for j = 1, n do
    if redis.call('ZSCORE', KEYS[i], ARGV[pos]) then
      redis.call('ZADD', KEYS[i], 'XX', 'GT', now + ttl_ms, ARGV[pos])
      renewed = renewed + 1
    end
    pos = pos + 1
  end
  local pttl = redis.call('PTTL', KEYS[i])
  if pttl ~= -2 and pttl < ttl_ms then
    redis.call('PEXPIRE', KEYS[i], ttl_ms)
  end
end
return renewed
"""


@dataclass(slots=True)
class Acquired:
    index: int | None  # position of the candidate that got the slot, or None
    cooldowns: dict[int, float]  # candidate account id -> cooldown end (epoch s) learned
    busy: set[int]  # candidates at the cap


def _prefix() -> str:
    name = str(settings.DATABASES["default"].get("NAME", ""))
    return "g2a:pool:" + hashlib.sha1(name.encode()).hexdigest()[:8] + ":"


class LocalSlots:
    """Single-process backend (no Redis)."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, set[str]] = {}
        self._cooldowns: dict[tuple[int, str], float] = {}

    def count(self, account_id: int) -> int:
        return len(self._held.get(account_id, ()))

    def _acquire(self, candidates: list[int], mode: str, cap: int, lease_id: str) -> Acquired:
        now = time.time()
        learned: dict[int, float] = {}
        busy: set[int] = set()
        with self._lock:
            for i, account_id in enumerate(candidates):
                until = self._cooldowns.get((account_id, mode))
                if until is not None and until > now:
                    learned[account_id] = until
                    continue
                held = self._held.setdefault(account_id, set())
                if cap and len(held) >= cap:
                    busy.add(account_id)
                    continue
                held.add(lease_id)
                return Acquired(i, learned, busy)
        return Acquired(None, learned, busy)

    async def acquire(self, candidates: list[int], mode: str, cap: int, lease_id: str) -> Acquired:
        return self._acquire(candidates, mode, cap, lease_id)

    def _release(self, account_id: int, lease_id: str, cooldown: tuple[str, float] | None) -> None:
        with self._lock:
            held = self._held.get(account_id)
            if held is not None:
                held.discard(lease_id)
                if not held:
                    del self._held[account_id]
            if cooldown is not None:
                self._set_cooldown(account_id, *cooldown)

    def _set_cooldown(self, account_id: int, mode: str, until: float) -> None:
        key = (account_id, mode)
        if self._cooldowns.get(key, 0.0) < until:
            self._cooldowns[key] = until
        if len(self._cooldowns) > 10000:
            now = time.time()
            self._cooldowns = {k: v for k, v in self._cooldowns.items() if v > now}

    def release_nowait(self, account_id: int, lease_id: str, cooldown: tuple[str, float] | None = None) -> None:
        self._release(account_id, lease_id, cooldown)

    def set_cooldown_sync(self, account_id: int, mode: str, until: float) -> None:
        with self._lock:
            self._set_cooldown(account_id, mode, until)

    def clear_cooldown_sync(self, account_id: int, mode: str) -> None:
        with self._lock:
            self._cooldowns.pop((account_id, mode), None)

    async def drain(self) -> None:
        return None


def _transient(exc: BaseException) -> bool:
    """Errors worth retrying a release for: Redis unreachable or slow, not a bad command."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError))


class RedisSlots:
    """Multi-process backend over Redis, with leases renewed while their request lives."""

    shared = True

    def __init__(self, url: str, *, lease_ms: int | None = None) -> None:
        self.url = url
        self.prefix = _prefix()
        self.lease_ms = lease_ms or lease_ms_configured()
        self._clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()
        self._sync_client = None
        self._script_sha: str | None = None
        self._renew_script = None
        self._pending: set[asyncio.Task] = set()
        self._lock = threading.Lock()
        self._live: dict[tuple[int, str], float] = {}  # (account id, lease id) -> monotonic acquire time
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = os.getpid()

    def k_inflight(self, account_id: int) -> str:
        return f"{self.prefix}if:{account_id}"

    def k_cooldown(self, account_id: int, mode: str) -> str:
        return f"{self.prefix}cd:{account_id}:{mode}"

    def _client(self):
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = aioredis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
            self._clients[loop] = client
        return client

    def sync_client(self):
        import redis

        with self._lock:
            self._after_fork()
            if self._sync_client is None:
                self._sync_client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        return self._sync_client

    def _after_fork(self) -> None:
        # A forked child (Celery prefork) inherits neither the renewer thread nor usable sockets,
        # and the parent's leases are not its own. Called with self._lock held.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._live.clear()
            self._renewer, self._sync_client, self._renew_script = None, None, None
            self._stop = threading.Event()

    # -- acquire ---------------------------------------------------------------------------------

    async def acquire(self, candidates: list[int], mode: str, cap: int, lease_id: str) -> Acquired:
        client = self._client()
        keys: list[str] = []
        for account_id in candidates:
            keys.append(self.k_inflight(account_id))
            keys.append(self.k_cooldown(account_id, mode))
        args = [cap, lease_id, self.lease_ms]
        from redis.exceptions import NoScriptError

        try:
            if self._script_sha is None:
                raise NoScriptError("not loaded")
            out = await client.evalsha(self._script_sha, len(keys), *keys, *args)
        except NoScriptError:
            self._script_sha = await client.script_load(ACQUIRE_LUA)
            out = await client.evalsha(self._script_sha, len(keys), *keys, *args)
        now = time.time()
        index = int(out[0]) - 1 if int(out[0]) > 0 else None
        learned: dict[int, float] = {}
        busy: set[int] = set()
        for account_id, code in zip(candidates, out[1:]):
            code = int(code)
            if code > 0:
                learned[account_id] = now + code / 1000.0
            elif code < 0:
                busy.add(account_id)
        if index is not None:
            self._track(candidates[index], lease_id)
        return Acquired(index, learned, busy)

    # -- renewal ---------------------------------------------------------------------------------

    def _track(self, account_id: int, lease_id: str) -> None:
        with self._lock:
            self._after_fork()
            self._live[(account_id, lease_id)] = time.monotonic()
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_loop, args=(self._stop,), name="slot-renewer", daemon=True)
                self._renewer.start()

    def _untrack(self, account_id: int, lease_id: str) -> None:
        with self._lock:
            self._live.pop((account_id, lease_id), None)

    def live_count(self) -> int:
        """Leases of this process being renewed."""
        with self._lock:
            return len(self._live)

    def _renew_loop(self, stop: threading.Event) -> None:
        period = self.lease_ms / 3000.0
        failing = False
        while not stop.wait(period):
            try:
                self.renew_now()
                if failing:
                    log.info("pool: renewing in-flight slots in Redis works again")
                failing = False
            except Exception as exc:
                if not failing:  # once per outage, not every period
                    log.warning("pool: renewing in-flight slots in Redis failed (%s: %s); they expire %.0f s after "
                                "their last renewal unless Redis answers again", type(exc).__name__, exc, self.lease_ms / 1000)
                failing = True

    def renew_now(self) -> int:
        """Push the expiry of this process's live leases one lease ahead; return how many were renewed."""
        cutoff = time.monotonic() - MAX_LEASE_MS / 1000.0
        with self._lock:
            for key in [k for k, started in self._live.items() if started < cutoff]:
                del self._live[key]
                log.warning("pool: in-flight slot %s of account %s held for %d min without a release; no longer renewed",
                            key[1], key[0], MAX_LEASE_MS // 60000)
            live = list(self._live)
        if not live:
            return 0
        by_account: dict[int, list[str]] = {}
        for account_id, lease_id in live:
            by_account.setdefault(account_id, []).append(lease_id)
        keys, args = [], [self.lease_ms]
        for account_id, ids in by_account.items():
            keys.append(self.k_inflight(account_id))
            args.extend([len(ids), *ids])
        client = self.sync_client()
        if self._renew_script is None:
            self._renew_script = client.register_script(RENEW_LUA)
        return int(self._renew_script(keys=keys, args=args, client=client))

    def close(self) -> None:
        """Stop renewing (tests; a process that exits stops anyway). Held leases then expire."""
        self._stop.set()
        with self._lock:
            self._live.clear()
            self._renewer = None
            self._stop = threading.Event()

    # -- release ---------------------------------------------------------------------------------

    def _cooldown_ms(self, until: float) -> int:
        return max(1, int((until - time.time()) * 1000))

    def _release_pipe(self, pipe, account_id: int, lease_id: str, cooldown: tuple[str, float] | None):
        pipe.zrem(self.k_inflight(account_id), lease_id)
        if cooldown is not None:
            mode, until = cooldown
            key, ms = self.k_cooldown(account_id, mode), self._cooldown_ms(until)
            pipe.set(key, f"{until:.3f}", px=ms, nx=True)
            pipe.pexpire(key, ms, gt=True)
        return pipe

    def _retry_policy(self) -> dict:
        from tenacity import retry_if_exception, stop_after_delay, wait_exponential_jitter

        # Past one lease the entry has expired by itself: retrying longer gains nothing.
        return {
            "stop": stop_after_delay(self.lease_ms / 1000.0),
            "wait": wait_exponential_jitter(initial=0.2, max=max(0.5, min(5.0, self.lease_ms / 3000.0))),
            "retry": retry_if_exception(_transient),
            "reraise": True,
        }

    async def release(self, account_id: int, lease_id: str, cooldown: tuple[str, float] | None = None) -> None:
        """Stop renewing the lease and remove it (one attempt; `release_nowait` retries)."""
        self._untrack(account_id, lease_id)
        await self._release_once(account_id, lease_id, cooldown)

    def release_nowait(self, account_id: int, lease_id: str, cooldown: tuple[str, float] | None = None) -> None:
        """Release from any code without waiting for Redis: on the running loop as a task, else one
        blocking attempt and, if Redis does not answer, retries on a helper thread."""
        self._untrack(account_id, lease_id)  # from here the entry can only expire, even if every retry fails
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            task = loop.create_task(self._release_retrying(account_id, lease_id, cooldown))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return
        try:
            self._release_pipe(self.sync_client().pipeline(transaction=False), account_id, lease_id, cooldown).execute()
        except Exception as exc:
            if not _transient(exc):
                log.warning("pool: releasing an in-flight slot in Redis failed; it expires within %.0f s",
                            self.lease_ms / 1000, exc_info=True)
                return
            threading.Thread(target=self._release_retrying_sync, args=(account_id, lease_id, cooldown),
                             name="slot-release", daemon=True).start()

    async def _release_once(self, account_id: int, lease_id: str, cooldown: tuple[str, float] | None) -> None:
        client = self._client()
        if cooldown is None:  # the common case: one plain command, no pipeline object
            await client.zrem(self.k_inflight(account_id), lease_id)
        else:
            await self._release_pipe(client.pipeline(transaction=False), account_id, lease_id, cooldown).execute()

    async def _release_retrying(self, account_id: int, lease_id: str, cooldown: tuple[str, float] | None) -> None:
        from tenacity import AsyncRetrying

        # One plain attempt first: building tenacity's retry state for every request cost as much
        # CPU as the acquire itself (bench.profile --redis-url); the retry loop is for failures.
        try:
            await self._release_once(account_id, lease_id, cooldown)
            return
        except Exception as exc:
            if not _transient(exc):
                log.warning("pool: releasing an in-flight slot in Redis failed; it expires within %.0f s",
                            self.lease_ms / 1000, exc_info=True)
                return
        try:
            async for attempt in AsyncRetrying(**self._retry_policy()):
                with attempt:
                    await self._release_once(account_id, lease_id, cooldown)
        except Exception:
            log.warning("pool: releasing an in-flight slot in Redis failed after retries; it expires within %.0f s",
                        self.lease_ms / 1000, exc_info=True)

    def _release_retrying_sync(self, account_id: int, lease_id: str, cooldown: tuple[str, float] | None) -> None:
        from tenacity import Retrying

        try:
            for attempt in Retrying(**self._retry_policy()):
                with attempt:
                    self._release_pipe(self.sync_client().pipeline(transaction=False), account_id, lease_id, cooldown).execute()
        except Exception:
            log.warning("pool: releasing an in-flight slot in Redis failed after retries; it expires within %.0f s",
                        self.lease_ms / 1000, exc_info=True)

    # -- cooldowns, inspection -------------------------------------------------------------------

    def set_cooldown_sync(self, account_id: int, mode: str, until: float) -> None:
        key, ms = self.k_cooldown(account_id, mode), self._cooldown_ms(until)
        pipe = self.sync_client().pipeline(transaction=False)
        pipe.set(key, f"{until:.3f}", px=ms, nx=True)
        pipe.pexpire(key, ms, gt=True)
        pipe.execute()

    def clear_cooldown_sync(self, account_id: int, mode: str) -> None:
        self.sync_client().delete(self.k_cooldown(account_id, mode))

    def count_sync(self, account_id: int) -> int:
        """Slots held on the account now (expired leases not counted)."""
        client = self.sync_client()
        seconds, micros = client.time()
        return int(client.zcount(self.k_inflight(account_id), f"({seconds * 1000 + micros // 1000}", "+inf"))

    async def drain(self) -> None:
        """Wait for releases scheduled from sync code (tests, shutdown)."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


_backend: LocalSlots | RedisSlots | None = None
_backend_lock = threading.Lock()


def slots() -> LocalSlots | RedisSlots:
    global _backend
    if _backend is None:
        with _backend_lock:
            if _backend is None:
                url = getattr(settings, "REDIS_URL", None)
                _backend = RedisSlots(url) if url else LocalSlots()
    return _backend


def slots_reset() -> None:
    """Forget the backend (tests switch settings)."""
    global _backend
    if isinstance(_backend, RedisSlots):
        _backend.close()
    _backend = None
