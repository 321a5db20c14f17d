"""Stored responses (gateway/stored_responses.py) through the official `openai` SDK against `serve`:
GET / DELETE /v1/responses/{id}, /input_items, ownership, `previous_response_id` chaining."""
from __future__ import annotations

import openai
import pytest
from openai.types.responses import Response, ResponseItem
from pydantic import TypeAdapter

from gateway.models import StoredResponse
from gateway.tests.api.test_responses import FAST, WEATHER, _raw_events

pytestmark = pytest.mark.django_db(transaction=True)

ITEM = TypeAdapter(ResponseItem)


def _error(exc: openai.APIStatusError) -> dict:
    return exc.response.json()["error"]


def test_a_stored_response_is_retrieved_whole(env):
    env.account("basic", "sget")
    env.ready(FAST)
    client = env.openai()
    created = client.responses.create(stream=False, model=FAST, input="Tell me about kites", metadata={"a": "b"})
    got = client.responses.retrieve(created.id)
    assert got.model_dump() == created.model_dump()
    raw = env.http().get(f"/v1/responses/{created.id}", headers={"Authorization": f"Bearer {env.key}"}).json()
    Response.model_validate(raw, strict=True)
    assert set(Response.model_fields) <= set(raw) and raw["store"] is True


def test_a_streamed_response_is_stored_when_its_stream_ends(env):
    env.account("basic", "sstr")
    env.ready(FAST)
    events = _raw_events(env, {"model": FAST, "input": "Rivers please"})
    final = events[-1]["response"]
    got = env.openai().responses.retrieve(final["id"])
    assert got.output_text and got.output_text == final["output"][0]["content"][0]["text"]


def test_store_false_is_echoed_and_keeps_nothing(env):
    env.account("basic", "snos")
    env.ready(FAST)
    client = env.openai()
    resp = client.responses.create(stream=False, model=FAST, input="hi", store=False)
    assert resp.store is False
    assert not StoredResponse.objects.filter(id=resp.id).exists()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)


def test_input_items_are_listed_and_paged_like_openai_lists(env):
    env.account("basic", "sitems")
    env.ready(FAST)
    client = env.openai()
    sent = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
            {"role": "user", "content": [{"type": "input_text", "text": "three"}]}]
    resp = client.responses.create(stream=False, model=FAST, input=sent, instructions="Be brief.")
    page = client.responses.input_items.list(resp.id)  # default order: newest first
    texts = [item.content[0].text for item in page.data]
    assert texts == ["three", "two", "one"] and page.has_more is False
    assert page.first_id == page.data[0].id and page.last_id == page.data[-1].id
    for item in page.data:
        ITEM.validate_python(item.model_dump(exclude_unset=True))

    first = client.responses.input_items.list(resp.id, limit=2, order="asc")
    assert [i.content[0].text for i in first.data] == ["one", "two"] and first.has_more is True
    rest = client.responses.input_items.list(resp.id, limit=2, order="asc", after=first.last_id)
    assert [i.content[0].text for i in rest.data] == ["three"] and rest.has_more is False
    assert [i.content[0].text for i in client.responses.input_items.list(resp.id, limit=1, order="asc")] == \
        ["one", "two", "three"]  # the SDK's auto-pagination walks `after`

    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.input_items.list(resp.id, limit=0)
    assert _error(bad.value)["param"] == "limit"


