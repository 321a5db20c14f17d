"""One attachment size cap (media/attachments.py, MAX_ATTACHMENT_MB) on every input path, end to end:
a live `serve` with MAX_ATTACHMENT_MB=1 and the simulator as grok.com, driven with the official SDKs
and raw httpx. Inline data used to be bounded only by MAX_BODY_MB, fetched chat attachments by 20 MB
and media inputs by 10 MB."""
from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import httpx
import openai
import pytest

from media.tests.e2e import MediaEnv, tiny_png

pytestmark = pytest.mark.django_db(transaction=True)

CAP = 1024 * 1024
FAST = "grok-4.20-fast"
BIG = tiny_png() + b"\0" * (CAP + 1000)  # a PNG by its magic bytes, just over the cap
SMALL = tiny_png() + b"\0" * (CAP // 2)


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def capped_gateway(django_db_setup, django_db_blocker, tmp_path_factory, simulator_server):
    from grok2api.testing.fixtures import TEST_GATEWAY_KEY, GatewayFactory

    env = {"GROK_APP_API_KEY": TEST_GATEWAY_KEY, "MAX_ATTACHMENT_MB": "1", **simulator_server.upstream_env()}
    with django_db_blocker.unblock():
        factory = GatewayFactory(tmp_path_factory.mktemp("capped-gateway"))
        gateway = factory(env)
    yield gateway
    factory.stop_all()


@pytest.fixture
def cenv(capped_gateway, sim, transactional_db):
    env = MediaEnv(capped_gateway, sim)
    yield env
    env.restore()


@pytest.fixture(scope="module")
def files_server():
    """A plain HTTP server on loopback serving /big.png and /small.png (the gateway fetches them)."""
    bodies = {"/big.png": BIG, "/small.png": SMALL}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _allow_loopback(cenv, files_server) -> None:
    probe = {"model": FAST, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "probe"}, {"type": "image_url", "image_url": {"url": files_server + "/missing.png"}}]}]}

    def applied():
        with cenv.http() as http:  # 404 from our server instead of 400 url_not_allowed once applied
            r = http.post("/v1/chat/completions", json=probe)
        return r.status_code == 400 and r.json()["error"]["code"] == "fetch_failed"

    cenv.set_config({"security.fetch_allowlist": ["127.0.0.1"]}, probe=applied)


def test_it_refuses_inline_data_over_the_cap_in_every_chat_family_and_uploads_nothing(cenv):
    token = cenv.account("basic", "inline")
    cenv.ready(FAST)
    with pytest.raises(openai.BadRequestError) as info:
        cenv.openai().chat.completions.create(model=FAST, stream=False, messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": data_uri(BIG)}}]}])
    assert info.value.body["code"] == "file_too_large" and info.value.body["param"] == "messages[0].content[1].image_url.url"
    with pytest.raises(openai.BadRequestError) as info:
        cenv.openai().responses.create(model=FAST, stream=False, input=[{"role": "user", "content": [
            {"type": "input_text", "text": "what is it?"}, {"type": "input_image", "image_url": data_uri(BIG)}]}])
    assert info.value.body["code"] == "file_too_large" and info.value.body["param"] == "input[0].content[1].image_url"
    with pytest.raises(anthropic.BadRequestError) as info:
        anthropic.Anthropic(base_url=cenv.base, api_key=cenv.key, max_retries=0).messages.create(model=FAST, max_tokens=16, messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is it?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(BIG).decode()}}]}])
    assert info.value.status_code == 400 and info.value.body["error"]["type"] == "invalid_request_error"
    assert "'messages[0].content[1].source.data'" in info.value.body["error"]["message"]
    assert cenv.sim.requests(token=token, endpoint="upload") == []
    # Under the cap the same request goes through and the image is uploaded.
    done = cenv.openai().chat.completions.create(model=FAST, stream=False, messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": data_uri(SMALL)}}]}])
    assert done.choices[0].message.content
    assert len(cenv.sim.requests(token=token, endpoint="upload")) == 1


def test_base64_too_long_for_the_cap_is_refused_before_it_is_decoded(cenv):
    # Not valid base64 (a '!' at the end): decoding first would answer "invalid base64".
    text = "A" * (CAP * 4 // 3 + 100) + "!"
    with cenv.http() as http:
        r = http.post("/v1/chat/completions", json={"model": FAST, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + text}}]}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "file_too_large", r.text


def test_fetched_urls_over_the_cap_are_refused_naming_the_part(cenv, files_server):
    token = cenv.account("basic", "fetch")
    cenv.ready(FAST)
    _allow_loopback(cenv, files_server)
    with pytest.raises(openai.BadRequestError) as info:
        cenv.openai().chat.completions.create(model=FAST, stream=False, messages=[{"role": "user", "content": [
            {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": files_server + "/big.png"}}]}])
    assert info.value.body["code"] == "file_too_large" and info.value.body["param"] == "messages[0].content[1].image_url.url"
    with cenv.http() as http:
        r = http.post("/v1/images/edits", data={"model": "grok-imagine-image-edit", "prompt": "sharper",
                                                "image[]": files_server + "/big.png"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "file_too_large" and r.json()["error"]["param"] == "image"
        r = http.post("/v1/videos", json={"model": "grok-imagine-video", "prompt": "move",
                                          "input_reference": files_server + "/big.png"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "file_too_large", r.text
        assert r.json()["error"]["param"] == "input_reference"
    assert cenv.sim.requests(token=token, endpoint="upload") == []


def test_media_inputs_are_held_to_the_same_cap_as_files_and_data_uris(cenv):
    with cenv.http() as http:
        r = http.post("/v1/images/edits", data={"model": "grok-imagine-image-edit", "prompt": "sharper"},
                      files={"image[]": ("big.png", BIG, "image/png")})
        assert r.status_code == 400 and r.json()["error"]["code"] == "file_too_large" and r.json()["error"]["param"] == "image"
        r = http.post("/v1/videos", data={"model": "grok-imagine-video", "prompt": "move", "input_reference": data_uri(BIG)})
        assert r.status_code == 400 and r.json()["error"]["code"] == "file_too_large", r.text
        assert r.json()["error"]["param"] == "input_reference"
        r = http.post("/v1/chat/completions", json={"model": "grok-imagine-image-edit", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "sharper"}, {"type": "image_url", "image_url": {"url": data_uri(BIG)}}]}]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "file_too_large", r.text
        # Under the cap a media input is accepted (the old media limit was a separate constant).
        ok = http.post("/v1/videos", data={"model": "grok-imagine-video", "prompt": "move", "input_reference": data_uri(SMALL)})
    assert ok.status_code == 200, ok.text


@pytest.mark.django_db(transaction=False)
@pytest.mark.parametrize("size,ok", [(999, True), (1000, True), (1001, False)])
def test_the_cap_applies_to_the_decoded_size_with_or_without_padding_and_whitespace(monkeypatch, size, ok):
    from media import attachments
    from grokweb.errors import InvalidRequest

    monkeypatch.setattr(attachments, "_max_bytes", 1000)
    text = base64.b64encode(b"\x89" * size).decode()
    text = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))  # MIME-style line breaks are allowed
    if ok:
        assert attachments.attachment_base64_decode(text=text, param="p") == b"\x89" * size
    else:
        with pytest.raises(InvalidRequest) as info:
            attachments.attachment_base64_decode(text=text, param="p")
        assert info.value.code == "file_too_large" and info.value.param == "p" and "1001" in info.value.message
