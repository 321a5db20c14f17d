"""Prometheus metrics: the instruments, the scrape-time collector and the /metrics view (docs/metrics.md).

Three kinds of numbers, each kept where it is cheapest:
- events counted where they happen, once each: a finished /v1 request (`metrics_request_observe`,
  called by gateway/usage.py `usage_record`, the single place every request ends), an upstream
  outcome (`metrics_upstream_observe`, from accounts/lease.py `account_report`) and the
  in-flight slot of a leased account (`metrics_inflight_add`). These are plain prometheus-client
  counters, histograms and a gauge: in memory, no I/O on the request path;
- state read at scrape time by `_StateCollector` from what the process already holds or from one
  aggregate query each: accounts by pool and status and the remaining quota (the in-memory pool
  snapshot, no query), video jobs by status and the media cache size (one GROUP BY each);
- nothing per request touches the ORM.

Several worker processes: `serve` calls `metrics_multiproc_setup` before starting its children, which
points PROMETHEUS_MULTIPROC_DIR at DATA_DIR/metrics (emptied at each start). prometheus-client then
keeps every process's values in small memory-mapped files there and the scraping worker adds them
up (its MultiProcessCollector), so /metrics shows the whole deployment whichever worker answers.
The in-flight gauge sums live processes only: a worker that died is marked dead (its gauge file
removed, `mark_process_dead`) on the next scrape, found by its pid no longer existing. Counters of
a dead worker stay counted, as Prometheus expects of counters.

/metrics answers only with `Authorization: Bearer <METRICS_TOKEN>`; with METRICS_TOKEN empty it is
404 (disabled), so a fresh install exposes nothing.
"""
from __future__ import annotations

import hmac
import logging
import os
import re
import shutil
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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


_LIVE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


def _mark_dead_workers(path: str) -> None:
    """Drop the live-gauge files of processes that no longer exist (a crashed or restarted worker)."""
    from prometheus_client import multiprocess

    for name in os.listdir(path):
        m = _LIVE_FILE.match(name)
        if not m:
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
        except PermissionError:
            pass  # exists, owned by someone else


# --------------------------------------------------------------------------- scrape-time state


class _StateCollector:
    """Gauges computed when scraped: accounts, quota, video jobs, media cache."""

    def describe(self):
        return []  # computed on demand; nothing to check at registration

    def collect(self):
        yield from _pool_families()
        yield from _media_families()

    def __repr__(self) -> str:
        return "grok2api state collector"


def _pool_families():
    from accounts.pool import POOL_MODES, default_window
    from accounts.snapshot import pool_snapshot

    accounts = GaugeMetricFamily("grok2api_accounts", "Accounts by pool and status.", labels=["pool", "status"])
    quota = GaugeMetricFamily("grok2api_quota_remaining",
                              "Remaining requests in the current rate-limit window, summed over the usable accounts of a pool.",
                              labels=["pool", "mode"])
    by_status: dict[tuple[str, str], int] = {}
    remaining: dict[tuple[str, str], int] = {}
    snap = pool_snapshot()
    with snap.lock:
        for view in snap.accounts.values():
            by_status[(view.pool, view.status)] = by_status.get((view.pool, view.status), 0) + 1
            if not view.usable:
                continue
            for mode in POOL_MODES.get(view.pool, ()):
                # read without view.window(): that caches a default window into the view
                w = view.quotas.get(mode) or default_window(view.pool, mode)
                if w is not None:
                    remaining[(view.pool, mode)] = remaining.get((view.pool, mode), 0) + max(0, int(w.remaining))
    for (pool, status), n in sorted(by_status.items()):
        accounts.add_metric([pool, status], n)
    for (pool, mode), n in sorted(remaining.items()):
        quota.add_metric([pool, mode], n)
    yield accounts
    yield quota


def _media_families():
    from django.db.models import Count

    from media.cache import media_cache_stats
    from media.models import VideoJob, VideoJobStatus

    jobs = GaugeMetricFamily("grok2api_video_jobs", "Video jobs by status.", labels=["status"])
    counts = dict(VideoJob.objects.order_by().values("status").annotate(n=Count("id")).values_list("status", "n"))
    for status in VideoJobStatus.values:
        jobs.add_metric([status], counts.get(status, 0))
    yield jobs
    size = GaugeMetricFamily("grok2api_media_cache_bytes", "Bytes in the local media cache by type.", labels=["type"])
    files = GaugeMetricFamily("grok2api_media_cache_files", "Files in the local media cache by type.", labels=["type"])
    for media_type, stats in media_cache_stats().items():
        size.add_metric([media_type], stats["size_bytes"])
        files.add_metric([media_type], stats["count"])
    yield size
    yield files


_STATE = _StateCollector()
REGISTRY.register(_STATE)


def metrics_render() -> bytes:
    """The Prometheus text exposition of this deployment (every worker when multiprocess)."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess

    _mark_dead_workers(path)
    registry = CollectorRegistry(auto_describe=True)
    multiprocess.MultiProcessCollector(registry, path=path)
    registry.register(_STATE)
    return generate_latest(registry)


# --------------------------------------------------------------------------- the view


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: 404 while METRICS_TOKEN is empty, 401 without the right bearer token."""
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponse("Not Found\n", status=404, content_type="text/plain")
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        response = HttpResponse("metrics: missing or wrong bearer token\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if request.method not in ("GET", "HEAD"):
        response = HttpResponse(status=405)
        response["Allow"] = "GET, HEAD"
        return response
    return HttpResponse(metrics_render(), content_type=CONTENT_TYPE_LATEST)
