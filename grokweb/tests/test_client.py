"""GrokClient: payload builders, header sets and cookie scoping (pure), then every call against the
simulator on a real socket (grokweb/simulator), on the one upstream client stack."""
from __future__ import annotations

import json
import uuid

import pytest

from grokweb.errors import InvalidRequest
from grokweb.tests._config import make_cfg, sim_cfg
from grokweb import payloads
from grokweb.client import GrokClient
from grokweb.chat import chat_drains_settle
from grokweb.core import cookie_header, join_url, origin_of, user_id_from_path
from grokweb.egress import DIRECT

# --------------------------------------------------------------------------------------------
# payload builders (docs/upstream-protocol.md §4.1, §6.3, §6.4, §7.2, §6.2, §10)

REFERENCE_CHAT_KEYS = {
    "collectionIds", "connectors", "deviceEnvInfo", "disableMemory", "disableSearch", "disableSelfHarmShortCircuit",
    "disableTextFollowUps", "enableImageGeneration", "enableImageStreaming", "enableSideBySide", "fileAttachments",
    "forceConcise", "forceSideBySide", "imageAttachments", "imageGenerationCount", "isAsyncChat", "message",
    "modeId", "responseMetadata", "returnImageBytes", "returnRawGrokInXaiRequest", "searchAllConnectors",
    "sendFinalMetadata", "temporary", "toolOverrides",
}


def test_chat_payload_is_the_reference_body():
    body = payloads.chat_payload(message="[user]: Hello", mode="expert", file_ids=["f1", "f2"])
    assert set(body) == REFERENCE_CHAT_KEYS
    assert body["message"] == "[user]: Hello"
    assert body["modeId"] == "expert"
    assert body["fileAttachments"] == ["f1", "f2"]
    assert body["temporary"] is True and body["disableMemory"] is True
    assert body["imageGenerationCount"] == 2 and body["sendFinalMetadata"] is True
    assert body["deviceEnvInfo"]["screenWidth"] == 2056
    assert body["toolOverrides"] == {"gmailSearch": False, "googleCalendarSearch": False, "outlookSearch": False,
                                     "outlookCalendarSearch": False, "googleDriveSearch": False}


def test_chat_payload_maps_memory_temporary_and_custom_personality():
    body = payloads.chat_payload(message="x", mode="fast", temporary=False, memory=True, custom_personality="Be terse")
    assert body["temporary"] is False
    assert body["disableMemory"] is False
    assert body["customPersonality"] == "Be terse"
    assert "customPersonality" not in payloads.chat_payload(message="x", mode="fast", custom_personality="")


def test_chat_payload_rejects_an_unknown_mode():
    with pytest.raises(InvalidRequest) as info:
        payloads.chat_payload(message="x", mode="turbo")
    assert info.value.param == "model"


def test_client_builds_chat_payload_from_the_feature_switches():
    cfg = make_cfg({"features.temporary": False, "features.memory": True, "features.custom_instruction": "Pirate"})
    client = GrokClient(token="t", cfg=cfg, egress=DIRECT)
    body = client.build_chat_payload(message="m", mode="auto", file_ids=["a"])
    assert (body["temporary"], body["disableMemory"], body["customPersonality"]) == (False, False, "Pirate")


def test_image_edit_payload_uses_the_legacy_model_config_override():
    body = payloads.image_edit_payload(prompt="make it blue", image_references=["https://a/u/1/content"], parent_post_id="p1")
    assert body["modelName"] == "imagine-image-edit"
    override = body["responseMetadata"]["modelConfigOverride"]["modelMap"]
    assert override["imageEditModel"] == "imagine"
    assert override["imageEditModelConfig"] == {"imageReferences": ["https://a/u/1/content"], "parentPostId": "p1"}
    assert body["disableTextFollowUps"] is True and body["isReasoning"] is False


@pytest.mark.parametrize(
    ("size", "ratio"),
    [("1280x720", "16:9"), ("720x1280", "9:16"), ("1792x1024", "3:2"), ("1024x1792", "2:3"), ("1024x1024", "1:1"),
     ("333x777", "2:3"), ("3:4", "3:4"), (None, "1:1")],
)
def test_size_maps_to_aspect_ratio(size, ratio):
    assert payloads.size_to_aspect_ratio(size) == ratio


@pytest.mark.parametrize(("preset", "suffix"), [("fun", "extremely-crazy"), ("normal", "normal"),
                                                 ("spicy", "extremely-spicy-or-crazy"), ("custom", "custom")])
def test_video_presets_become_mode_suffixes(preset, suffix):
    body = payloads.video_payload(prompt="a cat", parent_post_id="p", preset=preset)
    assert body["message"] == f"a cat --mode={suffix}"


