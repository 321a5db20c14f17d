"""Processes under test: the simulator, the gateway (`manage.py serve`) and the LiteLLM peer.

Each runs as its own OS process on a loopback port with its own log file under the run
directory. RSS is read from /proc (`VmRSS`) for the *worker* processes of a server: the leaves
of its process tree, without multiprocessing's resource tracker (the supervisor parents only
fork and wait).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PEER_VENV = BASE_DIR / "bench" / ".peer-venv"
PEER_PIN = "litellm[proxy]==1.93.2"  # never 1.82.7 / 1.82.8 (compromised releases)
BENCH_SECRET = "bench-secret-key-not-for-production-0123456789abcdef"
BENCH_API_KEY = "sk-bench-gateway-0123456789abcdef"
PEER_MASTER_KEY = "sk-bench-peer-0123456789abcdef"
BENCH_MODEL = "grok-4.20-fast"  # upstream mode `fast`: never thinks, like the simulator's OpenAI face
# The simulator's quota tables would run dry within seconds of load: lift them for the bench tokens.
SIM_KNOBS = {"quota_overrides": {"fast": 100_000_000, "auto": 100_000_000, "expert": 100_000_000}}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in [*tree(self.pid), self.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.popen.wait()


# ----------------------------------------------------------------------------- /proc helpers

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(pid: int) -> list[int]:
    """All descendants of pid (not pid itself)."""
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, ()):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_pids(root: int) -> list[int]:
    kids = _children()
    desc = tree(root)
    leaves = [p for p in desc if not kids.get(p)] or [root]
    return [p for p in leaves if "resource_tracker" not in _cmdline(p)]


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pids: list[int]) -> float:
    return sum(rss_kb(p) for p in pids) / 1024.0


def cpu_ticks(pids: list[int]) -> float:
    """utime+stime in seconds of the given processes."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / hz


# ----------------------------------------------------------------------------- http helpers

def http_json(method: str, url: str, payload: dict | None = None, headers: dict | None = None, timeout: float = 10.0):
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def wait_ready(proc: Proc, check, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"{proc.name} not ready within {timeout:.0f}s ({last}):\n{proc.log_tail()}")


