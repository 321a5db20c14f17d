"""In-flight slots and per-(account, mode) cooldowns shared by every process of a deployment.

With `settings.REDIS_URL`: Redis (redis.asyncio on the request path, one round trip per acquire
and one per release). Keys, under the prefix `g2a:pool:<db hash>:`:
    if:<account id>          sorted set of lease ids scored by acquire time (ms); entries older than
                             MAX_LEASE_MS are dropped so a crashed process cannot leak slots forever
    cd:<account id>:<mode>   cooldown marker, value = end (epoch s), PX TTL = remaining cooldown
Acquire is a Lua script over up to K candidates: it skips candidates in cooldown (returning the
cooldown's remaining ms so the caller learns it) or at the cap, and takes a slot on the first
free one, atomically. Without Redis: the same semantics in process-local dicts.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import weakref
from dataclasses import dataclass

from django.conf import settings

log = logging.getLogger(__name__)

MAX_LEASE_MS = 30 * 60 * 1000  # longest upstream call (video generation) stays well below this

ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[1])
local lease = ARGV[2]
local maxage = tonumber(ARGV[3])
local out = {0}
for i = 1, #KEYS, 2 do
  local ttl = redis.call('PTTL', KEYS[i + 1])
  if ttl > 0 then
    table.insert(out, ttl)
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - maxage)
    if cap <= 0 or redis.call('ZCARD', KEYS[i]) < cap then
      redis.call('ZADD', KEYS[i], now, lease)
      redis.call('PEXPIRE', KEYS[i], maxage)
      out[1] = (i + 1) / 2
      table.insert(out, 0)
      return out
    end
    table.insert(out, -1)
  end
end
return out
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


class RedisSlots:
    """Multi-process backend over Redis."""

    shared = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = _prefix()
        self._clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()
        self._sync_client = None
        self._script_sha: str | None = None
        self._pending: set[asyncio.Task] = set()
        self._lock = threading.Lock()

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
            if self._sync_client is None:
                self._sync_client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        return self._sync_client

    async def acquire(self, candidates: list[int], mode: str, cap: int, lease_id: str) -> Acquired:
        client = self._client()
        keys: list[str] = []
        for account_id in candidates:
            keys.append(self.k_inflight(account_id))
            keys.append(self.k_cooldown(account_id, mode))
        args = [cap, lease_id, MAX_LEASE_MS]
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
        return Acquired(index, learned, busy)

    def _cooldown_ms(self, until: float) -> int:
        return max(1, int((until - time.time()) * 1000))

    async def release(self, account_id: int, lease_id: str, cooldown: tuple[str, float] | None = None) -> None:
        client = self._client()
        pipe = client.pipeline(transaction=False)
        pipe.zrem(self.k_inflight(account_id), lease_id)
        if cooldown is not None:
            mode, until = cooldown
            key, ms = self.k_cooldown(account_id, mode), self._cooldown_ms(until)
            pipe.set(key, f"{until:.3f}", px=ms, nx=True)
            pipe.pexpire(key, ms, gt=True)
        await pipe.execute()

    def release_nowait(self, account_id: int, lease_id: str, cooldown: tuple[str, float] | None = None) -> None:
        """Release from synchronous code: on the running loop as a task, else with a blocking call."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            task = loop.create_task(self._release_logged(account_id, lease_id, cooldown))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return
        try:
            pipe = self.sync_client().pipeline(transaction=False)
            pipe.zrem(self.k_inflight(account_id), lease_id)
            if cooldown is not None:
                mode, until = cooldown
                key, ms = self.k_cooldown(account_id, mode), self._cooldown_ms(until)
                pipe.set(key, f"{until:.3f}", px=ms, nx=True)
                pipe.pexpire(key, ms, gt=True)
            pipe.execute()
        except Exception:
            log.warning("pool: releasing an in-flight slot in Redis failed; it expires on its own", exc_info=True)

    async def _release_logged(self, account_id: int, lease_id: str, cooldown: tuple[str, float] | None) -> None:
        try:
            await self.release(account_id, lease_id, cooldown)
        except Exception:
            log.warning("pool: releasing an in-flight slot in Redis failed; it expires on its own", exc_info=True)

    def set_cooldown_sync(self, account_id: int, mode: str, until: float) -> None:
        key, ms = self.k_cooldown(account_id, mode), self._cooldown_ms(until)
        pipe = self.sync_client().pipeline(transaction=False)
        pipe.set(key, f"{until:.3f}", px=ms, nx=True)
        pipe.pexpire(key, ms, gt=True)
        pipe.execute()

    def clear_cooldown_sync(self, account_id: int, mode: str) -> None:
        self.sync_client().delete(self.k_cooldown(account_id, mode))

    def count_sync(self, account_id: int) -> int:
        return int(self.sync_client().zcard(self.k_inflight(account_id)))

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
    _backend = None
