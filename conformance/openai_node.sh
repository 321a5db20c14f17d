#!/usr/bin/env bash
# The official openai node SDK (npm `openai`, pinned below, in the scratch clients folder) against a
# live gateway on loopback whose upstream is the offline simulator (conformance/_openai_node.mjs):
# Chat Completions plain, streamed and a tool call round trip; Responses plain and streamed.
# Usage: bash conformance/openai_node.sh   (or `make conformance`). Exit 0 = all checks passed.
source "$(dirname "$0")/_stack.sh"

OPENAI_NODE_VERSION="${OPENAI_NODE_VERSION:-7.60.0}"

command -v node >/dev/null || fail "openai@$OPENAI_NODE_VERSION cannot be run: node is not on PATH"
# The package has no executable: install it, then find its folder beside npm_client's layout.
dir="$CLIENTS_DIR/openai-$OPENAI_NODE_VERSION"
if [ ! -f "$dir/node_modules/openai/package.json" ]; then
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "openai@$OPENAI_NODE_VERSION" >"$dir/install.log" 2>&1 \
    || fail "openai@$OPENAI_NODE_VERSION cannot be installed (npm install failed, see $dir/install.log)"
fi
stack_start sim-super-node1 sim-super-node2

cp "$ROOT/conformance/_openai_node.mjs" "$dir/run.mjs"
G2A_BASE="$G2A_BASE" G2A_KEY="$G2A_KEY" timeout 120 node "$dir/run.mjs" </dev/null 2>"$G2A_SCRATCH/node.err" \
  || fail "the openai node SDK run failed: $(tail -c 800 "$G2A_SCRATCH/node.err")"