def test_delete_answers_openais_deletion_object_and_the_response_is_gone(env):
    env.account("basic", "sdel")
    env.ready(FAST)
    client = env.openai()
    resp = client.responses.create(stream=False, model=FAST, input="hi")
    r = env.http().delete(f"/v1/responses/{resp.id}", headers={"Authorization": f"Bearer {env.key}"})
    assert r.status_code == 200 and r.json() == {"id": resp.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as gone:
        client.responses.retrieve(resp.id)
    assert _error(gone.value)["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(resp.id)


def test_another_keys_response_is_404(env):
    env.account("basic", "sown")
    env.ready(FAST)
    shared = env.openai().responses.create(stream=False, model=FAST, input="hi")  # app.api_key: no owner row
    app_client = env.openai()
    env.own_key()
    mine = env.openai().responses.create(stream=False, model=FAST, input="hello")
    assert env.openai().responses.retrieve(mine.id).id == mine.id
    for client, other in ((env.openai(), shared.id), (app_client, mine.id)):
        with pytest.raises(openai.NotFoundError) as exc:
            client.responses.retrieve(other)
        assert _error(exc.value)["message"] and _error(exc.value)["code"] == "not_found"
        with pytest.raises(openai.NotFoundError):
            client.responses.input_items.list(other)
        with pytest.raises(openai.NotFoundError):
            client.responses.delete(other)
        with pytest.raises(openai.BadRequestError) as chained:
            client.responses.create(stream=False, model=FAST, input="more", previous_response_id=other)
        assert _error(chained.value)["code"] == "previous_response_not_found"
    assert StoredResponse.objects.filter(id__in=[shared.id, mine.id]).count() == 2


def test_retrieve_refuses_a_replayed_stream(env):
    env.account("basic", "srs")
    env.ready(FAST)
    resp = env.openai().responses.create(stream=False, model=FAST, input="hi")
    r = env.http().get(f"/v1/responses/{resp.id}?stream=true", headers={"Authorization": f"Bearer {env.key}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"


def test_a_three_turn_chain_with_a_tool_call_gives_the_model_the_whole_history(env):
    token = env.account("basic", "chain")
    env.ready(FAST)
    client = env.openai()
    first = client.responses.create(stream=False, model=FAST, tools=[WEATHER],
                                    input="Weather in Oslo? #sim:tool=get_weather")
    call = next(o for o in first.output if o.type == "function_call")
    # the follow-up carries only the tool's output: the question and the call come from the chain
    second = client.responses.create(stream=False, model=FAST, tools=[WEATHER], previous_response_id=first.id,
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": '{"temp_c": 4}'}])
    assert second.previous_response_id == first.id and second.output_text
    seen = env.chat_requests(token)[-1]["body"]["message"]
    assert "Weather in Oslo?" in seen and call.call_id in seen and "get_weather" in seen and "temp_c" in seen

    third = list(client.responses.create(stream=True, model=FAST, previous_response_id=second.id,
                                         input="And what should I wear?"))
    assert third[-1].type == "response.completed" and third[-1].response.previous_response_id == second.id
    seen = env.chat_requests(token)[-1]["body"]["message"]
    order = [seen.index(part) for part in ("Weather in Oslo?", call.call_id, "temp_c", second.output_text[:40],
                                           "And what should I wear?")]
    assert order == sorted(order), "history must reach the model oldest first"


def test_instructions_of_earlier_responses_are_not_carried_over(env):
    token = env.account("basic", "chins")
    env.ready(FAST)
    client = env.openai()
    first = client.responses.create(stream=False, model=FAST, input="hi", instructions="Speak like a pirate.")
    client.responses.create(stream=False, model=FAST, input="again", instructions="Be terse.",
                            previous_response_id=first.id)
    seen = env.chat_requests(token)[-1]["body"]["message"]
    assert "Be terse." in seen and "pirate" not in seen and "hi" in seen and "again" in seen


@pytest.mark.parametrize("case", ["unknown", "deleted", "not_stored"])
def test_an_unusable_previous_response_id_is_openais_400_naming_it(env, case):
    env.account("basic", f"ch{case[:4]}")
    env.ready(FAST)
    client = env.openai()
    rid = "resp_doesnotexist"
    if case == "deleted":
        rid = client.responses.create(stream=False, model=FAST, input="hi").id
        client.responses.delete(rid)
    elif case == "not_stored":
        rid = client.responses.create(stream=False, model=FAST, input="hi", store=False).id
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(stream=False, model=FAST, input="more", previous_response_id=rid)
    err = _error(exc.value)
    # every error message ends with the request id (gateway/requestid.py)
    assert err.pop("message").startswith(f"Previous response with id '{rid}' not found. (request id: req_")
    assert err == {"type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}


IMAGE = "grok-imagine-image-lite"


def test_an_image_models_response_echoes_the_request_and_is_stored(env):
    env.account("basic", "simgr")
    env.ready(IMAGE)
    client = env.openai()
    created = client.responses.create(stream=False, model=IMAGE, input="a red apple", metadata={"k": "v"})
    raw = env.http().get(f"/v1/responses/{created.id}", headers={"Authorization": f"Bearer {env.key}"}).json()
    Response.model_validate(raw, strict=True)
    assert raw["metadata"] == {"k": "v"} and raw["store"] is True and raw["status"] == "completed"
    assert client.responses.retrieve(created.id).model_dump() == created.model_dump()
    follow = client.responses.create(stream=False, model=FAST, input="and a pear?", previous_response_id=created.id)
    assert follow.previous_response_id == created.id


def test_an_image_models_streamed_response_is_stored_when_its_stream_ends(env):
    env.account("basic", "simgs")
    env.ready(IMAGE)
    events = _raw_events(env, {"model": IMAGE, "input": "a blue boat", "metadata": {"k": "s"}})
    assert events[0]["type"] == "response.created" and events[0]["response"]["metadata"] == {"k": "s"}
    final = events[-1]["response"]
    got = env.openai().responses.retrieve(final["id"])
    assert got.status == "completed" and got.output_text == final["output"][-1]["content"][0]["text"]
