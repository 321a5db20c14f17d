"""REST, assets, public and control endpoints of the simulator over a real socket."""
from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image

from grokweb.simulator import media

from .helpers import CHAT, call, chat, lines, model_response

TOKEN = "sim-super-ep1"


def _png(w: int, h: int) -> str:
    return base64.b64encode(media.png_bytes("up", w, h)).decode()


def test_json_upload_stores_bytes_that_only_the_owner_can_download(sim):
    r = call(sim, "POST", "/rest/app-chat/upload-file", TOKEN,
             json={"fileName": "cat.png", "fileMimeType": "image/png", "content": _png(8, 8)})
    assert r.status_code == 200
    body = r.json()
    uid = sim.sim.user_id(TOKEN)
    assert body["fileUri"] == f"users/{uid}/{body['fileMetadataId']}/content"
    got = call(sim, "GET", "/" + body["fileUri"], TOKEN)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(got.content)).size == (8, 8)
    other = call(sim, "GET", "/" + body["fileUri"], "sim-super-other")
    assert other.status_code == 403 and other.headers["content-type"] == "application/json"
    assert call(sim, "GET", "/" + body["fileUri"]).status_code == 401


@pytest.mark.parametrize("size", [(1, 1), (1, 5)])
def test_upload_rejects_images_smaller_than_two_by_two(sim, size):
    r = call(sim, "POST", "/rest/app-chat/upload-file", TOKEN,
             json={"fileName": "dot.png", "fileMimeType": "image/png", "content": _png(*size)})
    assert r.status_code == 400 and r.json() == {"error": {"message": "reference rejected"}}


def test_upload_rejects_invalid_base64(sim):
    r = call(sim, "POST", "/rest/app-chat/upload-file", TOKEN,
             json={"fileName": "x.txt", "fileMimeType": "text/plain", "content": "@@not base64@@"})
    assert r.status_code == 400 and "base64" in r.json()["error"]["message"]


def test_multipart_upload_and_its_knobs(sim):
    files = {"file": ("ref.jpg", media.jpeg_bytes("mp", 16, 16), "image/jpeg")}
    r = call(sim, "POST", "/http/upload-file-v2/direct", TOKEN, files=files,
             data={"file_source": "IMAGINE_SELF_UPLOAD_FILE_SOURCE"})
    assert r.status_code == 200
    meta = r.json()["fileMetadata"]
    assert r.json()["uploadId"] and meta["fileUri"].endswith("/content")
    assert call(sim, "GET", "/" + meta["fileUri"], TOKEN).content == media.jpeg_bytes("mp", 16, 16)
    entry = sim.sim.requests(path="/http/upload-file-v2/direct")[-1]
    assert entry["body"]["file_source"] == "IMAGINE_SELF_UPLOAD_FILE_SOURCE"
    sim.sim.configure(upload_v2="terminal_error")
    assert call(sim, "POST", "/http/upload-file-v2/direct", TOKEN, files=files).json()["terminalError"]
    sim.sim.configure(upload_v2="upload_id_only")
    assert set(call(sim, "POST", "/http/upload-file-v2/direct", TOKEN, files=files).json()) == {"uploadId"}
    assert call(sim, "POST", "/http/upload-file-v2/direct", TOKEN, data={"x": "1"}, files={"other": ("a", b"a")}).status_code == 400


def test_assets_list_paginates_and_delete_makes_downloads_404(sim):
    ids = []
    for i in range(3):
        r = call(sim, "POST", "/rest/app-chat/upload-file", TOKEN,
                 json={"fileName": f"f{i}.txt", "fileMimeType": "text/plain", "content": base64.b64encode(b"hello %d" % i).decode()})
        ids.append(r.json()["fileMetadataId"])
        sim.sim.advance(1)
    page = call(sim, "GET", "/rest/assets", TOKEN, params={"limit": 2}).json()
    assert len(page["assets"]) == 2 and page["nextCursor"] == "2"
    a = page["assets"][0]
    assert set(a) == {"assetId", "fileName", "filePath", "contentType", "fileSize", "createdAt"}
    assert a["assetId"] == ids[-1] and a["fileSize"] == 7
    rest = call(sim, "GET", "/rest/assets", TOKEN, params={"limit": 2, "cursor": page["nextCursor"]}).json()
    assert [x["assetId"] for x in rest["assets"]] == [ids[0]] and "nextCursor" not in rest
    path = a["filePath"]
    d = call(sim, "DELETE", f"/rest/assets-metadata/{ids[-1]}", TOKEN)
    assert d.status_code == 200
    assert call(sim, "GET", "/" + path, TOKEN).status_code == 404
    sim.sim.configure(delete_status=204)
    assert call(sim, "DELETE", f"/rest/assets-metadata/{ids[0]}", TOKEN).status_code == 204
    assert call(sim, "DELETE", f"/rest/assets-metadata/{ids[0]}", TOKEN).status_code == 404
    assert call(sim, "GET", "/rest/assets", "sim-super-nobody").json() == {"assets": []}


