"""The usage ledger: one UsageRecord per /v1 request, written in batches off the request path.

`usage_record(entry=UsageEntry(...))` only appends to an in-process buffer (no ORM, no I/O). A daemon
flusher thread writes the buffer with one `bulk_create` every USAGE_FLUSH_INTERVAL seconds (default
1) or as soon as USAGE_FLUSH_BATCH entries (default 200) are waiting (USAGE_FLUSHER=0 disables the thread); `usage_flush()` writes
synchronously (tests, shutdown). If the batch fails because a referenced account or API key was
deleted meanwhile, rows are retried one by one with the dangling reference dropped, so a ledger
entry is never lost for that reason. At interpreter exit the remaining buffer is flushed.

Recording an entry is also where an answer's tokens are counted against its key's per-minute
limit and budgets: they are put on the request's limit grant, which sends them with the release of
its concurrency slot in one call when the answer is over (gateway/limits.py); and where the row gets
the request's id (gateway/requestid.py).
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from gateway.limits import key_tokens_add
from gateway.requestid import request_trace
from core.metrics import metrics_request_observe

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UsageEntry:
    endpoint: str
    model: str
    stream: bool
    api_key_id: int | None = None
    api_key_label: str = ""
    mode: str = ""
    account_id: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    duration_ms: int = 0
    ttft_ms: int | None = None
    status: str = "ok"  # UsageStatus: ok | error | cancelled
    error_code: str = ""
    attempts: int = 1
    request_id: str = ""
    created_at: datetime = field(default_factory=timezone.now)


def _interval() -> float:
    try:
        return max(0.05, float(os.environ.get("USAGE_FLUSH_INTERVAL", "1")))
    except ValueError:
        return 1.0


BATCH = int(os.environ.get("USAGE_FLUSH_BATCH", "200") or 200)

_buffer: deque[UsageEntry] = deque()
_wake = threading.Event()
_flush_lock = threading.RLock()  # re-entrant: tests hold it to keep the flusher thread out
_started = False
_start_lock = threading.Lock()


def usage_record(*, entry: UsageEntry) -> None:
    """Queue one ledger row and count it in the metrics and the key's token limits. Memory only; safe
    from async code and any thread."""
    trace = request_trace()
    if trace is not None:
        if not entry.request_id:
            entry.request_id = trace.request_id
        trace.usage = entry
        grant = trace.grant
        if grant is not None and grant.key_id == entry.api_key_id:
            key_tokens_add(grant=grant, tokens=max(0, entry.prompt_tokens) + max(0, entry.completion_tokens))
    metrics_request_observe(entry=entry)  # every /v1 request ends here, so the metrics count each once
    _buffer.append(entry)
    _ensure_flusher()
    if len(_buffer) >= BATCH:
        _wake.set()



def media_usage_record(sender=None, signal=None, **fields) -> None:
    """The receiver of media/common.py's media_request_finished: one ledger row per media request."""
    usage_record(entry=UsageEntry(**fields))


def usage_pending() -> int:
    return len(_buffer)


def _to_row(entry: UsageEntry, *, keep_refs: bool = True):
    from gateway.models import UsageRecord

    return UsageRecord(
        created_at=entry.created_at,
        api_key_id=entry.api_key_id if keep_refs else None,
        api_key_label=entry.api_key_label[:100],
        endpoint=entry.endpoint[:40],
        model=entry.model[:80],
        mode=entry.mode[:40],
        account_id=entry.account_id if keep_refs else None,
        stream=entry.stream,
        prompt_tokens=max(0, entry.prompt_tokens),
        completion_tokens=max(0, entry.completion_tokens),
        reasoning_tokens=max(0, entry.reasoning_tokens),
        duration_ms=max(0, entry.duration_ms),
        ttft_ms=None if entry.ttft_ms is None else max(0, entry.ttft_ms),
        status=entry.status,
        error_code=entry.error_code[:60],
        attempts=max(1, min(entry.attempts, 32767)),
        request_id=entry.request_id[:128],
    )


def usage_flush() -> int:
    """Write everything buffered now; returns the number of rows written. Sync (ORM)."""
    from gateway.models import UsageRecord

    with _flush_lock:
        batch: list[UsageEntry] = []
        while _buffer:
            batch.append(_buffer.popleft())
        if not batch:
            return 0
        try:
            with transaction.atomic():
                _rows_insert(UsageRecord, [_to_row(e) for e in batch])
            return len(batch)
        except Exception:
            # typically an account or key deleted since the request; the rows are kept without it
            log.info("usage batch of %d failed; writing rows one by one", len(batch))
        written = 0
        for entry in batch:
            for keep in (True, False):
                try:
                    with transaction.atomic():
                        UsageRecord.objects.create(**_fields(_to_row(entry, keep_refs=keep)))
                    written += 1
                    break
                except Exception:
                    if not keep:
                        log.exception("usage row dropped: %s %s", entry.endpoint, entry.model)
        return written


def _rows_insert(model, rows: list) -> None:
    """One INSERT statement run for every row (executemany), values converted by the model's fields.

    bulk_create compiles an INSERT with a placeholder group per row through the ORM's compiler: in
    the profile of a loaded worker that was several % of all CPU, on a thread that competes for the
    GIL with the event loop (docs/benchmarks.md).
    """
    fields = [f for f in model._meta.concrete_fields if f.attname != "id"]
    qn = connection.ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        qn(model._meta.db_table), ", ".join(qn(f.column) for f in fields), ", ".join(["%s"] * len(fields)),
    )
    params = [[f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields] for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _fields(row) -> dict:
    return {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields if f.attname != "id"}


def _flusher() -> None:
    while True:
        _wake.wait(_interval())
        _wake.clear()
        try:
            usage_flush()
        except Exception:
            log.exception("usage flush failed")
        finally:
            close_old_connections()


def _ensure_flusher() -> None:
    global _started
    if _started or os.environ.get("USAGE_FLUSHER", "1") == "0":
        return
    with _start_lock:
        if _started:
            return
        _started = True
        threading.Thread(target=_flusher, name="usage-flusher", daemon=True).start()
        atexit.register(_flush_at_exit)


def _flush_at_exit() -> None:
    try:
        usage_flush()
    except Exception:
        log.warning("usage flush at exit failed", exc_info=True)
