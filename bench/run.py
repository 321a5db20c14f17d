"""`make bench` = `python -m bench.run`: the reproducible benchmark of issue 8, written to docs/benchmarks.md.

    python -m bench.run                 # full run (~10 min), writes docs/benchmarks.md
    python -m bench.run --quick --out /tmp/b.md --no-peer   # the smoke-test sizes (< 1 min)

Processes (all on loopback, random free ports): the simulator, grok2api under `manage.py serve
--no-worker` (uvicorn; SERVER_WORKERS=2 for lanes 1–3, under gunicorn, 1 for
lanes 4–5), LiteLLM's proxy from
bench/.peer-venv (installed here when missing; workers = cores for lanes 1–3, 1 for lanes 4–5),
and this process as the load generator. The raw results are also written as JSON beside the
Markdown (`<out>.json`). Lane 7 (bench/features.py) starts three more gateway instances side by
side to measure key limits and metrics A/B; `--redis-url` (or BENCH_REDIS_URL) adds the one with
the limits on shared Redis counters.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path


BASE_DIR = Path(__file__).resolve().parent.parent


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grok2api.settings")
    import django

    django.setup()


def _env_info(peer_version: str | None) -> dict:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {"Python": platform.python_version()}
    for pkg in ("Django", "django-ninja", "uvicorn", "gunicorn", "uvicorn-worker", "asgiref", "uvloop", "h11", "httpx2",
                "orjson"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    if peer_version:
        versions["litellm (peer venv)"] = peer_version
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gb": mem, "kernel": platform.release(), "versions": versions,
            "litellm": peer_version or "n/a"}


def _params(quick: bool) -> dict:
    if quick:
        return {"n_accounts": 10, "lane1_rounds": 8, "lane1_tokens": 16, "lane2_levels": [2, 4], "lane2_duration": 0.6, "lane2_warmup": 0.3,
                "lane2_tokens": 16, "lane3_rounds": 2, "lane3_clients": 2, "lane3_tokens": 16, "lane4_streams": 40,
                "lane4_tokens": 16, "lane4_seconds": 1.5, "settle_s": 2.0, "selection_accounts": 10000,
                "selection_rounds": 2000, "lane7_rounds": 2, "lane7_block": 2,
                "micro_rounds": 1, "micro_n": 200}
    return {"n_accounts": 200, "lane1_rounds": 300, "lane1_tokens": 16, "lane2_levels": [8, 16, 32, 64, 128, 256],
            "lane2_duration": 6.0, "lane2_warmup": 1.0, "lane2_tokens": 16, "lane3_rounds": 30, "lane3_clients": 10, "lane3_tokens": 64,
            "lane4_streams": 1000, "lane4_tokens": 16, "lane4_seconds": 20.0, "settle_s": 60.0,
            "selection_accounts": 10000, "selection_rounds": 20000,
            "lane7_rounds": 60, "lane7_block": 10, "micro_rounds": 3, "micro_n": 5000}


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def _main(args) -> dict:
    from bench import lanes, procs

    P = _params(args.quick)
    t_start = time.monotonic()
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="g2a-bench-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 2
    server = "uvicorn"  # the one server `serve` runs
    r: dict = {"quick": args.quick, "params": P, "argv": " ".join(sys.argv[1:]), "calibration": {},
               "loadavg": [os.getloadavg()[0]], "server": server,
               "worker_malloc": "pymalloc"}
    _log(f"run directory {run_dir}")

    peer_version = None
    if not args.no_peer:
        _log("installing / checking the peer venv (" + procs.PEER_PIN + ")")
        ok, info = procs.peer_install(run_dir / "peer-install.log")
        if ok:
            peer_version = info
        else:
            r["peer_error"] = f"installing `{procs.PEER_PIN}` failed: {info}"
            _log(r["peer_error"])
    r["peer_ok"] = peer_version is not None
    r["env"] = _env_info(peer_version)
    r["commands"] = [
        "make bench    # = .venv/bin/python -m bench.run" + ((" " + r["argv"]) if r["argv"] else ""),
        f"# peer: python3 -m venv bench/.peer-venv && bench/.peer-venv/bin/pip install '{procs.PEER_PIN}'",
        "manage.py grok_simulator --host 127.0.0.1 --port $SIM --pace 0 --control --knobs '"
        + json.dumps(procs.SIM_KNOBS) + "'",
        "DATA_DIR=$RUN/gateway GROK_UPSTREAM_*=http://127.0.0.1:$SIM manage.py migrate; manage.py import_accounts "
        f"tokens.txt --pool super --no-probe  # {P['n_accounts']} × sim-super-benchNNNN; then manage.py refresh_quotas",
        f"SERVER_WORKERS=2 manage.py serve --no-worker --host 127.0.0.1 --port $GW    # lanes 1-3 (1 worker: lanes 4-5)",
        "FLOOR_UPSTREAM=http://127.0.0.1:$SIM/openai/v1 FLOOR_GROK_UPSTREAM=http://127.0.0.1:$SIM/rest/app-chat/conversations/new "
        "uvicorn bench.floor:app --loop uvloop --http h11 --workers 2 --no-access-log    # floor and floor-grok, lanes 1-3 "
        "(floor-grok with 1 worker: lanes 4-5); bench.floor:bare_app the same way, lane 1 only",
        f"bench/.peer-venv/bin/litellm --config config.yaml --num_workers {cores} --telemetry False --log_config log.json --timeout_worker_healthcheck 120"
        "    # model openai/grok-sim at http://127.0.0.1:$SIM/openai/v1; num_retries 0; no DATABASE_URL (1 worker: lanes 4-5)",
    ]

    sim = procs.start_simulator(run_dir)
    started: list = [sim]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    try:
        _log(f"simulator on {sim.url}; preparing the gateway's DATA_DIR")
        gw_dir = run_dir / "gateway"
        env = procs.prepare_gateway(gw_dir, sim, n_accounts=P["n_accounts"])

        async def start_pair(workers: int):
            loop = asyncio.get_running_loop()
            fut_peer = loop.run_in_executor(pool, lambda: procs.start_peer(run_dir, sim, workers=workers,
                                                                           name=f"peer-w{workers}")) if peer_version else None
            gw = await loop.run_in_executor(pool, lambda: procs.start_gateway(gw_dir, env, workers=workers,
                                                                              name=f"gateway-w{workers}"))
            started.append(gw)
            peer = None
            if fut_peer is not None:
                try:
                    peer = await fut_peer
                    started.append(peer)
                except Exception as exc:  # the peer failing must not stop our lanes
                    r["peer_error"] = f"LiteLLM did not start: {exc}"[:3000]
                    r["peer_ok"] = False
                    _log(r["peer_error"])
            return gw, peer

        # ---------------------------------------------------------------- lanes 1-3: cores workers
        _log(f"starting grok2api ({server}, 2 workers) and the peer ({cores} workers)")
        gw, peer = await start_pair(2 if not args.workers else args.workers)
        # the libraries' floor (bench/floor.py): the same stack as `serve`, nothing of ours
        floors = {}
        if not args.no_floor:
            for name in procs.FLOOR_APPS:
                floors[name] = procs.start_floor(run_dir, sim, name=name, workers=2 if not args.workers else args.workers)
                started.append(floors[name])
        ts = lanes.targets(sim, gw, peer, floors)
        for t in ts.values():
            await lanes.check_target(t, "Check #sim:len=4")
        r["calibration"]["lane2"] = c2 = await lanes.calibrate(sim, f"Sustained load #sim:len={P['lane2_tokens']}")
        r["calibration"]["lane3"] = c3 = await lanes.calibrate(sim, f"Time to first token #sim:len={P['lane3_tokens']}")
        r["calibration"]["lane4"] = c4 = await lanes.calibrate(sim, f"Many streams #sim:len={P['lane4_tokens']}")
        P["lane2_pace"] = 0.020 / c2["total"]
        P["lane3_pace"] = 0.020 / c3["mean_gap"]
        P["lane4_pace"] = P["lane4_seconds"] / c4["total"]
        _log(f"calibrated: lane2 pace {P['lane2_pace']:.4f}, lane3 pace {P['lane3_pace']:.4f}, lane4 pace {P['lane4_pace']:.3f}")

        main_rss: dict = {}
        samplers = {}
        for name, proc in (("grok2api", gw), ("LiteLLM", peer)):
            if proc is None:
                continue
            await lanes.warm(ts["gateway" if name == "grok2api" else "peer"], "Warm up #sim:len=8")
            main_rss[name] = {"idle_mb": round(procs.rss_mb(procs.worker_pids(proc.pid)), 1)}
            samplers[name] = lanes.RssSampler(proc, interval=0.25).__enter__()

        if "1" in args.lanes:
            _log("lane 1: added latency")
            r["lane1"] = await lanes.lane_added_latency(sim, gw, peer, rounds=P["lane1_rounds"], tokens=P["lane1_tokens"],
                                                        floors=floors)
        if "2" in args.lanes:
            _log("lane 2: sustained throughput")
            r["lane2"] = await lanes.lane_sustained(sim, gw, peer, pace=P["lane2_pace"], levels=P["lane2_levels"],
                                                    duration=P["lane2_duration"], warmup=P["lane2_warmup"],
                                                    tokens=P["lane2_tokens"],
                                                    prompt=f"Sustained load #sim:len={P['lane2_tokens']}",
                                                    floors={k: v for k, v in floors.items() if k == "floor"})
        if "3" in args.lanes:
            _log("lane 3: time to first token")
            r["lane3"] = await lanes.lane_ttft(sim, gw, peer, pace=P["lane3_pace"], rounds=P["lane3_rounds"],
                                               clients=P["lane3_clients"],
                                               prompt=f"Time to first token #sim:len={P['lane3_tokens']}",
                                               floors={k: v for k, v in floors.items() if k == "floor"})
        for name, s in samplers.items():
            s.__exit__(None, None, None)
            main_rss[name]["peak_mb"] = round(s.peak, 1)
        r["main_rss"] = main_rss
        for proc in (gw, peer, *floors.values()):
            if proc is not None:
                proc.stop()

        # ---------------------------------------------------------------- lane 7: limits and metrics, A/B
        if "7" in args.lanes:
            from bench import features

            redis_url = args.redis_url or os.environ.get("BENCH_REDIS_URL", "")
            _log("lane 7: cost of key limits and metrics (" + ("with" if redis_url else "without") + " a Redis instance)")
            envs = features.feature_instances_prepare(base_dir=gw_dir, env=env, redis_url=redis_url)
            insts = {}
            try:
                insts = await asyncio.get_running_loop().run_in_executor(
                    pool, lambda: features.feature_instances_start(envs, workers=2 if not args.workers else args.workers))
                started.extend(insts.values())
                checked = features.feature_instances_check(insts)
                r["lane7"] = await features.lane_feature_cost(sim, insts, rounds=P["lane7_rounds"], block=P["lane7_block"],
                                                              tokens=P["lane1_tokens"])
                r["lane7"]["redis"] = bool(redis_url)
                r["lane7"]["checked"] = checked
                _log("lane 7: the features' own code, in-process micro-benchmark")
                r["lane7"]["micro"] = await asyncio.get_running_loop().run_in_executor(
                    pool, lambda: features.feature_micro(redis_url=redis_url, rounds=P["micro_rounds"], n=P["micro_n"],
                                                         run_dir=run_dir))
                r["lane7"]["run"] = {"at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                     "argv": r["argv"], "loadavg": os.getloadavg()[0]}
            finally:
                for proc in insts.values():
                    proc.stop()

        # ---------------------------------------------------------------- lanes 4-5: one worker each
        if "4" in args.lanes:
            _log("lanes 4-5: one worker each")
            gw1, peer1 = await start_pair(1)
            floor1 = None
            if not args.no_floor:  # the libraries' floor on grok2api's upstream, one worker too
                floor1 = procs.start_floor(run_dir, sim, name="floor", workers=1)
                started.append(floor1)
            ts1 = lanes.targets(sim, gw1, peer1, {"floor": floor1} if floor1 else None)
            prompt4 = f"Many streams #sim:len={P['lane4_tokens']}"
            r["lane4"], r["lane5"] = {}, {}
            servers1 = (("gateway", gw1), ("peer", peer1), ("floor-grok", floor1))
            for name, proc in servers1:
                if proc is None:
                    continue
                await lanes.warm(ts1[name], "Warm up #sim:len=8")
                await asyncio.sleep(1.0)
                idle = procs.rss_mb(procs.worker_pids(proc.pid))
                _log(f"lane 4: {P['lane4_streams']} streams at {name} (idle RSS {idle:.1f} MB)")
                res = await lanes.lane_many_streams(sim, proc, ts1[name], n=P["lane4_streams"], pace=P["lane4_pace"],
                                                    prompt=prompt4)
                r["lane4"][name] = res
                r["lane5"][name] = {"idle_mb": round(idle, 1), "peak_mb": res["peak_rss_mb"], "settle_s": P["settle_s"]}
            if "5" in args.lanes:
                for name, proc in servers1:
                    if proc is None:
                        continue
                    wait = r["lane4"][name]["ended_at"] + P["settle_s"] - time.monotonic()
                    if wait > 0:
                        _log(f"lane 5: waiting {wait:.0f} s before measuring {name}'s RSS after the load")
                        await asyncio.sleep(wait)
                    r["lane5"][name]["after_mb"] = round(procs.rss_mb(procs.worker_pids(proc.pid)), 1)

        # ---------------------------------------------------------------- lane 6
        if "6" in args.lanes:
            _log("lane 6: account selection")
            from bench.pool_select import bench_selection

            r["lane6"] = bench_selection(n_accounts=P["selection_accounts"], rounds=P["selection_rounds"])
    finally:
        for proc in reversed(started):
            try:
                proc.stop()
            except Exception:
                pass
        pool.shutdown(wait=False)
        if not args.keep and not args.run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    r["loadavg"].append(os.getloadavg()[0])
    r["elapsed_s"] = time.monotonic() - t_start
    r["finished_at"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes (seconds, not minutes)")
    ap.add_argument("--no-peer", action="store_true", help="skip LiteLLM (no install, no peer lanes)")
    ap.add_argument("--out", default=str(BASE_DIR / "docs" / "benchmarks.md"), help="Markdown output path")
    ap.add_argument("--run-dir", default="", help="keep logs and data here (default: a temporary directory, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    ap.add_argument("--workers", type=int, default=0, help="grok2api workers for lanes 1-3 (default 2)")
    ap.add_argument("--no-floor", action="store_true", help="skip the libraries' floor (bench/floor.py) in lanes 1-3")
    ap.add_argument("--lanes", default="1234567", help="lanes to run, e.g. 45 (default all; 5 needs 4)")
    ap.add_argument("--redis-url", default="", help="lane 7 also measures key limits on shared Redis counters with "
                    "this Redis (default: $BENCH_REDIS_URL; empty = that variant is left out)")
    args = ap.parse_args(argv)
    os.chdir(BASE_DIR)
    # SIGTERM (e.g. `kill`, a CI timeout) unwinds like Ctrl-C, so every started server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _setup_django()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from bench.report import render

    result = asyncio.run(_main(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(result))
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    _log(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
