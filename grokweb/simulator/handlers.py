"""HTTP endpoints of the simulator (docs/upstream-protocol.md §15.3), framework-free.

Web role: E1 chat (``/rest/app-chat/conversations/new``), E2 follow-up (``…/{id}/responses``), E3/E4
uploads, E5 list, E6 delete, E8 rate limits, E9 Imagine quota, E10 media post, E12 LiveKit token, E13
session. Assets role: ``/users/<userId>/…`` (E7). Public Imagine role: ``/imagine-public/images/…``.
Foreign content: ``/__ext/img/<name>.png|jpg``. OpenAI-shaped face for a peer gateway:
``/openai/v1/chat/completions`` and ``/openai/v1/models``. Control API: ``/__sim/*`` (see :mod:`.control`).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from typing import Any, AsyncIterator, Callable

import orjson

from . import chat, content, media
from .core import (
    MODEL_NOT_FOUND_BODY, MODES, PRODUCTS, RATE_BODY, UPLOAD_REJECTED_BODY, Reject, SimRequest, SimResponse,
    Simulator, endpoint_of,
)

_MODEL_MODE = {
    "MODEL_MODE_FAST": "fast", "MODEL_MODE_AUTO": "auto", "MODEL_MODE_EXPERT": "expert", "MODEL_MODE_HEAVY": "heavy",
    "MODEL_MODE_GROK_420": "grok-420-computer-use-sa", "MODEL_MODE_GROK_3": "fast",
}
_MODEL_NAME = {"grok-3": "fast", "grok-4": "expert", "grok-4-1-thinking-1129": "expert", "grok-420": "grok-420-computer-use-sa",
               "grok-4-auto": "auto", "grok-4-heavy": "heavy"}


def _bad(message: str, status: int = 400) -> SimResponse:
    return SimResponse.json(status, {"error": {"code": 3, "message": message, "details": []}})


def _parse_json(req: SimRequest) -> Any:
    try:
        return req.json()
    except ValueError:
        raise Reject(_bad("request body is not valid JSON")) from None


def resolve_mode(payload: dict) -> str | None:
    if payload.get("modeId"):
        return str(payload["modeId"])
    mm = payload.get("modelMode")
    if mm:
        return _MODEL_MODE.get(str(mm), "expert")
    name = payload.get("modelName")
    if name:
        return _MODEL_NAME.get(str(name), "auto")
    return "auto"


def _media_kind(payload: dict) -> str | None:
    name = payload.get("modelName")
    mgi = payload.get("mediaGenInput") or {}
    if name == "imagine-image-edit" or "imageToImage" in mgi:
        return "edit"
    if name == "imagine-video-gen" or "textToVideo" in mgi or (payload.get("toolOverrides") or {}).get("videoGen"):
        return "video"
    return None


def _model_map(payload: dict) -> dict:
    rm = payload.get("responseMetadata") or {}
    mco = rm.get("modelConfigOverride") or {}
    return mco.get("modelMap") or {}


def _video_config(payload: dict) -> tuple[dict, str | None]:
    mgi = (payload.get("mediaGenInput") or {}).get("textToVideo")
    message = str(payload.get("message", ""))
    mode_match = re.search(r"--mode=(\S+)", message)
    prompt = re.sub(r"\s*--mode=\S+", "", message).strip()
    if isinstance(mgi, dict):
        duration = mgi.get("duration", 6)
        if not isinstance(duration, (int, float)) or not 1 <= duration <= 15:
            return {}, "textToVideo.duration must be between 1 and 15"
        return {"prompt": mgi.get("prompt", prompt), "aspectRatio": mgi.get("aspectRatio", "16:9"),
                "resolutionName": mgi.get("resolutionName", "720p"), "videoLength": duration,
                "mode": mode_match.group(1) if mode_match else "custom"}, None
    cfg = dict(_model_map(payload).get("videoGenModelConfig") or {})
    if cfg.get("isVideoExtension") and not cfg.get("extendPostId"):
        return {}, "extension request needs extendPostId"
    refs = cfg.get("imageReferences") or []
    cfg.setdefault("prompt", cfg.get("originalPrompt", prompt))
    cfg.setdefault("mode", mode_match.group(1) if mode_match else "custom")
    cfg.setdefault("resolutionName", "720p")
    if refs:
        cfg["imageReference"] = refs[0]
    return cfg, None


def _edit_references(payload: dict) -> list[str]:
    cfg = _model_map(payload).get("imageEditModelConfig") or {}
    refs = list(cfg.get("imageReferences") or [])
    i2i = (payload.get("mediaGenInput") or {}).get("imageToImage") or {}
    refs += [str(r) for r in (i2i.get("inputAssets") or [])]
    return refs


async def _stream(sim: Simulator, entry: dict, token: str, plan: list, framing: frozenset, flat: bool) -> AsyncIterator[bytes]:
    try:
        async for chunk in chat.render(plan, framing, flat=flat):
            yield chunk
            # modelResponse ends the answer; a client may close before reading the title trailer
            # (the gateway stops at modelResponse, docs/upstream-protocol.md §4.7), which is still a completed exchange.
            if b'"modelResponse"' in chunk and b'"streamErrors":[]' in chunk.replace(b" ", b""):
                entry["completed"] = True
        entry["completed"] = True
    except chat.Drop:
        entry["dropped"] = True
        raise
    except (asyncio.CancelledError, GeneratorExit):
        entry["disconnected"] = True
        raise
    finally:
        entry["closed_at"] = time.monotonic()


def _release(sim: Simulator, token: str, entry: dict) -> Callable[[], None]:
    """Runs once when the exchange ends, even if the body was never iterated (early disconnect)."""
    def release() -> None:
        with sim._lock:
            if sim.inflight.get(token, 0) > 0:  # a reset() may have happened while streaming
                sim.inflight[token] -= 1
        if not entry.get("completed") and not entry.get("dropped"):
            entry["disconnected"] = True
        entry.setdefault("closed_at", time.monotonic())
    return release


async def chat_endpoint(sim: Simulator, req: SimRequest, entry: dict, *, flat: bool = False) -> SimResponse:
    payload = _parse_json(req)
    if not isinstance(payload, dict) or not isinstance(payload.get("message"), str):
        return _bad("message is required")
    kind = _media_kind(payload)
    mode = resolve_mode(payload)
    token, sc = sim.gate(req, "chat", mode=mode)
    entry["token"] = token
    if kind is None and mode not in MODES:
        return _bad(f"unknown mode {mode!r}")
    prompt = content.parse_prompt(payload["message"])
    draw = content.is_drawing(prompt)
    video_cfg: dict = {}
    refs: list[str] = []
    if kind == "video":
        video_cfg, err = _video_config(payload)
        if err:
            return _bad(err)
        product = "video720p" if str(video_cfg.get("resolutionName", "")).lower() == "720p" else "video"
    elif kind == "edit":
        refs = _edit_references(payload)
        if not refs:
            return _bad("image edit needs at least one image reference")
        product = "imageEdit"
    else:
        product = "fast" if draw else mode
    limit = int(sim.knobs["max_concurrent_per_account"] or 0)
    with sim._lock:
        if limit and sim.inflight[token] >= limit:
            return SimResponse.json(429, RATE_BODY)
        if not sim.charge(token, sc, product):
            exhausted = True
        else:
            exhausted = False
            sim.inflight[token] += 1
    n = sim.next_request(token)
    ctx = chat.ChatContext(sim=sim, token=token, scenario=sc, request_no=n, payload=payload,
                           mode=mode if mode in MODES else "fast", user_id=sim.user_id(token), flat=flat)
    entry["charged"] = None if exhausted else product
    if exhausted:
        if sim.knobs["exhausted"] == "inband":
            ctx.head()
            ctx.line({"result": {"response": {"error": {"message": chat._USAGE_LIMIT}}}})
            with sim._lock:
                sim.inflight[token] += 1
            return SimResponse(200, [("content-type", "application/json")],
                               _stream(sim, entry, token, ctx.plan, sc.framing, flat), _release(sim, token, entry))
        return SimResponse.json(429, RATE_BODY)
    if kind == "video":
        plan = chat.plan_video(ctx, video_cfg)
    elif kind == "edit":
        plan = chat.plan_image_edit(ctx, refs)
    else:
        plan = chat.plan_chat(ctx)
    ctype = "text/event-stream" if "sse" in sc.framing else "application/json"
    return SimResponse(200, [("content-type", ctype)], _stream(sim, entry, token, plan, sc.framing, flat),
                       _release(sim, token, entry))


def upload_json(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    payload = _parse_json(req)
    token, sc = sim.gate(req, "upload")
    entry["token"] = token
    if not isinstance(payload, dict) or not isinstance(payload.get("content"), str):
        return _bad("content (base64) is required")
    try:
        data = base64.b64decode(payload["content"], validate=True)
    except (binascii.Error, ValueError):
        return _bad("content is not valid base64")
    name = str(payload.get("fileName") or "file")
    mime = str(payload.get("fileMimeType") or "application/octet-stream")
    return _store_upload(sim, token, data, name, mime, entry, legacy=True)


def _store_upload(sim: Simulator, token: str, data: bytes, name: str, mime: str, entry: dict, *, legacy: bool) -> SimResponse:
    if not data:
        return _bad("empty file")
    sniff = media.image_size(data)
    if sniff or mime.startswith("image/"):
        if not sniff or sniff[1] < 2 or sniff[2] < 2:
            return SimResponse.json(400, UPLOAD_REJECTED_BODY)
        mime = sniff[0]
    n = sim.next_request(token)
    file_id = sim.uuid(token, n, "upload")
    uid = sim.user_id(token)
    path = f"users/{uid}/{file_id}/content"
    sim.asset_put(token=token, user_id=uid, path=path, asset_id=file_id, content_type=mime, data=data, file_name=name)
    entry["body"] = {"fileName": name, "fileMimeType": mime, "size": len(data)}
    if legacy:
        return SimResponse.json(200, {"fileMetadataId": file_id, "fileUri": path})
    mode = sim.knobs["upload_v2"]
    upload_id = sim.uuid(token, n, "upload-id")
    if mode == "terminal_error":
        return SimResponse.json(200, {"uploadId": upload_id, "terminalError": {"code": "UPLOAD_REJECTED", "message": "upload rejected"}})
    if mode == "upload_id_only":
        return SimResponse.json(200, {"uploadId": upload_id})
    return SimResponse.json(200, {"uploadId": upload_id, "fileMetadata": {"fileMetadataId": file_id, "fileUri": path}})


def _multipart(req: SimRequest) -> dict[str, tuple[dict[str, str], bytes]]:
    ctype = req.headers.get("content-type", "")
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not ctype.startswith("multipart/form-data") or not m:
        raise Reject(_bad("expected multipart/form-data"))
    boundary = b"--" + m.group(1).encode()
    parts: dict[str, tuple[dict[str, str], bytes]] = {}
    for chunk in req.body.split(boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, _, body = chunk.partition(b"\r\n\r\n")
        if body.endswith(b"\r\n"):
            body = body[:-2]
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        name = re.search(r'\bname="([^"]*)"', disp)
        filename = re.search(r'filename="([^"]*)"', disp)
        if filename:
            headers["filename"] = filename.group(1)
        if name:
            parts[name.group(1)] = (headers, body)
    return parts


def upload_multipart(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    token, sc = sim.gate(req, "upload")
    entry["token"] = token
    parts = _multipart(req)
    if "file" not in parts:
        return _bad("multipart field 'file' is required")
    headers, data = parts["file"]
    resp = _store_upload(sim, token, data, headers.get("filename", "file"), headers.get("content-type", "application/octet-stream"),
                         entry, legacy=False)
    if "file_source" in parts:
        entry["body"] = dict(entry.get("body") or {}, file_source=parts["file_source"][1].decode("utf-8", "replace"))
    return resp


def list_assets(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    token, sc = sim.gate(req, "assets")
    entry["token"] = token
    with sim._lock:
        mine = [a for a in sim.assets.values() if a.token == token and a.listed]
    mine.sort(key=lambda a: (a.created, a.path), reverse=True)
    try:
        limit = max(1, min(200, int(req.query.get("limit") or req.query.get("pageSize") or 50)))
        offset = int(req.query.get("cursor") or req.query.get("pageToken") or 0)
    except ValueError:
        return _bad("limit and cursor must be integers")
    page = mine[offset:offset + limit]
    body: dict[str, Any] = {"assets": [{
        "assetId": a.asset_id, "fileName": a.file_name, "filePath": a.path, "contentType": a.content_type,
        "fileSize": len(a.bytes()), "createdAt": sim.iso(a.created)} for a in page]}
    if offset + limit < len(mine):
        body["nextCursor"] = str(offset + limit)
    return SimResponse.json(200, body)


def delete_asset(sim: Simulator, req: SimRequest, entry: dict, asset_id: str) -> SimResponse:
    token, sc = sim.gate(req, "assets")
    entry["token"] = token
    with sim._lock:
        paths = [p for p, a in sim.assets.items() if a.token == token and (a.asset_id == asset_id or a.asset_id.startswith(asset_id + "-"))]
        for p in paths:
            del sim.assets[p]
    if not paths:
        return SimResponse.json(404, {"error": {"code": 5, "message": "Asset not found", "details": []}})
    if int(sim.knobs["delete_status"]) == 204:
        return SimResponse(204, [], b"")
    return SimResponse.json(200, {})


async def download(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    token, sc = sim.gate(req, "download", role="assets")
    entry["token"] = token
    path = req.path.lstrip("/")
    asset = sim.assets.get(path)
    if asset is None:
        return SimResponse.json(404, {"error": {"code": 5, "message": "Not found", "details": []}})
    if asset.user_id != sim.user_id(token):
        return SimResponse.json(403, {"error": {"code": 7, "message": "Permission denied", "details": []}})
    data = asset.bytes()
    delay = int(sim.knobs["download_delay_ms"] or 0)
    if delay:
        async def slow() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 4096):
                await asyncio.sleep(delay / 1000)
                yield data[i:i + 4096]
        return SimResponse(200, [("content-type", asset.content_type), ("content-length", str(len(data)))], slow())
    return SimResponse.raw(200, data, asset.content_type)


def rate_limits(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    payload = _parse_json(req)
    model = payload.get("modelName") if isinstance(payload, dict) else None
    token, sc = sim.gate(req, "rate-limits", mode=model if isinstance(model, str) else None)
    entry["token"] = token
    if model not in MODES:
        return SimResponse.json(404, MODEL_NOT_FOUND_BODY)
    v = sim.quota_view(token, sc, model)
    return SimResponse.json(200, {"windowSizeSeconds": v["window"], "remainingQueries": v["remaining"],
                                  "totalQueries": v["total"], "waitTimeSeconds": v["wait"],
                                  "lowEffortRateLimits": None, "highEffortRateLimits": None})


def imagine_quota(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    token, sc = sim.gate(req, "imagine-quota")
    entry["token"] = token
    out: dict[str, Any] = {}
    for p in PRODUCTS:
        v = sim.quota_view(token, sc, p)
        if v["total"] is None:
            out[p] = None
            continue
        item: dict[str, Any] = {"available": v["remaining"] > 0, "remainingQueries": v["remaining"],
                                "windowSizeSeconds": v["window"]}
        if v["remaining"] == 0:
            started = v["started"] if v["started"] is not None else sim.now()
            item["nextAvailableAt"] = sim.iso(started + v["window"])
        out[p] = item
    return SimResponse.json(200, out)


def media_post(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    payload = _parse_json(req)
    token, sc = sim.gate(req, "media-post")
    entry["token"] = token
    if not isinstance(payload, dict) or payload.get("mediaType") not in ("MEDIA_POST_TYPE_IMAGE", "MEDIA_POST_TYPE_VIDEO"):
        return _bad("mediaType must be MEDIA_POST_TYPE_IMAGE or MEDIA_POST_TYPE_VIDEO")
    n = sim.next_request(token)
    post = {"id": sim.uuid(token, n, "post"), "mediaType": payload["mediaType"],
            "prompt": str(payload.get("prompt") or ""), "modelName": "imagine_x_1"}
    if payload.get("mediaUrl"):
        post["mediaUrl"] = str(payload["mediaUrl"])
    with sim._lock:
        sim.posts[post["id"]] = dict(post, token=token)
    return SimResponse.json(200, {"post": post})


def livekit(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    payload = _parse_json(req)
    token, sc = sim.gate(req, "livekit")
    entry["token"] = token
    sp = payload.get("sessionPayload") if isinstance(payload, dict) else None
    if not isinstance(sp, str):
        return _bad("sessionPayload must be a JSON string")
    try:
        session = json.loads(sp)
    except ValueError:
        return _bad("sessionPayload is not valid JSON")
    if not isinstance(session, dict):
        return _bad("sessionPayload must encode a JSON object")
    n = sim.next_request(token)
    lk = "lk-" + sim.uuid(token, n, "livekit").replace("-", "")
    room = "room-" + sim.uuid(token, n, "room")[:8]
    participant = "user-" + sim.user_id(token)[:8]
    with sim._lock:
        sim.livekit_tokens[lk] = {"token": token, "session": session, "room": room}
    return SimResponse.json(200, {"token": lk, "livekitUrl": sim.livekit_url(), "participantName": participant,
                                  "roomName": room})


def session(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    token, sc = sim.gate(req, "session")
    entry["token"] = token
    if sc.has("expired") or sc.has("expired403"):
        return SimResponse.json(200, {"status": "unauthenticated"})
    if sc.has("blocked"):
        return SimResponse.json(200, {"status": "blocked", "session": {"userId": sim.user_id(token)}})
    uid = sim.user_id(token)
    label = (sc.label or "user").lower()
    return SimResponse.json(200, {"status": "authenticated", "session": {
        "userId": uid, "email": f"{re.sub(r'[^a-z0-9]+', '', label) or 'user'}@sim.example.com",
        "organizationId": sim.uuid(token, 0, "org")}})


def _leak_headers(req: SimRequest) -> dict:
    return {"cookie": "cookie" in req.headers, "x-statsig-id": "x-statsig-id" in req.headers,
            "x-xai-request-id": "x-xai-request-id" in req.headers}


def public_image(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    name = req.path.rsplit("/", 1)[-1]
    leaked = _leak_headers(req)
    if any(leaked.values()):
        with sim._lock:
            sim.leaks.append({"path": req.path, "host": req.host, **leaked})
    spec = sim.public.get(name)
    if spec is None:
        return SimResponse.json(404, {"error": {"code": 5, "message": "Not found", "details": []}})
    if spec[0] == "jpeg":
        return SimResponse.raw(200, media.jpeg_bytes(spec[1], spec[2], spec[3]), "image/jpeg")
    return SimResponse.raw(200, media.png_bytes(spec[1], spec[2], spec[3]), "image/png")


def foreign_image(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    name = req.path.rsplit("/", 1)[-1]
    record = {"path": req.path, "host": req.host, **_leak_headers(req),
              "user_agent": req.headers.get("user-agent")}
    with sim._lock:
        sim.foreign.append(record)
    stem, _, ext = name.rpartition(".")
    if ext == "png":
        return SimResponse.raw(200, media.png_bytes("ext/" + stem, 16, 16), "image/png")
    if ext in ("jpg", "jpeg"):
        return SimResponse.raw(200, media.jpeg_bytes("ext/" + stem, 16, 16), "image/jpeg")
    if ext == "txt":
        return SimResponse.raw(200, b"not an image", "text/plain")
    return SimResponse.json(404, {"error": {"message": "unknown foreign asset"}})


# ---------------------------------------------------------------- OpenAI-shaped face

def _flatten_openai(messages: list) -> str:
    blocks = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        c = m.get("content")
        if isinstance(c, list):
            c = " ".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
        blocks.append(f"[{m.get('role', 'user')}]: {c or ''}")
    return "\n\n".join(blocks)


async def openai_chat(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    payload = _parse_json(req)
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list) or not payload["messages"]:
        return SimResponse.json(400, {"error": {"message": "messages is required", "type": "invalid_request_error",
                                                "param": "messages", "code": None}})
    model = str(payload.get("model") or "grok-sim")
    message = _flatten_openai(payload["messages"])
    token = "openai|" + (req.headers.get("authorization", "")[-8:])
    n = sim.next_request(token)
    ctx = chat.ChatContext(sim=sim, token=token, scenario=chat.Scenario(), request_no=n, payload={"message": message},
                           mode="fast", user_id="")
    prompt = content.parse_prompt(message)
    n_len = prompt.directives.get("len")
    first = sim.delay_seconds(ctx.rng.uniform(300, 800))
    tokens = content.canned_text(ctx.rng, int(n_len) if n_len and n_len.isdigit() else sim.knobs["answer_tokens"],
                                 sim.knobs["chars_per_token"])
    # Same random draws, in the same order, as a `fast` grok stream for this prompt (plan_chat): first
    # byte, the text, then per token its delay and the keep-alive coin — so both faces pace alike.
    per_token = []
    for _ in tokens:
        per_token.append(sim.delay_seconds(1000.0 / ctx.rng.uniform(30, 60)))
        ctx.rng.random()
    cid = "chatcmpl-" + ctx.response_id.replace("-", "")[:24]
    created = int(sim.now())
    usage = {"prompt_tokens": max(1, len(message) // 4), "completion_tokens": len(tokens),
             "total_tokens": max(1, len(message) // 4) + len(tokens)}
    if not payload.get("stream"):
        await asyncio.sleep(first + sum(per_token))
        entry["completed"] = True
        return SimResponse.json(200, {"id": cid, "object": "chat.completion", "created": created, "model": model,
                                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(tokens)},
                                                   "finish_reason": "stop"}], "usage": usage})

    async def sse() -> AsyncIterator[bytes]:
        def frame(delta: dict, finish: str | None = None, **extra: Any) -> bytes:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return b"data: " + orjson.dumps(obj) + b"\n\n"
        if first:
            await asyncio.sleep(first)
        yield frame({"role": "assistant", "content": ""})
        for tok, d in zip(tokens, per_token):
            if d:
                await asyncio.sleep(d)
            yield frame({"content": tok})
        yield frame({}, "stop")
        if (payload.get("stream_options") or {}).get("include_usage"):
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage}
            yield b"data: " + orjson.dumps(obj) + b"\n\n"
        yield b"data: [DONE]\n\n"
        entry["completed"] = True

    return SimResponse(200, [("content-type", "text/event-stream"), ("cache-control", "no-cache")], sse())


def openai_models(sim: Simulator, req: SimRequest, entry: dict) -> SimResponse:
    return SimResponse.json(200, {"object": "list", "data": [{"id": "grok-sim", "object": "model", "created": 0,
                                                               "owned_by": "grok2api-simulator"}]})


# ---------------------------------------------------------------- dispatch

def _logged_body(req: SimRequest) -> Any:
    ctype = req.headers.get("content-type", "")
    if not req.body:
        return None
    if "json" in ctype or req.body[:1] in (b"{", b"["):
        try:
            return json.loads(req.body)
        except ValueError:
            return {"_invalid_json": len(req.body)}
    return {"_bytes": len(req.body), "content_type": ctype}


async def handle(sim: Simulator, req: SimRequest) -> SimResponse:
    path, method = req.path, req.method
    if path.startswith("/__sim/") or path == "/__sim":
        from .control import control
        return control(sim, req)
    endpoint = endpoint_of(method, path)
    body = _logged_body(req)
    if isinstance(body, dict) and "content" in body and isinstance(body["content"], str):
        body = dict(body, content=f"<{len(body['content'])} base64 chars>")
    entry = sim._log(req, endpoint=endpoint, token=None, body=body)
    try:
        resp = await _route(sim, req, entry, method, path)
    except Reject as rej:
        resp = rej.response
    entry["status"] = resp.status
    if not isinstance(resp.body, (bytes, bytearray)):
        return resp
    entry["completed"] = True
    return resp


async def _route(sim: Simulator, req: SimRequest, entry: dict, method: str, path: str) -> SimResponse:
    if path == "/rest/app-chat/conversations/new":
        return await chat_endpoint(sim, req, entry) if method == "POST" else _method()
    m = re.fullmatch(r"/rest/app-chat/conversations/([^/]+)/responses", path)
    if m:
        return await chat_endpoint(sim, req, entry, flat=True) if method == "POST" else _method()
    simple = {
        ("POST", "/rest/app-chat/upload-file"): upload_json,
        ("POST", "/http/upload-file-v2/direct"): upload_multipart,
        ("GET", "/rest/assets"): list_assets,
        ("POST", "/rest/rate-limits"): rate_limits,
        ("POST", "/rest/media/imagine/quota_info"): imagine_quota,
        ("POST", "/rest/media/post/create"): media_post,
        ("POST", "/rest/livekit/tokens"): livekit,
        ("GET", "/api/auth/session"): session,
        ("GET", "/openai/v1/models"): openai_models,
    }
    fn = simple.get((method, path))
    if fn is not None:
        return fn(sim, req, entry)
    if path == "/openai/v1/chat/completions" and method == "POST":
        return await openai_chat(sim, req, entry)
    m = re.fullmatch(r"/rest/assets-metadata/([^/]+)", path)
    if m and method == "DELETE":
        return delete_asset(sim, req, entry, m.group(1))
    if path.startswith("/users/") and method in ("GET", "HEAD"):
        return await download(sim, req, entry)
    if re.fullmatch(r"/imagine-public/images/[A-Za-z0-9_-]+\.(jpg|png)", path) and method in ("GET", "HEAD"):
        return public_image(sim, req, entry)
    if re.fullmatch(r"/__ext/img/[A-Za-z0-9_.-]+", path) and method in ("GET", "HEAD"):
        return foreign_image(sim, req, entry)
    return SimResponse.json(404, {"error": {"code": 5, "message": "Not found", "details": []}})


def _method() -> SimResponse:
    return SimResponse.json(405, {"error": {"code": 12, "message": "Method not allowed", "details": []}})
