"""The Imagine WebSocket of the simulator with the `websockets` client on a real socket."""
from __future__ import annotations

import base64
import io
import json
import time

import httpx
import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

TOKEN = "sim-super-img1"


def _open(sim, token=TOKEN, **kwargs):
    return connect(f"{sim.ws_url}/ws/imagine/listen",
                   additional_headers={"Cookie": f"sso={token}; sso-rw={token}", "Origin": sim.url}, **kwargs)


def _round(ws, text="A cat floating in space", **props):
    ws.send(json.dumps({"type": "conversation.item.create", "timestamp": 1760000000000,
                        "item": {"type": "message", "content": [{"type": "reset"}]}}))
    properties = {"section_count": 0, "is_kids_mode": False, "enable_nsfw": False, "skip_upsampler": False,
                  "enable_side_by_side": True, "is_initial": False, "aspect_ratio": "1:1", "enable_pro": False, **props}
    ws.send(json.dumps({"type": "conversation.item.create", "timestamp": 1760000000123,
                        "item": {"type": "message", "content": [{"requestId": "5f0c0000-0000-4000-8000-000000000000",
                                                                 "text": text, "type": "input_text", "properties": properties}]}}))


def _collect(ws, slots):
    frames = []
    done = 0
    while done < slots:
        frame = json.loads(ws.recv(timeout=5))
        frames.append(frame)
        if frame.get("current_status") == "completed":
            done += 1
        if frame.get("type") == "error":
            break
    return frames


@pytest.mark.parametrize("props, slots", [({}, 6), ({"enable_pro": True}, 4), ({"num_generations": 2}, 2)])
def test_a_round_emits_start_previews_finals_and_completed_per_slot(sim, props, slots):
    with _open(sim) as ws:
        _round(ws, aspect_ratio="2:3", **props)
        frames = _collect(ws, slots)
    starts = [f for f in frames if f.get("current_status") == "start_stage"]
    assert len(starts) == slots and [s["order"] for s in starts] == list(range(slots))
    assert all((s["width"], s["height"]) == (1024, 1536) for s in starts)
    images = [f for f in frames if f["type"] == "image"]
    previews = [f for f in images if f["percentage_complete"] < 100]
    finals = [f for f in images if f["percentage_complete"] == 100]
    assert len(finals) == slots and previews
    for f in finals:
        assert f["url"].startswith(sim.url + "/imagine-public/images/") and f["url"].endswith(".jpg")
        Image.open(io.BytesIO(base64.b64decode(f["blob"]))).load()
        public = httpx.get(f["url"])  # no credentials needed on the public role
        assert public.status_code == 200 and public.content == base64.b64decode(f["blob"])
    completed = [f for f in frames if f.get("current_status") == "completed"]
    assert all(c["moderated"] is False and c["r_rated"] is False for c in completed)
    product = "imagePro" if props.get("enable_pro") else "image"
    assert sim.sim.quotas(TOKEN)["imagine"][product]["remaining"] == (49 if product == "imagePro" else 99)


def test_several_rounds_on_one_socket_and_server_close_knob(sim):
    with _open(sim) as ws:
        _round(ws, num_generations=1)
        first = _collect(ws, 1)
        _round(ws, num_generations=1)
        second = _collect(ws, 1)
    assert first[0]["image_id"] != second[0]["image_id"]
    sim.sim.configure(imagine_close_after_round=True)
    with _open(sim) as ws:
        _round(ws, num_generations=1)
        _collect(ws, 1)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_moderation_string_percentages_and_ping(sim):
    sim.sim.configure(imagine_percent_strings=True, imagine_moderated_orders=[1])
    with _open(sim) as ws:
        ws.send(json.dumps({"type": "ping", "timestamp": 1}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
        ws.ping().wait(timeout=5)  # protocol-level ping answered too
        _round(ws, num_generations=2)
        frames = _collect(ws, 2)
    assert all(isinstance(f["percentage_complete"], str) for f in frames if f["type"] == "image")
    completed = {f["order"]: f["moderated"] for f in frames if f.get("current_status") == "completed"}
    assert completed == {0: False, 1: True}
    with _open(sim, TOKEN + "~moderate") as ws:
        _round(ws, num_generations=2)
        assert all(f["moderated"] for f in _collect(ws, 2) if f.get("current_status") == "completed")


def test_exhausted_image_quota_sends_the_rate_limit_error_frame(sim):
    sim.sim.set_quota(TOKEN, "image", remaining=0)
    with _open(sim) as ws:
        _round(ws)
        assert json.loads(ws.recv(timeout=5)) == {"type": "error", "err_code": "rate_limit_exceeded",
                                                  "err_msg": "Image rate limit exceeded"}


@pytest.mark.parametrize("token, status", [
    ("sim-super-x~expired", 401), ("sim-super-x~blocked", 401), ("sim-super-x~cf", 403), ("sim-super-x~rl", 429),
])
def test_handshake_refusals_carry_the_status(sim, token, status):
    with pytest.raises(InvalidStatus) as exc:
        _open(sim, token)
    assert exc.value.response.status_code == status
    if status == 403:
        assert b"Just a moment..." in exc.value.response.body


def test_handshake_refused_with_429_when_all_image_quota_is_gone(sim):
    sim.sim.set_quota(TOKEN, "image", remaining=0)
    sim.sim.set_quota(TOKEN, "imagePro", remaining=0)
    with pytest.raises(InvalidStatus) as exc:
        _open(sim)
    assert exc.value.response.status_code == 429


def test_faults_abrupt_close_malformed_frame_and_stall(sim):
    with _open(sim, TOKEN + "~drop@2") as ws:
        _round(ws, num_generations=2)
        got = []
        with pytest.raises(ConnectionClosedError):
            while True:
                got.append(json.loads(ws.recv(timeout=5)))
    assert len([f for f in got if f["type"] == "image"]) == 2
    with _open(sim, TOKEN + "~malformed@0") as ws:
        _round(ws, num_generations=1)
        raws = [ws.recv(timeout=5) for _ in range(2)]
    with pytest.raises(ValueError):
        json.loads(raws[1])
    with _open(sim, TOKEN + "~stall@1=300") as ws:
        _round(ws, num_generations=1, enable_pro=False)
        arrivals = []
        for _ in range(4):
            frame = json.loads(ws.recv(timeout=5))
            if frame["type"] == "image":
                arrivals.append(time.monotonic())
    assert arrivals[1] - arrivals[0] >= 0.25


def test_frames_are_deterministic_for_a_fixed_seed(sim):
    def run():
        with _open(sim) as ws:
            _round(ws, num_generations=2)
            return _collect(ws, 2)
    first = run()
    sim.reset()
    assert run() == first


def test_unknown_websocket_path_is_refused(sim):
    with pytest.raises(InvalidStatus) as exc:
        connect(f"{sim.ws_url}/ws/other")
    assert exc.value.response.status_code == 404
