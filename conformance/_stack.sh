# Sourced by the conformance scripts: a scratch gateway on loopback with the offline simulator as
# its upstream, and helpers to install a pinned client into a scratch folder (never the project venv).
#
# After `stack_start`: G2A_BASE (http://127.0.0.1:PORT), G2A_SIM (the simulator, control API on),
# G2A_KEY (the gateway's client key),
# G2A_SCRATCH (a temporary folder, removed on exit with both servers stopped).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
G2A_KEY="sk-conformance-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
G2A_SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/g2a-conformance.XXXXXX")"
# Installed clients are kept between runs here (one folder per client and version).
CLIENTS_DIR="${CONFORMANCE_CLIENTS_DIR:-${TMPDIR:-/tmp}/g2a-conformance-clients}"
_PIDS=()

_stack_stop() {
  local pid
  for pid in "${_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$G2A_SCRATCH"
}
trap _stack_stop EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

_free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

_wait_http() {  # URL, what
  local i
  for i in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  fail "$2 did not answer $1 within 60 s"
}

# npm_client PACKAGE VERSION BIN: install PACKAGE@VERSION into $CLIENTS_DIR (once) and print the
# path of its executable BIN. A client that cannot be installed stops the script with one line.
npm_client() {
  local pkg="$1" version="$2" bin="$3" dir
  dir="$CLIENTS_DIR/$(echo "$pkg" | tr '/@' '__')-$version"
  if [ ! -x "$dir/node_modules/.bin/$bin" ]; then
    command -v npm >/dev/null || fail "$pkg@$version cannot be installed: npm is not on PATH"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$pkg@$version" >"$dir/install.log" 2>&1 \
      || fail "$pkg@$version cannot be installed (npm install failed, see $dir/install.log)"
  fi
  echo "$dir/node_modules/.bin/$bin"
}

# pip_client PACKAGE VERSION BIN: the same for a PyPI client, in its own virtualenv.
pip_client() {
  local pkg="$1" version="$2" bin="$3" dir
  dir="$CLIENTS_DIR/pypi-$pkg-$version"
  if [ ! -x "$dir/bin/$bin" ]; then
    python3 -m venv "$dir" >/dev/null 2>&1 || fail "$pkg==$version cannot be installed: python3 -m venv failed"
    "$dir/bin/pip" install -q "$pkg==$version" >"$dir/install.log" 2>&1 \
      || { rm -rf "$dir"; fail "$pkg==$version cannot be installed (pip install failed)"; }
  fi
  echo "$dir/bin/$bin"
}

# stack_start TOKEN...: simulator + gateway (SQLite in the scratch folder), the tokens imported as accounts.
stack_start() {
  local sim_port gw_port
  sim_port="$(_free_port)"
  gw_port="$(_free_port)"
  export DATA_DIR="$G2A_SCRATCH/data" LOG_DIR="$G2A_SCRATCH/logs" LOG_FILE_ENABLED=false
  export DATABASE_URL="" ACCOUNT_STORAGE=local ACCOUNT_LOCAL_PATH="$G2A_SCRATCH/data/grok2api.db"
  export ADMIN_PASSWORD="conformance-admin" GROK_APP_API_KEY="$G2A_KEY" SNAPSHOT_POLL_INTERVAL=0.2
  export GROK_UPSTREAM_WEB_BASE_URL="http://127.0.0.1:$sim_port" GROK_UPSTREAM_ASSETS_BASE_URL="http://127.0.0.1:$sim_port"
  export GROK_UPSTREAM_WS_BASE_URL="ws://127.0.0.1:$sim_port" GROK_UPSTREAM_IMAGINE_PUBLIC_BASE_URL="http://127.0.0.1:$sim_port"
  export GROK_UPSTREAM_LIVEKIT_URL="ws://127.0.0.1:$sim_port" GROK_FEATURES_STREAM=false
  mkdir -p "$DATA_DIR" "$LOG_DIR"
  (cd "$ROOT" && exec "$PY" manage.py grok_simulator --host 127.0.0.1 --port "$sim_port" --pace 0 --seed 7 --control \
      >"$G2A_SCRATCH/simulator.log" 2>&1) &
  _PIDS+=($!)
  (cd "$ROOT" && "$PY" manage.py migrate -v0 >"$G2A_SCRATCH/migrate.log" 2>&1) || fail "migrate failed: $(tail -3 "$G2A_SCRATCH/migrate.log")"
  printf '%s\n' "$@" >"$G2A_SCRATCH/tokens.txt"
  (cd "$ROOT" && "$PY" manage.py import_accounts "$G2A_SCRATCH/tokens.txt" --pool super >"$G2A_SCRATCH/import.log" 2>&1) \
    || fail "import_accounts failed: $(tail -3 "$G2A_SCRATCH/import.log")"
  (cd "$ROOT" && exec "$PY" manage.py serve --host 127.0.0.1 --port "$gw_port" --no-worker \
      >"$G2A_SCRATCH/serve.log" 2>&1) &
  _PIDS+=($!)
  G2A_BASE="http://127.0.0.1:$gw_port"
  G2A_SIM="http://127.0.0.1:$sim_port"
  _wait_http "$G2A_BASE/healthz" "the gateway"
  local i
  for i in $(seq 1 150); do
    curl -fsS -H "Authorization: Bearer $G2A_KEY" "$G2A_BASE/v1/models" 2>/dev/null | grep -q '"grok-4.20-fast"' && return 0
    sleep 0.2
  done
  fail "the gateway lists no model (see $G2A_SCRATCH/serve.log)"
}
