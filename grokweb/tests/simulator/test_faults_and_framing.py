"""Token directives for framing variants, in-band errors and stream faults, on a real socket."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from .helpers import CHAT, answer_text, call, chat, cookies, kinds, lines, model_response

BASE = "sim-super-fault"


def test_sse_framing_uses_data_prefixes_event_lines_and_done(sim):
    resp = chat(sim, BASE + "~sse", "[user]: hi")
    assert resp.headers["content-type"].startswith("text/event-stream")
    body = resp.text
    assert body.rstrip().endswith("data: [DONE]")
    data_lines = [ln for ln in body.split("\n") if ln.startswith("data: ") and ln != "data: [DONE]"]
    assert "event: message" in body
    objs = [json.loads(ln[6:]) for ln in data_lines]
    assert model_response(objs)["streamErrors"] == []


def test_blank_crlf_and_no_final_newline_variants(sim):
    blank = chat(sim, BASE + "~blank", "[user]: hi").text
    assert "}\n\n{" in blank
    crlf = chat(sim, BASE + "~crlf~nofinalnl", "[user]: hi").content
    assert b"}\r\n{" in crlf and not crlf.endswith(b"\n") and crlf.endswith(b"}")


def test_concat_framing_puts_several_objects_on_one_line(sim):
    text = chat(sim, BASE + "~concat", "[user]: hi").text
    physical = [ln for ln in text.split("\n") if ln]
    assert any("}{" in ln for ln in physical)
    decoder, objs = json.JSONDecoder(), []
    for ln in physical:
        pos = 0
        while pos < len(ln):
            obj, pos = decoder.raw_decode(ln, pos)
            objs.append(obj)
    assert model_response(objs)["message"] == answer_text(objs)


@pytest.mark.parametrize("n", [0, 3])
def test_inband_line_error_after_n_tokens(sim, n):
    objs = lines(chat(sim, f"{BASE}~inband=line@{n}", "[user]: hi #sim:len=8"))
    assert objs[-1] == {"error": {"code": 8, "message": "Too many requests", "details": []}}
    assert kinds(objs).count("token") == n


def test_inband_response_error_and_optional_image_chunk(sim):
    objs = lines(chat(sim, BASE + "~inband=response@2", "[user]: hi"))
    assert objs[-1]["result"]["response"]["error"]["message"].startswith("You've reached your usage limit")
    sim.sim.configure(inband_image_chunk=True)
    objs = lines(chat(sim, BASE + "~inband=response@0", "[user]: hi"))
    card = json.loads(objs[-1]["result"]["response"]["cardAttachment"]["jsonData"])
    assert card["image_chunk"]["systemErrCode"] == "rate_limit"


def test_inband_stream_errors_in_the_terminal_model_response(sim):
    objs = lines(chat(sim, BASE + "~inband=streamerrors@4", "[user]: hi"))
    mr = model_response(objs)
    assert mr["streamErrors"] == [{"code": 8, "message": "Too many requests"}]
    assert "softStop" not in kinds(objs)


def test_truncate_ends_cleanly_without_soft_stop_or_model_response(sim):
    resp = chat(sim, BASE + "~truncate@3", "[user]: hi #sim:len=10")
    objs = lines(resp)
    assert kinds(objs).count("token") == 3
    assert "softStop" not in kinds(objs) and "modelResponse" not in kinds(objs)


def test_nomodelresponse_stops_after_the_soft_stop(sim):
    objs = lines(chat(sim, BASE + "~nomodelresponse", "[user]: hi"))
    assert kinds(objs)[-1] == "softStop"


def test_drop_aborts_the_connection_mid_body(sim):
    received = []
    with httpx.Client(base_url=sim.url, timeout=10) as client:
        with client.stream("POST", CHAT, json={"message": "[user]: hi #sim:len=10", "modeId": "fast"},
                           headers=cookies(BASE + "~drop@2")) as resp:
            assert resp.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                for line in resp.iter_lines():
                    if line:
                        received.append(json.loads(line))
    assert kinds(received).count("token") == 2
    entry = sim.sim.requests(token=BASE + "~drop@2")[-1]
    assert entry["dropped"] is True and entry["completed"] is False


def test_malformed_line_is_inserted_before_token_n(sim):
    text = chat(sim, BASE + "~malformed@1", "[user]: hi").text
    physical = [ln for ln in text.split("\n") if ln]
    bad = [i for i, ln in enumerate(physical) if not _is_json(ln)]
    assert len(bad) == 1
    tokens_before = sum(1 for ln in physical[:bad[0]] if _is_json(ln) and '"messageTag":"final"' in ln)
    assert tokens_before == 1


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def test_stall_firstbyte_and_tokms_delay_the_stream(sim):
    # Chunk timing is observed at the client: the stall separates token 2 from token 3.
    arrivals = []
    with httpx.Client(base_url=sim.url, timeout=10) as client:
        with client.stream("POST", CHAT, json={"message": "[user]: hi #sim:len=5", "modeId": "fast"},
                           headers=cookies(BASE + "~stall@2=400")) as resp:
            for line in resp.iter_lines():
                if '"messageTag":"final"' in line:
                    arrivals.append(time.monotonic())
    assert arrivals[2] - arrivals[1] >= 0.35
    start = time.monotonic()
    with httpx.Client(base_url=sim.url, timeout=10) as client:
        with client.stream("POST", CHAT, json={"message": "[user]: hi #sim:len=4", "modeId": "fast"},
                           headers=cookies(BASE + "~firstbyte=300~tokms=50")) as resp:
            assert resp.status_code == 200
            first_line_at = None
            for line in resp.iter_lines():
                if line and first_line_at is None:
                    first_line_at = time.monotonic()
    assert first_line_at - start >= 0.28
    assert time.monotonic() - start >= 0.28 + 4 * 0.045


def test_client_disconnect_is_recorded(sim):
    token = BASE + "~tokms=200"
    with httpx.Client(base_url=sim.url, timeout=10) as client:
        with client.stream("POST", CHAT, json={"message": "[user]: hi #sim:len=50", "modeId": "fast"},
                           headers=cookies(token)) as resp:
            for line in resp.iter_lines():
                if '"messageTag":"final"' in line:
                    break
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not sim.sim.requests(token=token)[-1].get("disconnected"):
        time.sleep(0.02)
    entry = sim.sim.requests(token=token)[-1]
    assert entry["disconnected"] is True and entry["completed"] is False
    assert sim.sim.inflight[token] == 0


def test_scripted_outcomes_are_consumed_one_per_call(sim):
    token = "sim-super-scripted"
    sim.sim.queue(token, ["rl", "http=503", "ok"], endpoint="chat")
    assert chat(sim, token, "[user]: hi").status_code == 429
    assert chat(sim, token, "[user]: hi").status_code == 503
    assert chat(sim, token, "[user]: hi").status_code == 200
    assert chat(sim, token, "[user]: hi").status_code == 200


def test_scripted_outcomes_can_target_one_mode_through_the_control_api(sim):
    token = "sim-super-scripted2"
    r = call(sim, "POST", "/__sim/queue", json={"token": token, "outcomes": ["inband=line@0"], "endpoint": "chat", "mode": "expert"})
    assert r.status_code == 200
    assert "error" not in lines(chat(sim, token, "[user]: hi", mode="fast"))[-1]
    assert lines(chat(sim, token, "[user]: hi", mode="expert"))[-1]["error"]["code"] == 8
    bad = call(sim, "POST", "/__sim/queue", json={"token": token, "outcomes": ["explode"]})
    assert bad.status_code == 400 and "explode" in bad.json()["error"]["message"]


def test_per_account_concurrency_limit_answers_429(sim):
    sim.sim.configure(max_concurrent_per_account=1)
    token = BASE + "~tokms=30"
    with httpx.Client(base_url=sim.url, timeout=10) as client:
        with client.stream("POST", CHAT, json={"message": "[user]: hi #sim:len=10", "modeId": "fast"},
                           headers=cookies(token)) as first:
            assert first.status_code == 200
            second = client.post(CHAT, json={"message": "[user]: hi", "modeId": "fast"}, headers=cookies(token))
            assert second.status_code == 429 and second.json()["error"]["code"] == 8
            first.read()
    assert chat(sim, token.split("~")[0] + "~tokms=0", "[user]: hi").status_code == 200
