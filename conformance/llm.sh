#!/usr/bin/env bash
# Simon Willison's `llm` CLI (PyPI llm, pinned below) with the gateway as an OpenAI-compatible
# model (extra-openai-models.yaml), against a live gateway on loopback whose upstream is the
# offline simulator: a streamed answer, max_tokens honoured, and a Python tool round trip.
# Usage: bash conformance/llm.sh   (or `make conformance`). Exit 0 = all checks passed.
source "$(dirname "$0")/_stack.sh"

LLM_VERSION="${LLM_VERSION:-0.36}"

llm_bin="$(pip_client llm "$LLM_VERSION" llm)"
"$llm_bin" --version >/dev/null 2>&1 || fail "llm==$LLM_VERSION is installed but does not run"
stack_start sim-super-llm1

export LLM_USER_PATH="$G2A_SCRATCH/llm-home"
mkdir -p "$LLM_USER_PATH"
cat >"$LLM_USER_PATH/extra-openai-models.yaml" <<YAML
- model_id: grok2api
  model_name: grok-4.20-fast
  api_base: "$G2A_BASE/v1"
  api_key_name: grok2api
  supports_tools: true
YAML
llm() { timeout 120 "$llm_bin" -m grok2api --key "$G2A_KEY" "$@" </dev/null; }

# 1. A streamed answer (llm streams by default).
out="$(llm "Say hello" 2>&1)" || fail "llm exited $?: ${out:0:400}"
[ -n "${out// }" ] || fail "llm printed no answer"
echo "ok   llm: streamed answer"

# 2. max_tokens: the answer stops there and the logged response says finish_reason "length".
out="$(llm --no-stream -o max_tokens 3 "Tell a long story #sim:len=60" 2>&1)" || fail "llm (max_tokens) exited $?: ${out:0:400}"
"$llm_bin" logs -n 1 --json >"$G2A_SCRATCH/log.json" || fail "llm logs failed"
"$PY" - "$G2A_SCRATCH/log.json" <<'PYEOF' || fail "max_tokens: $(head -c 800 "$G2A_SCRATCH/log.json")"
import json, sys
entry = json.load(open(sys.argv[1]))[0]
assert entry["response_json"]["choices"][0]["finish_reason"] == "length", entry["response_json"]
assert 0 < entry["output_tokens"] <= 3 and entry["response"].strip()
PYEOF
echo "ok   llm: max_tokens"

# 3. A tool round trip: the simulator calls the `shout` function; llm runs it and sends the result back.
out="$(llm --functions 'def shout(text: str) -> str:
    return text.upper() + "!"' --td "Shout it #sim:tool=shout" 2>&1)" || fail "llm (tool) exited $?: ${out:0:400}"
case "$out" in
  *"Tool call: shout("*"EXAMPLE TEXT!"*) ;;
  *) fail "llm tool round trip: ${out:0:600}" ;;
esac
echo "$out" | grep -q "Based on the tool result" || fail "no answer after the tool result: ${out:0:600}"
echo "ok   llm: tool round trip"
