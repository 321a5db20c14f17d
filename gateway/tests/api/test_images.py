"""POST /v1/images/generations and /v1/images/edits end to end: the official `openai` SDK against a
real `serve` process, the simulator on a real socket as grok.com (docs/upstream-protocol.md §6, §12.7)."""
from __future__ import annotations

import base64

import httpx
import openai
import pytest

from media.attachments import DEFAULT_ATTACHMENT_MAX_BYTES
from media.tests.e2e import image_ok, media_gateway, menv, tiny_png, wait_until  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

MODELS = [("grok-imagine-image-lite", "basic"), ("grok-imagine-image", "super"), ("grok-imagine-image-pro", "super")]


@pytest.mark.parametrize("model,tier", MODELS)
def test_it_generates_b64_images_that_decode_as_images(menv, model, tier):
    menv.account(tier, "img")
    menv.ready(model)
    result = menv.openai().images.generate(model=model, prompt="a red apple", n=2, response_format="b64_json")
    assert len(result.data) == 2
    for item in result.data:
        width, height = image_ok(base64.b64decode(item.b64_json))
        assert width > 0 and height > 0
    assert len({item.b64_json for item in result.data}) == 2


@pytest.mark.parametrize("model,tier", MODELS)
def test_it_returns_local_urls_built_from_app_url_that_download(menv, model, tier):
    menv.account(tier, "url")
    menv.ready(model)
    client = menv.openai()

    def applied():
        url = client.images.generate(model="grok-imagine-image-lite" if tier == "basic" else model, prompt="probe", n=1).data[0].url
        return url.startswith(menv.base + "/v1/files/image?id=")

    menv.set_config({"app.app_url": menv.base, "features.imagine_public_image_proxy": True}, probe=applied)
    result = client.images.generate(model=model, prompt="a cat in space", n=3 if tier != "basic" else 2, size="1280x720")
    assert len(result.data) == (3 if tier != "basic" else 2)
    for item in result.data:
        assert item.url.startswith(menv.base + "/v1/files/image?id=")
        got = httpx.get(item.url, timeout=10)  # no auth: media links work in any client
        assert got.status_code == 200
        assert got.headers["content-type"] in ("image/jpeg", "image/png")
        image_ok(got.content)


def test_without_app_url_it_returns_upstream_urls_and_alerts_the_operator(menv):
    from core.models import AlertKind, OperatorAlert

    menv.account("basic", "noapp")
    menv.ready("grok-imagine-image-lite")
    result = menv.openai().images.generate(model="grok-imagine-image-lite", prompt="a boat", n=1)
    url = result.data[0].url
    assert url.startswith(menv.simulator.url + "/users/")
    # The private assets host needs the account's cookie: a plain client is refused.
    assert httpx.get(url, timeout=10).status_code in (401, 403)
    alert = wait_until(lambda: OperatorAlert.objects.filter(kind=AlertKind.MEDIA_LINKS, resolved=False).first(), what="alert")
    assert "app.app_url" in alert.message


def test_public_imagine_urls_are_returned_directly_without_the_proxy_switch(menv):
    menv.account("super", "pub")
    menv.ready("grok-imagine-image")
    client = menv.openai()
    menv.set_config(
        {"app.app_url": menv.base, "features.imagine_public_image_proxy": False},
        probe=lambda: "/imagine-public/" in client.images.generate(model="grok-imagine-image", prompt="p", n=1).data[0].url,
    )
    url = client.images.generate(model="grok-imagine-image", prompt="a fox", n=1).data[0].url
    assert "/imagine-public/" in url
    got = httpx.get(url, timeout=10)  # public host: fetchable without credentials
    assert got.status_code == 200
    image_ok(got.content)


def test_moderated_images_are_dropped_and_none_left_is_a_content_policy_error(menv):
    menv.account("basic", "mod", "moderate")
    menv.ready("grok-imagine-image-lite")
    with pytest.raises(openai.BadRequestError) as err:
        menv.openai().images.generate(model="grok-imagine-image-lite", prompt="something", n=2)
    assert err.value.status_code == 400
    assert err.value.body["code"] == "content_policy_violation"
    assert "moderation" in err.value.body["message"]


