"""The image wall WebSocket consumer (channels WebsocketCommunicator) and the voice token endpoint,
against the simulator on a real socket with accounts leased from the pool."""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from grok2api.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.timeout(60)]

WAIT = 20  # seconds a single event may take (upper bound only; the simulator answers at once)


@pytest.fixture(autouse=True)
async def _close_db_connections():
    """Views and consumers use the database from asgiref's thread-sensitive thread: close its
    connection after each test (PostgreSQL refuses to drop a test database still in use)."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


@pytest.fixture
def upstream(sim, monkeypatch, set_config, pool_state):
    for name, value in sim.upstream_env().items():
        monkeypatch.setenv(name, value)
    # usage rows stay queued in memory: the ledger's writer thread would keep a database session
    # open past the test database's teardown (the ledger is tested with the chat API)
    monkeypatch.setenv("USAGE_FLUSHER", "0")
    set_config(app__webui_enabled="true", app__webui_key="")
    return sim


async def _socket(headers=None) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, "/webui/ws/imagine", headers=headers or [])
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    return comm


async def _until(comm, predicate, limit=200) -> list[dict]:
    seen = []
    for _ in range(limit):
        event = await comm.receive_json_from(timeout=WAIT)
        seen.append(event)
        if predicate(event):
            return seen
    raise AssertionError(f"no matching event in {seen}")


async def test_it_pushes_images_as_they_complete_and_pauses_without_demand(upstream, make_account):
    await sync_to_async(make_account)("sim-super-wall1", pool="super")
    comm = await _socket()
    await comm.send_json_to({"type": "start", "prompt": "a red fox in snow", "model": "standard", "aspect_ratio": "1:1",
                             "count": 2, "rounds": 2})
    events = await _until(comm, lambda e: e["type"] == "status" and e["status"] == "waiting")
    run_id = events[0]["run_id"]
    assert events[0] == {"type": "status", "status": "running", "run_id": run_id, "images": 0}
    images = [e for e in events if e["type"] == "image"]
    assert len(images) == 4  # the two rounds asked for, two images each
    assert [e["seq"] for e in images] == [1, 2, 3, 4]
    assert all(e["src"].startswith("data:image/") and e["run_id"] == run_id for e in images)
    assert images[0]["prompt"] == "a red fox in snow" and images[0]["aspect_ratio"] == "1:1"
    assert any(e["type"] == "progress" for e in events)
    # each image is sent before the round ends: the first image precedes the second round's progress
    assert events.index(images[0]) < events.index(images[2])
    ws_calls = upstream.sim.requests(endpoint="imagine-ws") or [r for r in upstream.sim.requests() if r["path"] == "/ws/imagine/listen"]
    assert ws_calls and all(r["token"] == "sim-super-wall1" for r in ws_calls)

    await comm.send_json_to({"type": "more"})
    events = await _until(comm, lambda e: e["type"] == "status" and e["status"] == "waiting")
    assert [e["seq"] for e in events if e["type"] == "image"] == [5, 6]
    await comm.send_json_to({"type": "stop"})
    stopped = await comm.receive_json_from(timeout=WAIT)
    assert stopped == {"type": "status", "status": "stopped", "run_id": run_id, "images": 6}
    await comm.disconnect()


async def test_a_start_without_rounds_spends_one_round_and_waits(upstream, make_account):
    """The reference relay sends no `rounds`: one round, then nothing until a `more`."""
    await sync_to_async(make_account)("sim-super-wall2", pool="super")
    comm = await _socket()
    await comm.send_json_to({"type": "start", "prompt": "a blue heron", "model": "standard", "count": 3})
    events = await _until(comm, lambda e: e["type"] == "status" and e["status"] == "waiting")
    assert [e["seq"] for e in events if e["type"] == "image"] == [1, 2, 3]
    assert events[-1]["images"] == 3
    rounds = [r for r in upstream.sim.requests() if r["path"] == "/ws/imagine/listen"]
    assert sum(len(r["rounds"]) for r in rounds) == 1
    await comm.send_json_to({"type": "stop"})
    await comm.disconnect()


async def test_stop_ends_a_running_round(upstream, make_account):
    account = await sync_to_async(make_account)("sim-super-slowwall~tokms=200", pool="super")
    upstream.sim.configure(pace=1.0)
    comm = await _socket()
    await comm.send_json_to({"type": "start", "prompt": "slow lighthouse", "model": "pro", "count": 4})
    await _until(comm, lambda e: e["type"] == "status" and e["status"] == "running")
    await _until(comm, lambda e: e["type"] == "progress")  # the upstream round is under way
    await comm.send_json_to({"type": "stop"})
    events = await _until(comm, lambda e: e["type"] == "status" and e["status"] == "stopped")
    assert not [e for e in events if e["type"] == "image"]
    # the round was cancelled, not finished: the account's in-flight slot is free again at once
    from accounts import lease as pool

    assert pool._local_inflight.get(account.id, 0) == 0
    await comm.disconnect()


@pytest.mark.parametrize("on_codes,retried", [("429,401,503", True), ("401,503", False)])
async def test_a_429_moves_the_wall_to_another_account_only_when_retry_on_codes_lists_it(upstream, make_account, set_config,
                                                                                      on_codes, retried):
    """accounts/attempt.py: the wall follows the operator's retry.on_codes like chat does."""
    set_config(retry__on_codes=on_codes, retry__max_retries=1)
    await sync_to_async(make_account)("sim-super-wallrl~rl", pool="super")  # the super pool comes first
    await sync_to_async(make_account)("sim-heavy-wallok", pool="heavy")
    comm = await _socket()
    await comm.send_json_to({"type": "start", "prompt": "a paper crane", "model": "standard", "count": 1})
    events = await _until(comm, lambda e: e["type"] == "status" and e["status"] in ("waiting", "failed"))
    handshakes = [r for r in upstream.sim.requests() if r["path"] == "/ws/imagine/listen"]
    if retried:
        assert events[-1]["status"] == "waiting" and len([e for e in events if e["type"] == "image"]) == 1
        assert [r["status"] for r in handshakes if r["token"] != "sim-heavy-wallok"] == [429]
        assert [r["token"] for r in handshakes if r["token"] == "sim-heavy-wallok"] == ["sim-heavy-wallok"]
    else:
        error = next(e for e in events if e["type"] == "error")
        assert events[-1]["status"] == "failed" and error["status"] == 429
        assert [r["status"] for r in handshakes] == [429]
    await comm.send_json_to({"type": "stop"})
    await comm.disconnect()


