#!/usr/bin/env bash
# aider (PyPI aider-chat, pinned below, in its own virtualenv) with the gateway as an OpenAI-compatible
# endpoint (`--openai-api-base`, model `openai/<model>`), non-interactive (`--message`), against a live
# gateway on loopback whose upstream is the offline simulator: a streamed plain answer, then an edit
# the model answers in aider's `whole` edit format (scripted with #sim:say) applied to a file.
# Usage: bash conformance/aider.sh   (or `make conformance`). Exit 0 = both checks passed.
source "$(dirname "$0")/_stack.sh"

AIDER_VERSION="${AIDER_VERSION:-0.86.2}"
MODEL=grok-4.20-fast

aider_bin="$(pip_client aider-chat "$AIDER_VERSION" aider)"
"$aider_bin" --version >/dev/null 2>&1 || fail "aider-chat==$AIDER_VERSION is installed but does not run"
stack_start sim-super-aider1

work="$G2A_SCRATCH/work"
mkdir -p "$work" "$G2A_SCRATCH/home/.aider/caches"
# aider downloads litellm's model list unless its cache is fresh and not empty: a fresh one naming
# only this model keeps it offline.
cat >"$G2A_SCRATCH/home/.aider/caches/model_prices_and_context_window.json" <<JSON
{"openai/$MODEL": {"litellm_provider": "openai", "mode": "chat", "max_input_tokens": 131072,
 "max_output_tokens": 8192, "input_cost_per_token": 0, "output_cost_per_token": 0}}
JSON
aider() {
  # Its own HOME (~/.aider caches) in the scratch folder; no update check, no analytics, litellm's
  # bundled model list instead of a download: no traffic other than to the gateway.
  (cd "$work" && env HOME="$G2A_SCRATCH/home" LITELLM_LOCAL_MODEL_COST_MAP=True \
     timeout 180 "$aider_bin" --model "openai/$MODEL" --openai-api-base "$G2A_BASE/v1" --openai-api-key "$G2A_KEY" \
       --yes-always --no-git --no-auto-commits --no-check-update --analytics-disable --no-show-model-warnings \
       --no-show-release-notes --no-pretty --no-fancy-input --no-detect-urls --map-tokens 0 \
       --edit-format whole "$@" </dev/null)
}

# 1. A plain answer, streamed (aider's default). The prompt has the answer percent-encoded (%2D is a
#    '-'), so an echo of the prompt cannot pass for it.
out="$(aider --message "Say hello #sim:say=conformance%2Dplain%2Dok" 2>&1)" || fail "aider exited $?: ${out: -600}"
case "$out" in
  *conformance-plain-ok*) ;;
  *) fail "aider printed no answer: ${out: -600}" ;;
esac
echo "ok   aider: plain answer"

# 2. An edit applied to a file: the answer is the file's new content in aider's `whole` format
#    (the file name, then a fenced block), percent-encoded in #sim:say.
printf 'before\n' >"$work/hello.txt"
out="$(aider hello.txt --message 'Change the text #sim:say=hello.txt%0A```%0Aconformance-ok%0A```' 2>&1)" \
  || fail "aider (edit) exited $?: ${out: -600}"
[ "$(cat "$work/hello.txt")" = "conformance-ok" ] || fail "the edit was not applied: hello.txt is '$(cat "$work/hello.txt")'; ${out: -600}"
echo "ok   aider: edit applied to a file"
