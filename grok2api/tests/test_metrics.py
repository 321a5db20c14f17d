"""GET /metrics (core/metrics.py): counted across worker processes, protected by METRICS_TOKEN,
state gauges read at scrape time, dead workers dropped from the in-flight gauge."""
from __future__ import annotations

import os
import subprocess
import sys

import httpx
import openai
import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from core.metrics import metrics_multiproc_setup
from grok2api.metrics_view import metrics_render
from grok2api.testing.fixtures import BASE_DIR

TOKEN = "metrics-token-0123456789"
KEY = "sk-metrics"


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape(url: str, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url + "/metrics", headers=headers, timeout=10)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_add_up_the_requests_of_every_worker(sim, gateway_factory, workers):
    from accounts.maintenance import account_import

    account_import(tokens="sim-super-metrics", pool="super", probe_after=False)
    gateway = gateway_factory({**sim.upstream_env(), "GROK_APP_API_KEY": KEY, "METRICS_TOKEN": TOKEN}, workers=workers)

    sent = 16
    for i in range(sent):
        # a client (so a connection) per request: the kernel spreads new connections over both workers
        with openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0) as client:
            answer = client.chat.completions.create(model="grok-4.20-auto", messages=[{"role": "user", "content": f"hi {i}"}])
        assert answer.choices[0].message.content

    # every worker wrote its own counter file into DATA_DIR/metrics
    writers = {name.rsplit("_", 1)[1] for name in os.listdir(gateway.data_dir / "metrics") if name.startswith("counter_")}
    assert len(writers) >= workers, f"not every worker served: {writers}"

    for _ in range(4):  # whichever worker answers the scrape reports the deployment's totals
        response = _scrape(gateway.url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=")
        samples = _samples(response.text)
        requests_ok = _value(samples, "grok2api_requests_total", endpoint="chat.completions", model="grok-4.20-auto", status="ok")
        assert requests_ok == sent
        assert _value(samples, "grok2api_request_duration_seconds_count", endpoint="chat.completions", model="grok-4.20-auto") == sent
        assert _value(samples, "grok2api_upstream_outcomes_total", pool="super", mode="auto", outcome="ok") == sent
        assert _value(samples, "grok2api_key_requests_total", key="app.api_key") == sent
        assert _value(samples, "grok2api_key_tokens_total", key="app.api_key", kind="completion") > 0
        assert _value(samples, "grok2api_inflight_requests", pool="super") == 0
        assert _value(samples, "grok2api_accounts", pool="super", status="active") == 1
        assert _value(samples, "grok2api_quota_remaining", pool="super", mode="auto") > 0


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_scrape_without_the_right_bearer_token(gateway_factory):
    gateway = gateway_factory({"METRICS_TOKEN": TOKEN})
    for token in (None, "wrong-token-0123456789", TOKEN + "x"):
        response = _scrape(gateway.url, token)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "grok2api_" not in response.text
    assert _scrape(gateway.url).status_code == 200


@pytest.mark.django_db
@override_settings(METRICS_TOKEN="")
def test_it_answers_404_while_the_metrics_token_is_empty():
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.django_db
@override_settings(METRICS_TOKEN=TOKEN)
def test_it_reports_accounts_video_jobs_and_the_media_cache_at_scrape_time():
    from accounts.models import Account
    from core.snapshots import stamp_bump
    from media.models import CachedMedia, VideoJob

    for token, pool, status in (("sim-basic-a", "basic", "active"), ("sim-basic-b", "basic", "expired"), ("sim-heavy-c", "heavy", "active")):
        account = Account(pool=pool, status=status)
        account.set_token(token)
        account.save()
    stamp_bump("accounts")
    VideoJob.objects.create(id="video_m1", status="failed", prompt="x", model="grok-imagine-video")
    VideoJob.objects.create(id="video_m2", status="failed", prompt="y", model="grok-imagine-video")
    CachedMedia.objects.create(media_type="image", media_id="m1", file_name="m1.jpg", content_type="image/jpeg", size_bytes=1234)

    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    samples = _samples(response.content.decode())
    assert _value(samples, "grok2api_accounts", pool="basic", status="active") == 1
    assert _value(samples, "grok2api_accounts", pool="basic", status="expired") == 1
    assert _value(samples, "grok2api_accounts", pool="heavy", status="active") == 1
    assert _value(samples, "grok2api_quota_remaining", pool="heavy", mode="heavy") > 0
    assert ("grok2api_quota_remaining", frozenset({"pool": "super", "mode": "auto"}.items())) not in samples  # no super account
    assert _value(samples, "grok2api_video_jobs", status="failed") == 2
    assert ("grok2api_video_jobs", frozenset({"status": "queued"}.items())) in samples
    assert _value(samples, "grok2api_media_cache_bytes", type="image") == 1234
    assert _value(samples, "grok2api_media_cache_files", type="image") == 1


_WORKER = """
import sys, time
from core.metrics import REQUESTS, metrics_inflight_add
REQUESTS.labels("messages", "grok-4.20-auto", "ok").inc()
metrics_inflight_add(pool="super", delta=1)
print("ready", flush=True)
if sys.argv[1] == "live":
    time.sleep(60)
"""


@pytest.mark.django_db
def test_a_dead_worker_leaves_the_inflight_gauge_but_its_counts_stay(tmp_path, monkeypatch, settings):
    settings.METRICS_TOKEN = TOKEN
    path = metrics_multiproc_setup(data_dir=tmp_path, environ={})
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path), "DJANGO_SETTINGS_MODULE": "grok2api.settings"}
    dead = subprocess.run([sys.executable, "-c", _WORKER, "dead"], cwd=BASE_DIR, env=env, capture_output=True, timeout=60)
    assert dead.stdout.strip() == b"ready", dead.stderr
    live = subprocess.Popen([sys.executable, "-c", _WORKER, "live"], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE)
    try:
        assert live.stdout.readline().strip() == b"ready"
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
        samples = _samples(metrics_render().decode())
        assert _value(samples, "grok2api_inflight_requests", pool="super") == 1  # the live one's only
        assert _value(samples, "grok2api_requests_total", endpoint="messages", model="grok-4.20-auto", status="ok") == 2
        assert not any(name.endswith(f"_{dead_pid(path, live.pid)}.db") and name.startswith("gauge_live") for name in os.listdir(path))
    finally:
        live.kill()
        live.wait()


