"""Lane 7 (issue 20): what key limits and metrics add to a request, measured A/B on one machine.

The machine is shared and its load drifts, so the variants are never measured one after the other:
every variant runs in the same rounds, in a rotating order, and each round sends a short block of
requests to each variant in turn (A/B/A/B…). A drift in load then lands on every variant alike.

Variants (all against the same simulator, concurrency 1, pace 0, the lane-1 prompt):
- three gateway instances, started side by side from copies of one prepared DATA_DIR:
  `plain` (no METRICS_TOKEN, no REDIS_URL), `metrics` (METRICS_TOKEN set: /metrics on, so the
  counters live in prometheus-client's multi-process files) and, when a Redis URL is given,
  `metrics+redis` (METRICS_TOKEN and REDIS_URL: the production set-up, key limits on shared Redis
  counters, one Lua round trip at admission and one at the end);
- on each instance two client keys: `open` (no limits) and `limited` (every limit set, far above
  what the lane sends, so every check runs and none refuses).

Wall latency is per request. CPU time per request is the gateway's worker processes' user + system
time (/proc, clock ticks) over each block divided by its requests: the instance being measured is
idle between its blocks, so what it spends in a block is that block's cost.
"""
from __future__ import annotations

import os
import shutil
import statistics
from pathlib import Path

from bench.loadgen import OPENAI, Connection, Target, percentile
from bench.procs import BENCH_API_KEY, Proc, _manage, cpu_ticks, start_gateway, worker_pids

LIMITED_API_KEY = "sk-bench-limited-0123456789abcdef"
METRICS_TOKEN = "bench-metrics-token-0123456789abcdef"
# Far above what lane 7 sends: every check runs, none refuses.
HIGH = 1_000_000_000

LIMITED_KEY_SNIPPET = """
from gateway.models import ApiKey
from core.crypto import hash_api_key
key = {key!r}
ApiKey.objects.update_or_create(key_hash=hash_api_key(key), defaults=dict(
    label="bench-limited", prefix=key[:8], requests_per_minute={high}, tokens_per_minute={high},
    max_concurrent_requests={high}, daily_token_budget={high}, monthly_token_budget={high}))
"""

KEYS = {"open": BENCH_API_KEY, "limited": LIMITED_API_KEY}


def feature_instances_prepare(*, base_dir: Path, env: dict[str, str], redis_url: str) -> dict[str, dict[str, str]]:
    """Add the limited key to the prepared DATA_DIR, then copy it once per instance; returns each
    instance's environment. Separate DATA_DIRs: each instance empties its own DATA_DIR/metrics."""
    _manage(["shell", "-c", LIMITED_KEY_SNIPPET.format(key=LIMITED_API_KEY, high=HIGH)], env, base_dir / "prepare.log")
    variants = {"plain": {}, "metrics": {"METRICS_TOKEN": METRICS_TOKEN}}
    if redis_url:
        variants["metrics+redis"] = {"METRICS_TOKEN": METRICS_TOKEN, "REDIS_URL": redis_url}
    out = {}
    for name, extra in variants.items():
        data_dir = base_dir.parent / f"gateway-{name.replace('+', '-')}"
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.copytree(base_dir, data_dir, ignore=shutil.ignore_patterns("metrics", "logs", "*.log"))
        out[name] = {**env, "DATA_DIR": str(data_dir), "LOG_DIR": str(data_dir / "logs"), **extra}
    return out


def feature_instances_start(envs: dict[str, dict[str, str]], *, workers: int) -> dict[str, Proc]:
    return {name: start_gateway(Path(env["DATA_DIR"]), env, workers=workers, name=f"gateway-{name.replace('+', '-')}")
            for name, env in envs.items()}


def _target(name: str, proc: Proc, key: str) -> Target:
    return Target(name, "127.0.0.1", proc.port, "/v1/chat/completions", OPENAI, (("Authorization", f"Bearer {key}"),))


def _body(prompt: str, stream: bool) -> bytes:
    import orjson

    from bench.procs import BENCH_MODEL

    return orjson.dumps({"model": BENCH_MODEL, "stream": stream, "messages": [{"role": "user", "content": prompt}]})