def test_rate_limits_report_tier_tables_and_unknown_models(sim):
    def rl(token, mode):
        return call(sim, "POST", "/rest/rate-limits", token, json={"modelName": mode})
    basic = rl("sim-basic-q", "fast").json()
    assert basic == {"windowSizeSeconds": 86400, "remainingQueries": 30, "totalQueries": 30, "waitTimeSeconds": 0,
                     "lowEffortRateLimits": None, "highEffortRateLimits": None}
    assert rl("sim-basic-q", "auto").json()["totalQueries"] == 0
    assert rl("sim-super-q", "auto").json()["totalQueries"] == 50
    assert rl("sim-super-q", "heavy").json()["totalQueries"] == 0
    assert rl("sim-heavy-q", "heavy").json()["totalQueries"] == 20
    assert rl("sim-heavy-q", "fast").json()["windowSizeSeconds"] == 7200
    nf = rl("sim-super-q", "grok-99")
    assert nf.status_code == 404 and nf.json()["message"] == "Model not found" and "error" not in nf.json()
    sim.sim.configure(basic_auto_total=20)
    assert rl("sim-basic-q", "auto").json()["totalQueries"] == 20


def test_quota_decrements_per_request_exhausts_with_429_and_resets_after_the_window(sim):
    token = "sim-super-qq~quota=2~window=600"
    for expected in (1, 0):
        assert chat(sim, token, "[user]: hi", mode="expert").status_code == 200
        rl = call(sim, "POST", "/rest/rate-limits", token, json={"modelName": "expert"}).json()
        assert rl["remainingQueries"] == expected and rl["totalQueries"] == 2
    assert rl["waitTimeSeconds"] == 600
    refused = chat(sim, token, "[user]: hi", mode="expert")
    assert refused.status_code == 429 and refused.json() == {"error": {"code": 8, "message": "Too many requests", "details": []}}
    assert chat(sim, token, "[user]: hi", mode="fast").status_code == 200  # other modes unaffected
    sim.sim.advance(400)
    assert call(sim, "POST", "/rest/rate-limits", token, json={"modelName": "expert"}).json()["waitTimeSeconds"] == 200
    sim.sim.advance(200)
    assert call(sim, "POST", "/rest/rate-limits", token, json={"modelName": "expert"}).json()["remainingQueries"] == 2
    assert chat(sim, token, "[user]: hi", mode="expert").status_code == 200


def test_exhausted_quota_can_answer_in_band(sim):
    sim.sim.configure(exhausted="inband")
    token = "sim-basic-inb"
    objs = lines(chat(sim, token, "[user]: hi", mode="auto"))  # basic has no auto window
    assert objs[-1]["result"]["response"]["error"]["message"].startswith("You've reached your usage limit")


def test_imagine_quota_info_shape_and_next_available(sim):
    r = call(sim, "POST", "/rest/media/imagine/quota_info", TOKEN, json={})
    body = r.json()
    assert set(body) == {"image", "imagePro", "imageEdit", "video", "video720p"}
    assert body["image"] == {"available": True, "remainingQueries": 100, "windowSizeSeconds": 86400}
    sim.sim.set_quota(TOKEN, "video", remaining=0)
    sim.sim.configure(imagine_quota={"image": 100, "imagePro": None, "imageEdit": 100, "video": 50, "video720p": 20})
    body = call(sim, "POST", "/rest/media/imagine/quota_info", TOKEN, json={}).json()
    assert body["imagePro"] is None
    assert body["video"]["available"] is False and body["video"]["nextAvailableAt"].endswith("Z")


