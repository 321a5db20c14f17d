"""Per-key limits, rate-limit headers and request ids, with the official SDKs against `serve`.

The session's gateway has no REDIS_URL, so these run on its per-process counters (one worker);
the shared Redis counters are proven across two processes in gateway/tests/test_limits_multiprocess.py.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import anthropic
import httpx
import openai
import pytest

from gateway.models import ApiKey, UsageRecord

from .conftest import bump, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FAST = "grok-4.20-fast"
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module", autouse=True)
def _fresh_key_counters(django_db_setup):
    """With REDIS_URL the server counts in Redis; ids restart with every test database, so drop
    what an earlier run left under this database's prefix."""
    from django.conf import settings

    if not getattr(settings, "REDIS_URL", None):
        return
    import redis

    from gateway.limits import _RedisCounters

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=_RedisCounters(settings.REDIS_URL).prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _limit(env, **fields) -> None:
    """Give the test's key limits and wait until the server applies them: its answers then carry
    the per-minute limit headers (a test of a budget or of concurrency sets a high per-minute
    request limit too, as the marker)."""
    ApiKey.objects.filter(pk=env.key_row.pk).update(**fields)
    bump("api_keys")
    if fields.get("requests_per_minute"):
        header, value = "x-ratelimit-limit-requests", str(fields["requests_per_minute"])
    else:
        header, value = "x-ratelimit-limit-tokens", str(fields["tokens_per_minute"])

    def applied():
        r = httpx.get(env.base + "/v1/models", headers={"Authorization": f"Bearer {env.key}"}, timeout=10)
        return r.headers.get(header) == value

    wait_until(applied, what=f"the key limits {fields} to apply")


def _remaining(response) -> int:
    return int(response.headers["x-ratelimit-remaining-requests"])


def test_it_refuses_requests_over_the_per_minute_limit_with_an_openai_429_naming_it(env):
    env.own_key()
    env.account("basic", "rpm")
    env.ready(FAST)
    _limit(env, requests_per_minute=5)
    client = env.openai()
    raw = client.chat.completions.with_raw_response.create(model=FAST, messages=HELLO)
    assert raw.headers["x-ratelimit-limit-requests"] == "5"
    left = _remaining(raw)
    assert 0 <= left < 5
    assert re.fullmatch(r"(\d+m)?\d+s", raw.headers["x-ratelimit-reset-requests"])
    assert "x-ratelimit-limit-tokens" not in raw.headers  # the key has no token limit
    assert raw.parse().choices[0].message.content
    for _ in range(left):
        assert _remaining(client.models.with_raw_response.list()) >= 0
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=FAST, messages=HELLO)
    err = info.value
    assert err.status_code == 429 and err.body["code"] == "rate_limit_exceeded" and err.body["type"] == "rate_limit_exceeded"
    request_id = err.response.headers["x-request-id"]
    assert err.body["message"] == f"requests per minute limit of 5 reached for this key (request id: {request_id})"
    assert 1 <= int(err.response.headers["retry-after"]) <= 60
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_it_answers_anthropic_rate_limit_headers_and_a_rate_limit_error_on_messages(env):
    env.own_key()
    env.account("basic", "arpm")
    env.ready(FAST)
    _limit(env, requests_per_minute=4)
    client = env.anthropic()
    raw = client.messages.with_raw_response.create(model=FAST, max_tokens=64, messages=HELLO)
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "4"
    left = int(raw.headers["anthropic-ratelimit-requests-remaining"])
    reset = datetime.fromisoformat(raw.headers["anthropic-ratelimit-requests-reset"].replace("Z", "+00:00"))
    assert datetime.now(timezone.utc) - timedelta(seconds=5) < reset <= datetime.now(timezone.utc) + timedelta(seconds=61)
    assert not [h for h in raw.headers if h.startswith("x-ratelimit-")]
    for _ in range(left):
        client.messages.count_tokens(model=FAST, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model=FAST, max_tokens=64, messages=HELLO)
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert info.value.body["error"]["message"].startswith("requests per minute limit of 4 reached for this key (request id: ")
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_it_counts_tokens_when_an_answer_ends_and_refuses_the_next_request_over_the_token_limit(env):
    env.own_key()
    env.account("basic", "tpm")
    env.ready(FAST)
    _limit(env, tokens_per_minute=1)
    client = env.openai()
    raw = client.chat.completions.with_raw_response.create(model=FAST, messages=HELLO)
    assert raw.headers["x-ratelimit-limit-tokens"] == "1"
    assert raw.parse().usage.total_tokens > 1  # admitted while under the limit; its tokens count now
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=FAST, messages=HELLO)
    assert info.value.body["message"].startswith("tokens per minute limit of 1 reached for this key")
    assert info.value.response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert "x-ratelimit-limit-requests" not in info.value.response.headers


