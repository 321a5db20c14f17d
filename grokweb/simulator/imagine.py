"""WebSocket roles of the simulator: Imagine ``/ws/imagine/listen`` (docs/upstream-protocol.md §6.2, §15.9, §16.5) and the
LiveKit ``/rtc`` stub (§15.3).

Imagine protocol (JSON text frames). Client → server per round: a ``reset`` item then an ``input_text``
item (``properties.enable_pro``, ``aspect_ratio``, optional ``num_generations``). Server → client:
``start_stage`` per slot, preview ``image`` frames (``percentage_complete`` < 100), a final ``image``
frame (base64 ``blob`` + URL on the public-Imagine role), ``completed`` per slot (``moderated``), or
``{"type":"error","err_code":"rate_limit_exceeded",…}`` when the product quota is exhausted.
``{"type":"ping"}`` is answered with ``{"type":"pong"}`` (protocol-level pings are answered by the server).
Faults (token directives, counted in image frames): ``drop@n`` aborts the socket, ``stall@n=ms`` pauses,
``malformed@n`` sends one non-JSON frame.
"""
from __future__ import annotations

import asyncio
import base64
import json
from typing import Protocol

from . import media
from .core import CF_HTML, Reject, SimRequest, SimResponse, Simulator
from .tokens import Scenario

ASPECT = {"1:1": (1024, 1024), "2:3": (1024, 1536), "3:2": (1536, 1024), "16:9": (1280, 720), "9:16": (720, 1280),
          "4:3": (1152, 864), "3:4": (864, 1152), "2:1": (1440, 720), "1:2": (720, 1440)}


class WSConn(Protocol):
    async def receive(self) -> str | None: ...  # None once the peer is gone
    async def send(self, text: str) -> None: ...
    async def close(self, code: int = 1000) -> None: ...


class Abort(Exception):
    """Abrupt socket termination (the adapter drops the connection without a clean close)."""


def handshake(sim: Simulator, req: SimRequest) -> tuple[str, Scenario] | SimResponse:
    """Gate an Imagine upgrade: a (token, scenario) pair, or the HTTP answer refusing it."""
    try:
        token, sc = sim.gate(req, "imagine-ws", role="ws")
    except Reject as rej:
        r = rej.response
        # expired / blocked / email-domain → 401; Cloudflare keeps its 403 HTML; 429 and 5xx pass through.
        if r.status in (400, 401, 403) and not r.headers[0][1].startswith("text/html"):
            return SimResponse(401, r.headers, r.body)
        return r
    image = sim.quota_view(token, sc, "image")
    pro = sim.quota_view(token, sc, "imagePro")
    if image["remaining"] <= 0 and pro["remaining"] <= 0:
        return SimResponse.json(429, {"error": {"code": 8, "message": "rate_limit_exceeded", "details": []}})
    return token, sc


async def imagine_session(sim: Simulator, ws: WSConn, token: str, sc: Scenario, entry: dict) -> None:
    frames_sent = 0
    while True:
        text = await ws.receive()
        if text is None:
            return
        try:
            msg = json.loads(text)
        except ValueError:
            await ws.send(json.dumps({"type": "error", "err_code": "invalid_request", "err_msg": "frame is not JSON"}))
            continue
        if not isinstance(msg, dict):
            continue
        if msg.get("type") == "ping":
            await ws.send(json.dumps({"type": "pong", "timestamp": msg.get("timestamp")}))
            continue
        items = ((msg.get("item") or {}).get("content") or []) if msg.get("type") == "conversation.item.create" else []
        for item in items:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "reset":
                continue
            if item.get("type") == "input_text":
                entry.setdefault("rounds", []).append({"text": item.get("text"), "properties": item.get("properties")})
                frames_sent = await _round(sim, ws, token, sc, item, frames_sent)
                if sim.knobs["imagine_close_after_round"]:
                    await ws.close(1000)
                    return