def test_video_first_segment_carries_size_resolution_and_references():
    body = payloads.video_payload(prompt="p", parent_post_id="post-1", size="720x1280", video_length=10,
                                  resolution="480p", image_references=["https://assets/x/content"])
    config = body["responseMetadata"]["modelConfigOverride"]["modelMap"]["videoGenModelConfig"]
    assert body["modelName"] == "imagine-video-gen"
    assert config == {"parentPostId": "post-1", "aspectRatio": "9:16", "videoLength": 10, "resolutionName": "480p",
                      "isVideoEdit": False, "isReferenceToVideo": True, "imageReferences": ["https://assets/x/content"]}
    text_only = payloads.video_payload(prompt="p", parent_post_id="post-1")
    assert "imageReferences" not in text_only["responseMetadata"]["modelConfigOverride"]["modelMap"]["videoGenModelConfig"]


@pytest.mark.parametrize(("seconds", "segments"), [(6, (6,)), (10, (10,)), (12, (6, 6)), (16, (10, 6)), (20, (10, 10))])
def test_video_lengths_split_into_segments(seconds, segments):
    assert payloads.video_segments(seconds) == segments


@pytest.mark.parametrize(("kwargs", "param"), [({"size": "640x480"}, "size"), ({"preset": "wild"}, "preset"),
                                               ({"resolution": "1080p"}, "resolution_name")])
def test_video_payload_names_the_bad_parameter(kwargs, param):
    with pytest.raises(InvalidRequest) as info:
        payloads.video_payload(prompt="p", parent_post_id="x", **kwargs)
    assert info.value.param == param
    with pytest.raises(InvalidRequest) as info:
        payloads.video_segments(7)
    assert info.value.param == "seconds"


def test_video_extension_payload_starts_one_frame_after_the_elapsed_length():
    body = payloads.video_extension_payload(prompt="p", parent_post_id="parent", extend_post_id="prev",
                                            elapsed_seconds=10, video_length=6, preset="normal")
    config = body["responseMetadata"]["modelConfigOverride"]["modelMap"]["videoGenModelConfig"]
    assert config["isVideoExtension"] is True
    assert config["videoExtensionStartTime"] == pytest.approx(10 + 1 / 24)
    assert config["extendPostId"] == "prev" and config["originalPostId"] == "parent" and config["parentPostId"] == "parent"
    assert config["originalRefType"] == "ORIGINAL_REF_TYPE_VIDEO_EXTENSION"
    assert config["stitchWithExtendPostId"] is True and config["mode"] == "normal" and config["videoLength"] == 6


def test_imagine_frames_never_enable_nsfw():
    reset, text = payloads.imagine_frames(prompt="cat", aspect_ratio="16:9", pro=True, n=3, request_id="r1", now_ms=1000)
    assert reset == {"type": "conversation.item.create", "timestamp": 1000,
                     "item": {"type": "message", "content": [{"type": "reset"}]}}
    item = text["item"]["content"][0]
    assert item["type"] == "input_text" and item["text"] == "cat" and item["requestId"] == "r1"
    assert item["properties"]["enable_nsfw"] is False
    assert item["properties"]["enable_pro"] is True and item["properties"]["aspect_ratio"] == "16:9"
    assert item["properties"]["num_generations"] == 3


def test_livekit_payload_sends_the_session_as_a_json_string():
    body = payloads.livekit_payload(livekit_url="wss://lk", voice="eve", personality="romantic", speed=1.5)
    session = json.loads(body["sessionPayload"])
    assert session == {"voice": "eve", "personality": "romantic", "playback_speed": 1.5, "enable_vision": False,
                       "turn_detection": {"type": "server_vad"}}
    assert body["livekitUrl"] == "wss://lk" and body["requestAgentDispatch"] is False
    custom = json.loads(payloads.livekit_payload(livekit_url="wss://lk", instruction="Speak slowly")["sessionPayload"])
    assert custom["personality"] is None and custom["instructions"] == "Speak slowly" and custom["is_raw_instructions"] is True


def test_media_post_payload_accepts_short_and_wire_names():
    assert payloads.media_post_payload(media_type="video", prompt="p") == {"mediaType": "MEDIA_POST_TYPE_VIDEO", "prompt": "p"}
    assert payloads.media_post_payload(media_type="MEDIA_POST_TYPE_IMAGE", media_url="u") == {
        "mediaType": "MEDIA_POST_TYPE_IMAGE", "mediaUrl": "u"}
    with pytest.raises(InvalidRequest):
        payloads.media_post_payload(media_type="audio")


# --------------------------------------------------------------------------------------------
# cookies, origins, header sets (docs/upstream-protocol.md §3)


def test_cookie_header_carries_the_token_twice():
    assert cookie_header("tok") == "sso=tok; sso-rw=tok"


def test_cookie_header_ignores_clearance_unless_manual():
    assert cookie_header("t", clearance_mode="none", cf_cookies="cf_clearance=abc") == "sso=t; sso-rw=t"


