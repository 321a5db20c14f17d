"""The batched writer of the account pool: feedback effects reach the database rows off the request path.

`account_report` (accounts/lease.py) applies an outcome's effect to this process's snapshot at once
and queues the same effect here; the writer thread applies the queued effects to the rows about
once a second (select_for_update, one transaction, one stamp bump) and at exit. Operator alerts
(anti-bot, Cloudflare) ride along, coalesced per (kind, endpoint, egress).

Also the conversions between an Account row and its in-memory view, shared by the snapshot loader
(accounts/snapshot.py) and the quota sync (accounts/quota.py), so both read and write a row the
same way.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts import pool as P
from accounts.models import Account
from core.models import OperatorAlert
from core.snapshots import stamp_bump

log = logging.getLogger(__name__)

SNAPSHOT_FIELDS = (
    "id", "pool", "status", "state_reason", "quotas", "health", "fail_count", "use_count", "last_use_at",
    "last_fail_at", "last_fail_reason", "cooling_until", "ext", "user_id", "token_last4", "token_fingerprint",
)


# --------------------------------------------------------------------------------------------------
# Conversions between rows and views


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=dt_timezone.utc) if value is not None else None


def view_from_row(row: dict[str, Any], token: str, *, now: float) -> P.AccountView:
    quotas: dict[str, P.QuotaWindow] = {}
    for mode, data in (row.get("quotas") or {}).items():
        if isinstance(data, dict):
            try:
                quotas[mode] = P.QuotaWindow.from_dict(data, mode=mode)
            except (TypeError, ValueError):
                continue  # a hand-edited broken window falls back to the default table
    ext = dict(row.get("ext") or {})
    raw_cd = ext.pop("cooldowns", None) or {}
    cooldowns: dict[str, float] = {}
    if isinstance(raw_cd, dict):
        for mode, until in raw_cd.items():
            try:
                if float(until) > now:
                    cooldowns[mode] = float(until)
            except (TypeError, ValueError):
                continue
    return P.AccountView(
        id=row["id"],
        token=token,
        pool=row["pool"],
        status=row["status"],
        quotas=quotas,
        health=float(row.get("health") or 0.0),
        fail_count=int(row.get("fail_count") or 0),
        use_count=int(row.get("use_count") or 0),
        last_use_at=_epoch(row.get("last_use_at")),
        user_id=row.get("user_id") or "",
        cooling_until=_epoch(row.get("cooling_until")),
        cooldowns=cooldowns,
        state_reason=row.get("state_reason") or "",
        last_fail_at=_epoch(row.get("last_fail_at")),
        last_fail_reason=row.get("last_fail_reason") or "",
        ext=ext,
        last4=row.get("token_last4") or "",
    )


def row_values(view: P.AccountView, *, now: float) -> dict[str, Any]:
    ext = dict(view.ext)
    cds = P.cooldowns_prune(view.cooldowns, now)
    if cds:
        ext["cooldowns"] = cds
    else:
        ext.pop("cooldowns", None)
    return {
        "status": view.status,
        "state_reason": view.state_reason[:200],
        "quotas": {mode: w.to_dict() for mode, w in view.quotas.items()},
        "health": view.health,
        "fail_count": view.fail_count,
        "use_count": view.use_count,
        "last_use_at": _dt(view.last_use_at),
        "last_fail_at": _dt(view.last_fail_at),
        "last_fail_reason": view.last_fail_reason[:64],
        "cooling_until": _dt(view.cooling_until),
        "ext": ext,
    }


# --------------------------------------------------------------------------------------------------
# Batched writer


RECENT_EFFECTS = 4096  # effects kept for reloads to catch up on (a reload takes well under 0.1 s)


class _Flusher:
    """Coalesces feedback effects per account and writes them about once a second, off the request path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, list[P.Effect]] = {}
        self._alerts: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.interval = float(os.environ.get("ACCOUNT_FLUSH_INTERVAL", "1.0"))
        self.autostart = os.environ.get("ACCOUNT_FLUSHER", "1") != "0"
        self._write_lock = threading.Lock()
        self._seq = 0  # row effects queued so far
        self._recent: deque[tuple[int, int, P.Effect]] = deque(maxlen=RECENT_EFFECTS)  # (seq, account id, effect)

    def enqueue(self, account_id: int, effect: P.Effect) -> None:
        with self._lock:
            if effect.touches_row:
                self._pending.setdefault(account_id, []).append(effect)
                self._seq += 1
                self._recent.append((self._seq, account_id, effect))
            if effect.alert:
                a = effect.alert
                key = (a["kind"], a["endpoint"][:200], a["egress"][:200])
                slot = self._alerts.get(key)
                if slot is None:
                    self._alerts[key] = {**a, "count": 1, "first_at": effect.at, "last_at": effect.at}
                else:
                    slot["count"] += 1
                    slot["last_at"] = effect.at
                    slot["message"] = a["message"]
        self._ensure_thread()

    def pending_snapshot(self) -> tuple[dict[int, list[P.Effect]], int]:
        """The unwritten effects per account, and the sequence number of the last one queued."""
        with self._lock:
            return {k: list(v) for k, v in self._pending.items()}, self._seq

    def queued_since(self, seq: int) -> list[tuple[int, P.Effect]] | None:
        """(account id, effect) queued after `seq`, oldest first; None if more came than are kept.

        A snapshot reload builds fresh views from the rows and the pending list; feedback reported
        on the old snapshot while it was building is in neither, so the reload applies these last.
        """
        with self._lock:
            if self._seq - seq > len(self._recent):
                return None
            return [(account_id, effect) for n, account_id, effect in self._recent if n > seq]

    def settled(self) -> threading.Lock:
        """Held while a reader takes rows and `pending_snapshot()` together: no batch is half-way.

        A flush takes its batch off the pending list before its transaction commits. A snapshot
        reload that read the rows before that commit and the pending list after the take would see
        neither, and an account just marked expired would look usable until the next reload. Under
        this lock every batch has either committed (in the rows) or not started (in the list), so
        each effect is seen exactly once.
        """
        return self._write_lock

    def _ensure_thread(self) -> None:
        if not self.autostart or (self._thread is not None and self._thread.is_alive()):
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="account-flusher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("account flush failed; will retry")
            finally:
                # A background thread must not keep a connection open (test DB teardown, pgbouncer).
                try:
                    connection.close()
                except Exception:
                    pass

    def flush(self) -> int:
        """Write everything pending. Returns the number of accounts written. Safe from any thread."""
        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
                alerts, self._alerts = self._alerts, {}
            if not pending and not alerts:
                return 0
            try:
                written = _write_effects(pending, alerts)
            except Exception:
                with self._lock:  # put them back in front of anything queued meanwhile
                    for account_id, effects in pending.items():
                        self._pending[account_id] = effects + self._pending.get(account_id, [])
                    for key, alert in alerts.items():
                        if key in self._alerts:
                            self._alerts[key]["count"] += alert["count"]
                        else:
                            self._alerts[key] = alert
                raise
            return written