def _check(url: str, *, body: bytes | None = None, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}


def feature_instances_check(instances: dict[str, Proc]) -> dict:
    """What each variant really ran with, read from its answers: the limited key gets the
    x-ratelimit-* headers (limits on) and the open key none; /metrics answers 200 with the token
    where METRICS_TOKEN is set and 404 where it is not."""
    out = {}
    for name, proc in instances.items():
        for key_name, key in KEYS.items():
            status, head = _check(proc.url + "/v1/chat/completions", body=_body("Check #sim:len=4", False),
                                  headers={"Authorization": f"Bearer {key}"})
            out[f"{name}/{key_name}"] = {"status": status, "limit_requests": head.get("x-ratelimit-limit-requests")}
        status, _ = _check(proc.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        out[name] = {"metrics_status": status}
    return out


async def lane_feature_cost(sim: Proc, instances: dict[str, Proc], *, rounds: int, block: int, tokens: int = 16) -> dict:
    """Rounds × (variants in a rotating order × `block` requests each); non-stream, then stream.
    `direct` (the simulator's Grok Web face, as lane 1) is one more variant: added = gateway − direct."""
    from bench.lanes import request as lane_request, targets as lane_targets

    variants = [(inst, key) for inst in instances for key in KEYS]
    out: dict = {"rounds": rounds, "block": block, "variants": ["direct"] + [f"{i}/{k}" for i, k in variants]}
    direct = lane_targets(sim, None, None)["direct-grok"]
    for stream in (False, True):
        targets = {"direct": direct, **{f"{i}/{k}": _target(f"{i}/{k}", instances[i], KEYS[k]) for i, k in variants}}
        pids = {i: worker_pids(p.pid) for i, p in instances.items()}
        pids["direct"] = [sim.pid]
        conns = {n: Connection(t) for n, t in targets.items()}
        lat: dict[str, list[float]] = {n: [] for n in targets}
        cpu: dict[str, float] = {n: 0.0 for n in targets}
        errors: dict[str, int] = {n: 0 for n in targets}
        names = list(targets)
        try:
            for r in range(rounds + 2):  # two warm-up rounds
                order = names[r % len(names):] + names[:r % len(names)]
                for n in order:
                    inst = n.split("/")[0]
                    c0 = cpu_ticks(pids[inst])
                    for i in range(block):
                        prompt = f"Feature cost {r}.{i} #sim:len={tokens}"
                        raw = (lane_request(direct, prompt, stream=stream) if n == "direct"
                               else targets[n].request(_body(prompt, stream)))
                        s = await conns[n].send(raw, stream=stream)
                        if r < 2:
                            continue
                        if s.ok:
                            lat[n].append(s.latency)
                        else:
                            errors[n] += 1
                    if r >= 2:
                        cpu[n] += cpu_ticks(pids[inst]) - c0
        finally:
            for c in conns.values():
                await c.close()
        res = {}
        for n in names:
            v = lat[n]
            res[n] = {"n": len(v), "errors": errors[n],
                      "p50": round(percentile(v, 50) * 1000, 3), "p99": round(percentile(v, 99) * 1000, 3),
                      "mean": round(statistics.fmean(v) * 1000, 3) if v else float("nan"),
                      "cpu_ms": round(cpu[n] * 1000 / max(1, len(v) + errors[n]), 3)}
        base, floor = res.get("plain/open") or {}, res["direct"]["p50"]
        for n, row in res.items():
            if n == "direct":
                continue  # its cpu_ms is the simulator's
            row["added_p50"] = round(row["p50"] - floor, 3)
            row["d_p50"] = round(row["p50"] - base.get("p50", float("nan")), 3)
            row["d_cpu_ms"] = round(row["cpu_ms"] - base.get("cpu_ms", float("nan")), 3)
        out["stream" if stream else "non_stream"] = res
    return out


# ----------------------------------------------------------------------------- in-process micro-benchmark
#
# The A/B lane above sees a feature's cost through the whole request on a loaded machine. This part
# times the feature's own code with nothing around it, in a fresh process per run: the counters of one
# finished request (metrics), and one request's limit calls — admission, its tokens recorded on the grant,
# the release that frees its concurrency slot and adds the tokens in one call — on per-process counters
# and on Redis (the Redis server's own CPU is not counted). As in a request, only the admission is
# waited for: on Redis the release is a task, so its round trip overlaps the next admission; wall time
# per request is what a request waits for, CPU time counts the releases too (all awaited at the end).

MICRO_VARIANTS = ("metrics-memory", "metrics-files", "limits-local", "limits-redis")


def _micro_run(variant: str, n: int) -> dict:
    import asyncio
    import time

    if variant.startswith("metrics"):
        from gateway.usage import UsageEntry
        from core.metrics import metrics_request_observe

        entries = [UsageEntry(endpoint="/v1/chat/completions", model=m, stream=True, api_key_label="bench",
                              prompt_tokens=20, completion_tokens=16, duration_ms=3, ttft_ms=1)
                   for m in ("grok-4.20-fast", "grok-4.20-auto")]
        for e in entries * 50:  # labels created before the clock starts
            metrics_request_observe(entry=e)
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            metrics_request_observe(entry=entries[i & 1])
        return {"cpu_us": (time.process_time() - c0) / n * 1e6, "wall_us": (time.perf_counter() - t0) / n * 1e6}

    from gateway.limits import KeyLimits, key_limits_acquire, key_limits_release, key_tokens_add

    limits = KeyLimits(requests_per_minute=HIGH, tokens_per_minute=HIGH, concurrent=HIGH, daily_tokens=HIGH,
                       monthly_tokens=HIGH)

    async def main() -> dict:
        async def one(key_id: int) -> None:
            grant = await key_limits_acquire(key_id=key_id, limits=limits)
            key_tokens_add(grant=grant, tokens=36)
            key_limits_release(grant=grant)

        for _ in range(50):
            await one(900_001)
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            await one(900_001 + (i & 7))
        wall = time.perf_counter() - t0
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*others)  # the releases run as tasks of their own: count their CPU too
        return {"cpu_us": (time.process_time() - c0) / n * 1e6, "wall_us": wall / n * 1e6}

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def feature_micro(*, redis_url: str, rounds: int, n: int, run_dir: Path) -> dict:
    """Each variant `rounds` times, in alternation, each run a fresh `python -m bench.features` process."""
    import json
    import subprocess
    import sys

    from bench.procs import BASE_DIR, BENCH_SECRET

    variants = [v for v in MICRO_VARIANTS if redis_url or v != "limits-redis"]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            data_dir = run_dir / f"micro-{v}"
            data_dir.mkdir(parents=True, exist_ok=True)
            env = {k: val for k, val in os.environ.items()
                   if k not in ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
            env.update({"DATA_DIR": str(data_dir), "LOG_FILE_ENABLED": "false", "SECRET_KEY": BENCH_SECRET,
                        "DJANGO_SETTINGS_MODULE": "grok2api.settings"})
            if v == "metrics-files":
                shutil.rmtree(data_dir / "prom", ignore_errors=True)
                (data_dir / "prom").mkdir()
                env["PROMETHEUS_MULTIPROC_DIR"] = str(data_dir / "prom")
            if v == "limits-redis":
                env["REDIS_URL"] = redis_url
            out = subprocess.run([sys.executable, "-m", "bench.features", v, str(n)], cwd=BASE_DIR, env=env,
                                 capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                raise RuntimeError(f"bench.features {v} failed:\n{out.stderr[-3000:]}")
            runs[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"n": n, "rounds": rounds, "runs": runs,
            "median": {v: {k: round(statistics.median(x[k] for x in rs), 2) for k in ("cpu_us", "wall_us")}
                       for v, rs in runs.items()}}


if __name__ == "__main__":  # one micro-benchmark run: python -m bench.features <variant> <n>
    import json
    import sys

    import django

    django.setup()
    print(json.dumps(_micro_run(sys.argv[1], int(sys.argv[2]))))
