"""In-memory snapshots of database state, refreshed by version stamps, never queried per request.

A Snapshot holds the result of a loader (a sync function that reads the ORM). Writers call
`stamp_bump(name)` after a change (inside their transaction). Every process runs one daemon
poller thread that reads all VersionStamp rows in one query every SNAPSHOT_POLL_INTERVAL seconds
(default 2) and reloads the snapshots whose stamp moved. Request paths only call
`snapshot.get()`, a memory read.

Correctness notes:
- each load records the stamp version read *before* the data, so a change landing during a load
  is picked up by the next poll (never lost);
- the writing process marks the snapshot stale on commit: sync callers reload at once, async
  callers keep the current value and wake the poller (no blocking the event loop);
- the poller is per process: a forked child (Celery prefork, gunicorn-style workers) starts its
  own on first use;
- with SNAPSHOT_POLLER=0 (unit tests) there is no thread: stale snapshots reload inline, from
  async code on a helper thread.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import close_old_connections, connection, transaction
from django.db.models import F


log = logging.getLogger(__name__)
T = TypeVar("T")

_registry: dict[str, "Snapshot"] = {}
_poller_lock = threading.Lock()
_poller_pid: int | None = None


def poll_interval() -> float:
    try:
        return max(0.05, float(os.environ.get("SNAPSHOT_POLL_INTERVAL", "2")))
    except ValueError:
        return 2.0


def poller_enabled() -> bool:
    return os.environ.get("SNAPSHOT_POLLER", "1") != "0"


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _run_in_thread(fn: Callable[[], T]) -> T:
    """Run an ORM loader on a fresh thread (works from async code; the thread gets its own connection)."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=target, name="snapshot-load", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _read_stamps(names: list[str]) -> dict[str, int]:
    from core.models import VersionStamp

    return dict(VersionStamp.objects.filter(name__in=names).values_list("name", "version"))


class Snapshot(Generic[T]):
    def __init__(self, name: str, loader: Callable[[], T]) -> None:
        self.name = name
        self._loader = loader
        self._value: T | None = None
        self._loaded = False
        self._stale = True
        self._version: int | None = None
        self._lock = threading.Lock()
        self.loaded_at = 0.0
        _registry[name] = self

    def _load(self) -> None:
        # One load at a time per snapshot; a caller that waited finds it fresh and returns.
        with self._lock:
            version = _read_stamps([self.name]).get(self.name, 0)
            value = self._loader()
            self._value = value
            self._version = version
            self._loaded = True
            self._stale = False
            self.loaded_at = time.monotonic()

    def get(self) -> T:
        _ensure_poller()
        if self._stale or not self._loaded:
            if not _in_event_loop():
                self._load()
            elif not self._loaded or not poller_enabled():
                _run_in_thread(self._load)  # first use (or no poller): block once
            else:
                _request_reload(self)  # serve the current value; the poller reloads now
        return self._value  # type: ignore[return-value]

    def invalidate(self) -> None:
        self._stale = True

    def refresh_now(self) -> T:
        """Reload synchronously (from sync code) or on a helper thread (from async code)."""
        if _in_event_loop():
            _run_in_thread(self._load)
        else:
            self._load()
        return self._value  # type: ignore[return-value]


def stamp_bump(name: str) -> None:
    """Record that `name` changed; call inside the writing transaction."""
    from core.models import VersionStamp

    # A fresh clock value, not a counter: a counter restarts at 1 when the table is recreated or
    # flushed, and a poller that had cached 1 would then miss the change.
    version = time.time_ns()
    updated = VersionStamp.objects.filter(name=name).update(version=version)
    if not updated:
        _, created = VersionStamp.objects.get_or_create(name=name, defaults={"version": version})
        if not created:  # lost a creation race: record this change too
            VersionStamp.objects.filter(name=name).update(version=time.time_ns())
    snap = _registry.get(name)
    if snap is not None:
        # Stale now (this connection sees its own write) and again on commit (for other threads,
        # which may have reloaded the old committed state in between).
        snap.invalidate()
        transaction.on_commit(snap.invalidate)
        if _in_event_loop() or poller_enabled():
            transaction.on_commit(lambda: _request_reload(snap))


def snapshots_warm() -> None:
    """Load every registered snapshot now (server start), so the first request does not wait."""
    for snap in list(_registry.values()):
        try:
            snap._load()
        except Exception:
            log.warning("snapshot %s could not be loaded at start", snap.name, exc_info=True)


_reload_requests: set[str] = set()
_wake = threading.Event()


def _request_reload(snap: Snapshot) -> None:
    _reload_requests.add(snap.name)
    _wake.set()


def _poll_once() -> None:
    stamps = _read_stamps(list(_registry))
    for name, snap in list(_registry.items()):
        requested = name in _reload_requests
        _reload_requests.discard(name)
        if not snap._loaded:
            continue  # loaded on first use; nothing to refresh
        if requested or snap._stale or stamps.get(name, 0) != snap._version:
            try:
                snap._load()
            except Exception:  # keep serving the old snapshot; try again next round
                log.exception("snapshot %s reload failed", name)


def _poller() -> None:
    while True:
        _wake.clear()
        try:
            _poll_once()
        except Exception:
            log.warning("snapshot poll failed", exc_info=True)
        finally:
            close_old_connections()
        _wake.wait(poll_interval())


def _ensure_poller() -> None:
    global _poller_pid
    pid = os.getpid()
    if _poller_pid == pid or not poller_enabled():
        return
    with _poller_lock:
        if _poller_pid == pid:
            return
        _poller_pid = pid
        threading.Thread(target=_poller, name="snapshot-poller", daemon=True).start()
