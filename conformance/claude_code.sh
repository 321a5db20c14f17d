#!/usr/bin/env bash
# Claude Code (npm @anthropic-ai/claude-code, pinned below) against a live gateway on loopback whose
# upstream is the offline simulator: a plain answer, then a Bash tool round trip.
# Usage: bash conformance/claude_code.sh   (or `make conformance`). Exit 0 = both checks passed.
source "$(dirname "$0")/_stack.sh"

CLAUDE_CODE_VERSION="${CLAUDE_CODE_VERSION:-2.1.332}"
MODEL=grok-4.20-fast

claude_bin="$(npm_client @anthropic-ai/claude-code "$CLAUDE_CODE_VERSION" claude)"
"$claude_bin" --version >/dev/null 2>&1 || fail "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION is installed but does not run"
stack_start sim-super-claudecode1 sim-super-claudecode2

work="$G2A_SCRATCH/work"
mkdir -p "$work" "$G2A_SCRATCH/home"
claude() {
  # Its own HOME (settings, session files) in the scratch folder; no telemetry, no update check,
  # no traffic other than to the gateway.
  (cd "$work" && env HOME="$G2A_SCRATCH/home" ANTHROPIC_BASE_URL="$G2A_BASE" ANTHROPIC_API_KEY="$G2A_KEY" \
     ANTHROPIC_MODEL="$MODEL" ANTHROPIC_SMALL_FAST_MODEL="$MODEL" CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
     DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1 DISABLE_ERROR_REPORTING=1 \
     timeout 180 "$claude_bin" "$@" </dev/null)
}

# 1. A plain answer: its first request carries a system message inside `messages`.
claude -p "Say hello" --output-format json >"$G2A_SCRATCH/plain.json" 2>"$G2A_SCRATCH/plain.err" \
  || fail "claude -p exited $?: $(head -c 600 "$G2A_SCRATCH/plain.json") $(tail -c 300 "$G2A_SCRATCH/plain.err")"
"$PY" - "$G2A_SCRATCH/plain.json" <<'PYEOF' || fail "plain answer: $(head -c 600 "$G2A_SCRATCH/plain.json")"
import json, sys
out = json.load(open(sys.argv[1]))
assert out["type"] == "result" and out["subtype"] == "success" and not out["is_error"], out
assert out["result"].strip(), "empty answer"
PYEOF
echo "ok   claude_code: plain answer"

# 2. A Bash tool round trip: the simulator answers the `#sim:tool=Bash` prompt with a call to the
#    Bash tool, its command scripted by #sim:args; Claude Code runs it and sends the tool_result
#    (the command's output) back; the gateway answers in text.
claude -p 'Say it #sim:tool=Bash #sim:args={"command":"echo%20conformance-ok"}' --allowedTools Bash --output-format stream-json --verbose \
  >"$G2A_SCRATCH/tool.jsonl" 2>"$G2A_SCRATCH/tool.err" || fail "claude -p (tool) exited $? ($(tail -c 400 "$G2A_SCRATCH/tool.err"))"
"$PY" - "$G2A_SCRATCH/tool.jsonl" <<'PYEOF' || fail "Bash round trip: $(tail -c 800 "$G2A_SCRATCH/tool.jsonl")"
import json, sys
blocks = []
for line in open(sys.argv[1]):
    event = json.loads(line)
    if event.get("type") in ("assistant", "user"):
        blocks += [(event["type"], b) for b in event["message"]["content"] if isinstance(b, dict)]
uses = [b for who, b in blocks if who == "assistant" and b["type"] == "tool_use" and b["name"] == "Bash"]
assert uses and uses[0]["input"].get("command") == "echo conformance-ok", "no Bash tool_use with the scripted command"
results = [b for who, b in blocks if who == "user" and b["type"] == "tool_result" and b["tool_use_id"] == uses[0]["id"]]
assert results, "no tool_result for the call"
content = results[0]["content"]
text = content if isinstance(content, str) else " ".join(c.get("text", "") for c in content if isinstance(c, dict))
assert "conformance-ok" in text and not results[0].get("is_error"), "the command did not run: " + text[:400]
at = next(i for i, (who, b) in enumerate(blocks) if b is uses[0])
assert any(who == "assistant" and b["type"] == "text" and b["text"].strip() for who, b in blocks[at:]), \
    "no text answer after the tool result"
PYEOF
echo "ok   claude_code: Bash tool round trip"
