"""Lanes 4 and 5 alone, per gateway environment: RSS of one worker idle, at the peak of a burst, and after.

    python -m bench.rss                                    # 1,000 streams of ~20 s, RSS 60 s after
    python -m bench.rss --streams 300 --seconds 10 --settle 30 \\
        --variant trim= --variant 'notrim=MEMORY_RELEASE_IDLE_SECONDS=0' --rounds 2

One simulator and one prepared DATA_DIR (like bench.run); for each round, each variant in turn (A B A B:
the machine is shared, compare pairs) gets a fresh one-worker gateway started with its extra environment
(`name=VAR=value;VAR=value`), 20 warm-up requests, then `bench.lanes.lane_many_streams`. Prints one line
per run: idle, peak and the RSS every 10 s after the last stream ended, in MB (VmRSS of the worker).

`--probe` (measurement detail, what is measured stays the same): the gateway runs with bench/rssprobe on
its PYTHONPATH, and the worker writes what it holds (bench/rssprobe/sitecustomize.py) at idle, near the
peak and after the last sample, into the run directory's probe/ folder (printed; read the files with
bench/rssprobe/arenas.py and tmdiff.py). The dumps allocate too (a map of every object near the peak),
so compare a probed run's RSS figures only with other probed runs. Add `PYTHONTRACEMALLOC=10` to a
variant for tracemalloc snapshots too (that costs so much CPU that streams time out).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition("=")
    env = dict(item.split("=", 1) for item in rest.split(";") if item)
    return name or "default", env


async def _run(args) -> None:
    from bench import lanes, procs

    run_dir = Path(tempfile.mkdtemp(prefix="g2a-rss-"))
    sim = procs.start_simulator(run_dir)
    try:
        env = procs.prepare_gateway(run_dir / "gateway", sim, n_accounts=max(10, args.streams // 5))
        prompt = "Many streams #sim:len=16"
        pace = args.seconds / (await lanes.calibrate(sim, prompt))["total"]
        probe_env = {}
        if args.probe:
            probe_dir = run_dir / "probe"
            probe_dir.mkdir()
            probe_env = {"PYTHONPATH": str(BASE_DIR / "bench" / "rssprobe"), "RSS_PROBE_DIR": str(probe_dir)}
            print(f"probe files: {probe_dir}", flush=True)
        print("variant | round | idle MB | peak MB | after MB (every 10 s) | completed", flush=True)
        for rnd in range(args.rounds):
            for name, extra in map(_variant, args.variant or ["default="]):
                gw = procs.start_gateway(run_dir / "gateway", {**env, **probe_env, **extra}, workers=1, name=f"gw-{name}")
                try:
                    pid = procs.worker_pids(gw.pid)
                    target = lanes.targets(sim, gw, None)["gateway"]
                    await lanes.warm(target, "Warm up #sim:len=8")
                    await asyncio.sleep(1.0)
                    idle = procs.rss_mb(pid)
                    probe = (lambda: [os.kill(p, signal.SIGUSR2) for p in pid]) if args.probe else (lambda: None)
                    probe()
                    near_peak = asyncio.get_running_loop().call_later(args.seconds * 0.8, probe)
                    res = await lanes.lane_many_streams(sim, gw, target, n=args.streams, pace=pace, prompt=prompt)
                    near_peak.cancel()
                    after = []
                    for mark in range(10, int(args.settle) + 1, 10):
                        await asyncio.sleep(max(0.0, res["ended_at"] + mark - time.monotonic()))
                        after.append(procs.rss_mb(pid))
                    probe()
                    await asyncio.sleep(5.0 if args.probe else 0.0)  # the dump takes a moment
                    print(f"{name} | {rnd} | {idle:.1f} | {res['peak_rss_mb']:.1f} | "
                          f"{' '.join(f'{x:.1f}' for x in after)} | {res['completed']}/{args.streams}", flush=True)
                finally:
                    gw.stop()
    finally:
        sim.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rss", description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20.0, help="how long each stream lasts")
    ap.add_argument("--settle", type=float, default=60.0, help="seconds of RSS samples after the last stream")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--variant", action="append", default=[], help="name=VAR=value;VAR=value (repeatable)")
    ap.add_argument("--probe", action="store_true", help="the worker writes what it holds (see above)")
    args = ap.parse_args(argv)
    os.chdir(BASE_DIR)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
