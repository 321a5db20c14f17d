"""Length and stop parameters, n and logprobs, through the official SDKs on a live gateway + simulator."""
from __future__ import annotations

import anthropic
import openai
import pytest

from accounts.models import Account
from gateway.tests.api.conftest import wait_until
from gateway.translate.tokens import count_tokens

pytestmark = pytest.mark.django_db(transaction=True)

FAST = "grok-4.20-fast"
LONG = "Tell me a long story #sim:len=60"


def _answer(env, prompt: str) -> str:
    """The simulator's answer to `prompt` (the same prompt gives the same answer after a reset)."""
    text = env.openai().chat.completions.create(stream=False, model=FAST, messages=[{"role": "user", "content": prompt}])
    env.reset_simulator()
    return text.choices[0].message.content


def _stop_word(answer: str) -> tuple[str, str]:
    """A stop sequence from the middle of the answer, and the text before its first occurrence."""
    words = answer.split(" ")
    seq = " " + words[len(words) // 2]
    return seq, answer[:answer.index(seq)]


# --------------------------------------------------------------------------- max_tokens


def test_chat_stops_at_max_tokens_and_says_length(env):
    env.account("basic", "len")
    env.ready(FAST)
    client = env.openai()
    for param in ("max_tokens", "max_completion_tokens"):
        done = client.chat.completions.create(stream=False, model=FAST, messages=[{"role": "user", "content": LONG}],
                                              **{param: 3})
        assert done.choices[0].finish_reason == "length"
        assert 0 < done.usage.completion_tokens <= 3 and count_tokens(done.choices[0].message.content) <= 3
    chunks = list(client.chat.completions.create(stream=True, model=FAST, max_tokens=3,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": LONG}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert text == done.choices[0].message.content and chunks[-1].usage.completion_tokens <= 3


def test_responses_stop_at_max_output_tokens_as_incomplete(env):
    env.account("basic", "resplen")
    env.ready(FAST)
    client = env.openai()
    resp = client.responses.create(model=FAST, input=LONG, max_output_tokens=4, stream=False)
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    assert 0 < resp.usage.output_tokens <= 4 and resp.output_text
    events = list(client.responses.create(model=FAST, input=LONG, max_output_tokens=4, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert events[-1].response.output_text == resp.output_text
    assert [e.item.status for e in events if e.type == "response.output_item.done"] == ["incomplete"]


def test_anthropic_stops_at_max_tokens_with_stop_reason_max_tokens(env):
    env.account("basic", "anlen")
    env.ready(FAST)
    client = env.anthropic()
    body = {"model": FAST, "max_tokens": 5, "messages": [{"role": "user", "content": LONG}]}
    msg = client.messages.create(stream=False, **body)
    assert msg.stop_reason == "max_tokens" and 0 < msg.usage.output_tokens <= 5
    with client.messages.stream(**body) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and final.content[0].text == msg.content[0].text


def test_stopping_early_closes_the_upstream_stream_and_counts_as_success(env):
    token = env.account("super", "slowlen", "tokms=50")
    env.ready(FAST)
    done = env.openai().chat.completions.create(stream=True, model=FAST, max_tokens=2,
                                                messages=[{"role": "user", "content": "long #sim:len=400"}])
    assert [c.choices[0].finish_reason for c in done][-1] == "length"
    # the 400-token answer takes 20 s upstream; the gateway closed it after a few tokens
    wait_until(lambda: env.open_streams() == 0, timeout=5, what="upstream stream to close")
    assert env.chat_requests(token)[0]["completed"] is False
    row = wait_until(lambda: env.usage_rows(model=FAST), what="usage row")[0]
    assert row.status == "ok"
    account = wait_until(lambda: Account.objects.filter(id=env.account_ids[0], use_count=1).first(), what="the pool to record a use")
    assert account.fail_count == 0 and account.health == 1.0


# --------------------------------------------------------------------------- stop sequences


def test_chat_cuts_at_the_first_stop_sequence(env):
    env.account("basic", "stop")
    env.ready(FAST)
    seq, before = _stop_word(_answer(env, LONG))
    client = env.openai()
    done = client.chat.completions.create(stream=False, model=FAST, stop=["\u2603 never", seq],
                                          messages=[{"role": "user", "content": LONG}])
    assert done.choices[0].message.content == before and done.choices[0].finish_reason == "stop"
    env.reset_simulator()
    chunks = list(client.chat.completions.create(stream=True, model=FAST, stop=seq,
                                                 messages=[{"role": "user", "content": LONG}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == before
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_anthropic_cuts_at_a_stop_sequence_and_names_it(env):
    env.account("basic", "anstop")
    env.ready(FAST)
    seq, before = _stop_word(_answer(env, LONG))
    client = env.anthropic()
    body = {"model": FAST, "max_tokens": 1000, "stop_sequences": [seq], "messages": [{"role": "user", "content": LONG}]}
    msg = client.messages.create(stream=False, **body)
    assert (msg.stop_reason, msg.stop_sequence, msg.content[0].text) == ("stop_sequence", seq, before)
    env.reset_simulator()
    with client.messages.stream(**body) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == before and (final.stop_reason, final.stop_sequence) == ("stop_sequence", seq)


def test_more_than_four_chat_stop_sequences_are_refused(env):
    env.account("basic", "stop5")
    env.ready(FAST)
    with pytest.raises(openai.BadRequestError) as info:
        env.openai().chat.completions.create(stream=False, model=FAST, stop=["a", "b", "c", "d", "e"],
                                             messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["param"] == "stop"


# --------------------------------------------------------------------------- n and logprobs


@pytest.mark.parametrize("extra,param", [({"n": 2}, "n"), ({"logprobs": True}, "logprobs"),
                                         ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
                                         ({"top_logprobs": 2}, "top_logprobs")])
def test_chat_refuses_what_it_cannot_honour_naming_the_parameter(env, extra, param):
    env.account("basic", "refuse")
    env.ready(FAST)
    with pytest.raises(openai.BadRequestError) as info:
        env.openai().chat.completions.create(stream=False, model=FAST, messages=[{"role": "user", "content": "hi"}],
                                             **extra)
    assert info.value.status_code == 400 and info.value.body["param"] == param and param in info.value.message
    assert env.chat_requests() == [], "nothing was sent upstream"


def test_responses_refuse_top_logprobs_naming_it(env):
    env.account("basic", "resplogp")
    env.ready(FAST)
    with pytest.raises(openai.BadRequestError) as info:
        env.openai().responses.create(model=FAST, input="hi", top_logprobs=2, stream=False)
    assert info.value.body["param"] == "top_logprobs"


def test_n_of_one_and_logprobs_false_are_accepted(env):
    env.account("basic", "n1")
    env.ready(FAST)
    done = env.openai().chat.completions.create(stream=False, model=FAST, n=1, logprobs=False,
                                                messages=[{"role": "user", "content": "hi"}])
    assert len(done.choices) == 1


def test_anthropic_system_messages_inside_messages_reach_the_prompt(env):
    env.account("basic", "midsys")
    env.ready(FAST)
    msg = env.anthropic().messages.create(
        stream=False, model=FAST, max_tokens=100,
        messages=[{"role": "user", "content": "hello"}, {"role": "system", "content": "Answer in French."}])
    assert msg.content[0].text
    assert env.chat_requests()[0]["body"]["message"].endswith("[user]: hello\n\n[system]: Answer in French.")
    with pytest.raises(anthropic.BadRequestError) as info:
        env.anthropic().messages.create(stream=False, model=FAST, max_tokens=100,
                                        messages=[{"role": "tool", "content": "x"}])
    assert info.value.body == {"type": "error", "error": {"type": "invalid_request_error", "message": (
        'messages: Unexpected role "tool". Allowed roles are "user", "assistant" or "system" (instructions that '
        'apply from that point of the conversation). (request id: ' + info.value.response.headers["x-request-id"] + ')')}}