def test_media_post_create(sim):
    r = call(sim, "POST", "/rest/media/post/create", TOKEN, json={"mediaType": "MEDIA_POST_TYPE_IMAGE", "mediaUrl": "https://x/y"})
    post = r.json()["post"]
    assert post["mediaType"] == "MEDIA_POST_TYPE_IMAGE" and post["modelName"] == "imagine_x_1" and post["mediaUrl"] == "https://x/y"
    assert call(sim, "POST", "/rest/media/post/create", TOKEN, json={"mediaType": "NOPE"}).status_code == 400


def _edit_legacy(refs):
    return {"temporary": True, "modelName": "imagine-image-edit", "message": "make it blue", "enableImageStreaming": True,
            "responseMetadata": {"modelConfigOverride": {"modelMap": {"imageEditModel": "imagine",
                                 "imageEditModelConfig": {"imageReferences": refs, "parentPostId": "p1"}}}}}


def test_image_edit_legacy_and_media_gen_input_forms_stream_two_images(sim):
    for payload in (_edit_legacy(["https://assets.example/users/u/f/content"]),
                    {"modelName": "imagine-image-edit", "message": "blue",
                     "mediaGenInput": {"imageToImage": {"prompt": "blue", "inputAssets": ["a1"], "aspectRatio": "1:1"}}}):
        objs = lines(call(sim, "POST", CHAT, TOKEN, json=payload))
        prog = [o["result"]["response"]["streamingImageGenerationResponse"] for o in objs
                if "streamingImageGenerationResponse" in o.get("result", {}).get("response", {})]
        assert [(p["imageIndex"], p["progress"]) for p in prog] == [(0, 50), (0, 100), (1, 50), (1, 100)]
        finals = [p for p in prog if p["progress"] == 100]
        assert all(p["assetId"] and not p["moderated"] for p in finals)
        mr = model_response(objs)
        assert mr["fileAttachments"] == [p["assetId"] for p in finals]
        assert mr["generatedImageUrls"] == [p["imageUrl"] for p in finals]
        img = call(sim, "GET", "/" + finals[0]["imageUrl"], TOKEN)
        Image.open(io.BytesIO(img.content)).load()
    assert sim.sim.quotas(TOKEN)["imagine"]["imageEdit"]["remaining"] == 98
    assert call(sim, "POST", CHAT, TOKEN, json=_edit_legacy([])).status_code == 400


def _video_payload(extra_cfg=None):
    cfg = {"parentPostId": "p1", "aspectRatio": "16:9", "videoLength": 6, "resolutionName": "480p", **(extra_cfg or {})}
    return {"temporary": True, "modelName": "imagine-video-gen", "message": "a cat surfing --mode=custom",
            "responseMetadata": {"experiments": [], "modelConfigOverride": {"modelMap": {"videoGenModelConfig": cfg}}}}


def test_video_generation_streams_progress_and_serves_mp4_flac_and_thumbnail(sim):
    objs = lines(call(sim, "POST", CHAT, TOKEN, json=_video_payload()))
    prog = [o["result"]["response"]["streamingVideoGenerationResponse"] for o in objs
            if "streamingVideoGenerationResponse" in o.get("result", {}).get("response", {})]
    assert [p["progress"] for p in prog] == [1, 5, 13, 22, 29, 38, 46, 57, 95, 100]
    final = prog[-1]
    for key in ("assetId", "videoUrl", "audioUrls", "videoPostId", "thumbnailImageUrl", "resolutionName"):
        assert final[key]
    mr = model_response(objs)
    assert mr["fileAttachments"] == [final["videoId"]] and mr["sender"] == "ASSISTANT"
    mp4 = call(sim, "GET", "/" + final["videoUrl"], TOKEN)
    assert mp4.headers["content-type"] == "video/mp4"
    assert [b[0] for b in media.mp4_boxes(mp4.content)] == [b"ftyp", b"mdat", b"moov"]
    flac = call(sim, "GET", "/" + final["audioUrls"][0], TOKEN)
    assert flac.headers["content-type"] == "audio/flac" and flac.content[:4] == b"fLaC"
    thumb = call(sim, "GET", "/" + final["thumbnailImageUrl"], TOKEN)
    Image.open(io.BytesIO(thumb.content)).load()
    assert sim.sim.quotas(TOKEN)["imagine"]["video"]["remaining"] == 49
    # An extension of that video is a new video with its own ids.
    ext = lines(call(sim, "POST", CHAT, TOKEN, json=_video_payload({
        "isVideoExtension": True, "extendPostId": final["videoPostId"], "videoExtensionStartTime": 6.04,
        "stitchWithExtendPostId": True, "originalPostId": "p1", "videoLength": 6, "resolutionName": "720p"})))
    ext_final = [o["result"]["response"]["streamingVideoGenerationResponse"] for o in ext
                 if "streamingVideoGenerationResponse" in o.get("result", {}).get("response", {})][-1]
    assert ext_final["videoId"] != final["videoId"] and ext_final["videoPostId"] != final["videoPostId"]
    assert sim.sim.quotas(TOKEN)["imagine"]["video720p"]["remaining"] == 19
    bad = call(sim, "POST", CHAT, TOKEN, json=_video_payload({"isVideoExtension": True}))
    assert bad.status_code == 400


