"""The benchmark lanes (issue 8). Each returns plain dicts; bench.report renders them.

Targets per lane: `direct-grok` (the simulator's Grok Web face, as the gateway calls it),
`gateway` (our /v1/chat/completions), `direct-openai` (the simulator's OpenAI-shaped face, as the
peer calls it) and `peer` (LiteLLM's proxy). Each "added" figure is through-the-gateway minus its
own direct baseline, so the two gateways are compared on what they add, not on the upstream.

Upstream pacing: the simulator's `pace` knob scales its random delays (first byte 300–800 ms,
30–60 tokens/s at pace 1). Its random draws depend only on the seed and the prompt, and both of its
faces draw them in the same order, so one fixed prompt gets exactly the same delays on both faces
and on every request. `calibrate` measures those delays for a lane's prompt at pace 1 and picks the
pace that gives the lane's nominal figure (e.g. 20 ms of upstream delay per request).
"""
from __future__ import annotations

import asyncio
import statistics
import threading
import time

import orjson

from bench.loadgen import GROK, OPENAI, Connection, Sample, Target, closed_loop, cpu_seconds, percentile, perf
from bench.procs import BENCH_API_KEY, BENCH_MODEL, PEER_MASTER_KEY, Proc, cpu_ticks, rss_mb, sim_pace, worker_pids

DIRECT_TOKEN = "sim-super-benchdirect"


# ----------------------------------------------------------------------------- targets and bodies

def targets(sim: Proc, gateway: Proc | None, peer: Proc | None, floors: dict[str, Proc] | None = None) -> dict[str, Target]:
    """`floors`: bench/floor.py's proxies by name (`floor`, `bare`), OpenAI-shaped, no client key; the `floor`
    process also serves `floor-grok`, shaped like the Grok Web face."""
    out = {
        "direct-grok": Target("direct-grok", "127.0.0.1", sim.port, "/rest/app-chat/conversations/new", GROK,
                              (("Cookie", f"sso={DIRECT_TOKEN}; sso-rw={DIRECT_TOKEN}"),)),
        "direct-openai": Target("direct-openai", "127.0.0.1", sim.port, "/openai/v1/chat/completions", OPENAI,
                                (("Authorization", "Bearer sk-upstream-bench"),)),
    }
    if gateway is not None:
        out["gateway"] = Target("gateway", "127.0.0.1", gateway.port, "/v1/chat/completions", OPENAI,
                                (("Authorization", f"Bearer {BENCH_API_KEY}"),))
    if peer is not None:
        out["peer"] = Target("peer", "127.0.0.1", peer.port, "/v1/chat/completions", OPENAI,
                             (("Authorization", f"Bearer {PEER_MASTER_KEY}"),))
    for name, proc in (floors or {}).items():
        out[name] = Target(name, "127.0.0.1", proc.port, "/v1/chat/completions", OPENAI, ())
    if "floor" in (floors or {}):
        # the same floor process, on the upstream grok2api calls (bench/floor.py `/v1/grok`)
        out["floor-grok"] = Target("floor-grok", "127.0.0.1", floors["floor"].port, "/v1/grok", GROK, ())
    return out


def floor_servers(floors: dict[str, Proc] | None) -> dict[str, Proc]:
    """The process behind each floor target (`floor-grok` is served by the `floor` process)."""
    out = dict(floors or {})
    if "floor" in out:
        out["floor-grok"] = out["floor"]
    return out


# What each proxy's added figures are measured against: the simulator face it calls.
BASELINE = {"gateway": "direct-grok", "peer": "direct-openai", "floor": "direct-openai", "bare": "direct-openai",
            "floor-grok": "direct-grok"}
ORDER = ("direct-grok", "gateway", "direct-openai", "peer", "floor", "bare", "floor-grok")


def body_for(target: Target, prompt: str, *, stream: bool) -> bytes:
    """The request each target gets for one prompt; all of them carry the same upstream `message`."""
    if target.kind == GROK:
        from grokweb.payloads import chat_payload

        # exactly what the gateway sends upstream for a one-message chat (flatten → "[user]: ...")
        payload = chat_payload(message=f"[user]: {prompt}", mode="fast")
        if target.name == "floor-grok":
            payload["stream"] = stream  # the floor's own flag: answer whole or chunk by chunk
        return orjson.dumps(payload)
    model = BENCH_MODEL if target.name in ("gateway", "peer") else "grok-sim"
    return orjson.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}]})