@pytest.mark.parametrize("on_codes,retried", [("429,401,503", True), ("401,503", False)])
def test_a_429_moves_the_image_to_another_account_only_when_retry_on_codes_lists_it(menv, on_codes, retried):
    """accounts/attempt.py: media follows the operator's retry.on_codes like chat does."""
    from django.db import transaction

    # Saved before the accounts: the server's poller reloads config before the pool in one round,
    # so once the accounts are served the new retry.on_codes is in force.
    menv.set_config({"retry.on_codes": on_codes, "retry.max_retries": 1})
    with transaction.atomic():  # both accounts reach the server in the same snapshot
        menv.account("basic", "imgrl", "rl")  # the basic pool comes first for lite images
        spare = menv.account("super", "imgok")
    menv.ready("grok-imagine-image-lite")
    chat = "/rest/app-chat/conversations/new"
    if retried:
        result = menv.openai().images.generate(model="grok-imagine-image-lite", prompt="a kite", n=1, response_format="b64_json")
        image_ok(base64.b64decode(result.data[0].b64_json))
    else:
        with pytest.raises(openai.RateLimitError) as err:
            menv.openai().images.generate(model="grok-imagine-image-lite", prompt="a kite", n=1, response_format="b64_json")
        assert err.value.status_code == 429
    # the simulator refuses the limited account before it records a token: count by status
    assert [r["status"] for r in menv.sim.requests(path=chat)] == ([429, 200] if retried else [429])
    assert len(menv.sim.requests(token=spare, path=chat)) == (1 if retried else 0)