async def test_it_names_the_bad_field_of_a_start_message(upstream):
    comm = await _socket()
    cases = [
        ({"type": "start", "prompt": "   "}, "prompt", "Enter a prompt"),
        ({"type": "start", "prompt": "x" * 8001}, "prompt", "8001"),
        ({"type": "start", "prompt": "cat", "model": "ultra"}, "model", "lite, standard, pro"),
        ({"type": "start", "prompt": "cat", "aspect_ratio": "5:1"}, "aspect_ratio", "aspect_ratio"),
        ({"type": "start", "prompt": "cat", "count": 9}, "count", "1 to 6"),
        ({"type": "start", "prompt": "cat", "rounds": 0}, "rounds", "1 to 10"),
        ({"type": "start", "prompt": "cat", "rounds": "all"}, "rounds", "1 to 10"),
        ({"type": "dance"}, "type", "expected start"),
    ]
    for message, param, fragment in cases:
        await comm.send_json_to(message)
        event = await comm.receive_json_from(timeout=WAIT)
        assert event["type"] == "error" and event["param"] == param, event
        assert fragment in event["message"]
    await comm.send_to(text_data="not json")
    event = await comm.receive_json_from(timeout=WAIT)
    assert event["param"] == "type"
    await comm.disconnect()


async def test_no_account_gives_an_error_event_naming_the_pool(upstream):
    comm = await _socket()
    await comm.send_json_to({"type": "start", "prompt": "a tree", "model": "pro", "count": 1})
    events = await _until(comm, lambda e: e["type"] == "status" and e["status"] == "failed")
    error = next(e for e in events if e["type"] == "error")
    assert error["status"] == 429 and "No available account" in error["message"]
    await comm.disconnect()


async def test_lite_images_arrive_from_the_chat_drawing_path(upstream, make_account):
    await sync_to_async(make_account)("sim-basic-lite1", pool="basic")
    comm = await _socket()
    await comm.send_json_to({"type": "start", "prompt": "a small boat", "model": "lite", "count": 2, "rounds": 2})
    events = await _until(comm, lambda e: e["type"] == "status" and e["status"] in ("waiting", "failed"))
    images = [e for e in events if e["type"] == "image"]
    assert len(images) == 4, events
    assert all(e["model"] == "lite" and e["src"].startswith("data:image/") for e in images)
    await comm.send_json_to({"type": "stop"})
    await comm.disconnect()


