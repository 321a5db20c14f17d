"""The in-process MockTransport, the token grammar, pacing plans, generated schema values and media bytes."""
from __future__ import annotations

import io
import json
import time

import httpx2
import pytest
from PIL import Image

from grokweb.simulator import Simulator, media
from grokweb.simulator.chat import ChatContext, plan_chat
from grokweb.simulator.content import directive_text, parse_prompt, tool_calls_for, value_for
from grokweb.simulator.tokens import Scenario, TokenError, cookie_safe, parse_token

COOKIE = {"Cookie": "sso=sim-super-mt; sso-rw=sim-super-mt"}


async def test_mock_transport_streams_lines_as_separate_chunks(sim_transport):
    async with httpx2.AsyncClient(transport=sim_transport, base_url="http://sim.test") as client:
        async with client.stream("POST", "/rest/app-chat/conversations/new", headers=COOKIE,
                                 json={"message": "[user]: hi #sim:len=5", "modeId": "fast"}) as resp:
            chunks = [c async for c in resp.aiter_raw()]
    assert resp.status_code == 200
    assert len(chunks) > 8 and all(c.count(b"\n") == 1 for c in chunks)
    objs = [json.loads(c) for c in chunks]
    assert "modelResponse" in objs[-2]["result"]["response"]
    assert sim_transport.sim.requests(endpoint="chat")[-1]["completed"] is True


async def test_mock_transport_keeps_chunk_timing_and_surfaces_drops(sim_transport):
    async with httpx2.AsyncClient(transport=sim_transport, base_url="http://sim.test") as client:
        headers = {"Cookie": "sso=sim-super-mt~stall@1=250; sso-rw=sim-super-mt~stall@1=250"}
        arrivals = []
        async with client.stream("POST", "/rest/app-chat/conversations/new", headers=headers,
                                 json={"message": "[user]: hi #sim:len=3", "modeId": "fast"}) as resp:
            async for line in resp.aiter_lines():
                if '"messageTag":"final"' in line:
                    arrivals.append(time.monotonic())
        assert arrivals[1] - arrivals[0] >= 0.2
        headers = {"Cookie": "sso=sim-super-mt~drop@1; sso-rw=sim-super-mt~drop@1"}
        with pytest.raises(httpx2.ReadError):
            async with client.stream("POST", "/rest/app-chat/conversations/new", headers=headers,
                                     json={"message": "[user]: hi", "modeId": "fast"}) as resp:
                async for _ in resp.aiter_lines():
                    pass


async def test_mock_transport_closing_early_releases_the_account_slot(sim_transport):
    sim_transport.sim.configure(max_concurrent_per_account=1)
    async with httpx2.AsyncClient(transport=sim_transport, base_url="http://sim.test") as client:
        async with client.stream("POST", "/rest/app-chat/conversations/new", headers=COOKIE,
                                 json={"message": "[user]: hi", "modeId": "fast"}) as resp:
            assert resp.status_code == 200
        assert sim_transport.sim.inflight["sim-super-mt"] == 0
        again = await client.post("/rest/app-chat/conversations/new", headers=COOKIE, json={"message": "hi", "modeId": "fast"})
        assert again.status_code == 200


async def test_mock_transport_serves_downloads_with_the_slow_download_knob(sim_transport):
    sim_transport.sim.configure(download_delay_ms=1)
    async with httpx2.AsyncClient(transport=sim_transport, base_url="http://sim.test") as client:
        r = await client.post("/rest/app-chat/conversations/new", headers=COOKIE,
                              json={"message": "Drawing: a boat", "modeId": "fast"})
        url = [json.loads(line) for line in r.text.splitlines()][-2]["result"]["response"]["modelResponse"]["generatedImageUrls"][0]
        img = await client.get("/" + url, headers=COOKIE)
    assert img.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(img.content)).size == (64, 64)


def test_token_grammar_parses_every_directive():
    sc = parse_token("sim-heavy-acct_7~quota=5~window=60~inband=response@3~drop@9~truncate@8~malformed@2~stall@4=1500"
                     "~firstbyte=200~tokms=15~moderate~nomodelresponse~sse~http=502~rl")
    assert (sc.tier, sc.label) == ("heavy", "acct_7")
    assert (sc.quota, sc.window, sc.inband, sc.drop_at, sc.truncate_at, sc.malformed_at, sc.stall) == (
        5, 60, ("response", 3), 9, 8, 2, (4, 1500))
    assert (sc.firstbyte_ms, sc.tok_ms, sc.http_status) == (200, 15, 502)
    assert {"moderate", "nomodelresponse", "sse", "rl"} <= sc.flags
    assert cookie_safe("sim-heavy-acct_7~stall@4=1500~inband=line@0")
    for bad in ("sim-gold-x", "sim-super-", "sim-super-x~warp", "sim-super-x~inband=page@1", "sim-super-x~quota=-1"):
        with pytest.raises(TokenError):
            parse_token(bad)
    assert parse_token("opaque", non_sim_policy="basic") == Scenario(tier="basic", label="opaque", is_sim=False)
    assert parse_token("opaque", non_sim_policy="reject") is None