def request(target: Target, prompt: str, *, stream: bool) -> bytes:
    return target.request(body_for(target, prompt, stream=stream))


# ----------------------------------------------------------------------------- helpers

def ms(x: float) -> float:
    return round(x * 1000.0, 3)


def pct_ms(values: list[float]) -> dict:
    return {"n": len(values), "p50": ms(percentile(values, 50)), "p99": ms(percentile(values, 99)),
            "mean": ms(statistics.fmean(values)) if values else float("nan")}


class RssSampler:
    """Samples the summed RSS of a server's worker processes every `interval` s in a thread."""

    def __init__(self, proc: Proc, interval: float = 0.1) -> None:
        self.pids = worker_pids(proc.pid)
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pids))


async def one(target: Target, prompt: str, *, stream: bool, detail: bool = False, timeout: float = 60.0) -> Sample:
    conn = Connection(target)
    try:
        return await conn.send(request(target, prompt, stream=stream), stream=stream, detail=detail, timeout=timeout)
    finally:
        await conn.close()


async def check_target(target: Target, prompt: str) -> None:
    """Fail fast, with the server's answer, when a target does not serve the bench request."""
    for stream in (False, True):
        s = await one(target, prompt, stream=stream)
        if not s.ok:
            raise RuntimeError(f"{target.name} (stream={stream}) failed: {s.error} {s.body[:800]!r}")


# ----------------------------------------------------------------------------- calibration

async def calibrate(sim: Proc, prompt: str) -> dict:
    """Upstream delays of `prompt` at pace 1 (first byte, and the token gaps), from one direct stream."""
    t = targets(sim, None, None)["direct-openai"]
    sim_pace(sim, 1.0)
    try:
        s = await one(t, prompt, stream=True, detail=True)
    finally:
        sim_pace(sim, 0.0)
    base = await one(t, prompt, stream=True, detail=True)
    if not (s.ok and base.ok):
        raise RuntimeError(f"calibration request failed: {s.error or base.error}")
    gaps = [b - a for a, b in zip(s.chunk_times, s.chunk_times[1:])]
    return {"first_byte": s.ttft - base.ttft, "total": s.latency - base.latency,
            "mean_gap": statistics.fmean(gaps) if gaps else 0.0, "chunks": s.events}


# ----------------------------------------------------------------------------- lane 1

async def lane_added_latency(sim: Proc, gateway: Proc, peer: Proc | None, *, rounds: int, tokens: int = 16,
                             floors: dict[str, Proc] | None = None) -> dict:
    """Concurrency 1, pace 0; each round sends the same prompt to every target, in a rotating order."""
    sim_pace(sim, 0.0)
    ts = targets(sim, gateway, peer, floors)
    order = [n for n in ORDER if n in ts]
    out = {}
    for stream in (False, True):
        conns = {n: Connection(ts[n]) for n in order}
        lat: dict[str, list[float]] = {n: [] for n in order}
        errors: dict[str, int] = {n: 0 for n in order}
        try:
            for i in range(rounds + 10):
                prompt = f"Latency round {i} #sim:len={tokens}"
                rot = order[i % len(order):] + order[:i % len(order)]
                for n in rot:
                    s = await conns[n].send(request(ts[n], prompt, stream=stream), stream=stream)
                    if i < 10:
                        continue  # warm-up rounds
                    if s.ok:
                        lat[n].append(s.latency)
                    else:
                        errors[n] += 1
        finally:
            for c in conns.values():
                await c.close()
        res = {n: {**pct_ms(lat[n]), "errors": errors[n]} for n in order}
        for through, base in BASELINE.items():
            if through in res:
                res[through]["added_p50"] = round(res[through]["p50"] - res[base]["p50"], 3)
                res[through]["added_p99"] = round(res[through]["p99"] - res[base]["p99"], 3)
        out["stream" if stream else "non_stream"] = res
    return out


# ----------------------------------------------------------------------------- lane 2

