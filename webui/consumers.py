"""The image wall's WebSocket: /webui/ws/imagine (JSON text frames).

Authentication is the page session (the cookie the browser sends with the upgrade; Channels'
AuthMiddlewareStack puts it in scope). The upgrade is accepted, then refused sessions get an
`error` event and a close with code 4401 (4404 when the pages are disabled, 4403 for a foreign
Origin), so the page can say why instead of seeing a bare 1006.

Client → server (docs/upstream-protocol.md §12.9 shapes, plus `model` and `more`):
  {"type":"start","prompt":"…","model":"lite"|"standard"|"pro","aspect_ratio":"2:3","count":1-6,"rounds":1-10}
      (`quality":"speed"|"quality"` is accepted for the reference's relay: speed → standard,
      quality → pro; the reference's `nsfw` flag is ignored by policy)
  {"type":"more"}   the user asked for one more round (the page's "One more round" button)
  {"type":"stop"}
Server → client (every event of a run carries `run_id`):
  {"type":"status","status":"running"|"waiting"|"stopped"|"completed"|"failed","run_id","images"}
  {"type":"progress","run_id","image_index","progress"}
  {"type":"image","run_id","seq","src":"data:image/…;base64,…","image_id","prompt","model","aspect_ratio"}
  {"type":"moderated","run_id","image_index"}
  {"type":"error","run_id"|null,"message","code","param"}

Flow control: a run spends what the user chose before Start: `rounds` rounds of `count` images
(default one round). Then it reports `waiting`; each `more` adds one round (at most MAX_CREDIT
pending). Nothing but the user's `more` starts a round: the page used to send it whenever the end
of the wall was on screen, which on a tall window was at once, round after round (24 images for one
Start with 4 per round). A run ends at RUN_MAX_IMAGES images (`completed`), on `stop`
(`stopped`, the upstream socket is closed at once), or on an error (`failed`).
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from grokweb.errors import GatewayError
from webui.access import access_granted, webui_enabled
from webui.services import WallRequest, wall_request_parse, wall_round

log = logging.getLogger(__name__)

MAX_CREDIT = 3
RUN_MAX_IMAGES = 120
MAX_EMPTY_ROUNDS = 3

CLOSE_SESSION = 4401
CLOSE_ORIGIN = 4403
CLOSE_DISABLED = 4404


def _header(scope: dict, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return ""


def _same_origin(scope: dict) -> bool:
    """Cookies ride along on cross-site WebSocket upgrades: only accept our own pages' Origin."""
    origin = _header(scope, b"origin")
    if not origin:
        return True  # not a browser (tests, CLI tools); the session cookie is still required
    return urlsplit(origin).netloc.lower() == _header(scope, b"host").lower()


class ImagineWallConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.run_task: asyncio.Task | None = None
        self.run_id: str | None = None
        self.credit = 0
        self.more = asyncio.Event()
        self.seq = 0
        await self.accept()
        if not _same_origin(self.scope):
            await self._refuse(CLOSE_ORIGIN, "forbidden_origin", "This WebSocket only accepts the gateway's own pages.")
            return
        if not await database_sync_to_async(webui_enabled)():
            await self._refuse(CLOSE_DISABLED, "webui_disabled", "The web pages are disabled (app.webui_enabled is false).")
            return
        granted = await database_sync_to_async(access_granted)(session=self.scope.get("session"), user=self.scope.get("user"))
        if not granted:
            await self._refuse(CLOSE_SESSION, "webui_session_required",
                               "Your WebUI session has expired or you are not signed in. Sign in again at /webui/login.")

    async def _refuse(self, code: int, err: str, message: str) -> None:
        await self.send_json({"type": "error", "run_id": None, "code": err, "param": None, "message": message})
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        await self._cancel()

    async def receive_json(self, content: Any, **kwargs) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "start":
            try:
                req = wall_request_parse(content)
            except GatewayError as exc:
                await self._error(None, exc)
                return
            await self._cancel(report=True)
            self.run_id = uuid.uuid4().hex[:12]
            self.credit = req.rounds
            self.more.clear()
            self.run_task = asyncio.create_task(self._run(self.run_id, req))
        elif kind == "more":
            if self.run_task is not None and not self.run_task.done():
                self.credit = min(self.credit + 1, MAX_CREDIT)
                self.more.set()
        elif kind == "stop":
            await self._cancel(report=True)
        else:
            await self.send_json({"type": "error", "run_id": None, "code": "invalid_message", "param": "type",
                                  "message": "Unknown message type; expected start, more or stop."})

    async def decode_json(self, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None

    async def _cancel(self, *, report: bool = False) -> None:
        task, run_id = self.run_task, self.run_id
        self.run_task = None
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        if report:
            await self.send_json({"type": "status", "status": "stopped", "run_id": run_id, "images": self.seq})

    async def _error(self, run_id: str | None, exc: GatewayError) -> None:
        await self.send_json({"type": "error", "run_id": run_id, "code": exc.code or exc.type, "param": exc.param,
                              "message": exc.message, "status": exc.status})

    async def _run(self, run_id: str, req: WallRequest) -> None:
        self.seq = 0

        async def emit(event: dict[str, Any]) -> None:
            event["run_id"] = run_id
            if event["type"] == "image":
                self.seq += 1
                event["seq"] = self.seq
            await self.send_json(event)

        await self.send_json({"type": "status", "status": "running", "run_id": run_id, "images": 0})
        empty = 0
        try:
            while True:
                if self.credit <= 0:
                    await self.send_json({"type": "status", "status": "waiting", "run_id": run_id, "images": self.seq})
                    while self.credit <= 0:
                        self.more.clear()
                        await self.more.wait()
                    await self.send_json({"type": "status", "status": "running", "run_id": run_id, "images": self.seq})
                self.credit -= 1
                got = await wall_round(req=req, emit=emit)
                empty = 0 if got else empty + 1
                if empty >= MAX_EMPTY_ROUNDS:
                    await self.send_json({"type": "error", "run_id": run_id, "code": "no_images", "param": None,
                                          "message": f"No image arrived in {MAX_EMPTY_ROUNDS} rounds in a row; try another prompt."})
                    await self.send_json({"type": "status", "status": "failed", "run_id": run_id, "images": self.seq})
                    return
                if self.seq >= RUN_MAX_IMAGES:
                    await self.send_json({"type": "status", "status": "completed", "run_id": run_id, "images": self.seq})
                    return
        except GatewayError as exc:
            await self._error(run_id, exc)
            await self.send_json({"type": "status", "status": "failed", "run_id": run_id, "images": self.seq})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("image wall run %s failed", run_id)
            await self.send_json({"type": "error", "run_id": run_id, "code": "internal_error", "param": None,
                                  "message": "The image wall stopped because of an internal error (see the server log)."})
            await self.send_json({"type": "status", "status": "failed", "run_id": run_id, "images": self.seq})