def test_it_edits_a_real_png_with_the_sdk(menv, tmp_path):
    token = menv.account("super", "edit")
    menv.ready("grok-imagine-image-edit")
    path = tmp_path / "input.png"
    path.write_bytes(tiny_png(16, 16))
    with open(path, "rb") as fh:
        result = menv.openai().images.edit(
            model="grok-imagine-image-edit", image=fh, prompt="make @IMAGE1 blue", n=2, size="1024x1024", response_format="b64_json"
        )
    assert len(result.data) == 2
    for item in result.data:
        image_ok(base64.b64decode(item.b64_json))
    uploads = menv.sim.requests(token=token, endpoint="upload")
    assert len(uploads) == 1
    chats = menv.sim.requests(token=token, endpoint="chat")
    assert chats and chats[-1]["body"]["modelName"] == "imagine-image-edit"
    # @IMAGE1 became the uploaded file id
    assert "@IMAGE1" not in chats[-1]["body"]["message"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "body,param",
    [
        ({"model": "grok-imagine-image-lite", "prompt": "x", "n": 5}, "n"),
        ({"model": "grok-imagine-image", "prompt": "x", "n": 11}, "n"),
        ({"model": "grok-imagine-image-pro", "prompt": "x", "n": 0}, "n"),
        ({"model": "grok-imagine-image", "prompt": "x", "n": "two"}, "n"),
        ({"model": "grok-imagine-image", "prompt": "x", "size": "640x480"}, "size"),
        ({"model": "grok-imagine-image", "prompt": "x", "response_format": "png"}, "response_format"),
        ({"model": "grok-imagine-image"}, "prompt"),
        ({"model": "grok-imagine-image", "prompt": "   "}, "prompt"),
        ({"model": "grok-4.20-fast", "prompt": "x"}, "model"),
    ],
)
def test_bad_generation_input_is_a_400_naming_the_parameter(menv, body, param):
    with menv.http() as http:
        r = http.post("/v1/images/generations", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_an_unknown_model_is_a_404_and_no_key_is_a_401(menv):
    with menv.http() as http:
        r = http.post("/v1/images/generations", json={"model": "dall-e-9", "prompt": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(menv.base + "/v1/images/generations", json={"model": "grok-imagine-image", "prompt": "x"}, timeout=10)
    assert r.status_code == 401


def _edit(menv, files, data):
    with menv.http() as http:
        return http.post("/v1/images/edits", files=files, data={"model": "grok-imagine-image-edit", "prompt": "p", **data})


@pytest.mark.parametrize(
    "files,data,param",
    [
        ([("image", ("a.png", tiny_png(), "image/png")), ("mask", ("m.png", tiny_png(), "image/png"))], {}, "mask"),
        ([("image", ("a.png", b"GIF? no, just text", "image/png"))], {}, "image"),
        ([("image", ("a.png", tiny_png()[:8] + b"\0" * DEFAULT_ATTACHMENT_MAX_BYTES, "image/png"))], {}, "image"),
        ([("image[]", (f"{i}.png", tiny_png(), "image/png")) for i in range(6)], {}, "image"),
        ([("image", ("a.png", tiny_png(), "image/png"))], {"n": "3"}, "n"),
        ([("image", ("a.png", tiny_png(), "image/png"))], {"size": "1280x720"}, "size"),
        ([("image", ("a.png", tiny_png(), "image/png"))], {"prompt": ""}, "prompt"),
        ([], {"image": "http://10.1.2.3/cat.png"}, "image"),
        ([], {"image": "http://127.0.0.1:9/cat.png"}, "image"),
        ([], {}, "image"),
    ],
)
def test_bad_edit_input_is_a_400_naming_the_parameter(menv, files, data, param):
    r = _edit(menv, files or None, data)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    assert param in err["message"] or param == "image"


def test_an_edit_with_a_mask_via_the_sdk_is_refused(menv, tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(tiny_png())
    menv.key_ready()
    with open(path, "rb") as image, open(path, "rb") as mask:
        with pytest.raises(openai.BadRequestError) as err:
            menv.openai().images.edit(model="grok-imagine-image-edit", image=image, mask=mask, prompt="x")
    assert err.value.body["param"] == "mask"


# --------------------------------------------------------------------------- through chat

IMAGE_FORMATS = ["grok_url", "local_url", "grok_md", "local_md", "base64"]


def _links(text: str) -> list[str]:
    import re

    md = re.findall(r"!\[image \d+\]\(([^)]+)\)", text)
    return md or [line.strip() for line in text.strip().splitlines() if line.strip()]


def _fetch(menv, link: str) -> bytes:
    if link.startswith("data:image/"):
        return base64.b64decode(link.split(",", 1)[1])
    if link.startswith("/v1/files/"):
        link = menv.base + link
    r = httpx.get(link, timeout=10)
    assert r.status_code == 200, (link, r.status_code)
    return r.content


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_image_models_through_chat_render_per_image_format(menv, fmt):
    menv.account("super", "chatimg")
    menv.ready("grok-imagine-image")
    client = menv.openai()

    def applied():
        text = client.chat.completions.create(
            model="grok-imagine-image", messages=[{"role": "user", "content": "probe"}], stream=False,
            extra_body={"image_config": {"n": 1}},
        ).choices[0].message.content
        is_md = text.startswith("![image")
        local = "/v1/files/image?id=" in text
        b64 = "data:image/" in text
        want = {"grok_url": (False, False, False), "local_url": (False, True, False), "grok_md": (True, False, False),
                "local_md": (True, True, False), "base64": (True, False, True)}[fmt]
        return (is_md, local, b64) == want

    menv.set_config({"features.image_format": fmt, "features.imagine_public_image_proxy": True}, probe=applied)
    completion = client.chat.completions.create(
        model="grok-imagine-image",
        messages=[{"role": "user", "content": "a lighthouse at dusk"}],
        extra_body={"image_config": {"n": 2, "size": "1024x1792"}},
        stream=False,
    )
    links = _links(completion.choices[0].message.content)
    assert len(links) == 2
    for link in links:
        image_ok(_fetch(menv, link))
    assert completion.usage.total_tokens > 0


def test_image_progress_streams_as_reasoning_then_the_result(menv):
    menv.account("basic", "chatstream")
    menv.ready("grok-imagine-image-lite")
    stream = menv.openai().chat.completions.create(
        model="grok-imagine-image-lite", messages=[{"role": "user", "content": "a kite"}], stream=True,
        extra_body={"image_config": {"n": 1}},
    )
    reasoning, content = "", ""
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
    assert "Image 1: 50%" in reasoning and "Image 1: 100%" in reasoning
    links = _links(content)
    assert len(links) == 1 and links[0].startswith("http")


def test_image_models_work_through_responses_and_messages(menv):
    import anthropic

    menv.account("super", "fam")
    menv.ready("grok-imagine-image")
    resp = menv.openai().responses.create(model="grok-imagine-image", input="a tree", stream=False)
    assert "http" in resp.output_text
    msg = anthropic.Anthropic(base_url=menv.base, api_key=menv.key, max_retries=0).messages.create(
        model="grok-imagine-image", max_tokens=100, stream=False, messages=[{"role": "user", "content": "a tree"}]
    )
    text = "".join(b.text for b in msg.content if b.type == "text")
    assert "http" in text


def test_image_edit_through_chat_uses_the_attached_image(menv):
    token = menv.account("super", "chatedit")
    menv.ready("grok-imagine-image-edit")
    data_uri = "data:image/png;base64," + base64.b64encode(tiny_png(12, 12)).decode()
    completion = menv.openai().chat.completions.create(
        model="grok-imagine-image-edit",
        messages=[{"role": "user", "content": [{"type": "text", "text": "make @IMAGE1 green"},
                                               {"type": "image_url", "image_url": {"url": data_uri}}]}],
        extra_body={"image_config": {"n": 1, "response_format": "b64_json"}},
        stream=False,
    )
    links = _links(completion.choices[0].message.content)
    assert len(links) == 1
    image_ok(_fetch(menv, links[0]))
    assert len(menv.sim.requests(token=token, endpoint="upload")) == 1


@pytest.mark.parametrize(
    "model,extra,param",
    [
        ("grok-imagine-image-lite", {"image_config": {"n": 9}}, "image_config.n"),
        ("grok-imagine-image", {"image_config": {"size": "1x1"}}, "image_config.size"),
        ("grok-imagine-image", {"image_config": {"response_format": "gif"}}, "image_config.response_format"),
        ("grok-imagine-image-edit", {"image_config": {"n": 1}}, "messages"),
    ],
)
def test_bad_image_config_through_chat_is_a_400_before_streaming(menv, model, extra, param):
    with menv.http() as http:
        r = http.post("/v1/chat/completions", json={"model": model, "stream": True,
                                                    "messages": [{"role": "user", "content": "x"}], **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_a_private_image_url_part_is_refused_naming_the_part(menv):
    with menv.http() as http:
        r = http.post("/v1/chat/completions", json={
            "model": "grok-imagine-image-edit",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "edit"},
                                                      {"type": "image_url", "image_url": {"url": "http://10.0.0.7/x.png"}}]}],
        })
    assert r.status_code == 400, r.text
    assert "image_url" in (r.json()["error"]["param"] or "")


def test_moderation_after_progress_is_a_mid_stream_error_event(menv):
    import json

    menv.account("basic", "modstream", "moderate")
    menv.ready("grok-imagine-image-lite")
    with menv.http(menv.key) as http:
        with http.stream("POST", "/v1/chat/completions", json={
            "model": "grok-imagine-image-lite", "stream": True, "messages": [{"role": "user", "content": "x"}],
            "image_config": {"n": 1},
        }) as r:
            assert r.status_code == 200  # progress was already streamed
            frames = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    errors = [json.loads(f)["error"] for f in frames[:-1] if "error" in json.loads(f)]
    assert errors and errors[0]["code"] == "content_policy_violation"
    reasoning = "".join(
        (c.get("delta") or {}).get("reasoning_content") or "" for f in frames[:-1] for c in json.loads(f).get("choices") or []
    )
    assert "Image 1: 50%" in reasoning


def test_local_image_links_are_signed_and_the_id_alone_serves_no_one(menv):
    """Links go into chat answers that browsers load without headers: the signed link is the
    credential. Without its `sig` a cached image is 401 to a caller without a key and 404 to any key."""
    from grok2api.testing.fixtures import TEST_GATEWAY_KEY

    menv.account("basic", "signed")
    menv.ready("grok-imagine-image-lite")
    client = menv.openai()

    def applied():
        return client.images.generate(model="grok-imagine-image-lite", prompt="probe", n=1).data[0].url.startswith(menv.base)

    menv.set_config({"app.app_url": menv.base}, probe=applied)
    url = client.images.generate(model="grok-imagine-image-lite", prompt="a lighthouse", n=1).data[0].url
    assert "&sig=" in url
    own, other = {"Authorization": f"Bearer {menv.key}"}, {"Authorization": f"Bearer {TEST_GATEWAY_KEY}"}
    for headers in ({}, own, other):  # the whole link works in any client
        got = httpx.get(url, headers=headers, timeout=10)
        assert got.status_code == 200, got.text
        image_ok(got.content)
    bare = url.split("&sig=")[0]
    forged = bare + "&sig=" + "0" * 32
    for link in (bare, forged):
        r = httpx.get(link, timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        for headers in (own, other):
            r = httpx.get(link, headers=headers, timeout=10)
            assert r.status_code == 404 and r.json()["error"]["param"] == "id"