async def test_a_socket_without_a_session_is_told_to_sign_in(upstream, set_config):
    set_config(app__webui_key="wall-key")
    comm = await _socket()
    event = await comm.receive_json_from(timeout=WAIT)
    assert event["code"] == "webui_session_required" and "Sign in again" in event["message"]
    closed = await comm.receive_output(timeout=WAIT)
    assert closed == {"type": "websocket.close", "code": 4401}


async def test_a_signed_in_session_may_open_the_socket(upstream, set_config, make_account):
    set_config(app__webui_key="wall-key")
    client = AsyncClient()
    response = await client.post("/webui/login", {"key": "wall-key"})
    assert response.status_code == 302
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    comm = await _socket(headers=[(b"cookie", cookie)])
    await comm.send_json_to({"type": "start", "prompt": "", "model": "lite"})
    event = await comm.receive_json_from(timeout=WAIT)
    assert event["param"] == "prompt"  # past authentication: the start message itself is checked
    await comm.disconnect()


async def test_a_foreign_origin_is_refused(upstream):
    comm = await _socket(headers=[(b"origin", b"https://evil.example"), (b"host", b"testserver")])
    event = await comm.receive_json_from(timeout=WAIT)
    assert event["code"] == "forbidden_origin"
    assert (await comm.receive_output(timeout=WAIT))["code"] == 4403


async def test_disabled_pages_close_the_socket(upstream, set_config):
    set_config(app__webui_enabled="false")
    comm = await _socket()
    assert (await comm.receive_json_from(timeout=WAIT))["code"] == "webui_disabled"
    assert (await comm.receive_output(timeout=WAIT))["code"] == 4404


# ------------------------------------------------------------------ voice token


async def test_voice_token_comes_from_a_super_account(upstream, make_account):
    await sync_to_async(make_account)("sim-basic-novoice", pool="basic")
    await sync_to_async(make_account)("sim-super-voice1", pool="super")
    response = await AsyncClient().post("/webui/api/voice/token", {"voice": "eve", "speed": 1.2}, content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token"].startswith("lk-") and body["url"] == upstream.sim.livekit_url()
    assert body["room_name"] and body["participant_name"]
    calls = [r for r in upstream.sim.requests() if r["path"] == "/rest/livekit/tokens"]
    assert [r["token"] for r in calls] == ["sim-super-voice1"]
    assert '"voice":"eve"' in calls[0]["body"]["sessionPayload"].replace(" ", "")


async def test_voice_token_without_an_eligible_account_says_so(upstream, make_account):
    await sync_to_async(make_account)("sim-basic-only", pool="basic")
    response = await AsyncClient().post("/webui/api/voice/token", {}, content_type="application/json")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "no_eligible_account" and "super or heavy" in error["message"]


async def test_voice_token_refused_upstream_is_reported(upstream, make_account):
    await sync_to_async(make_account)("sim-super-gone~expired", pool="super")
    response = await AsyncClient().post("/webui/api/voice/token", {}, content_type="application/json")
    assert response.status_code in (401, 403, 502), response.content
    assert response.json()["error"]["message"]


@pytest.mark.parametrize("on_codes,retried", [("429,401,503", True), ("401,503", False)])
async def test_a_429_moves_the_voice_token_to_another_account_only_when_retry_on_codes_lists_it(upstream, make_account,
                                                                                             set_config, on_codes, retried):
    """accounts/attempt.py: the voice token follows the operator's retry.on_codes like chat does."""
    set_config(retry__on_codes=on_codes, retry__max_retries=1)
    await sync_to_async(make_account)("sim-super-voicerl~rl", pool="super")  # the super pool comes first
    await sync_to_async(make_account)("sim-heavy-voiceok", pool="heavy")
    response = await AsyncClient().post("/webui/api/voice/token", {}, content_type="application/json")
    calls = [r for r in upstream.sim.requests() if r["path"] == "/rest/livekit/tokens"]
    if retried:
        assert response.status_code == 200, response.content
        assert [r["status"] for r in calls] == [429, 200] and calls[1]["token"] == "sim-heavy-voiceok"
    else:
        assert response.status_code == 429, response.content
        assert [r["status"] for r in calls] == [429]