def _spawn(name: str, argv: list[str], *, env: dict[str, str], log_path: Path, port: int, cwd: Path = BASE_DIR) -> Proc:
    """Start argv; `env` entries with an empty value are removed from the child's environment."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {k: v for k, v in {**os.environ, **env}.items() if v != "" or k not in env}
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(argv, cwd=cwd, env=child_env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    return Proc(name=name, popen=popen, port=port, log_path=log_path, env=env)


# ----------------------------------------------------------------------------- simulator

def start_simulator(run_dir: Path, *, seed: int = 0) -> Proc:
    port = free_port()
    argv = [sys.executable, "manage.py", "grok_simulator", "--host", "127.0.0.1", "--port", str(port),
            "--seed", str(seed), "--pace", "0", "--control", "--knobs", json.dumps(SIM_KNOBS), "--log-level", "warning"]
    env = {"DATA_DIR": str(run_dir / "sim-data"), "LOG_FILE_ENABLED": "false", "SECRET_KEY": BENCH_SECRET}
    proc = _spawn("simulator", argv, env=env, log_path=run_dir / "simulator.log", port=port)
    wait_ready(proc, lambda: http_json("GET", proc.url + "/__sim/knobs")[0] == 200, timeout=60)
    return proc


def sim_pace(sim: Proc, pace: float) -> None:
    status, _ = http_json("POST", sim.url + "/__sim/knobs", {"pace": pace})
    if status != 200:
        raise RuntimeError(f"simulator refused pace {pace}")


def upstream_env(sim: Proc) -> dict[str, str]:
    ws = "ws://127.0.0.1:%d" % sim.port
    return {
        "GROK_UPSTREAM_WEB_BASE_URL": sim.url,
        "GROK_UPSTREAM_ASSETS_BASE_URL": sim.url,
        "GROK_UPSTREAM_WS_BASE_URL": ws,
        "GROK_UPSTREAM_IMAGINE_PUBLIC_BASE_URL": sim.url,
        "GROK_UPSTREAM_LIVEKIT_URL": ws,
    }


def bench_tokens(n: int) -> list[str]:
    return [f"sim-super-bench{i:04d}" for i in range(n)]


# ----------------------------------------------------------------------------- gateway

def gateway_env(data_dir: Path, sim: Proc) -> dict[str, str]:
    return {
        "DATA_DIR": str(data_dir),
        "LOG_DIR": str(data_dir / "logs"),
        "LOG_FILE_ENABLED": "false",
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "SECRET_KEY": BENCH_SECRET,
        "ADMIN_USERNAME": "admin",
        "ADMIN_PASSWORD": "bench-admin-password",
        "DEBUG": "false",
        **upstream_env(sim),
    }


def _manage(args: list[str], env: dict[str, str], log_path: Path, timeout: float = 300) -> str:
    child_env = {**os.environ, **env}
    if not child_env.get("DATABASE_URL"):
        child_env.pop("DATABASE_URL", None)
    if not child_env.get("REDIS_URL"):
        child_env.pop("REDIS_URL", None)
    out = subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=child_env, capture_output=True,
                         text=True, timeout=timeout)
    with open(log_path, "a") as fh:
        fh.write(f"$ manage.py {' '.join(args)}\n{out.stdout}{out.stderr}\n")
    if out.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed ({out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
    return out.stdout


API_KEY_SNIPPET = """
from gateway.models import ApiKey
from core.crypto import hash_api_key
key = {key!r}
ApiKey.objects.get_or_create(key_hash=hash_api_key(key), defaults=dict(label="bench", prefix=key[:8]))
"""


def prepare_gateway(data_dir: Path, sim: Proc, *, n_accounts: int) -> dict[str, str]:
    """A fresh DATA_DIR (SQLite): migrate, import `n_accounts` simulator tokens into the super pool,
    probe their quotas from the simulator (refresh_quotas) and create the bench API key row."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = gateway_env(data_dir, sim)
    log = data_dir / "prepare.log"
    tokens = data_dir / "tokens.txt"
    tokens.write_text("\n".join(bench_tokens(n_accounts)) + "\n")
    _manage(["migrate", "--no-input", "-v", "0"], env, log)
    _manage(["import_accounts", str(tokens), "--pool", "super", "--no-probe"], env, log)
    out = _manage(["refresh_quotas"], env, log)
    if f"{n_accounts} account(s) probed, 0 failed" not in out:
        raise RuntimeError(f"refresh_quotas did not sync every bench account:\n{out[-2000:]}")
    _manage(["shell", "-c", API_KEY_SNIPPET.format(key=BENCH_API_KEY)], env, log)
    return env


def start_gateway(data_dir: Path, env: dict[str, str], *, workers: int, name: str = "gateway") -> Proc:
    """`manage.py serve` (uvicorn) with `workers` workers."""
    port = free_port()
    argv = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"]
    env = {**env, "SERVER_WORKERS": str(workers)}
    proc = _spawn(name, argv, env=env, log_path=data_dir / f"{name}-{port}.log", port=port)

    def ready() -> bool:
        if len(worker_pids(proc.pid)) < workers:
            return False
        with urllib.request.urlopen(proc.url + "/healthz", timeout=2) as resp:
            return resp.status == 200

    wait_ready(proc, ready, timeout=120)
    return proc


# ----------------------------------------------------------------------------- the libraries' floor

FLOOR_APPS = {"floor": "bench.floor:app", "bare": "bench.floor:bare_app"}


