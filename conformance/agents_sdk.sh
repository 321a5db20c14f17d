#!/usr/bin/env bash
# The OpenAI Agents SDK (PyPI openai-agents, pinned below, in its own virtualenv) against a live
# gateway on loopback whose upstream is the offline simulator, with both of its model classes
# (Chat Completions and Responses): a plain answer, a streamed answer and a function tool round
# trip (conformance/_agents_sdk.py). Tracing is off, so nothing leaves the machine.
# Usage: bash conformance/agents_sdk.sh   (or `make conformance`). Exit 0 = all checks passed.
source "$(dirname "$0")/_stack.sh"

AGENTS_SDK_VERSION="${AGENTS_SDK_VERSION:-0.24.0}"

agents_py="$(pip_client openai-agents "$AGENTS_SDK_VERSION" python)"
"$agents_py" -c "import agents" >/dev/null 2>&1 || fail "openai-agents==$AGENTS_SDK_VERSION is installed but does not import"
stack_start sim-super-agents1 sim-super-agents2

G2A_BASE="$G2A_BASE" G2A_KEY="$G2A_KEY" OPENAI_AGENTS_DISABLE_TRACING=1 \
  timeout 300 "$agents_py" "$ROOT/conformance/_agents_sdk.py" </dev/null 2>"$G2A_SCRATCH/agents.err" \
  || fail "the Agents SDK run failed: $(tail -c 800 "$G2A_SCRATCH/agents.err")"