def _write_effects(pending: dict[int, list[P.Effect]], alerts: dict[tuple[str, str, str], dict[str, Any]]) -> int:
    close_old_connections()
    now = time.time()
    written = 0
    with transaction.atomic():
        if pending:
            ids = sorted(pending)
            rows = Account.objects.select_for_update().filter(id__in=ids).order_by("id").values(*SNAPSHOT_FIELDS)
            updated_at = timezone.now()
            batch: list[dict[str, Any]] = []
            for row in rows:
                view = view_from_row(row, "", now=now)
                for effect in pending[row["id"]]:
                    P.effect_apply(view, effect, in_memory=False)
                values = row_values(view, now=now)
                values["updated_at"] = updated_at
                values["id"] = row["id"]
                batch.append(values)
            _rows_update(batch)
            written = len(batch)
            stamp_bump("accounts")
        for (kind, endpoint, egress), alert in alerts.items():
            _alert_upsert(kind=kind, endpoint=endpoint, egress=egress, alert=alert)
    return written


def _rows_update(batch: list[dict[str, Any]]) -> None:
    """One UPDATE statement run for every row (executemany), values converted by the model's fields.

    The ORM's per-row `.update()` built and compiled a query per account: at a few hundred req/s over
    a pool of hundreds of accounts that was most of the writer thread's time, which competes for the
    GIL with the event loop (docs/benchmarks.md).
    """
    if not batch:
        return
    names = [name for name in batch[0] if name != "id"]
    fields = [Account._meta.get_field(name) for name in names]
    qn = connection.ops.quote_name
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        qn(Account._meta.db_table), ", ".join(f"{qn(f.column)} = %s" for f in fields), qn(Account._meta.pk.column),
    )
    params = [[f.get_db_prep_save(values[f.name], connection) for f in fields] + [values["id"]] for values in batch]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _alert_upsert(*, kind: str, endpoint: str, egress: str, alert: dict[str, Any]) -> None:
    last_at = _dt(alert["last_at"])
    fields = {"count": F("count") + alert["count"], "last_at": last_at, "message": alert["message"], "hint": alert.get("hint", "")}
    if OperatorAlert.objects.filter(kind=kind, endpoint=endpoint, egress=egress, resolved=False).update(**fields):
        return
    try:
        with transaction.atomic():
            OperatorAlert.objects.create(
                kind=kind, endpoint=endpoint, egress=egress, message=alert["message"], hint=alert.get("hint", ""),
                count=alert["count"], first_at=_dt(alert["first_at"]), last_at=last_at,
            )
    except IntegrityError:  # another process opened it meanwhile
        OperatorAlert.objects.filter(kind=kind, endpoint=endpoint, egress=egress, resolved=False).update(**fields)


flusher = _Flusher()


def account_flush() -> int:
    """Write queued feedback now (shutdown, tests, management commands)."""
    return flusher.flush()


@atexit.register
def _flush_at_exit() -> None:
    try:
        flusher.flush()
    except Exception:
        log.warning("account flush at exit failed", exc_info=True)


def _reset_for_tests() -> None:
    with flusher._lock:
        flusher._pending.clear()
        flusher._alerts.clear()