async def lane_sustained(sim: Proc, gateway: Proc, peer: Proc | None, *, pace: float, levels: list[int],
                         duration: float, tokens: int, prompt: str, warmup: float = 1.0,
                         floors: dict[str, Proc] | None = None) -> dict:
    """Closed-loop load at rising concurrency; sustained = best req/s with p99 < 1 s and errors < 0.1 %."""
    sim_pace(sim, pace)
    floors = floors or {}
    ts = targets(sim, gateway, peer, floors)
    servers = {"gateway": gateway, "peer": peer, **floor_servers(floors)}
    out: dict = {}
    try:
        for stream in (False, True):
            per: dict = {}
            for name in [n for n in ORDER if n in ts and not n.startswith("direct-")]:
                per[name] = await _ramp(ts[name], prompt, stream=stream, levels=levels, duration=duration,
                                        server=servers[name], sim=sim, warmup=warmup)
            # the generator + simulator ceiling: the same load straight at the simulator's faces
            top = max(levels)
            for name in ("direct-grok", "direct-openai"):
                cpu0, t0 = cpu_ticks([sim.pid]), perf()
                r = await closed_loop(ts[name], concurrency=top, duration=duration, warmup=warmup,
                                      body=_const_body(ts[name], prompt, stream), stream=stream)
                row = _level_dict(r, None)
                row["sim_cpu"] = round((cpu_ticks([sim.pid]) - cpu0) / (perf() - t0), 3)
                per[name] = {"levels": [row], "sustained_rps": round(r.rps, 1)}
            out["stream" if stream else "non_stream"] = per
    finally:
        sim_pace(sim, 0.0)
    return out


def _const_body(target: Target, prompt: str, stream: bool):
    b = body_for(target, prompt, stream=stream)
    return lambda seq: b


def _level_dict(r, server_cpu: float | None) -> dict:
    return {"concurrency": r.concurrency, "rps": round(r.rps, 1), "p50_ms": ms(r.p50), "p99_ms": ms(r.p99),
            "ok": r.ok, "errors": r.errors, "error_rate": r.error_rate, "error_kinds": r.error_kinds,
            "gen_cpu": round(r.gen_cpu, 3), "server_cpu": None if server_cpu is None else round(server_cpu, 3)}


async def _ramp(target: Target, prompt: str, *, stream: bool, levels: list[int], duration: float, server: Proc,
                sim: Proc, warmup: float = 1.0) -> dict:
    body = _const_body(target, prompt, stream)
    rows, best = [], None
    pids = worker_pids(server.pid)
    for c in levels:
        cpu0, sim0, t0 = cpu_ticks(pids), cpu_ticks([sim.pid]), perf()
        r = await closed_loop(target, concurrency=c, duration=duration, body=body, stream=stream, warmup=warmup)
        wall = perf() - t0
        row = _level_dict(r, (cpu_ticks(pids) - cpu0) / wall)
        row["sim_cpu"] = round((cpu_ticks([sim.pid]) - sim0) / wall, 3)
        row["within_slo"] = r.p99 < 1.0 and r.error_rate < 0.001 and r.ok > 0
        rows.append(row)
        if row["within_slo"] and (best is None or r.rps > best["rps"]):
            best = row
        if not row["within_slo"] or (best is not None and r.rps < 0.9 * best["rps"]):
            break  # past the knee: more concurrency only adds queueing
        await asyncio.sleep(min(0.5, warmup))
    return {"levels": rows, "sustained_rps": best["rps"] if best else 0.0,
            "at_concurrency": best["concurrency"] if best else None}


# ----------------------------------------------------------------------------- lane 3