async def _round(sim: Simulator, ws: WSConn, token: str, sc: Scenario, item: dict, frames_sent: int) -> int:
    props = item.get("properties") or {}
    pro = bool(props.get("enable_pro"))
    product = "imagePro" if pro else "image"
    if not sim.charge(token, sc, product):
        await ws.send(json.dumps({"type": "error", "err_code": "rate_limit_exceeded", "err_msg": "Image rate limit exceeded"}))
        return frames_sent
    n = sim.next_request(token)
    requested = props.get("num_generations")
    slots = int(requested) if isinstance(requested, int) and 1 <= requested <= 12 else (4 if pro else 6)
    width, height = ASPECT.get(str(props.get("aspect_ratio", "1:1")), (1024, 1536))
    moderated_orders = set(sim.knobs["imagine_moderated_orders"] or [])
    as_string = bool(sim.knobs["imagine_percent_strings"])
    previews = max(0, int(sim.knobs["imagine_preview_frames"]))
    rng_seed = sim.uuid(token, n, "imagine-rng")
    first = sim.delay_seconds(300 + int(rng_seed[:2], 16) * 2, sc.firstbyte_ms)
    if first:
        await asyncio.sleep(first)
    ids = [sim.uuid(token, n, f"imagine-{i}") for i in range(slots)]
    for order, image_id in enumerate(ids):
        await ws.send(json.dumps({"type": "json", "current_status": "start_stage", "image_id": image_id,
                                  "order": order, "width": width, "height": height}))

    async def image_frame(obj: dict) -> None:
        nonlocal frames_sent
        if sc.stall and sc.stall[0] == frames_sent:
            await asyncio.sleep(sc.stall[1] / 1000)
        if sc.malformed_at == frames_sent:
            await ws.send('{"type":"image","url":')
        if sc.drop_at == frames_sent:
            raise Abort()
        delay = sim.delay_seconds(900, sc.tok_ms)
        if delay:
            await asyncio.sleep(delay)
        await ws.send(json.dumps(obj))
        frames_sent += 1

    for order, image_id in enumerate(ids):
        url = sim.public_image(image_id, ext="jpg")
        for p in range(previews):
            pct = int(100 * (p + 1) / (previews + 1))
            blob = base64.b64encode(media.jpeg_bytes(f"{image_id}/p{p}", 16, 16)).decode()
            await image_frame({"type": "image", "url": url, "blob": blob, "image_id": image_id, "order": order,
                               "percentage_complete": str(pct) if as_string else pct})
        blob = base64.b64encode(media.jpeg_bytes(image_id, 64, 64)).decode()
        await image_frame({"type": "image", "url": url, "blob": blob, "image_id": image_id, "order": order,
                           "percentage_complete": "100" if as_string else 100})
        moderated = sc.has("moderate") or order in moderated_orders
        await ws.send(json.dumps({"type": "json", "current_status": "completed", "image_id": image_id, "order": order,
                                  "width": width, "height": height, "moderated": moderated, "r_rated": False}))
    return frames_sent


def rtc_handshake(sim: Simulator, req: SimRequest) -> dict | SimResponse:
    token = req.query.get("access_token", "")
    record = {"access_token_known": token in sim.livekit_tokens, "cookie": "cookie" in req.headers, "host": req.host,
              "query": dict(req.query)}
    with sim._lock:
        sim.rtc_connections.append(record)
        if "cookie" in req.headers:
            sim.leaks.append({"path": req.path, "host": req.host, "cookie": True,
                              "x-statsig-id": "x-statsig-id" in req.headers,
                              "x-xai-request-id": "x-xai-request-id" in req.headers})
    if token not in sim.livekit_tokens:
        return SimResponse.json(401, {"error": "invalid access token"})
    return record


__all__ = ["ASPECT", "Abort", "WSConn", "handshake", "imagine_session", "rtc_handshake", "CF_HTML"]