def test_text_to_video_variant_and_moderation(sim):
    payload = {"modelName": "imagine-video-gen", "message": "rain --mode=custom", "kind": "CONVERSATION_KIND_IMAGINE",
               "mediaGenInput": {"textToVideo": {"prompt": "rain", "aspectRatio": "16:9", "duration": 4, "resolutionName": "480p"}}}
    objs = lines(call(sim, "POST", CHAT, TOKEN + "~moderate", json=payload))
    final = [o["result"]["response"]["streamingVideoGenerationResponse"] for o in objs
             if "streamingVideoGenerationResponse" in o.get("result", {}).get("response", {})][-1]
    assert final["progress"] == 100 and final["moderated"] is True and "videoUrl" not in final
    payload["mediaGenInput"]["textToVideo"]["duration"] = 30
    assert call(sim, "POST", CHAT, TOKEN, json=payload).status_code == 400


def test_livekit_token_requires_a_json_string_payload_and_rtc_accepts_issued_tokens(sim):
    import websockets.sync.client as wsc
    from websockets.exceptions import ConnectionClosedOK, InvalidStatus
    sp = json.dumps({"voice": "ara", "personality": "assistant", "playback_speed": 1.0})
    r = call(sim, "POST", "/rest/livekit/tokens", TOKEN, json={"sessionPayload": sp, "requestAgentDispatch": False,
                                                              "livekitUrl": "ws://x", "params": {}})
    body = r.json()
    assert body["token"] and body["participantName"] and body["roomName"]
    assert body["livekitUrl"] == sim.ws_url
    assert call(sim, "POST", "/rest/livekit/tokens", TOKEN, json={"sessionPayload": {"voice": "ara"}}).status_code == 400
    assert call(sim, "POST", "/rest/livekit/tokens", TOKEN, json={"sessionPayload": "{nope"}).status_code == 400
    with wsc.connect(f"{body['livekitUrl']}/rtc?auto_subscribe=1&sdk=js&protocol=15&access_token={body['token']}") as ws:
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=5)
    with pytest.raises(InvalidStatus) as refused:
        wsc.connect(f"{sim.ws_url}/rtc?access_token=forged").close()
    assert refused.value.response.status_code == 401
    assert sim.sim.rtc_connections[0]["cookie"] is False


def test_session_identity_per_scenario(sim):
    ok = call(sim, "GET", "/api/auth/session", TOKEN).json()
    assert ok["status"] == "authenticated" and ok["session"]["userId"] == sim.sim.user_id(TOKEN)
    assert call(sim, "GET", "/api/auth/session", TOKEN).json() == ok  # deterministic
    assert call(sim, "GET", "/api/auth/session", "sim-basic-x~expired").json()["status"] == "unauthenticated"
    assert call(sim, "GET", "/api/auth/session", "sim-basic-x~blocked").json()["status"] == "blocked"


AUTH = {"error": {"code": 16, "message": "Failed to look up session ID. [WKE=unauthenticated:invalid-credentials]", "details": []}}


@pytest.mark.parametrize("directive, status, body", [
    ("expired", 401, AUTH),
    ("expired403", 403, AUTH),
    ("blocked", 403, {"code": 7, "message": "User is blocked: Bot abuse - free tier account 1234567890 [WKE=unauthorized:blocked-user]", "details": []}),
    ("emaildomain", 400, {"code": 3, "message": "This email domain has been rejected. [WKE=account:email-domain-rejected]", "details": []}),
    ("antibot", 403, {"error": {"code": 7, "message": "Request rejected by anti-bot rules.", "details": []}}),
    ("rl", 429, {"error": {"code": 8, "message": "Too many requests", "details": []}}),
    ("http=503", 503, {"error": {"code": 14, "message": "unavailable", "details": []}}),
])
def test_error_bodies_per_directive(sim, directive, status, body):
    r = chat(sim, f"sim-super-err~{directive}", "[user]: hi")
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    assert r.json() == body