def test_manual_clearance_appends_cookies_and_bare_value_replaces_pair():
    assert cookie_header("t", clearance_mode="manual", cf_cookies="cf_clearance=old; __cf_bm=bm") == \
        "sso=t; sso-rw=t; cf_clearance=old; __cf_bm=bm"
    assert cookie_header("t", clearance_mode="manual", cf_cookies="cf_clearance=old; __cf_bm=bm", cf_clearance="new") == \
        "sso=t; sso-rw=t; __cf_bm=bm; cf_clearance=new"
    assert cookie_header("t", clearance_mode="manual", cf_cookies="", cf_clearance="only") == "sso=t; sso-rw=t; cf_clearance=only"
    # an operator who pasted a whole browser cookie string never overrides the account's token
    assert cookie_header("t", clearance_mode="manual", cf_cookies="sso=other; cf_clearance=c") == "sso=t; sso-rw=t; cf_clearance=c"


def test_join_url_keeps_path_prefixes():
    assert join_url("http://127.0.0.1:8900/assets", "users/u/f/content") == "http://127.0.0.1:8900/assets/users/u/f/content"
    assert join_url("http://h/prefix/", "/rest/x") == "http://h/prefix/rest/x"
    assert origin_of("https://grok.com/x") == ("https", "grok.com", 443)


def test_user_id_is_read_from_asset_paths():
    assert user_id_from_path("users/0a1b-2c/generated/x/image.jpg") == "0a1b-2c"
    assert user_id_from_path("https://assets/users/abc/f/content") == "abc"
    assert user_id_from_path("imagine-public/images/x.jpg") == ""


def _client(**overrides):
    cfg = make_cfg({
        "upstream.web_base_url": "http://127.0.0.1:9001/grok",
        "upstream.assets_base_url": "http://127.0.0.1:9002/assets",
        "upstream.ws_base_url": "ws://127.0.0.1:9001/grok",
        "upstream.imagine_public_base_url": "http://localhost:9001",
        **overrides,
    })
    return GrokClient(token="sim-super-a", cfg=cfg, egress=DIRECT)


def test_credentialed_origins_are_exactly_web_assets_and_ws():
    client = _client()
    assert client.is_credentialed("http://127.0.0.1:9001/anything")
    assert client.is_credentialed("http://127.0.0.1:9002/assets/users/x")
    assert client.is_credentialed("ws://127.0.0.1:9001/grok/ws/imagine/listen")
    assert not client.is_credentialed("http://127.0.0.1:9003/")  # another port
    assert not client.is_credentialed("http://localhost:9001/imagine-public/images/a.jpg")  # the public host
    assert not client.is_credentialed("https://127.0.0.1:9001/")  # another scheme


def test_rest_headers_are_the_minimal_set_with_prefixed_referer():
    client = _client()
    headers = client.rest_headers(url=client.web_url("/rest/rate-limits"), referer_path="/imagine")
    assert headers["Cookie"] == "sso=sim-super-a; sso-rw=sim-super-a"
    assert headers["Origin"] == "http://127.0.0.1:9001"
    assert headers["Referer"] == "http://127.0.0.1:9001/grok/imagine"
    assert headers["Content-Type"] == "application/json"
    assert (headers["Sec-Fetch-Dest"], headers["Sec-Fetch-Mode"], headers["Sec-Fetch-Site"]) == ("empty", "cors", "same-origin")
    assert uuid.UUID(headers["x-xai-request-id"]).version == 4
    assert "x-statsig-id" not in headers  # not configured: not sent
    assert "br" not in headers["Accept-Encoding"] or _can_decode_br()
    assert not {"Baggage", "sentry-trace", "traceparent"} & set(headers)


def _can_decode_br() -> bool:
    try:
        import brotli  # noqa: F401
        return True
    except ImportError:
        return False


def test_static_statsig_goes_verbatim_to_the_web_base_only():
    client = _client(**{"upstream.static_statsig_id": "  STATIC+value/==  "})
    web = client.rest_headers(url=client.web_url("/rest/app-chat/conversations/new"))
    assert web["x-statsig-id"] == "STATIC+value/=="
    assert "x-statsig-id" not in client.navigation_headers(url=client.asset_url("users/u/f/content"))
    assert "x-statsig-id" not in client.ws_headers()


def test_request_ids_are_fresh_and_omitted_for_multipart():
    client = _client()
    url = client.web_url("/rest/x")
    assert client.rest_headers(url=url)["x-xai-request-id"] != client.rest_headers(url=url)["x-xai-request-id"]
    multipart = client.rest_headers(url=client.web_url("/http/upload-file-v2/direct"), content_type=None, request_id=False)
    assert "x-xai-request-id" not in multipart and "Content-Type" not in multipart


def test_navigation_headers_for_asset_downloads():
    client = _client()
    headers = client.navigation_headers(url=client.asset_url("users/u/f/content"))
    assert headers["Sec-Fetch-Mode"] == "navigate" and headers["Sec-Fetch-Dest"] == "document"
    assert headers["Upgrade-Insecure-Requests"] == "1" and headers["Cache-Control"] == "no-cache"
    assert "Origin" not in headers and "Content-Type" not in headers
    assert headers["Cookie"].startswith("sso=sim-super-a")


