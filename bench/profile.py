"""Profile one gateway worker under load with py-spy (a dev tool, pinned in requirements-dev.txt).

    python -m bench.profile [--stream] [--concurrency 4] [--seconds 10] [--top 40] [--out DIR]
                            [--pace 0] [--no-spy] [--spy-simulator] [--workers N] [--redis-url URL]

Starts the simulator (`--pace`, default 0; ~0.028 gives bench.run's 20 ms of upstream delay) and
grok2api with ONE uvicorn worker (its own DATA_DIR, like bench.run),
drives closed-loop load at it while `py-spy record --format raw` samples the worker (or the
simulator, `--spy-simulator`), then prints the functions with the most samples, inclusive ("total")
and exclusive ("self"). The load line gives req/s, latency and the worker's and the simulator's
CPU per request. The collapsed stacks are kept in `<out>/profile.txt` (speedscope, flamegraph.pl).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path



def summarize(path: Path, top: int) -> str:
    total: collections.Counter = collections.Counter()
    self_: collections.Counter = collections.Counter()
    n = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        n += c
        frames = stack.split(";")
        for f in set(frames):
            total[f] += c
        self_[frames[-1]] += c
    out = [f"{n} samples", "", "inclusive:"]
    out += [f"{c / n * 100:6.1f}%  {f}" for f, c in total.most_common(top)]
    out += ["", "exclusive:"]
    out += [f"{c / n * 100:6.1f}%  {f}" for f, c in self_.most_common(top)]
    return "\n".join(out)


async def _drive(args, gw, sim) -> None:
    from bench.lanes import body_for, targets, warm
    from bench.loadgen import closed_loop
    from bench.procs import cpu_ticks, worker_pids

    t = targets(sim, gw, None)["gateway"]
    await warm(t, "Warm up #sim:len=8")
    b = body_for(t, f"Profile #sim:len={args.tokens}", stream=args.stream)
    pids = worker_pids(gw.pid)
    cpu0, sim0 = cpu_ticks(pids), cpu_ticks([sim.pid])
    each0 = [cpu_ticks([pid]) for pid in pids]
    r = await closed_loop(t, concurrency=args.concurrency, duration=args.seconds, body=lambda s: b, stream=args.stream,
                          warmup=0.0)
    cpu, sim_cpu = cpu_ticks(pids) - cpu0, cpu_ticks([sim.pid]) - sim0
    shares = [cpu_ticks([pid]) - c0 for pid, c0 in zip(pids, each0)]
    n = r.ok + r.errors
    print(f"load ({args.server}, {'streamed' if args.stream else 'non-streamed'}, {args.concurrency} clients): "
          f"{r.rps:.1f} req/s, p50 {r.p50 * 1000:.2f} ms, p99 {r.p99 * 1000:.2f} ms, errors {r.errors}, "
          f"worker CPU {cpu / max(1, n) * 1000:.3f} ms/request, simulator CPU {sim_cpu / max(1, n) * 1000:.3f} ms/request"
          + (f", per worker (cores) {' / '.join(f'{c / args.seconds:.2f}' for c in shares)}" if len(pids) > 1 else ""))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--pace", type=float, default=0.0, help="simulator pace (bench.run's lane 2 uses ~0.028: 20 ms per answer)")
    ap.add_argument("--spy-simulator", action="store_true", help="sample the simulator process instead of the worker")
    ap.add_argument("--top", type=int, default=45)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--out", default="")
    ap.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (CPU, not waits)")
    ap.add_argument("--no-spy", action="store_true", help="only measure (req/s, latency, worker CPU per request)")
    ap.add_argument("--redis-url", default="", help="run the gateway with this REDIS_URL (shared in-flight counters; flushed first)")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn workers (with --no-spy; the load line adds each worker's share of the CPU)")
    args = ap.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grok2api.settings")
    import django

    django.setup()
    from django.conf import settings

    args.server = "uvicorn"
    from bench import procs

    out = Path(args.out or tempfile.mkdtemp(prefix="g2a-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    sim = procs.start_simulator(out)
    gw = None
    try:
        env = procs.prepare_gateway(out / "gateway", sim, n_accounts=20)
        if args.redis_url:
            import redis

            redis.Redis.from_url(args.redis_url).flushdb()
            env = {**env, "REDIS_URL": args.redis_url}
        gw = procs.start_gateway(out / "gateway", env, workers=args.workers if args.no_spy else 1)
        worker = sim.pid if args.spy_simulator else procs.worker_pids(gw.pid)[0]
        procs.sim_pace(sim, args.pace)
        if args.no_spy:
            asyncio.run(_drive(args, gw, sim))
            return 0
        prof = out / "profile.txt"
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(worker), "--format", "raw",
                                "--rate", str(args.rate), "--output", str(prof), "--nonblocking",
                                "--duration", str(int(args.seconds + 2)), *(["--gil"] if args.gil else [])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        asyncio.run(_drive(args, gw, sim))
        spy.wait(timeout=60)
        print(summarize(prof, args.top))
        print(f"\ncollapsed stacks: {prof}")
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