def dead_pid(path, live_pid: int) -> str:
    """The pid of the worker that exited, read from its counter file."""
    pids = {name.rsplit("_", 1)[1].removesuffix(".db") for name in os.listdir(path) if name.startswith("counter_")}
    (pid,) = pids - {str(live_pid)}
    return pid


def test_setup_empties_the_directory_of_a_previous_run(tmp_path, settings):
    settings.METRICS_TOKEN = TOKEN
    stale = tmp_path / "metrics" / "counter_1.db"
    stale.parent.mkdir()
    stale.write_bytes(b"old run")
    environ: dict[str, str] = {}
    path = metrics_multiproc_setup(data_dir=tmp_path, environ=environ)
    assert environ["PROMETHEUS_MULTIPROC_DIR"] == str(path) and list(path.iterdir()) == []
    settings.METRICS_TOKEN = ""
    environ = {}
    assert metrics_multiproc_setup(data_dir=tmp_path, environ=environ) is None and environ == {}


@pytest.mark.django_db
@override_settings(METRICS_TOKEN=TOKEN)
def test_every_exposed_metric_is_documented_and_on_the_grafana_dashboard():
    import json

    docs = (BASE_DIR / "docs" / "metrics.md").read_text()
    dashboard = json.loads((BASE_DIR / "docs" / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    text = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    families = list(text_string_to_metric_families(text))
    assert len(families) == 12
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"| `{name}` |" in docs, name
        assert family.name in exprs, name