def test_sec_fetch_site_is_same_site_for_a_sibling_host():
    cfg = make_cfg()
    client = GrokClient(token="t", cfg=cfg, egress=DIRECT)
    assert client.navigation_headers(url="https://assets.grok.com/users/u/x")["Sec-Fetch-Site"] == "same-site"
    assert client.rest_headers(url="https://grok.com/rest/x")["Sec-Fetch-Site"] == "same-origin"


def test_ws_headers_are_the_upgrade_set():
    client = _client(**{"proxy.clearance.mode": "manual", "proxy.clearance.cf_clearance": "CF"})
    assert client.ws_headers() == {
        "Origin": "http://127.0.0.1:9001",
        "User-Agent": client.user_agent,
        "Accept-Language": "en-US,en;q=0.9",
        "Cache-Control": "no-cache",
        "Pragma": "no-cache",
        "Cookie": "sso=sim-super-a; sso-rw=sim-super-a; cf_clearance=CF",
    }


def test_credentialed_header_sets_refuse_foreign_hosts():
    client = _client()
    with pytest.raises(ValueError):
        client.rest_headers(url="http://localhost:9001/rest/x")
    with pytest.raises(ValueError):
        client.navigation_headers(url="https://evil.example/users/x")
    public = client.public_headers()
    assert "Cookie" not in public and "Origin" not in public and "Referer" not in public


def test_relative_asset_paths_join_the_assets_base():
    client = _client()
    assert client.asset_url("users/u/generated/i/image.jpg") == "http://127.0.0.1:9002/assets/users/u/generated/i/image.jpg"
    assert client.asset_url("https://x/y.jpg") == "https://x/y.jpg"


def test_repr_never_shows_the_token():
    assert "sim-super-a" not in repr(_client())


# --------------------------------------------------------------------------------------------
# against the simulator on a real socket

import asyncio  # noqa: E402
import base64  # noqa: E402
import contextlib  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

from grokweb.classify import UpstreamError, UpstreamKind  # noqa: E402
from grokweb.events import (  # noqa: E402
    AnswerDelta,
    Completed,
    ImageProgress,
    ImageResult,
    ThinkingDelta,
)
from grokweb.simulator import media as sim_media  # noqa: E402


def grok(server, token="sim-super-a", **overrides):
    return GrokClient(token=token, cfg=sim_cfg(server, **overrides), egress=DIRECT)


async def collect(client, payload, **kwargs):
    async with client.chat_stream(payload=payload, **kwargs) as events:
        return [event async for event in events]


def png(seed="p", size=8):
    return sim_media.png_bytes(seed, size, size)


@pytest.mark.parametrize("mode", ["fast", "auto", "expert", "heavy", "grok-420-computer-use-sa"])
async def test_chat_streams_events_in_each_mode(sim, mode):
    token = "sim-heavy-a"
    client = grok(sim, token=token)
    events = await collect(client, client.build_chat_payload(message="[user]: Hello there", mode=mode))
    text = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    done = [e for e in events if isinstance(e, Completed)]
    assert text and len(done) == 1 and done[0].message.endswith(text[-20:])
    thinking = [e for e in events if isinstance(e, ThinkingDelta)]
    if mode == "fast":
        assert not thinking
    if mode in ("expert", "heavy"):
        assert thinking
    if mode == "heavy":
        assert {e.rollout_id for e in thinking if e.rollout_id} >= {"Agent 1", "Agent 2"}
    await chat_drains_settle()  # the body's tail (title line) is read in the background
    entry = sim.sim.requests(token=token, endpoint="chat")[-1]
    assert entry["body"]["modeId"] == mode and entry["body"]["message"] == "[user]: Hello there"
    assert entry["sso"] and entry["sso_rw"] and entry["cookie_pair_equal"]
    assert entry["origin"] == sim.url and entry["referer"] == sim.url + "/"
    assert uuid.UUID(entry["request_id"]).version == 4
    assert entry["statsig"] is None and entry["completed"]


async def test_chat_sends_the_static_statsig_verbatim(sim):
    sim.reset(require_statsig="COPIED/VALUE==")
    client = grok(sim, **{"upstream.static_statsig_id": "COPIED/VALUE=="})
    events = await collect(client, client.build_chat_payload(message="hi", mode="fast"))
    assert isinstance(events[-1], Completed)
    assert sim.sim.requests(endpoint="chat")[-1]["statsig"] == "COPIED/VALUE=="


