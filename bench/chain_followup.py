"""Is continuing the upstream conversation (E2, docs/upstream-protocol.md §4.9) worth it for
`previous_response_id` chains, instead of resending the flattened history (E1, §4.3)?

Measures, for an N-turn chain against the simulator on a real socket, both ways of sending turn k:
- resend (what the gateway does): one E1 request whose `message` is the whole chain flattened — the
  earlier turns rebuilt exactly as gateway/stored_responses.py does it (stored input and output
  items → gateway/translate/responses.history_turns → flatten);
- follow-up: turn 1 as E1, every later turn as E2 on the conversation of turn 1 with
  `parentResponseId` = the previous answer's responseId and only the new turn in `message`.
Each request body is the gateway's own (grokweb/payloads.chat_payload). Reported per arm:
request bytes (sum over the chain and the last turn) and the simulator's time per request
(loopback round trip, request sent → last byte of the NDJSON body), at pace 0 (the simulator's own
processing, no generated delays) and at pace 1 (its realistic first-byte and token delays).

Run: `.venv/bin/python -m bench.chain_followup [--turns 3 10] [--pace 0 1]`; prints a Markdown table.
The simulator models neither a server-side conversation nor prompt-length-dependent latency, so
its times show what the gateway and the wire cost, not what a real upstream's prefill would.
"""
from __future__ import annotations

import argparse
import statistics
import time

import httpx
import orjson

from gateway.translate import responses as responses_tr
from gateway.translate.common import flatten
from grokweb.payloads import chat_payload
from grokweb.simulator.core import Simulator
from grokweb.simulator.server import SimServer

E1 = "/rest/app-chat/conversations/new"
E2 = "/rest/app-chat/conversations/{cid}/responses"


def _answer(body: bytes) -> tuple[str, str, str]:
    """(conversationId, responseId of the answer, answer text) from an NDJSON body (either wrapper)."""
    cid = rid = ""
    tokens: list[str] = []
    final = None
    for line in body.splitlines():
        if not line.strip():
            continue
        obj = orjson.loads(line).get("result") or {}
        conv = obj.get("conversation")
        if conv:
            cid = conv.get("conversationId", cid)
        resp = obj.get("response", obj)
        if resp.get("modelResponse"):
            final = resp["modelResponse"].get("message")
            rid = resp["modelResponse"].get("responseId", rid)
        elif isinstance(resp.get("token"), str) and not resp.get("isThinking"):
            tokens.append(resp["token"])
            rid = resp.get("responseId", rid)
    return cid, rid, final if final is not None else "".join(tokens)


def _flat(items: list[dict], new_input: str) -> str:
    req = responses_tr.parse_request({"model": "grok-4.20-fast", "input": new_input}, default_stream=False,
                                     default_thinking=False)
    req.turns[req.history_at:req.history_at] = responses_tr.history_turns(items)
    return flatten(req)


def _post(client: httpx.Client, path: str, payload: dict) -> tuple[int, float, bytes]:
    raw = orjson.dumps(payload)
    t0 = time.perf_counter()
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    body = r.read()
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    return len(raw), elapsed, body


def chain(server: SimServer, *, turns: int, arm: str, token: str, answer_tokens: int = 0) -> list[tuple[int, float]]:
    """One chain; returns (request bytes, seconds) per turn."""
    out: list[tuple[int, float]] = []
    items: list[dict] = []
    cid = parent = ""
    cookies = {"sso": token, "sso-rw": token}
    with httpx.Client(base_url=server.url, cookies=cookies, timeout=120) as client:
        for k in range(1, turns + 1):
            text = f"Turn {k}: tell me more about the history of lighthouses, part {k}."
            if answer_tokens:
                text += f" #sim:len={answer_tokens}"  # the simulator's answer length directive
            if arm == "resend" or k == 1:
                payload = chat_payload(message=_flat(items, text), mode="fast")
                size, secs, body = _post(client, E1, payload)
            else:
                payload = chat_payload(message=_flat([], text), mode="fast")
                payload["parentResponseId"] = parent
                size, secs, body = _post(client, E2.format(cid=cid), payload)
            got_cid, parent, answer = _answer(body)
            cid = cid or got_cid
            items += [{"type": "message", "role": "user", "content": text},
                      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": answer}]}]
            out.append((size, secs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--pace", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--repeat", type=int, default=3, help="chains per cell; the median time is reported")
    parser.add_argument("--answer-tokens", type=int, default=0,
                        help="answer length in tokens (the simulator's #sim:len); 0 = its own seeded length")
    args = parser.parse_args()
    print(f"answer tokens: {args.answer_tokens or 'simulator default'}\n")
    print("| turns | pace | arm | bytes sent (chain) | bytes sent (last turn) | sim time, chain (s) | "
          "sim time, last turn (ms) |")
    print("|--:|--:|:--|--:|--:|--:|--:|")
    for pace in args.pace:
        server = SimServer(Simulator(seed=1234, pace=pace, control=True, time_scale=0.0)).start()
        try:
            for turns in args.turns:
                for arm in ("resend", "follow-up"):
                    runs = [chain(server, turns=turns, arm=arm, token=f"sim-super-chain{arm}{turns}{i}",
                                  answer_tokens=args.answer_tokens)
                            for i in range(args.repeat)]
                    sizes = [s for s, _ in runs[0]]
                    total = statistics.median(sum(t for _, t in run) for run in runs)
                    last = statistics.median(run[-1][1] for run in runs)
                    print(f"| {turns} | {pace:g} | {arm} | {sum(sizes):,} | {sizes[-1]:,} | {total:.3f} | "
                          f"{last * 1000:.1f} |")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