def _plan(pace: float, message: str = "[user]: hi #sim:len=5") -> list:
    sim = Simulator(seed=3, pace=pace, time_scale=0)
    ctx = ChatContext(sim=sim, token="sim-super-p", scenario=Scenario(tier="super"), request_no=1,
                      payload={"message": message}, mode="expert", user_id="u")
    return plan_chat(ctx)


def test_pace_scales_every_delay_linearly_and_zero_means_none():
    assert not [i for i in _plan(0.0) if i[0] == "sleep"]
    one = [i[1] for i in _plan(1.0) if i[0] == "sleep"]
    two = [i[1] for i in _plan(2.0) if i[0] == "sleep"]
    assert 0.3 <= one[0] <= 0.8  # realistic first byte
    assert two == pytest.approx([2 * d for d in one])
    assert 2.0 <= sum(one) <= 10.0  # an expert thinking phase of a few seconds plus the answer


def test_answer_length_and_characters_per_token_knobs():
    sim = Simulator(seed=3, time_scale=0, answer_tokens=12, chars_per_token=4)
    ctx = ChatContext(sim=sim, token="t", scenario=Scenario(), request_no=1, payload={"message": "[user]: hi"},
                      mode="fast", user_id="u")
    toks = [i[1]["result"]["response"]["token"] for i in plan_chat(ctx)
            if i[0] == "line" and i[1].get("result", {}).get("response", {}).get("messageTag") == "final"]
    assert len(toks) == 12 and max(len(t) for t in toks) <= 4


def test_schema_values_follow_types_enums_bounds_and_nesting():
    schema = {"type": "object", "properties": {
        "s": {"type": "string", "maxLength": 4}, "e": {"enum": ["x", "y"]}, "i": {"type": "integer", "minimum": 5},
        "n": {"type": ["number", "null"]}, "b": {"type": "boolean"}, "d": {"type": "string", "format": "date"},
        "o": {"type": "object", "properties": {"k": {"type": "array", "items": {"type": "integer"}, "minItems": 2}}},
        "c": {"const": 7}, "a": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}
    v = value_for(schema, "root")
    assert len(v["s"]) <= 4 and v["e"] == "x" and v["i"] == 5 and v["n"] == 1 and isinstance(v["n"], int)
    assert v["b"] is True and v["d"] == "2026-01-01" and v["o"]["k"] == [1, 1] and v["c"] == 7 and isinstance(v["a"], str)
    assert value_for({"type": "number", "minimum": 0.5}, "x") == 0.5  # a fraction only where one is needed


def test_schema_values_fill_only_the_required_properties_when_listed():
    # Codex CLI's exec_command, abridged: placeholders in the optional shell/workdir would break the call
    schema = {"type": "object", "required": ["cmd"], "properties": {
        "cmd": {"type": "string"}, "workdir": {"type": "string"}, "yield_time_ms": {"type": "number"}}}
    assert value_for(schema, "root") == {"cmd": "example cmd"}


def test_scripted_tool_arguments_and_answers_are_percent_decoded():
    p = parse_prompt('[system]: Tool: exec_command\nParameters: {"type":"object","required":["cmd","n"],'
                     '"properties":{"cmd":{"type":"string"},"n":{"type":"integer"}}}\n\n'
                     '[user]: run it #sim:tool=exec_command #sim:args={"cmd":"echo%20ok%23"}')
    assert tool_calls_for(p) == [("exec_command", {"cmd": "echo ok#", "n": 1})]
    assert directive_text(parse_prompt("[user]: #sim:say=a%0A%60b%20c"), "say") == "a\n`b c"


def test_prompt_directives_come_from_the_last_block_only():
    p = parse_prompt("[system]: Tool: f\nParameters: {\"type\":\"object\"}\n\n[user]: a #sim:think\n\n[assistant]: ok\n\n[user]: b #sim:len=3")
    assert p.directives == {"len": "3"} and p.tools == {"f": {"type": "object"}} and p.last_text.startswith("b")


def test_media_bytes_decode_with_standard_decoders():
    for data, fmt, size in ((media.jpeg_bytes("a", 40, 24), "JPEG", (40, 24)), (media.png_bytes("b", 9, 7), "PNG", (9, 7))):
        im = Image.open(io.BytesIO(data))
        im.load()
        assert (im.format, im.size) == (fmt, size)
        assert media.image_size(data)[1:] == size
    mp4 = media.mp4_bytes("v")
    top = media.mp4_boxes(mp4)
    assert [b[0] for b in top] == [b"ftyp", b"mdat", b"moov"]
    kind, off, size = top[2]
    assert [b[0] for b in media.mp4_boxes(mp4, off + 8, off + size)] == [b"mvhd", b"trak"]
    # the first sample (chunk offset from stco) is itself a decodable JPEG frame
    mdat_off = top[1][1] + 8
    Image.open(io.BytesIO(mp4[mdat_off:])).load()
    flac = media.flac_bytes()
    assert flac[:4] == b"fLaC" and flac[4] == 0x80 and int.from_bytes(flac[5:8], "big") == 34


def test_prompt_directives_skip_system_blocks_after_the_last_turn():
    # Claude Code appends a mid-conversation system message after the user's turn.
    p = parse_prompt("[system]: top\n\n[user]: b #sim:len=3\n\n[system]: # Environment\nplatform linux")
    assert p.directives == {"len": "3"} and p.last_role == "user" and p.last_text == "b #sim:len=3"