@pytest.mark.parametrize(
    ("token", "kind", "status"),
    [("sim-super-b~expired", UpstreamKind.AUTH_INVALID, 401), ("sim-super-b~blocked", UpstreamKind.BLOCKED, 403),
     ("sim-super-b~antibot", UpstreamKind.ANTI_BOT, 403), ("sim-super-b~cf", UpstreamKind.CLOUDFLARE, 403),
     ("sim-super-b~rl", UpstreamKind.RATE_LIMITED, 429), ("sim-super-b~http=503", UpstreamKind.UPSTREAM_5XX, 503)],
)
async def test_chat_http_errors_are_classified(sim, token, kind, status):
    client = grok(sim, token=token)
    with pytest.raises(UpstreamError) as info:
        await collect(client, client.build_chat_payload(message="hi", mode="auto"))
    assert info.value.kind is kind and info.value.upstream_status == status
    assert info.value.endpoint == "/rest/app-chat/conversations/new"
    assert "sim-super-b" not in info.value.message  # the token never leaks into errors


async def test_chat_in_band_errors_raise_after_the_200(sim):
    client = grok(sim, token="sim-super-c~inband=line@2")
    with pytest.raises(UpstreamError) as info:
        await collect(client, client.build_chat_payload(message="hi", mode="auto"))
    assert info.value.kind is UpstreamKind.RATE_LIMITED


async def test_a_connection_dropped_mid_stream_is_truncation(sim):
    client = grok(sim, token="sim-super-c~drop@3")
    received = []
    with pytest.raises(UpstreamError) as info:
        async with client.chat_stream(payload=client.build_chat_payload(message="hi", mode="fast")) as events:
            async for event in events:
                received.append(event)
    assert info.value.kind in (UpstreamKind.TRUNCATED, UpstreamKind.TRANSPORT)
    assert any(isinstance(e, AnswerDelta) for e in received)


async def test_a_stalled_stream_hits_the_idle_timeout(sim):
    client = grok(sim, token="sim-super-c~stall@2=3000")
    with pytest.raises(UpstreamError) as info:
        await collect(client, client.build_chat_payload(message="hi", mode="fast"), idle_timeout=0.3)
    assert info.value.kind is UpstreamKind.TIMEOUT and info.value.status == 504


async def test_the_total_deadline_caps_a_trickling_stream(sim):
    client = grok(sim, token="sim-super-d~tokms=100")
    with pytest.raises(UpstreamError) as info:
        await collect(client, client.build_chat_payload(message="hi #sim:len=40", mode="fast"), idle_timeout=5,
                      total_timeout=0.5)
    assert info.value.kind is UpstreamKind.TIMEOUT


async def test_chunk_timing_is_preserved_end_to_end(sim):
    client = grok(sim, token="sim-super-d~tokms=100")
    arrivals = []
    async with client.chat_stream(payload=client.build_chat_payload(message="hi #sim:len=6", mode="fast")) as events:
        async for event in events:
            if isinstance(event, AnswerDelta):
                arrivals.append(time.monotonic())
    assert len(arrivals) >= 5
    # no buffering: tokens paced 100 ms apart arrive spread out, not in one burst at the end
    assert arrivals[-1] - arrivals[0] >= 0.3
    assert sum(1 for a, b in zip(arrivals, arrivals[1:]) if b - a >= 0.05) >= 3