async def lane_ttft(sim: Proc, gateway: Proc, peer: Proc | None, *, pace: float, rounds: int, clients: int,
                    prompt: str, floors: dict[str, Proc] | None = None) -> dict:
    """`clients` parallel clients, each doing `rounds` rounds over all targets (rotating order), same prompt.

    TTFT = request sent → first chunk carrying answer text. Chunk timing: every content chunk is
    timestamped on arrival; its gaps are compared, gap by gap, with the direct stream of the same
    round (identical upstream delays), so buffering would show as collapsed gaps.
    """
    sim_pace(sim, pace)
    ts = targets(sim, gateway, peer, floors)
    order = [n for n in ORDER if n in ts]
    ttft: dict[str, list[float]] = {n: [] for n in order}
    chunks: dict[str, list[int]] = {n: [] for n in order}
    gaps: dict[str, list[float]] = {n: [] for n in order}
    gap_diff: dict[str, list[float]] = {n: [] for n in BASELINE if n in ts}
    errors: dict[str, int] = {n: 0 for n in order}

    async def client(k: int) -> None:
        conns = {n: Connection(ts[n]) for n in order}
        try:
            for i in range(rounds):
                got: dict[str, Sample] = {}
                rot = order[(i + k) % len(order):] + order[:(i + k) % len(order)]
                for n in rot:
                    s = await conns[n].send(request(ts[n], prompt, stream=True), stream=True, detail=True)
                    if not s.ok:
                        errors[n] += 1
                        continue
                    got[n] = s
                    ttft[n].append(s.ttft)
                    chunks[n].append(len(s.chunk_times))
                    gaps[n].extend(b - a for a, b in zip(s.chunk_times, s.chunk_times[1:]))
                for through, base in BASELINE.items():
                    if through in got and base in got:
                        g1 = [b - a for a, b in zip(got[through].chunk_times, got[through].chunk_times[1:])]
                        g0 = [b - a for a, b in zip(got[base].chunk_times, got[base].chunk_times[1:])]
                        gap_diff[through].extend(abs(x - y) for x, y in zip(g1, g0))
        finally:
            for c in conns.values():
                await c.close()

    try:
        await asyncio.gather(*(client(k) for k in range(clients)))
    finally:
        sim_pace(sim, 0.0)
    res: dict = {}
    for n in order:
        g = gaps[n]
        res[n] = {**pct_ms(ttft[n]), "errors": errors[n],
                  "chunks_min": min(chunks[n]) if chunks[n] else 0, "chunks_max": max(chunks[n]) if chunks[n] else 0,
                  "gap_p50": ms(percentile(g, 50)), "gap_p1": ms(percentile(g, 1)), "gap_mean": ms(statistics.fmean(g)) if g else None,
                  "gaps_under_5ms": sum(1 for x in g if x < 0.005), "gaps": len(g)}
    for through, base in BASELINE.items():
        if through in res:
            res[through]["added_p50"] = round(res[through]["p50"] - res[base]["p50"], 3)
            res[through]["added_p99"] = round(res[through]["p99"] - res[base]["p99"], 3)
            d = gap_diff[through]
            res[through]["gap_diff_p50"] = ms(percentile(d, 50))
            res[through]["gap_diff_p99"] = ms(percentile(d, 99))
    return res


# ----------------------------------------------------------------------------- lane 4 (+ 5)

async def lane_many_streams(sim: Proc, server: Proc, target: Target, *, n: int, pace: float, prompt: str) -> dict:
    """`n` streams opened at once against a one-worker server; all must complete. RSS sampled meanwhile."""
    sim_pace(sim, pace)
    open_now = 0
    peak_open = 0
    raw = request(target, prompt, stream=True)

    async def stream_one() -> Sample:
        nonlocal open_now, peak_open
        conn = Connection(target)
        open_now += 1
        peak_open = max(peak_open, open_now)
        try:
            return await conn.send(raw, stream=True, timeout=180)
        finally:
            open_now -= 1
            await conn.close()

    cpu0 = cpu_seconds()
    t0 = perf()
    try:
        with RssSampler(server) as rss:
            results = await asyncio.gather(*(stream_one() for _ in range(n)))
    finally:
        sim_pace(sim, 0.0)
    wall = perf() - t0
    ok = [s for s in results if s.ok]
    kinds: dict[str, int] = {}
    for s in results:
        if not s.ok:
            kinds[s.error] = kinds.get(s.error, 0) + 1
    events = [s.events for s in ok]
    return {"streams": n, "completed": len(ok), "failed": n - len(ok), "error_kinds": kinds,
            "peak_open": peak_open, "events_min": min(events) if events else 0,
            "ttft_p50_ms": ms(percentile([s.ttft for s in ok], 50)), "ttft_p99_ms": ms(percentile([s.ttft for s in ok], 99)),
            "duration_p50_s": round(percentile([s.latency for s in ok], 50), 2), "wall_s": round(wall, 2),
            "peak_rss_mb": round(rss.peak, 1), "gen_cpu": round((cpu_seconds() - cpu0) / wall, 3),
            "ended_at": time.monotonic()}


async def warm(target: Target, prompt: str, n: int = 20) -> None:
    """A few requests of each kind so lazily imported code is loaded before 'idle' is measured."""
    for i in range(n):
        await one(target, prompt, stream=bool(i % 2))