def start_floor(run_dir: Path, sim: Proc, *, name: str, workers: int) -> Proc:
    """bench/floor.py under uvicorn as `serve` runs it (uvloop, h11, no access log): `floor` = Django +
    Ninja + httpx2 (its process also serves `floor-grok`), `bare` = uvicorn + httpx2 only. With workers > 1, uvicorn's own supervisor."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", FLOOR_APPS[name], "--loop", "uvloop", "--http", "h11",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
            *(["--workers", str(workers)] if workers > 1 else [])]
    proc = _spawn(name, argv, env={"FLOOR_UPSTREAM": sim.url + "/openai/v1",
                                      "FLOOR_GROK_UPSTREAM": sim.url + "/rest/app-chat/conversations/new"}, log_path=run_dir / f"{name}-{port}.log",
                  port=port)

    def ready() -> bool:
        if workers > 1 and len(worker_pids(proc.pid)) < workers:
            return False
        status, _ = http_json("POST", proc.url + "/v1/chat/completions",
                              {"model": "m", "messages": [{"role": "user", "content": "ready? #sim:len=2"}]}, timeout=3)
        return status == 200

    wait_ready(proc, ready, timeout=60)
    return proc


# ----------------------------------------------------------------------------- peer (LiteLLM)

def peer_install(log_path: Path) -> tuple[bool, str]:
    """Create bench/.peer-venv and install the pinned LiteLLM proxy (skipped when already there)."""
    py = PEER_VENV / "bin" / "python"
    check = [str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
    if py.exists():
        got = subprocess.run(check, capture_output=True, text=True)
        if got.returncode == 0 and got.stdout.strip() == PEER_PIN.split("==")[1]:
            return True, got.stdout.strip()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        steps = [[sys.executable, "-m", "venv", str(PEER_VENV)], [str(py), "-m", "pip", "install", "-q", PEER_PIN]]
        for argv in steps:
            rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                tail = log_path.read_text(errors="replace")[-3000:]
                return False, f"`{' '.join(argv)}` exited {rc}:\n{tail}"
    got = subprocess.run(check, capture_output=True, text=True)
    return got.returncode == 0, (got.stdout.strip() or got.stderr[-2000:])


PEER_LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s: %(message)s"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "uvicorn": {"handlers": ["out"], "level": "INFO", "propagate": False},
        # no per-request access log line, like the gateway's --no-access-log
        "uvicorn.access": {"handlers": ["out"], "level": "WARNING", "propagate": False},
    },
}


def start_peer(run_dir: Path, sim: Proc, *, workers: int, name: str = "peer") -> Proc:
    port = free_port()
    pdir = run_dir / name
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "config.yaml").write_text(
        "model_list:\n"
        f"  - model_name: {BENCH_MODEL}\n"
        "    litellm_params:\n"
        "      model: openai/grok-sim\n"
        f"      api_base: {sim.url}/openai/v1\n"
        "      api_key: sk-upstream-bench\n"
        "litellm_settings:\n"
        "  num_retries: 0\n"
        "  request_timeout: 120\n"
        "router_settings:\n"
        "  num_retries: 0\n"
        "general_settings:\n"
        f"  master_key: {PEER_MASTER_KEY}\n"
    )
    (pdir / "log_config.json").write_text(json.dumps(PEER_LOG_CONFIG))
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "DATABASE_URL": "", "STORE_MODEL_IN_DB": "False"}
    argv = [str(PEER_VENV / "bin" / "litellm"), "--config", str(pdir / "config.yaml"), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", str(workers), "--telemetry", "False",
            "--log_config", str(pdir / "log_config.json"),
            # uvicorn 0.54 kills a worker that has not finished start-up within 5 s; importing
            # LiteLLM takes longer than that on a busy 2-core machine (workers "died" in a loop).
            "--timeout_worker_healthcheck", "120"]
    # DATABASE_URL="" removes an inherited one: the peer runs without a database.
    proc = _spawn(name, argv, env=env, log_path=pdir / f"{name}-{port}.log", port=port, cwd=pdir)

    def ready() -> bool:
        if workers > 1 and len(worker_pids(proc.pid)) < workers:
            return False
        status, _ = http_json("GET", proc.url + "/v1/models", headers={"Authorization": f"Bearer {PEER_MASTER_KEY}"}, timeout=3)
        return status == 200

    wait_ready(proc, ready, timeout=180)
    return proc
