"""/v1 streaming through a real `serve` process (uvicorn): SSE frames leave as the
upstream produces them, and a client that goes away cancels the upstream request.

The module's own `gateway_server` (started once) replaces the session one, so
the `env` fixture of conftest.py drives it with the official SDK like the other /v1 tests.
"""
from __future__ import annotations

import pytest

from grok2api.testing.fixtures import TEST_GATEWAY_KEY, GatewayFactory

from .conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FAST = "grok-4.20-fast"


@pytest.fixture(scope="module")
def gateway_server(request, django_db_setup, simulator_server, tmp_path_factory):
    factory = GatewayFactory(tmp_path_factory.mktemp("gateway-uvicorn"))
    gateway = factory({"GROK_APP_API_KEY": TEST_GATEWAY_KEY, **simulator_server.upstream_env()})
    assert "(uvicorn, 1 worker)" in gateway.log()
    yield gateway
    factory.stop_all()


def test_a_streamed_chat_reaches_the_sdk_chunk_by_chunk(env):
    env.account("super", "flush", "tokms=40")  # 40 ms per token: the answer takes ~1 s upstream
    env.ready(FAST)
    messages = [{"role": "user", "content": "Count slowly #sim:len=24"}]
    stream = env.openai().chat.completions.create(model=FAST, messages=messages, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            break
    # the first words are at the client while the upstream is still answering: nothing is buffered
    assert env.open_streams() == 1
    chunks.extend(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    env.reset_simulator()
    whole = env.openai().chat.completions.create(model=FAST, messages=messages, stream=False)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_a_client_disconnect_mid_stream_closes_the_upstream_request(env):
    env.account("super", "gone", "tokms=50")
    env.ready(FAST)
    with env.http().stream(
        "POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {env.key}"},
        json={"model": FAST, "stream": True, "messages": [{"role": "user", "content": "long #sim:len=400"}]},
    ) as r:
        it = r.iter_raw()
        next(it)
        next(it)
        assert env.open_streams() == 1
    # the simulator sees its stream closed long before the 20 s the answer would take
    wait_until(lambda: env.open_streams() == 0, timeout=5, what="upstream stream to close")
    row = wait_until(lambda: env.usage_rows(model=FAST), what="usage row")[0]
    assert row.status == "cancelled"