async def _wait_closed(sim, token, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = sim.sim.requests(token=token, endpoint="chat")
        if entries and entries[-1].get("closed_at"):
            return entries[-1]
        await asyncio.sleep(0.01)
    raise AssertionError("the simulator never saw the stream close")


async def test_leaving_the_context_closes_the_upstream_request_at_once(sim):
    token = "sim-super-e~tokms=200"
    client = grok(sim, token=token)
    async with client.chat_stream(payload=client.build_chat_payload(message="hi #sim:len=100", mode="fast")) as events:
        async for event in events:
            if isinstance(event, AnswerDelta):
                break
    left = time.monotonic()
    entry = await _wait_closed(sim, token)
    assert entry["disconnected"] and not entry["completed"]
    assert entry["closed_at"] - left < 0.1


async def test_cancelling_the_consumer_closes_the_upstream_request_at_once(sim):
    token = "sim-super-f~tokms=200"
    client = grok(sim, token=token)
    first = asyncio.Event()

    async def consume():
        async with client.chat_stream(payload=client.build_chat_payload(message="hi #sim:len=100", mode="fast")) as events:
            async for event in events:
                if isinstance(event, AnswerDelta):
                    first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    cancelled = time.monotonic()
    entry = await _wait_closed(sim, token)
    assert entry["disconnected"] and entry["closed_at"] - cancelled < 0.1


async def test_rate_limits_return_the_live_window(sim):
    client = grok(sim, token="sim-super-a")
    before = await client.rate_limits(mode="expert")
    assert (before["totalQueries"], before["windowSizeSeconds"]) == (50, 7200)
    await collect(client, client.build_chat_payload(message="hi", mode="expert"))
    after = await client.rate_limits(mode="expert")
    assert after["remainingQueries"] == before["remainingQueries"] - 1
    assert sim.sim.requests(endpoint="rate-limits")[-1]["body"] == {"modelName": "expert"}


async def test_rate_limit_errors_are_classified(sim):
    with pytest.raises(UpstreamError) as info:
        await grok(sim, token="sim-basic-b~blocked").rate_limits(mode="fast")
    assert info.value.kind is UpstreamKind.BLOCKED
    with pytest.raises(UpstreamError) as info:
        await grok(sim).rate_limits(mode="no-such-mode")
    assert info.value.kind is UpstreamKind.NOT_FOUND


async def test_imagine_quota_has_every_product(sim):
    quota = await grok(sim).imagine_quota()
    assert set(quota) == {"image", "imagePro", "imageEdit", "video", "video720p"}


async def test_upload_then_download_round_trips_the_bytes(sim, tmp_path):
    client = grok(sim)
    data = png("round-trip", 16)
    uploaded = await client.upload_file(name="pic.png", mime="image/png", data=data)
    assert uploaded.file_id and uploaded.file_uri.endswith(f"/{uploaded.file_id}/content")
    assert client.user_id and uploaded.file_uri.startswith(f"users/{client.user_id}/")
    body = sim.sim.requests(endpoint="upload")[-1]["body"]
    assert body["fileName"] == "pic.png" and body["fileMimeType"] == "image/png"

    got = await client.download_asset(url=uploaded.file_uri, dest=tmp_path / "out" / "pic.png", max_bytes=1 << 20)
    assert got.path.read_bytes() == data and got.size == len(data) and got.content_type == "image/png"
    assert not list((tmp_path / "out").glob(".*part"))  # the temp file was renamed, not left behind
    entry = [e for e in sim.sim.requests(token="sim-super-a") if e["path"].startswith("/users/")][-1]
    assert entry["sso"] and entry["origin"] is None and entry["content_type"] is None


async def test_downloads_are_refused_for_another_account_and_leave_no_file(sim, tmp_path):
    owner = grok(sim, token="sim-super-a")
    uploaded = await owner.upload_file(name="p.png", mime="image/png", data=png())
    with pytest.raises(UpstreamError) as info:
        await grok(sim, token="sim-super-z").download_asset(url=uploaded.file_uri, dest=tmp_path / "x.png", max_bytes=1 << 20)
    assert info.value.upstream_status == 403
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UpstreamError) as info:
        await owner.download_asset(url=uploaded.file_uri, dest=tmp_path / "x.png", max_bytes=10)
    assert "larger than" in info.value.message and list(tmp_path.iterdir()) == []


async def test_small_images_are_rejected_by_upload(sim):
    with pytest.raises(UpstreamError) as info:
        await grok(sim).upload_file(name="dot.png", mime="image/png", data=png("dot", 1))
    assert info.value.kind is UpstreamKind.BAD_REQUEST and info.value.status == 400


async def test_multipart_upload_and_its_fallback(sim):
    client = grok(sim)
    uploaded = await client.upload_file_multipart(name="m.png", mime="image/png", data=png("m"))
    entry = sim.sim.requests(endpoint="upload-v2")[-1] if sim.sim.requests(endpoint="upload-v2") else \
        [e for e in sim.sim.requests() if e["path"] == "/http/upload-file-v2/direct"][-1]
    assert uploaded.file_id
    assert entry["request_id"] is None and entry["content_type"].startswith("multipart/form-data")
    assert entry["referer"] == sim.url + "/imagine"

    sim.sim.configure(upload_v2="upload_id_only")
    fallback = await client.upload_file_multipart(name="m.png", mime="image/png", data=png("m2"))
    assert fallback.file_id and sim.sim.requests(path="/rest/app-chat/upload-file")

    sim.sim.configure(upload_v2="terminal_error")
    with pytest.raises(UpstreamError) as info:
        await client.upload_file_multipart(name="m.png", mime="image/png", data=png("m3"))
    assert info.value.status == 400


async def test_assets_are_listed_page_by_page_and_deleted(sim, tmp_path):
    client = grok(sim)
    ids = [(await client.upload_file(name=f"{i}.png", mime="image/png", data=png(str(i)))).file_id for i in range(3)]
    first = await client.list_assets(limit=2)
    assert len(first.assets) == 2 and first.next_cursor
    second = await client.list_assets(cursor=first.next_cursor, limit=2)
    assert {a.asset_id for a in first.assets + second.assets} == set(ids)
    assert all(a.content_type == "image/png" and a.size for a in first.assets)
    assert sim.sim.requests(endpoint="assets")[-1]["referer"] == sim.url + "/files"

    await client.delete_asset(asset_id=ids[0])
    remaining = await client.list_assets()
    assert ids[0] not in {a.asset_id for a in remaining.assets}
    with pytest.raises(UpstreamError) as info:
        await client.download_asset(url=f"users/{client.user_id}/{ids[0]}/content", dest=tmp_path / "gone", max_bytes=1000)
    assert info.value.upstream_status == 404
    sim.sim.configure(delete_status=204)
    await client.delete_asset(asset_id=ids[1])