def test_it_refuses_a_key_over_its_daily_token_budget(env):
    env.own_key()
    env.account("basic", "day")
    env.ready(FAST)
    _limit(env, daily_token_budget=1, requests_per_minute=1000)
    env.openai().chat.completions.create(model=FAST, messages=HELLO)
    with pytest.raises(openai.RateLimitError) as info:
        env.openai().chat.completions.create(model=FAST, messages=HELLO)
    assert info.value.body["message"].startswith("daily token budget of 1 reached for this key")
    # the rest of the UTC day, at most
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 86400


def test_it_holds_a_concurrency_slot_until_a_stream_ends(env):
    env.own_key()
    # heavy: tried first for this model. The stream pauses after its first token: still open when we look.
    env.account("heavy", "conc", "stall@2=20000")
    env.ready(FAST)
    _limit(env, max_concurrent_requests=1, requests_per_minute=1000)
    headers = {"Authorization": f"Bearer {env.key}"}
    body = {"model": FAST, "messages": [{"role": "user", "content": "Gardens #sim:len=25"}], "stream": True}
    with env.http() as http:
        with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as stream:
            assert stream.status_code == 200
            chunks = stream.iter_bytes()
            first = next(chunks)  # the stream is open
            busy = http.get("/v1/models", headers=headers)
            assert busy.status_code == 429, first
            assert busy.json()["error"]["message"].startswith("concurrent requests limit of 1 reached for this key")
        # the client closed the stream: its slot is free again
        wait_until(lambda: http.get("/v1/models", headers=headers).status_code == 200, what="the slot to be released")


def test_it_refuses_an_expired_key_with_a_401_saying_so(env):
    env.own_key()
    ApiKey.objects.filter(pk=env.key_row.pk).update(expires_at=datetime.now(timezone.utc) - timedelta(minutes=1))
    bump("api_keys")
    client = env.openai()

    def refused():
        try:
            client.models.list()
        except openai.AuthenticationError as exc:
            return exc
        return None

    err = wait_until(refused, what="the expiry to apply")
    assert err.status_code == 401 and "expired" in err.body["message"] and err.body["code"] == "expired_api_key"


def test_it_keeps_a_well_formed_client_request_id_and_records_it_in_the_ledger(env):
    env.own_key()
    env.account("basic", "rid")
    env.ready(FAST)
    raw = env.openai().chat.completions.with_raw_response.create(
        model=FAST, messages=HELLO, extra_headers={"x-request-id": "trace-42.a:b_c"})
    assert raw.headers["x-request-id"] == "trace-42.a:b_c"
    row = wait_until(lambda: UsageRecord.objects.filter(request_id="trace-42.a:b_c").first(), what="the usage row")
    assert row.api_key_id == env.key_row.pk and row.status == "ok"


def test_it_replaces_a_malformed_request_id_and_names_the_id_in_error_messages(env):
    env.own_key()
    with env.http() as http:
        r = http.get("/v1/models/not-a-model", headers={"Authorization": f"Bearer {env.key}", "x-request-id": "bad id!"})
        assert r.status_code == 404
        request_id = r.headers["x-request-id"]
        assert re.fullmatch(r"req_[0-9a-f]{32}", request_id)
        assert r.json()["error"]["message"].endswith(f"(request id: {request_id})")
        too_long = http.get("/v1/models", headers={"Authorization": f"Bearer {env.key}", "x-request-id": "a" * 129})
        assert too_long.headers["x-request-id"].startswith("req_")
        assert http.get("/healthz", headers={"x-request-id": "hc-1"}).headers["x-request-id"] == "hc-1"


def test_json_log_lines_carry_the_request_id_tokens_and_never_the_key(sim, gateway_factory):
    import json

    gateway = gateway_factory({**sim.upstream_env(), "GROK_APP_API_KEY": "sk-json-log-secret", "LOG_FORMAT": "json"})
    from .conftest import Env

    env = Env(gateway, sim)
    env.account("basic", "jsonlog")
    env.ready(FAST)
    env.openai().chat.completions.create(model=FAST, messages=HELLO, extra_headers={"x-request-id": "json-log-1"})
    with env.http() as http:
        with http.stream("POST", "/v1/chat/completions", headers={"Authorization": "Bearer sk-json-log-secret",
                                                                  "x-request-id": "json-log-2"},
                         json={"model": FAST, "messages": HELLO, "stream": True}) as stream:
            b"".join(stream.iter_bytes())

    def lines():
        found = {}
        for line in gateway.log().splitlines():
            if line.startswith("{") and '"request_id"' in line:
                entry = json.loads(line)
                found[entry["request_id"]] = entry
        return found if {"json-log-1", "json-log-2"} <= set(found) else None

    found = wait_until(lines, what="the request log lines")
    plain, streamed = found["json-log-1"], found["json-log-2"]
    assert plain["status"] == 200 and plain["model"] == FAST and plain["key"] == "app.api_key" and plain["stream"] is False
    assert plain["prompt_tokens"] > 0 and plain["completion_tokens"] > 0 and plain["account_id"] in env.account_ids
    assert streamed["stream"] is True and streamed["outcome"] == "ok" and streamed["completion_tokens"] > 0
    assert "sk-json-log-secret" not in gateway.log()