def test_cloudflare_html_on_every_role_and_5xx_html_knob(sim):
    token = "sim-super-err~cf"
    for method, path, kwargs in (("POST", CHAT, {"json": {"message": "hi"}}), ("GET", "/users/x/y/content", {}),
                                 ("POST", "/rest/rate-limits", {"json": {"modelName": "fast"}})):
        r = call(sim, method, path, token, **kwargs)
        assert r.status_code == 403 and r.headers["content-type"] == "text/html; charset=UTF-8"
        assert "Just a moment..." in r.text and "/cdn-cgi/challenge-platform/" in r.text
    sim.sim.configure(error_body="html")
    r = chat(sim, "sim-super-err~http=502", "[user]: hi")
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html")


def test_rate_limits_endpoint_uses_bare_error_shapes(sim):
    r = call(sim, "POST", "/rest/rate-limits", "sim-super-err~expired", json={"modelName": "fast"})
    assert r.status_code == 401 and r.json()["code"] == 16 and "error" not in r.json()
    r = call(sim, "POST", "/rest/rate-limits", json={"modelName": "fast"})
    assert r.status_code == 401 and r.json()["code"] == 16


def test_missing_or_non_sim_tokens_follow_the_policy(sim):
    assert call(sim, "POST", CHAT, json={"message": "hi"}).json() == AUTH
    assert chat(sim, "eyJhbGciOi.real-looking.jwt", "[user]: hi").status_code == 200
    rl = call(sim, "POST", "/rest/rate-limits", "eyJhbGciOi.real-looking.jwt", json={"modelName": "fast"}).json()
    assert rl["totalQueries"] == 30
    sim.sim.configure(non_sim_tokens="reject")
    assert chat(sim, "eyJhbGciOi.real-looking.jwt", "[user]: hi").status_code == 401
    assert chat(sim, "sim-gold-x", "[user]: hi").status_code == 401  # malformed sim token


def test_strict_header_checks(sim):
    sim.sim.configure(require_cookie_pair=True)
    only_sso = call(sim, "POST", CHAT, headers={"Cookie": f"sso={TOKEN}"}, json={"message": "hi"})
    assert only_sso.status_code == 401
    assert chat(sim, TOKEN, "[user]: hi").status_code == 200
    sim.sim.configure(require_cookie_pair=False, require_statsig="any")
    assert chat(sim, TOKEN, "[user]: hi").status_code == 403
    ok = call(sim, "POST", CHAT, TOKEN, headers={"x-statsig-id": "anything"}, json={"message": "hi", "modeId": "fast"})
    assert ok.status_code == 200
    sim.sim.configure(require_statsig="exact-value")
    assert call(sim, "POST", CHAT, TOKEN, headers={"x-statsig-id": "other"}, json={"message": "hi"}).status_code == 403
    sim.sim.configure(require_statsig="", require_clearance={"cf_clearance": "abc", "user_agent": "UA/1"})
    assert chat(sim, TOKEN, "[user]: hi").headers["content-type"].startswith("text/html")
    good = call(sim, "POST", CHAT, headers={"Cookie": f"sso={TOKEN}; sso-rw={TOKEN}; cf_clearance=abc", "User-Agent": "UA/1"},
                json={"message": "hi", "modeId": "fast"})
    assert good.status_code == 200


def test_request_log_records_selected_headers_and_parsed_body(sim):
    call(sim, "POST", CHAT, TOKEN, headers={"x-statsig-id": "S1", "Origin": "http://o", "Referer": "http://o/",
                                            "User-Agent": "UA/2", "x-xai-request-id": "rid"},
         json={"message": "[user]: logged", "modeId": "fast"})
    log = call(sim, "GET", "/__sim/log", params={"token": TOKEN}).json()["requests"]
    e = log[-1]
    assert e["sso"] and e["sso_rw"] and e["cookie_pair_equal"]
    assert (e["statsig"], e["origin"], e["referer"], e["user_agent"], e["request_id"]) == ("S1", "http://o", "http://o/", "UA/2", "rid")
    assert e["body"]["message"] == "[user]: logged" and e["status"] == 200 and e["endpoint"] == "chat"