async def test_media_post_create_returns_the_post_id(sim):
    client = grok(sim)
    post_id = await client.media_post_create(media_type="video", prompt="a cat surfing")
    entry = sim.sim.requests(endpoint="media-post")[-1]
    assert post_id and entry["body"] == {"mediaType": "MEDIA_POST_TYPE_VIDEO", "prompt": "a cat surfing"}
    assert entry["referer"] == sim.url + "/imagine"


async def test_imagine_websocket_yields_progress_and_final_images(sim):
    client = grok(sim)
    events = []
    async with contextlib.aclosing(client.imagine_generate(prompt="a red fox", aspect_ratio="16:9", pro=False, n=2)) as gen:
        async for event in gen:
            events.append(event)
    results = [e for e in events if isinstance(e, ImageResult)]
    assert [r.image_index for r in results] == [0, 1]
    for result in results:
        blob = base64.b64decode(result.blob_b64)
        assert blob.startswith(b"\xff\xd8") and result.url and result.image_id
    assert any(isinstance(e, ImageProgress) and 0 < e.progress < 100 for e in events)
    rounds = sim.sim.requests(endpoint="imagine-ws")[-1]["rounds"]
    assert rounds[0]["text"] == "a red fox"
    assert rounds[0]["properties"]["enable_nsfw"] is False and rounds[0]["properties"]["aspect_ratio"] == "16:9"
    entry = sim.sim.requests(endpoint="imagine-ws")[-1]
    assert entry["sso"] and entry["origin"] == sim.url and entry["request_id"] is None


async def test_imagine_drops_moderated_slots_and_reconnects_when_the_server_closes(sim):
    sim.sim.configure(imagine_close_after_round=True, imagine_moderated_orders=[0, 1])
    client = grok(sim)
    results = [e async for e in client.imagine_generate(prompt="x", aspect_ratio="1:1", pro=True, n=3)
               if isinstance(e, ImageResult)]
    assert len(results) == 3 and len({r.image_id for r in results}) == 3
    assert len(sim.sim.requests(endpoint="imagine-ws")) == 2  # quality: 4 slots, 2 moderated → a second socket


async def test_imagine_failures_are_classified(sim):
    with pytest.raises(UpstreamError) as info:
        [e async for e in grok(sim, token="sim-super-b~expired").imagine_generate(prompt="x", aspect_ratio="1:1", pro=False, n=1)]
    assert info.value.kind is UpstreamKind.AUTH_INVALID and info.value.upstream_status == 401

    sim.sim.configure(imagine_moderated_orders=list(range(6)), imagine_close_after_round=False)
    with pytest.raises(UpstreamError) as info:
        [e async for e in grok(sim).imagine_generate(prompt="x", aspect_ratio="1:1", pro=False, n=1)]
    assert info.value.kind is UpstreamKind.MODERATED and info.value.code == "content_policy_violation"

    sim.sim.configure(imagine_moderated_orders=[], imagine_quota={"image": 0, "imagePro": 1, "imageEdit": 1,
                                                                 "video": 1, "video720p": 1})
    with pytest.raises(UpstreamError) as info:
        [e async for e in grok(sim, token="sim-super-q").imagine_generate(prompt="x", aspect_ratio="1:1", pro=False, n=1)]
    assert info.value.kind in (UpstreamKind.RATE_LIMITED, UpstreamKind.QUOTA_EXHAUSTED)


async def test_livekit_token_is_normalised(sim):
    client = grok(sim)
    token = await client.livekit_token(voice="eve", personality="assistant", speed=1.25)
    assert token["token"] and token["url"] == sim.sim.livekit_url()
    assert token["participant_name"] and token["room_name"]
    body = sim.sim.requests(endpoint="livekit")[-1]["body"]
    assert isinstance(body["sessionPayload"], str) and json.loads(body["sessionPayload"])["voice"] == "eve"
    assert body["livekitUrl"] == sim.sim.livekit_url()


async def test_session_identity_resolves_the_user_id(sim):
    client = grok(sim, token="sim-super-a")
    identity = await client.session_identity()
    assert identity["user_id"] == sim.sim.user_id("sim-super-a") == client.user_id
    assert identity["status"] == "authenticated" and identity["email"]
    with pytest.raises(UpstreamError) as info:
        await grok(sim, token="sim-super-b~expired").session_identity()
    assert info.value.kind is UpstreamKind.AUTH_INVALID
    with pytest.raises(UpstreamError) as info:
        await grok(sim, token="sim-super-b~blocked").session_identity()
    assert info.value.kind is UpstreamKind.BLOCKED


