#!/usr/bin/env bash
# Codex CLI (npm @openai/codex, pinned below) with a custom model provider on the Responses API,
# against a live gateway on loopback whose upstream is the offline simulator: a plain answer, then
# a function-call round trip (exec_command).
# Usage: bash conformance/codex.sh   (or `make conformance`). Exit 0 = both checks passed.
source "$(dirname "$0")/_stack.sh"

CODEX_VERSION="${CODEX_VERSION:-0.171.0}"
MODEL=grok-4.20-fast

codex_bin="$(npm_client @openai/codex "$CODEX_VERSION" codex)"
"$codex_bin" --version >/dev/null 2>&1 || fail "@openai/codex@$CODEX_VERSION is installed but does not run"
stack_start sim-super-codex1 sim-super-codex2

work="$G2A_SCRATCH/work"
export CODEX_HOME="$G2A_SCRATCH/codex-home"
mkdir -p "$work" "$CODEX_HOME"
cat >"$CODEX_HOME/config.toml" <<TOML
model = "$MODEL"
model_provider = "grok2api"

[model_providers.grok2api]
name = "grok2api"
base_url = "$G2A_BASE/v1"
env_key = "G2A_KEY"
wire_api = "responses"

# No traffic but to the gateway: no curated-plugin sync from GitHub at start-up, no connectors.
[features]
plugins = false
remote_plugin = false
apps = false
TOML
codex() { (cd "$work" && G2A_KEY="$G2A_KEY" timeout 180 "$codex_bin" exec --json --skip-git-repo-check "$@" </dev/null); }

# 1. A plain answer.
codex "Say hello" >"$G2A_SCRATCH/plain.jsonl" 2>"$G2A_SCRATCH/plain.err" \
  || fail "codex exec exited $? ($(tail -c 400 "$G2A_SCRATCH/plain.err"))"
"$PY" - "$G2A_SCRATCH/plain.jsonl" <<'PYEOF' || fail "plain answer: $(tail -c 600 "$G2A_SCRATCH/plain.jsonl")"
import json, sys
events = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
texts = [e["item"]["text"] for e in events if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
assert texts and texts[-1].strip(), "no agent message"
assert any(e.get("type") == "turn.completed" for e in events), "the turn did not complete"
PYEOF
echo "ok   codex: plain answer"

# 2. A function-call round trip: the simulator calls exec_command with `cmd` scripted by #sim:args
#    (the other required arguments filled from its JSON schema); Codex runs the command and answers
#    with a function_call_output, and the gateway answers in text. The simulator's request log shows
#    the command's output coming back.
codex 'Say it #sim:tool=exec_command #sim:args={"cmd":"echo%20conformance-ok"}' >"$G2A_SCRATCH/tool.jsonl" 2>"$G2A_SCRATCH/tool.err" \
  || fail "codex exec (tool) exited $? ($(tail -c 400 "$G2A_SCRATCH/tool.err"))"
curl -fsS "$G2A_SIM/__sim/log?endpoint=chat" >"$G2A_SCRATCH/simlog.json" || fail "the simulator log cannot be read"
"$PY" - "$G2A_SCRATCH/tool.jsonl" "$G2A_SCRATCH/simlog.json" <<'PYEOF' || fail "function-call round trip: $(tail -c 800 "$G2A_SCRATCH/tool.jsonl")"
import json, re, sys
events = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
messages = [r["body"]["message"] for r in json.load(open(sys.argv[2]))["requests"] if r.get("body")]
at = next(i for i, m in enumerate(messages) if "#sim:tool=exec_command" in m and "[tool result for" not in m)
later = messages[at + 1:]
assert later and re.search(r"\[assistant\]:\s*\n<tool_calls>.*exec_command", later[0], re.S), "the call is not in the history"
assert "[tool result for call_" in later[0], "no function_call_output came back"
result = later[0].split("[tool result for call_", 1)[1]
assert "conformance-ok" in result, "the command did not run: " + result[:400]
ran = [e for e in events if e.get("type") == "item.completed" and e["item"].get("type") == "command_execution"]
assert ran and "conformance-ok" in ran[0]["item"].get("aggregated_output", ""), "Codex reports no command run"
texts = [e["item"]["text"] for e in events if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
assert texts and texts[-1].strip(), "no text answer after the call"
PYEOF
echo "ok   codex: function-call round trip"