def test_public_images_need_no_auth_and_credential_leaks_are_recorded(sim):
    url = sim.sim.public_image("11111111-2222-4333-8444-555555555555")
    assert url.startswith(sim.url + "/imagine-public/images/")
    assert httpx.get(url).status_code == 200
    assert sim.sim.leaks == []
    httpx.get(url, headers={"Cookie": "sso=x"})
    assert sim.sim.leaks[-1]["cookie"] is True
    assert httpx.get(sim.url + "/imagine-public/images/unknown.jpg").status_code == 404


def test_foreign_content_route_serves_images_and_records_grok_headers(sim):
    clean = httpx.get(sim.foreign_url + "/__ext/img/cat.png")
    assert clean.status_code == 200 and Image.open(io.BytesIO(clean.content)).format == "PNG"
    httpx.get(sim.foreign_url + "/__ext/img/dog.jpg", headers={"x-statsig-id": "s", "x-xai-request-id": "r"})
    leaks = call(sim, "GET", "/__sim/leaks").json()["foreign"]
    assert leaks[0] | {"user_agent": None} == {"path": "/__ext/img/cat.png", "host": f"localhost:{sim.port}", "cookie": False,
                                               "x-statsig-id": False, "x-xai-request-id": False, "user_agent": None}
    assert leaks[1]["x-statsig-id"] and leaks[1]["x-xai-request-id"] and not leaks[1]["cookie"]


def test_unknown_paths_are_404(sim):
    assert call(sim, "GET", "/nothing/here", TOKEN).status_code == 404
    assert call(sim, "GET", "/rest/app-chat/conversations/new", TOKEN).status_code == 405


def test_control_api_clock_knobs_tier_and_quota(sim):
    now = call(sim, "GET", "/__sim/clock").json()["now"]
    assert call(sim, "POST", "/__sim/clock", json={"advance": 3600}).json()["now"] == now + 3600
    assert call(sim, "POST", "/__sim/knobs", json={"pace": 0.5}).json()["knobs"]["pace"] == 0.5
    assert call(sim, "POST", "/__sim/knobs", json={"warp": 9}).status_code == 400
    call(sim, "POST", "/__sim/tier", json={"token": "sim-basic-up", "tier": "heavy"})
    assert call(sim, "POST", "/rest/rate-limits", "sim-basic-up", json={"modelName": "heavy"}).json()["totalQueries"] == 20
    call(sim, "POST", "/__sim/quota", json={"token": TOKEN, "mode": "fast", "remaining": 0})
    assert chat(sim, TOKEN, "[user]: hi").status_code == 429
    q = call(sim, "GET", "/__sim/quota", params={"token": TOKEN}).json()
    assert q["modes"]["fast"]["remaining"] == 0 and q["tier"] == "super"
    assert call(sim, "GET", "/__sim/tokens").json()["examples"] == ["sim-super-demo1", "sim-basic-demo2", "sim-heavy-demo3"]
    call(sim, "POST", "/__sim/reset", json={})
    assert call(sim, "GET", "/__sim/quota", params={"token": TOKEN}).json()["modes"]["fast"]["remaining"] == 140


def test_openai_face_streams_the_same_tokens_and_has_a_non_stream_form(sim):
    body = {"model": "grok-sim", "messages": [{"role": "user", "content": "hello #sim:len=7"}], "stream": True,
            "stream_options": {"include_usage": True}}
    r = httpx.post(sim.url + "/openai/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"})
    frames = [json.loads(ln[6:]) for ln in r.text.split("\n") if ln.startswith("data: {")]
    deltas = [f["choices"][0]["delta"].get("content") for f in frames if f["choices"] and f["choices"][0]["delta"].get("content")]
    assert len(deltas) == 7 and r.text.rstrip().endswith("data: [DONE]")
    assert frames[-1]["usage"]["completion_tokens"] == 7
    plain = httpx.post(sim.url + "/openai/v1/chat/completions", json={**body, "stream": False}).json()
    assert plain["choices"][0]["message"]["content"] == "".join(deltas)
    assert httpx.post(sim.url + "/openai/v1/chat/completions", json={"model": "x"}).status_code == 400
    # The grok face answers the same flattened prompt with the same text (benchmarks compare like with like).
    grok = model_response(lines(chat(sim, TOKEN, "[user]: hello #sim:len=7")))
    assert grok["message"] == plain["choices"][0]["message"]["content"]
