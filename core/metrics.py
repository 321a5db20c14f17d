"""Prometheus metrics: the instruments (docs/metrics.md). The scrape-time collector and the /metrics
view are grok2api/metrics_view.py: they read the pool and the media tables, so they sit on top of the
apps, while these counters sit below them (the pool and the gateway count into them).

Three kinds of numbers, each kept where it is cheapest:
- events counted where they happen, once each: a finished /v1 request (`metrics_request_observe`,
  called by gateway/usage.py `usage_record`, the single place every request ends), an upstream
  outcome (`metrics_upstream_observe`, from accounts/lease.py `account_report`) and the
  in-flight slot of a leased account (`metrics_inflight_add`). These are plain prometheus-client
  counters, histograms and a gauge: in memory, no I/O on the request path;
- state read at scrape time by `_StateCollector` (grok2api/metrics_view.py) from what the process already holds or from one
  aggregate query each: accounts by pool and status and the remaining quota (the in-memory pool
  snapshot, no query), video jobs by status and the media cache size (one GROUP BY each);
- nothing per request touches the ORM.

Several worker processes: `serve` calls `metrics_multiproc_setup`, which points
PROMETHEUS_MULTIPROC_DIR at DATA_DIR/metrics (emptied at each start), and then starts itself again
(exec) so that prometheus-client, which reads the variable once at import, runs in file mode in the
server — the one in-process worker or gunicorn's forked ones. prometheus-client then
keeps every process's values in small memory-mapped files there and the scraping worker adds them
up (its MultiProcessCollector), so /metrics shows the whole deployment whichever worker answers.
The in-flight gauge sums live processes only: a worker that died is marked dead (its gauge file
removed, `mark_process_dead`) on the next scrape, found by its pid no longer existing. Counters of
a dead worker stay counted, as Prometheus expects of counters.

/metrics answers only with `Authorization: Bearer <METRICS_TOKEN>`; with METRICS_TOKEN empty it is
404 (disabled), so a fresh install exposes nothing.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Request durations run from a cached /v1/models (ms) to a long reasoning answer or a video (minutes).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)

# Our own registry: the instruments never mix with whatever else registers into prometheus-client's
# global one, and a single-process scrape renders exactly this.
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("grok2api_requests", "Finished /v1 requests by route, model and outcome.",
                   ["endpoint", "model", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("grok2api_request_duration_seconds", "Time from the request to its last byte.",
                            ["endpoint", "model"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
TTFT_SECONDS = Histogram("grok2api_time_to_first_token_seconds", "Time from the request to the first answer token.",
                         ["endpoint", "model"], buckets=TTFT_BUCKETS, registry=REGISTRY)
UPSTREAM = Counter("grok2api_upstream_outcomes", "Upstream calls by pool, mode and outcome (ok or the error class).",
                   ["pool", "mode", "outcome"], registry=REGISTRY)
INFLIGHT = Gauge("grok2api_inflight_requests", "Upstream calls holding an account slot now, by pool.",
                 ["pool"], multiprocess_mode="livesum", registry=REGISTRY)
KEY_REQUESTS = Counter("grok2api_key_requests", "Finished /v1 requests by client key label.",
                       ["key"], registry=REGISTRY)
KEY_TOKENS = Counter("grok2api_key_tokens", "Tokens by client key label and kind (prompt, completion).",
                     ["key", "kind"], registry=REGISTRY)


# --------------------------------------------------------------------------- recording


def metrics_request_observe(*, entry) -> None:
    """Count one finished request (a gateway.usage.UsageEntry). Memory only."""
    try:
        REQUESTS.labels(entry.endpoint, entry.model, entry.status).inc()
        REQUEST_SECONDS.labels(entry.endpoint, entry.model).observe(max(0, entry.duration_ms) / 1000)
        if entry.ttft_ms is not None:
            TTFT_SECONDS.labels(entry.endpoint, entry.model).observe(max(0, entry.ttft_ms) / 1000)
        key = entry.api_key_label or "open"
        KEY_REQUESTS.labels(key).inc()
        if entry.prompt_tokens > 0:
            KEY_TOKENS.labels(key, "prompt").inc(entry.prompt_tokens)
        if entry.completion_tokens > 0:
            KEY_TOKENS.labels(key, "completion").inc(entry.completion_tokens)
    except Exception:  # a metrics failure must never fail the request it describes
        log.debug("metrics: request not counted", exc_info=True)


def metrics_upstream_observe(*, pool: str, mode: str, outcome: str) -> None:
    """Count one reported upstream call: `outcome` is "ok" or the UpstreamKind value."""
    try:
        UPSTREAM.labels(pool or "", mode or "", outcome).inc()
    except Exception:
        log.debug("metrics: upstream outcome not counted", exc_info=True)


def metrics_inflight_add(*, pool: str, delta: int) -> None:
    """+1 when a slot of an account in `pool` is leased, -1 when it is released."""
    try:
        INFLIGHT.labels(pool or "").inc(delta)
    except Exception:
        log.debug("metrics: in-flight gauge not updated", exc_info=True)


# --------------------------------------------------------------------------- several processes


def metrics_multiproc_setup(*, data_dir: Path | str | None = None, environ=None) -> Path | None:
    """With /metrics enabled (METRICS_TOKEN set): create an empty DATA_DIR/metrics and name it in
    PROMETHEUS_MULTIPROC_DIR for every child. Returns the directory, or None when disabled.

    Called by `serve` before it starts any worker: files of a previous run would otherwise be added
    to this run's counters. prometheus-client reads the variable when it is first imported, so it
    must be set before the children start (they inherit `environ`). Disabled, nothing is written
    to disk and each process keeps its (unread) numbers in memory."""
    if not settings.METRICS_TOKEN:
        return None
    environ = os.environ if environ is None else environ
    path = Path(data_dir if data_dir is not None else settings.DATA_DIR) / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    environ[MULTIPROC_ENV] = str(path)
    return path
