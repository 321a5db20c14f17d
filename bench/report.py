"""Render a benchmark result (the dict bench.run builds) as docs/benchmarks.md (Markdown).

Ratios are always written so that a value above 1 favours grok2api: LiteLLM ÷ grok2api for
costs (latency, RSS), grok2api ÷ LiteLLM for throughput.
"""
from __future__ import annotations

import math
from pathlib import Path

FASTPATH_NOTES = Path(__file__).with_name("fastpath.md")


def _f(x, nd: int = 2, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{nd}f}{unit}"


def _ratio(ours, theirs, *, lower_is_better: bool) -> str:
    if ours is None or theirs is None:
        return "n/a"
    try:
        if lower_is_better:
            if ours <= 0:
                return "∞ (ours ≤ 0)" if theirs > 0 else "n/a"
            return f"{theirs / ours:.1f}×"
        return f"{ours / theirs:.2f}×" if theirs > 0 else "n/a"
    except (TypeError, ZeroDivisionError):
        return "n/a"


def _lane7_on(l7: dict) -> str | None:
    """The lane-7 variant closest to production: limits on, metrics on, on Redis when measured."""
    for name in ("metrics+redis/limited", "metrics/limited"):
        if name in (l7.get("non_stream") or {}):
            return name
    return None


LANE7_PAIRS = (
    ("key limits, per-process counters", "plain/limited", "plain/open"),
    ("metrics on (multi-process files)", "metrics/open", "plain/open"),
    ("REDIS_URL (in-flight counters, cache in Redis)", "metrics+redis/open", "metrics/open"),
    ("key limits, shared Redis counters", "metrics+redis/limited", "metrics+redis/open"),
    ("all of them", "metrics+redis/limited", "plain/open"),
)


