"""Smoke test of the benchmark harness (issue 8): `python -m bench.run --quick --no-peer` end to end.

A few requests per lane against a real simulator and a real `manage.py serve` (quick sizes, no
LiteLLM: installing and starting the peer takes minutes). It checks that the report is produced
and that its numbers are sane — counts add up, percentiles are ordered, every stream completed —
never how fast anything was (speed is what `make bench` measures, not the test suite).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("bench")
    out = out_dir / "benchmarks.md"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--no-peer", "--out", str(out),
                           "--run-dir", str(out_dir / "run")], cwd=BASE_DIR, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out.read_text(), json.loads(out.with_suffix(".json").read_text())


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.timeout(300)
def test_it_writes_the_report_with_every_lane(quick_run):
    md, _ = quick_run
    for heading in ("## Summary: targets (issue 8)", "### 1. Added latency", "### 2. Sustained throughput",
                    "### 3. Streaming", "concurrent streams held by one worker", "### 6. Account selection",
                    "### 7. Cost of key limits and metrics",
                    "## How it was run"):
        assert heading in md
    assert "added latency p50 ≤ 2 ms" in md and "added TTFT p99 ≤ 5 ms" in md
    assert "Peer not measured" in md  # --no-peer is said, not hidden


def test_it_says_which_server_grok2api_ran_under(quick_run, settings):
    md, r = quick_run
    assert r["server"] == "uvicorn"
    how = md.split("## How it was run", 1)[1]
    assert f"grok2api ran under **{r['server']}**" in how and "serve --no-worker --host" in how


def test_it_measures_added_latency_per_round(quick_run):
    _, r = quick_run
    rounds = r["params"]["lane1_rounds"]
    for mode in ("non_stream", "stream"):
        lane = r["lane1"][mode]
        assert set(lane) == {"direct-grok", "gateway", "direct-openai", "floor", "bare", "floor-grok"}
        for row in lane.values():
            assert row["n"] == rounds and row["errors"] == 0
            assert _finite_positive(row["p50"]) and row["p99"] >= row["p50"]
        g = lane["gateway"]
        assert g["added_p50"] == pytest.approx(g["p50"] - lane["direct-grok"]["p50"], abs=0.01)
        for floor in ("floor", "bare"):  # the libraries' floor on the OpenAI-shaped face
            f = lane[floor]
            assert f["added_p50"] == pytest.approx(f["p50"] - lane["direct-openai"]["p50"], abs=0.01)
        f = lane["floor-grok"]  # and on the Grok Web face grok2api calls
        assert f["added_p50"] == pytest.approx(f["p50"] - lane["direct-grok"]["p50"], abs=0.01)


def test_it_measures_the_libraries_floor_beside_the_gateway(quick_run):
    md, r = quick_run
    assert "### The libraries' floor" in md
    for mode in ("non_stream", "stream"):
        for floor in ("floor", "floor-grok"):
            assert _finite_positive(r["lane2"][mode][floor]["sustained_rps"])
    for floor in ("floor", "floor-grok"):
        assert r["lane3"][floor]["errors"] == 0 and r["lane3"][floor]["n"] > 0
    assert "| floor (Grok face) |" in md
    summary = md.split("## Summary", 1)[1].split("## Lane details", 1)[0]
    assert "| the libraries' floor (`floor-grok`) |" in summary  # each target beside the floor's own figure


def test_it_finds_a_sustained_rate_without_errors(quick_run):
    _, r = quick_run
    for mode in ("non_stream", "stream"):
        g = r["lane2"][mode]["gateway"]
        assert _finite_positive(g["sustained_rps"])
        assert g["levels"][0]["errors"] == 0 and g["levels"][0]["within_slo"]
        assert 0 <= g["levels"][0]["gen_cpu"] < 4
        assert _finite_positive(r["lane2"][mode]["direct-grok"]["sustained_rps"])


def test_it_streams_every_chunk_separately(quick_run):
    _, r = quick_run
    tokens = r["params"]["lane3_tokens"]
    g = r["lane3"]["gateway"]
    assert g["errors"] == 0 and g["chunks_min"] == g["chunks_max"] == tokens
    assert g["gaps"] == g["n"] * (tokens - 1)
    # the upstream paces tokens ~20 ms apart: a buffered stream would collapse most gaps
    assert g["gaps_under_5ms"] < g["gaps"] / 2
    assert _finite_positive(g["p50"]) and math.isfinite(g["added_p99"])


@pytest.mark.parametrize("server", ["gateway", "floor-grok"])  # floor-grok: the libraries' floor, same streams
def test_it_holds_all_streams_in_one_worker_and_samples_rss(quick_run, server):
    _, r = quick_run
    l4, l5 = r["lane4"][server], r["lane5"][server]
    assert l4["completed"] == l4["streams"] == r["params"]["lane4_streams"] and l4["failed"] == 0
    assert l4["peak_open"] == l4["streams"]
    assert l4["events_min"] == r["params"]["lane4_tokens"]
    assert _finite_positive(l5["idle_mb"]) and l5["peak_mb"] >= l5["idle_mb"] * 0.9 and _finite_positive(l5["after_mb"])


def test_it_reports_account_selection_cost(quick_run):
    _, r = quick_run
    assert r["lane6"]["n_accounts"] == 10000 and r["lane6"]["misses"] == 0
    assert _finite_positive(r["lane6"]["median_us"]) and r["lane6"]["p99_us"] >= r["lane6"]["median_us"]


def test_it_measures_limits_and_metrics_a_b_with_each_feature_really_on_or_off(quick_run):
    _, r = quick_run
    l7 = r["lane7"]
    instances = ["plain", "metrics"] + (["metrics+redis"] if l7["redis"] else [])
    checked = l7["checked"]
    for inst in instances:
        assert checked[f"{inst}/open"]["status"] == 200 and checked[f"{inst}/open"]["limit_requests"] is None
        assert checked[f"{inst}/limited"]["status"] == 200
        assert checked[f"{inst}/limited"]["limit_requests"] == "1000000000"  # the limited key's limits ran
        assert checked[inst]["metrics_status"] == (404 if inst == "plain" else 200)
    n = l7["rounds"] * l7["block"]
    for mode in ("non_stream", "stream"):
        lane = l7[mode]
        assert set(lane) == {"direct", *(f"{i}/{k}" for i in instances for k in ("open", "limited"))}
        for name, row in lane.items():
            assert row["n"] == n and row["errors"] == 0, (name, row)
            assert _finite_positive(row["p50"]) and row["p99"] >= row["p50"]
            if name != "direct":
                assert row["cpu_ms"] >= 0 and math.isfinite(row["added_p50"])
        assert lane["plain/open"]["d_p50"] == 0
