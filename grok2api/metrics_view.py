"""GET /metrics: the scrape-time state collector, the exposition of every worker and the view.

The instruments counted on the request path are core/metrics.py (below the apps, which count
into them); this module reads the apps — the pool snapshot, video jobs, the media cache — at scrape
time, so it sits on top of them with the URL conf that mounts it (docs/metrics.md).
"""
from __future__ import annotations

import hmac
import os
import re

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from accounts.pool import POOL_MODES, default_window
from accounts.snapshot import pool_snapshot
from core.metrics import MULTIPROC_ENV, REGISTRY
from media.cache import media_cache_stats
from media.models import VideoJob, VideoJobStatus

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