def _lane7(r: dict, w) -> None:
    l7 = r.get("lane7") or {}
    if not l7:
        return
    w("### 7. Cost of key limits and metrics (issue 20; A/B interleaved)")
    w("")
    run = l7.get("run") or {}
    if run:
        w(f"Run: `python -m bench.run {run.get('argv', '')}` at {run.get('at')} "
          f"(load average, 1 min, at the start of the run / at the end of this lane: "
          f"{_f((r.get('loadavg') or [None])[0], 2)} / {_f(run.get('loadavg'), 2)}; 2 cores).")
        w("")
    w(f"Concurrency 1, simulator pace 0, the lane-1 prompt. {l7['rounds']} rounds after 2 warm-up rounds; each round sends "
      f"{l7['block']} requests in a row to every variant, the variants in a rotating order, so the variants share "
      "whatever else loads the machine (A/B/A/B, never one after the other). Instances, each with 2 workers and its own copy "
      "of the same DATA_DIR: `plain` = no METRICS_TOKEN, no REDIS_URL (the counters still count, in process memory: "
      "there is no switch that skips them); `metrics` = METRICS_TOKEN set, so /metrics is on and the counters live in "
      "prometheus-client's multi-process files; `metrics+redis` = the same plus REDIS_URL (shared in-flight counters and "
      "shared key-limit counters in Redis), " + ("measured." if l7.get("redis") else "**not measured** in this run "
      "(no `--redis-url`).") + " Keys: `open` has no limits; `limited` has every limit (rpm, tpm, concurrency, daily and "
      "monthly budget) set far above what the lane sends, so every check runs and none refuses. "
      "`cpu ms/req` = user + system time of that instance's workers over its blocks ÷ its requests (clock-tick "
      "resolution, summed over all blocks). Δ = minus `plain/open` (the same gateway without either feature); "
      "added = minus `direct` (the simulator's Grok Web face, as in lane 1).")
    w("")
    w("| mode | variant | n | p50 ms | p99 ms | mean ms | errors | added p50 | Δ p50 ms | cpu ms/req | Δ cpu ms/req |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for mode in ("non_stream", "stream"):
        for name, row in (l7.get(mode) or {}).items():
            cpu = "(simulator)" if name == "direct" else _f(row.get("cpu_ms"), 3)
            w(f"| {mode.replace('_', '-')} | {name} | {row['n']} | {_f(row['p50'], 3)} | {_f(row['p99'], 3)} | "
              f"{_f(row['mean'], 3)} | {row['errors']} | {_f(row.get('added_p50'), 3)} | {_f(row.get('d_p50'), 3)} | "
              f"{cpu} | {_f(row.get('d_cpu_ms'), 3)} |")
    w("")
    w("What each feature costs: the difference between two variants that differ in that feature only "
      "(wall p50 and CPU per request, ms; negative = within the noise of the shared machine).")
    w("")
    w("| feature | variants compared | non-stream Δ p50 | non-stream Δ cpu | stream Δ p50 | stream Δ cpu |")
    w("|---|---|---|---|---|---|")
    for feature, on, off in LANE7_PAIRS:
        cells = []
        for mode in ("non_stream", "stream"):
            rows = l7.get(mode) or {}
            if on not in rows or off not in rows:
                cells += ["n/a", "n/a"]
                continue
            cells += [_f(rows[on]["p50"] - rows[off]["p50"], 3), _f(rows[on]["cpu_ms"] - rows[off]["cpu_ms"], 3)]
        w(f"| {feature} | `{on}` − `{off}` | " + " | ".join(cells) + " |")
    w("")
    micro = l7.get("micro") or {}
    if micro:
        w(_micro_note(micro))
        w("")
        w("| variant | CPU µs per request | wall µs per request | runs (CPU µs) |")
        w("|---|---|---|---|")
        for name, med in micro["median"].items():
            runs = ", ".join(_f(x["cpu_us"], 1) for x in micro["runs"][name])
            w(f"| {name} | {_f(med['cpu_us'], 1)} | {_f(med['wall_us'], 1)} | {runs} |")
        w("")


def _micro_note(micro: dict) -> str:
    return (f"The features' own code, timed alone (`python -m bench.features <variant> {micro['n']}`: a fresh process "
          f"per run, {micro['rounds']} runs per variant in alternation, median of the runs; {micro['n']} requests "
          "per run). Metrics: the counters of one finished request (`metrics_request_observe`), in process memory "
          "(METRICS_TOKEN empty) or in prometheus-client's multi-process files (METRICS_TOKEN set). Limits: one "
          "request's calls with every limit set — admission, then one release that frees its concurrency slot and "
          "adds its tokens — on per-process counters or on Redis (two round trips: wall = the admission a request "
          "waits for, the release is a task not waited for, its CPU counted; the Redis server's CPU is not counted, "
          "and the Redis instance was shared with the other work on the machine). CPU = this process's user + "
          "system time.")


def _lane7_runs(results: list[dict], w) -> None:
    """Every run of lane 7 side by side: the load it ran under, what the gateway added with and
    without the features, and each feature's cost (Δ p50 / Δ CPU per request, ms)."""
    w(f"All {len(results)} runs of lane 7, in the order they ran (ns = non-stream, s = stream; ms):")
    w("")
    w("| run (UTC) | load avg start / end | added p50 `plain/open` ns / s | added p50 `metrics/limited` ns / s | "
      "added p50 `metrics+redis/limited` ns / s | " + " | ".join(f[0] + " Δ p50 / Δ cpu ns; s" for f in LANE7_PAIRS) + " |")
    w("|---|---|---|---|---|" + "---|" * len(LANE7_PAIRS))
    for r in results:
        l7 = r.get("lane7") or {}
        ns, st = l7.get("non_stream") or {}, l7.get("stream") or {}
        run = l7.get("run") or {}

        def added(name: str) -> str:
            return f"{_f((ns.get(name) or {}).get('added_p50'), 2)} / {_f((st.get(name) or {}).get('added_p50'), 2)}"

        cells = []
        for _, on, off in LANE7_PAIRS:
            parts = []
            for rows in (ns, st):
                if on in rows and off in rows:
                    parts.append(f"{rows[on]['p50'] - rows[off]['p50']:.2f} / {rows[on]['cpu_ms'] - rows[off]['cpu_ms']:.2f}")
                else:
                    parts.append("n/a")
            cells.append("; ".join(parts))
        w(f"| {run.get('at', r.get('finished_at'))} | {_f((r.get('loadavg') or [None])[0], 1)} / {_f(run.get('loadavg'), 1)} | "
          f"{added('plain/open')} | {added('metrics/limited')} | {added('metrics+redis/limited')} | " + " | ".join(cells) + " |")
    w("")
    micro = [(r["lane7"].get("run", {}).get("at"), r["lane7"]["micro"]) for r in results if (r.get("lane7") or {}).get("micro")]
    if micro:
        names = list(micro[0][1]["median"])
        w(_micro_note(micro[0][1]) + " Per run: CPU µs per request (wall µs in brackets).")
        w("")
        w("| run (UTC) | " + " | ".join(names) + " |")
        w("|---|" + "---|" * len(names))
        for at, m in micro:
            w(f"| {at} | " + " | ".join(f"{_f(m['median'][n]['cpu_us'], 1)} ({_f(m['median'][n]['wall_us'], 0)})"
                                       if n in m["median"] else "n/a" for n in names) + " |")
        w("")


def targets_check(r: dict, who: str = "gateway") -> list[dict]:
    """The issue's targets, each with the value measured for `who` (`gateway`, or `floor-grok`: the
    libraries' floor on the same upstream) and met/missed; `value` None where `who` was not measured."""
    rows = []
    l1 = r.get("lane1") or {}
    for mode in ("non_stream", "stream"):
        v = (l1.get(mode) or {}).get(who, {}).get("added_p50")
        rows.append({"target": f"added latency p50 ≤ 2 ms ({mode.replace('_', '-')})",
                     "value": None if v is None else _f(v, 3, " ms"), "met": v is not None and v <= 2.0})
    l2 = r.get("lane2") or {}
    for mode in ("non_stream", "stream"):
        per = l2.get(mode) or {}
        ours = (per.get(who) or {}).get("sustained_rps")
        theirs = (per.get("peer") or {}).get("sustained_rps")
        met = None if not theirs else (ours or 0) >= 2 * theirs
        rows.append({"target": f"sustained req/s ≥ 2× LiteLLM ({mode.replace('_', '-')})",
                     "value": None if ours is None else
                     f"{_f(ours, 1)} vs {_f(theirs, 1)} ({_ratio(ours, theirs, lower_is_better=False)})",
                     "met": met})
    l7 = r.get("lane7") or {}
    on = _lane7_on(l7)
    for mode in ("non_stream", "stream") if on else ():
        v = ((l7.get(mode) or {}).get(on) or {}).get("added_p50") if who == "gateway" else None
        rows.append({"target": f"added latency p50 ≤ 2 ms with limits and metrics on, `{on}` ({mode.replace('_', '-')}, issue 20)",
                     "value": None if v is None else _f(v, 3, " ms"), "met": v is not None and v <= 2.0})
    v = ((r.get("lane3") or {}).get(who) or {}).get("added_p99")
    rows.append({"target": "added TTFT p99 ≤ 5 ms", "value": None if v is None else _f(v, 3, " ms"),
                 "met": v is not None and v <= 5.0})
    l4 = (r.get("lane4") or {}).get(who) or {}
    v = l4.get("peak_rss_mb")
    rows.append({"target": f"{l4.get('streams', 1000)} concurrent streams in one worker, all complete, < 400 MB RSS",
                 "value": f"{l4.get('completed', 0)}/{l4.get('streams', 0)} complete, {_f(v, 1, ' MB')}" if l4 else None,
                 "met": bool(l4) and l4.get("failed", 1) == 0 and v is not None and v < 400})
    l5 = (r.get("lane5") or {}).get(who) or {}
    idle, after = l5.get("idle_mb"), l5.get("after_mb")
    growth = None if not idle or after is None else (after - idle) / idle * 100.0
    rows.append({"target": f"RSS {l5.get('settle_s', 60):.0f} s after load within 10 % of idle",
                 "value": f"{_f(idle, 1)} → {_f(after, 1)} MB ({_f(growth, 1, ' %')})" if l5 else None,
                 "met": growth is not None and growth <= 10.0})
    return rows


def _floor_summary(r: dict, w) -> None:
    """What the design card's libraries add on their own (bench/floor.py), beside what grok2api adds."""
    l1, l2, l3 = r.get("lane1") or {}, r.get("lane2") or {}, r.get("lane3") or {}
    if "floor" not in (l1.get("non_stream") or {}):
        return
    w("### The libraries' floor")
    w("")
    w("`floor` is a one-endpoint proxy on the stack `serve` runs and nothing of ours (`bench/floor.py`): uvicorn "
      "(uvloop, h11) → Django's ASGI handler → a Ninja schema for the body → httpx2 to the simulator's OpenAI-shaped "
      "face → the answer passed back as it came. `bare` is the same proxy without Django and Ninja (a plain ASGI "
      "callable on uvicorn and httpx2). `floor (Grok face)` is `floor` on the upstream grok2api calls: it takes the "
      "Grok Web chat body grok2api sends, calls the simulator's Grok Web face and passes its NDJSON answer back, so it "
      "reads as many answer lines as grok2api and costs the simulator as much. All are measured in the same "
      "interleaved rounds as grok2api, against the face they call. grok2api does more on top: the key check, the "
      "account pool, the payload and answer translation; `grok2api − floor` compares it with the floor on its own "
      "upstream.")
    w("")
    w("| lane | metric | bare (uvicorn + httpx2) | floor (+ Django + Ninja) | floor (Grok face) | grok2api | "
      "grok2api − floor |")
    w("|---|---|---|---|---|---|---|")
    for mode in ("non_stream", "stream"):
        rows = l1.get(mode) or {}
        for q in ("p50", "p99"):
            b, f, fg, g = ((rows.get(n) or {}).get("added_" + q) for n in ("bare", "floor", "floor-grok", "gateway"))
            d = None if fg is None or g is None else g - fg
            w(f"| 1 added latency, {mode.replace('_', '-')} | {q} | {_f(b, 3, ' ms')} | {_f(f, 3, ' ms')} | "
              f"{_f(fg, 3, ' ms')} | {_f(g, 3, ' ms')} | {_f(d, 3, ' ms')} |")
    for mode in ("non_stream", "stream"):
        per = l2.get(mode) or {}
        f, fg, g, p = ((per.get(n) or {}).get("sustained_rps") for n in ("floor", "floor-grok", "gateway", "peer"))

        def vs(x):
            return f" ({_ratio(x, p, lower_is_better=False)} LiteLLM)" if p and x is not None else ""

        w(f"| 2 sustained, {mode.replace('_', '-')} | req/s | n/a | {_f(f, 1)}{vs(f)} | {_f(fg, 1)}{vs(fg)} | "
          f"{_f(g, 1)}{vs(g)} | {_ratio(g, fg, lower_is_better=False)} of the floor |")
    for q in ("p50", "p99"):
        f, fg, g = ((l3.get(n) or {}).get("added_" + q) for n in ("floor", "floor-grok", "gateway"))
        d = None if fg is None or g is None else g - fg
        w(f"| 3 added TTFT | {q} | n/a | {_f(f, 3, ' ms')} | {_f(fg, 3, ' ms')} | {_f(g, 3, ' ms')} | {_f(d, 3, ' ms')} |")
    w("")


def _mark(met) -> str:
    return "n/a" if met is None else ("met" if met else "**missed**")


def render(r: dict) -> str:
    env = r["env"]
    peer_name = f"LiteLLM {env.get('litellm', '?')}"
    has_peer = bool(r.get("peer_ok"))
    L: list[str] = []
    w = L.append
    w("# Benchmarks")
    w("")
    w(f"Generated by `make bench` (`python -m bench.run{(' ' + r['argv']) if r.get('argv') else ''}`) on {r['finished_at']} "
      f"in {r['elapsed_s']:.0f} s. Everything ran on this one machine: {env['cpu']} ({env['cores']} cores), "
      f"{env['mem_gb']:.0f} GiB RAM, Linux {env['kernel']}. Do not edit by hand: re-run `make bench`."
      + (f" Load average (1 min) at start / end: {r['loadavg'][0]:.2f} / {r['loadavg'][1]:.2f}." if r.get("loadavg") else "")
      + (" **Quick mode** (smoke-test sizes: the numbers are not meaningful)." if r.get("quick") else ""))
    w("")
    w("## Summary: targets (issue 8)")
    w("")
    floor_rows = targets_check(r, "floor-grok")
    if any(t["value"] is not None for t in floor_rows):
        w("Beside each target, the same measurement of the libraries' floor on the same upstream (`floor-grok`, "
          "bench/floor.py: the design card's stack calling the simulator's Grok Web face, with no code of ours; "
          "see \"The libraries' floor\" below).")
        w("")
        w("| target | grok2api | | the libraries' floor (`floor-grok`) | |")
        w("|---|---|---|---|---|")
        for t, f in zip(targets_check(r), floor_rows):
            floor_cells = "n/a | " if f["value"] is None else f"{f['value']} | {_mark(f['met'])}"
            w(f"| {t['target']} | {t['value'] or 'n/a'} | {_mark(t['met'])} | {floor_cells} |")
    else:
        w("| target | measured | |")
        w("|---|---|---|")
        for t in targets_check(r):
            w(f"| {t['target']} | {t['value'] or 'n/a'} | {_mark(t['met'])} |")
    w("")
    if not has_peer:
        w(f"**Peer not measured:** {r.get('peer_error', 'disabled (--no-peer)')}")
        w("")
    w(f"Ratios: a value above 1× favours grok2api ({peer_name} ÷ grok2api for latency and memory, "
      "grok2api ÷ LiteLLM for throughput).")
    w("")
    w("| lane | metric | grok2api | " + peer_name + " | ratio |")
    w("|---|---|---|---|---|")
    l1 = r.get("lane1") or {}
    for mode in ("non_stream", "stream"):
        g = (l1.get(mode) or {}).get("gateway") or {}
        p = (l1.get(mode) or {}).get("peer") or {}
        for q in ("p50", "p99"):
            w(f"| 1 added latency, {mode.replace('_', '-')} | {q} | {_f(g.get('added_' + q), 3, ' ms')} | "
              f"{_f(p.get('added_' + q), 3, ' ms')} | {_ratio(g.get('added_' + q), p.get('added_' + q), lower_is_better=True)} |")
    l2 = r.get("lane2") or {}
    for mode in ("non_stream", "stream"):
        g = (l2.get(mode) or {}).get("gateway") or {}
        p = (l2.get(mode) or {}).get("peer") or {}
        w(f"| 2 sustained, {mode.replace('_', '-')} | req/s (p99 < 1 s, errors < 0.1 %) | {_f(g.get('sustained_rps'), 1)} "
          f"(c={g.get('at_concurrency')}) | {_f(p.get('sustained_rps'), 1)} (c={p.get('at_concurrency')}) | "
          f"{_ratio(g.get('sustained_rps'), p.get('sustained_rps'), lower_is_better=False)} |")
    l3 = r.get("lane3") or {}
    g, p = l3.get("gateway") or {}, l3.get("peer") or {}
    for q in ("p50", "p99"):
        w(f"| 3 added TTFT | {q} | {_f(g.get('added_' + q), 3, ' ms')} | {_f(p.get('added_' + q), 3, ' ms')} | "
          f"{_ratio(g.get('added_' + q), p.get('added_' + q), lower_is_better=True)} |")
    w(f"| 3 chunk gaps vs direct | p50 / p99 abs. difference | {_f(g.get('gap_diff_p50'), 3)} / {_f(g.get('gap_diff_p99'), 3)} ms | "
      f"{_f(p.get('gap_diff_p50'), 3)} / {_f(p.get('gap_diff_p99'), 3)} ms | |")
    l4 = r.get("lane4") or {}
    g, p = l4.get("gateway") or {}, l4.get("peer") or {}
    w(f"| 4 {g.get('streams', '?')} streams, 1 worker | completed | {g.get('completed', 'n/a')} | {p.get('completed', 'n/a')} | |")
    w(f"| 4 {g.get('streams', '?')} streams, 1 worker | peak RSS | {_f(g.get('peak_rss_mb'), 1, ' MB')} | "
      f"{_f(p.get('peak_rss_mb'), 1, ' MB')} | {_ratio(g.get('peak_rss_mb'), p.get('peak_rss_mb'), lower_is_better=True)} |")
    l5 = r.get("lane5") or {}
    g, p = l5.get("gateway") or {}, l5.get("peer") or {}
    for key, label in (("idle_mb", "idle"), ("peak_mb", "at peak"), ("after_mb", f"{g.get('settle_s', 60):.0f} s after")):
        w(f"| 5 RSS, 1 worker | {label} | {_f(g.get(key), 1, ' MB')} | {_f(p.get(key), 1, ' MB')} | "
          f"{_ratio(g.get(key), p.get(key), lower_is_better=True)} |")
    l6 = r.get("lane6") or {}
    w(f"| 6 account selection, {l6.get('n_accounts', '?')} accounts | median / p99 | {_f(l6.get('median_us'), 2)} / "
      f"{_f(l6.get('p99_us'), 2)} µs | n/a | |")
    w("")
    _floor_summary(r, w)

    # ---------------------------------------------------------------- details
    w("## Lane details")
    w("")
    cal = r.get("calibration") or {}
    w("### 1. Added latency (concurrency 1, simulator pace 0, interleaved rounds)")
    w("")
    w(f"{r['params']['lane1_rounds']} rounds after 10 warm-up rounds; each round sends the same prompt "
      f"(`#sim:len={r['params']['lane1_tokens']}`) to every target over keep-alive connections, in a rotating order. "
      "Latency = request written → last byte (the whole SSE stream for streamed requests). "
      "Added = percentile through the gateway − the same percentile directly at the simulator face that gateway uses "
      "(Grok Web NDJSON for grok2api and `floor-grok`, the OpenAI-shaped face for LiteLLM and for the libraries' floor, `floor` and `bare`).")
    w("")
    w("| mode | target | n | p50 ms | p99 ms | mean ms | errors | added p50 | added p99 |")
    w("|---|---|---|---|---|---|---|---|---|")
    for mode in ("non_stream", "stream"):
        for name, row in (l1.get(mode) or {}).items():
            w(f"| {mode.replace('_', '-')} | {name} | {row['n']} | {_f(row['p50'], 3)} | {_f(row['p99'], 3)} | "
              f"{_f(row['mean'], 3)} | {row['errors']} | {_f(row.get('added_p50'), 3)} | {_f(row.get('added_p99'), 3)} |")
    w("")
    w("### 2. Sustained throughput with 20 ms of upstream delay")
    w("")
    c2 = cal.get("lane2") or {}
    w(f"Simulator pace {_f(r['params'].get('lane2_pace'), 4)}: the fixed prompt (`#sim:len={r['params']['lane2_tokens']}`) "
      f"then spends {_f((c2.get('total') or 0) * r['params'].get('lane2_pace', 0) * 1000, 1)} ms in upstream delays "
      "(first byte + token gaps) on every request. Closed loop: `c` clients on keep-alive connections, each sending its next "
      f"request when the previous one ended; {r['params']['lane2_duration']:g} s counted per level after "
      f"{r['params'].get('lane2_warmup', 1.0):g} s of warm-up. "
      "Concurrency rises until p99 ≥ 1 s, errors ≥ 0.1 % or throughput falls 10 % below the best level; "
      "sustained = the best level within both limits. `gen cpu` = the load generator's CPU (1.0 = one core), "
      "`server cpu` = the server's worker processes, `simulator cpu` = the simulator process (all three share the "
      "machine's 2 cores). The direct rows are the same load straight at the simulator: "
      "the ceiling of generator + simulator on this machine.")
    w("")
    w("| mode | target | c | req/s | p50 ms | p99 ms | errors | gen cpu | server cpu | simulator cpu | within limits |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for mode in ("non_stream", "stream"):
        for name, res in (l2.get(mode) or {}).items():
            for row in res["levels"]:
                w(f"| {mode.replace('_', '-')} | {name} | {row['concurrency']} | {_f(row['rps'], 1)} | {_f(row['p50_ms'], 1)} | "
                  f"{_f(row['p99_ms'], 1)} | {row['errors']}{(' ' + str(row['error_kinds'])) if row['errors'] else ''} | "
                  f"{_f(row['gen_cpu'], 2)} | {_f(row.get('server_cpu'), 2)} | {_f(row.get('sim_cpu'), 2)} | {'yes' if row.get('within_slo') else ('—' if 'within_slo' not in row else 'no')} |")
    w("")
    w("### 3. Streaming: 64 chunks ~20 ms apart — time to first token and chunk timing")
    w("")
    c3 = cal.get("lane3") or {}
    pace3 = r["params"].get("lane3_pace", 0)
    w(f"Simulator pace {_f(pace3, 4)}: first byte {_f((c3.get('first_byte') or 0) * pace3 * 1000, 0)} ms, mean gap between the "
      f"64 answer tokens {_f((c3.get('mean_gap') or 0) * pace3 * 1000, 1)} ms (the simulator's own 30–60 tokens/s spread, scaled). "
      f"{r['params']['lane3_clients']} clients in parallel, {r['params']['lane3_rounds']} rounds each over all targets. "
      "TTFT = request written → first chunk carrying answer text. Every content chunk is timestamped on arrival: "
      "a buffering proxy would collapse the gaps (`gaps < 5 ms`) and push TTFT towards the stream's end. "
      "`gap diff` compares each gap with the same gap of the direct stream of the same round (identical upstream delays).")
    w("")
    w("| target | n | TTFT p50 ms | TTFT p99 ms | added p50 | added p99 | content chunks | gap p50 ms | gaps < 5 ms | gap diff p50 / p99 ms | errors |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, row in l3.items():
        w(f"| {name} | {row['n']} | {_f(row['p50'], 2)} | {_f(row['p99'], 2)} | {_f(row.get('added_p50'), 3)} | "
          f"{_f(row.get('added_p99'), 3)} | {row['chunks_min']}–{row['chunks_max']} | {_f(row['gap_p50'], 2)} | "
          f"{row['gaps_under_5ms']}/{row['gaps']} | {_f(row.get('gap_diff_p50'), 3)} / {_f(row.get('gap_diff_p99'), 3)} | {row['errors']} |")
    w("")
    w(f"### 4 and 5. {l4.get('gateway', {}).get('streams', '?')} concurrent streams held by one worker; RSS idle, at peak, after")
    w("")
    c4 = cal.get("lane4") or {}
    pace4 = r["params"].get("lane4_pace", 0)
    w(f"Each server restarted with one worker (`SERVER_WORKERS=1` / `--num_workers 1`). All streams are opened at once "
      f"(one connection each); simulator pace {_f(pace4, 3)} makes each stream last about {_f((c4.get('total') or 0) * pace4, 1)} s "
      f"({r['params']['lane4_tokens']} answer tokens), so they are all open together (`peak open`). RSS = VmRSS of the worker process, "
      f"sampled every 100 ms. Idle = after start-up and 20 warm-up requests; after = {l5.get('gateway', {}).get('settle_s', 60):.0f} s "
      f"after the last stream ended. grok2api's workers ran with the `{r.get('worker_malloc', 'pymalloc')}` allocator "
      "(CPython's own since WORKER_MALLOC was removed; the allocator decides whether a burst's memory goes back, see below). "
      "`floor-grok` is the libraries' floor on the Grok Web face (bench/floor.py, one uvicorn worker, grok2api's upstream "
      "connection limits): what the same streams cost the stack with nothing of ours in it.")
    w("")
    w("| server | completed | failed | peak open | TTFT p50 / p99 ms | stream p50 s | wall s | gen cpu | RSS idle MB | RSS peak MB | RSS after MB |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ("gateway", "peer", "floor-grok"):
        a, b = l4.get(name), l5.get(name) or {}
        if not a:
            continue
        w(f"| {name} | {a['completed']} | {a['failed']}{(' ' + str(a['error_kinds'])) if a['failed'] else ''} | {a['peak_open']} | "
          f"{_f(a['ttft_p50_ms'], 1)} / {_f(a['ttft_p99_ms'], 1)} | {_f(a['duration_p50_s'], 2)} | {_f(a['wall_s'], 1)} | "
          f"{_f(a['gen_cpu'], 2)} | {_f(b.get('idle_mb'), 1)} | {_f(b.get('peak_mb'), 1)} | {_f(b.get('after_mb'), 1)} |")
    main = r.get("main_rss") or {}
    if main:
        w("")
        w("Two-worker instances of lanes 1–3 (sum of both workers): " + "; ".join(
            f"{k}: idle {_f(v.get('idle_mb'), 1)} MB, peak {_f(v.get('peak_mb'), 1)} MB" for k, v in main.items()) + ".")
    w("")
    w("### 6. Account selection with 10,000 accounts")
    w("")
    w("`bench.pool_select.bench_selection` (the pool engineer's harness): pure selection over a PoolSnapshot with a live "
      "in-flight map and success feedback re-indexing the chosen account (no I/O).")
    w("")
    w(f"accounts {l6.get('n_accounts')}, rounds {l6.get('rounds')}: median {_f(l6.get('median_us'), 2)} µs, "
      f"p99 {_f(l6.get('p99_us'), 2)} µs, misses {l6.get('misses')}.")
    w("")
    _lane7(r, w)
    w("## How it was run")
    w("")
    server = r.get("server", "uvicorn")
    w(f"Server: grok2api ran under **{server}** (`manage.py serve`: one worker in the serve process for lanes 4–5, "
      "two uvicorn workers under gunicorn with `reuse_port` for lanes 1–3 and 7); LiteLLM runs under its own uvicorn.")
    w("")
    w("```sh")
    for cmd in r["commands"]:
        w(cmd)
    w("```")
    w("")
    w("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".")
    w("")
    w("Setup: one simulator process (`manage.py grok_simulator --control`, seed 0, quota tables lifted for the bench "
      "tokens); grok2api with its own DATA_DIR (SQLite), "
      f"{r['params']['n_accounts']} simulator accounts imported (`import_accounts --pool super`) and probed "
      "(`refresh_quotas`), one ApiKey row; LiteLLM without a database, `num_retries: 0`, master key as the client key, "
      f"uvicorn access log off (grok2api's {server} too: `serve` turns it on only at LOG_LEVEL=DEBUG). "
      "The load generator is `bench/loadgen.py` "
      "(raw asyncio streams on uvloop, one process, the same 2 cores as the servers).")
    w("")
    if FASTPATH_NOTES.exists():
        w(FASTPATH_NOTES.read_text().rstrip())
        w("")
    return "\n".join(L) + "\n"


if __name__ == "__main__":  # re-render a saved result: python -m bench.report docs/benchmarks.json docs/benchmarks.md
    import json
    import sys

    if sys.argv[1] == "--lane7":  # lane 7 of separate `--lanes 7` runs: --lane7 detailed.json [more.json ...]
        out: list[str] = []
        results = []
        for a in sys.argv[2:]:  # a saved run, or a list of them (docs/benchmarks-lane7.json)
            loaded = json.loads(Path(a).read_text())
            results += loaded if isinstance(loaded, list) else [loaded]
        _lane7(results[0], out.append)
        if len(results) > 1:
            _lane7_runs(results, out.append)
        print("\n".join(out))
        sys.exit(0)
    Path(sys.argv[2]).write_text(render(json.loads(Path(sys.argv[1]).read_text())))