class _HtmlPage(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        body = b"<!DOCTYPE html><html><title>Error</title></html>" if self.path.endswith(".html") else b'{"error":"x"}'
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")  # lies: the body is an error page
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


async def test_error_pages_served_as_media_are_rejected(tmp_path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        client = GrokClient(token="t", cfg=make_cfg({"upstream.assets_base_url": base}), egress=DIRECT)
        for name in ("a.html", "a.json"):
            with pytest.raises(UpstreamError) as info:
                await client.download_asset(url=f"users/u/{name}", dest=tmp_path / name, max_bytes=1 << 20)
            assert info.value.kind is UpstreamKind.PROTOCOL
        assert list(tmp_path.iterdir()) == []
    finally:
        httpd.shutdown()


async def test_the_sso_cookie_never_leaves_the_configured_upstream_origins(sim, tmp_path):
    """A whole session against credentialed 127.0.0.1 while public images live on `localhost`."""
    client = grok(sim, **{"upstream.imagine_public_base_url": sim.foreign_url,
                          "upstream.static_statsig_id": "STATIC"})
    await collect(client, client.build_chat_payload(message="hi", mode="fast"))
    uploaded = await client.upload_file(name="a.png", mime="image/png", data=png("a"))
    await client.download_asset(url=uploaded.file_uri, dest=tmp_path / "a.png", max_bytes=1 << 20)
    # an image URL on the public host (another origin) is fetched without any credential
    public = await client.download_asset(url=f"{sim.foreign_url}/__ext/img/pub.png", dest=tmp_path / "p.png",
                                         max_bytes=1 << 20)
    assert public.content_type == "image/png"
    async with contextlib.aclosing(client.imagine_generate(prompt="x", aspect_ratio="1:1", pro=False, n=1)) as gen:
        async for _ in gen:
            pass

    foreign = sim.sim.foreign
    assert foreign and all(not f["cookie"] and not f["x-statsig-id"] and not f["x-xai-request-id"] for f in foreign)
    assert sim.sim.leaks == []
    credentialed_hosts = {e["host"] for e in sim.sim.requests() if e["cookie"]}
    assert credentialed_hosts == {sim.url.split("://", 1)[1]}


async def test_manual_clearance_cookies_and_user_agent_arrive_unchanged(sim):
    sim.reset(require_clearance={"cf_clearance": "CFVALUE", "user_agent": "Operator-UA/1.0"})
    cfg = {"proxy.clearance.mode": "manual", "proxy.clearance.cf_cookies": "cf_clearance=CFVALUE; __cf_bm=bm",
           "proxy.clearance.user_agent": "Operator-UA/1.0"}
    assert (await grok(sim, **cfg).rate_limits(mode="auto"))["totalQueries"] == 50
    entry = sim.sim.requests(endpoint="rate-limits")[-1]
    assert entry["cf_clearance"] == "CFVALUE" and entry["user_agent"] == "Operator-UA/1.0"
    with pytest.raises(UpstreamError) as info:
        await grok(sim, **{**cfg, "proxy.clearance.mode": "none"}).rate_limits(mode="auto")
    assert info.value.kind is UpstreamKind.CLOUDFLARE and info.value.code == "upstream_cloudflare_challenge"


async def test_imagine_accepts_percentages_sent_as_strings(sim):
    sim.sim.configure(imagine_percent_strings=True)
    events = [e async for e in grok(sim).imagine_generate(prompt="x", aspect_ratio="1:1", pro=False, n=1)]
    assert any(isinstance(e, ImageProgress) and 0 < e.progress < 100 for e in events)
    assert isinstance(events[-1], ImageResult)


async def test_a_stalled_imagine_socket_hits_the_per_frame_wait(sim):
    client = grok(sim, token="sim-super-s~stall@1=3000", **{"image.stream_timeout": 1})
    with pytest.raises(UpstreamError) as info:
        [e async for e in client.imagine_generate(prompt="x", aspect_ratio="1:1", pro=False, n=1)]
    assert info.value.kind is UpstreamKind.TIMEOUT


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_a_chat_body_is_read_the_same_with_and_without_content_encoding(encoding):
    """Without a Content-Encoding the raw chunks are read; with one, httpx2 decodes them: the
    events are the same."""
    import gzip
    from pathlib import Path

    from grokweb.tests._config import make_cfg
    from grokweb.tests.rawservers import serve

    plain = (Path(__file__).parent / "fixtures" / "chat__plain.ndjson").read_bytes()
    body = gzip.compress(plain) if encoding == "gzip" else plain

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: %s\r\n"
                     b"content-length: %d\r\n\r\n%s" % (encoding.encode(), len(body), body))
        await writer.drain()
        await reader.read()

    async with serve(handle) as (port, _):
        client = GrokClient(token="sim-super-a", cfg=make_cfg({"upstream.web_base_url": f"http://127.0.0.1:{port}"}), egress=DIRECT)
        events = await collect(client, client.build_chat_payload(message="hi", mode="fast"))
        await chat_drains_settle()
    text = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert text and text in plain.decode()
    assert [type(e) for e in events].count(Completed) == 1
