"""In-memory snapshots of database state, refreshed by version stamps, never queried per request.

A Snapshot holds the result of a loader (a sync function that reads the ORM). Writers call
`stamp_bump(name)` after a change (inside their transaction); every process runs one daemon
poller thread that reads all VersionStamp rows in one query every SNAPSHOT_POLL_INTERVAL seconds
(default 2) and reloads the snapshots whose stamp moved. The writing process reloads at once
(on commit). Request paths only call `snapshot.get()`, which is a memory read.
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
_poller_started = False


def poll_interval() -> float:
    try:
        return max(0.05, float(os.environ.get("SNAPSHOT_POLL_INTERVAL", "2")))
    except ValueError:
        return 2.0


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
            close_old_connections()
            connection.close()

    thread = threading.Thread(target=target, name="snapshot-load", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


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
        value = self._loader()
        with self._lock:
            self._value = value
            self._loaded = True
            self._stale = False
            self.loaded_at = time.monotonic()

    def get(self) -> T:
        _ensure_poller()
        if self._stale or not self._loaded:
            if _in_event_loop():
                if not self._loaded:
                    _run_in_thread(self._load)  # first use only: block once
                # stale but loaded: the poller thread reloads; serve the current value meanwhile
                else:
                    _request_reload(self)
            else:
                self._load()
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
    from accounts.models import VersionStamp

    updated = VersionStamp.objects.filter(name=name).update(version=F("version") + 1)
    if not updated:
        VersionStamp.objects.get_or_create(name=name, defaults={"version": 1})
    snap = _registry.get(name)
    if snap is not None:
        transaction.on_commit(snap.invalidate)


_reload_requests: set[str] = set()
_wake = threading.Event()


def _request_reload(snap: Snapshot) -> None:
    _reload_requests.add(snap.name)
    _wake.set()


def _poll_once() -> None:
    from accounts.models import VersionStamp

    stamps = dict(VersionStamp.objects.filter(name__in=list(_registry)).values_list("name", "version"))
    for name, snap in list(_registry.items()):
        version = stamps.get(name, 0)
        changed = snap._version is not None and version != snap._version
        snap._version = version
        if changed:
            snap._stale = True
        if snap._loaded and (snap._stale or name in _reload_requests):
            _reload_requests.discard(name)
            try:
                snap._load()
            except Exception:  # keep serving the old snapshot; try again next round
                log.exception("snapshot %s reload failed", name)


def _poller() -> None:
    while True:
        try:
            _poll_once()
        except Exception:
            log.warning("snapshot poll failed", exc_info=True)
        finally:
            close_old_connections()
        _wake.wait(poll_interval())
        _wake.clear()


def _ensure_poller() -> None:
    global _poller_started
    if _poller_started or os.environ.get("SNAPSHOT_POLLER", "1") == "0":
        return
    with _poller_lock:
        if _poller_started:
            return
        _poller_started = True
        threading.Thread(target=_poller, name="snapshot-poller", daemon=True).start()
