"""Imagine calls of the Grok Web client: the quota probe (E9), media posts (E10) and image
generation over the Imagine WebSocket (E11, docs/upstream-protocol.md §6.2, §7.1, §9), with its
frame helpers.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson

from grokweb.classify import UpstreamError, UpstreamKind, classify_http, classify_transport, classify_ws_error
from grokweb.core import RATE_LIMITS_TIMEOUT, GrokCore
from grokweb.events import ImageProgress, ImageResult
from grokweb.egress import egress_report
from grokweb.payloads import imagine_frames, media_post_payload
from grokweb.transport import ws_connect

EP_IMAGINE_QUOTA = "/rest/media/imagine/quota_info"
EP_MEDIA_POST = "/rest/media/post/create"
EP_IMAGINE_WS = "/ws/imagine/listen"
IMAGINE_MAX_RECONNECTS = 2  # consecutive reconnects without a new image before giving up
IMAGINE_MAX_ROUNDS = 8


class ImagineCalls(GrokCore):
    """Imagine: E9–E11."""

    async def imagine_quota(self) -> dict[str, Any]:
        """Raw E9 JSON: keys image, imagePro, imageEdit, video, video720p (each null or a window)."""
        data = await self._rest("POST", EP_IMAGINE_QUOTA, endpoint=EP_IMAGINE_QUOTA, json_body={},
                                timeout=RATE_LIMITS_TIMEOUT)
        if not isinstance(data, dict):
            raise self._unexpected(data, endpoint=EP_IMAGINE_QUOTA, what="imagine quota is not an object")
        return data

    # -- media posts (E10) ---------------------------------------------------------------------

    async def media_post_create(self, *, media_type: str, prompt: str | None = None, media_url: str | None = None) -> str:
        """E10 → the post id (parent of an image edit or a video)."""
        body = media_post_payload(media_type=media_type, prompt=prompt, media_url=media_url)
        data = await self._rest("POST", EP_MEDIA_POST, endpoint=EP_MEDIA_POST, json_body=body,
                                referer_path="/imagine", timeout=self._timeout("video.timeout"))
        post = data.get("post") if isinstance(data, dict) else None
        post_id = str(post.get("id") or post.get("postId") or "") if isinstance(post, dict) else ""
        if not post_id:
            raise self._unexpected(data, endpoint=EP_MEDIA_POST, what="no post id in the answer")
        return post_id

    # -- Imagine WebSocket (E11) ---------------------------------------------------------------

    async def imagine_generate(
        self, *, prompt: str, aspect_ratio: str, pro: bool, n: int
    ) -> AsyncIterator[ImageProgress | ImageResult]:
        """Generate `n` images over the Imagine WebSocket; yields ImageProgress and ImageResult.

        Rounds of reset + input_text frames run until `n` unmoderated finals arrived (moderated
        slots are dropped). Waits: `image.stream_timeout` per frame, `image.timeout` per round.
        A socket the server closed is reopened (at most IMAGINE_MAX_RECONNECTS times in a row
        without a new image). Error frames and refused handshakes raise the classified
        UpstreamError; when every produced image was moderated, MODERATED is raised.
        Consume with `contextlib.aclosing(...)` so an early exit closes the socket at once.
        """
        endpoint = EP_IMAGINE_WS
        frame_wait = self._timeout("image.stream_timeout")
        round_wait = self._timeout("image.timeout")
        url = self.ws_url(endpoint)
        collected = 0
        moderated = 0
        rounds = 0
        reconnects = 0
        index_base = 0
        ws: Any = None
        loop = asyncio.get_running_loop()
        try:
            while collected < n:
                rounds += 1
                if rounds > IMAGINE_MAX_ROUNDS:
                    break
                if ws is None or ws.close_code is not None:
                    if ws is not None:
                        _close_in_background(ws)
                    ws = await self._imagine_open(url, endpoint)
                # No num_generations: the server picks the slot count (speed 6, quality 4) like the
                # reference client; surplus finals are simply not consumed.
                reset, text = imagine_frames(prompt=prompt, aspect_ratio=aspect_ratio, pro=pro)
                slots: dict[str, dict[str, Any]] = {}
                progress_in_round = False
                try:
                    await ws.send(orjson.dumps(reset).decode())
                    await ws.send(orjson.dumps(text).decode())
                    round_deadline = loop.time() + round_wait
                    while True:
                        remaining = round_deadline - loop.time()
                        if remaining <= 0:
                            raise classify_transport(TimeoutError("Imagine round timed out"), endpoint=endpoint)
                        try:
                            async with asyncio.timeout(min(frame_wait, remaining)):
                                raw = await ws.recv()
                        except TimeoutError as exc:
                            raise classify_transport(exc, endpoint=endpoint) from exc
                        frame = _ws_json(raw)
                        if frame is None:
                            continue
                        kind = frame.get("type")
                        if kind == "error":
                            raise classify_ws_error(frame, endpoint=endpoint)
                        slot_id = _slot_id(frame)
                        if kind == "json":
                            status = frame.get("current_status")
                            if status == "start_stage" and slot_id:
                                slot = slots.setdefault(slot_id, {"order": _order(frame, len(slots))})
                                yield ImageProgress(image_index=index_base + slot["order"], progress=0)
                            elif status == "completed" and slot_id:
                                slot = slots.setdefault(slot_id, {"order": _order(frame, len(slots))})
                                slot["done"] = True
                                slot["moderated"] = bool(frame.get("moderated"))
                        elif kind == "image" and slot_id:
                            slot = slots.setdefault(slot_id, {"order": _order(frame, len(slots))})
                            pct = _percent(frame.get("percentage_complete"))
                            if pct >= 100:
                                slot["blob"] = frame.get("blob") or ""
                                slot["url"] = frame.get("url") or ""
                            else:
                                yield ImageProgress(image_index=index_base + slot["order"], progress=pct,
                                                    url=str(frame.get("url") or ""))
                        # emit every slot that is now complete
                        for sid, slot in slots.items():
                            if slot.get("emitted") or not slot.get("done"):
                                continue
                            if slot.get("moderated"):
                                slot["emitted"] = True
                                moderated += 1
                                continue
                            if "blob" not in slot:
                                continue  # completed frame first; the final image frame follows
                            slot["emitted"] = True
                            progress_in_round = True
                            image_url = str(slot.get("url") or "")
                            self._learn_user_id(urlsplit(image_url).path)
                            yield ImageResult(url=image_url, image_index=collected, image_id=sid,
                                              blob_b64=str(slot["blob"]))
                            collected += 1
                            if collected >= n:
                                return
                        if slots and all(s.get("emitted") for s in slots.values()):
                            break  # round over
                except UpstreamError:
                    raise
                except Exception as exc:  # websockets.ConnectionClosed and friends
                    from websockets.exceptions import ConnectionClosed

                    if isinstance(exc, ConnectionClosed) and (progress_in_round or reconnects < IMAGINE_MAX_RECONNECTS):
                        reconnects = 0 if progress_in_round else reconnects + 1
                        ws = None  # reopened at the top of the next round
                        index_base += len(slots)
                        continue
                    raise self._transport_failed(exc, endpoint) from exc
                reconnects = 0
                index_base += len(slots)
            if collected == 0 and moderated:
                raise UpstreamError(
                    "Every generated image was blocked by the upstream content policy.",
                    kind=UpstreamKind.MODERATED, endpoint=endpoint, detail=f"{moderated} moderated",
                    status=400, type="invalid_request_error", code="content_policy_violation",
                )
            if collected < n:
                raise classify_http(status=200, body=f"only {collected} of {n} images after {rounds - 1} rounds",
                                    endpoint=endpoint)
        finally:
            if ws is not None:
                _close_in_background(ws)

    async def _imagine_open(self, url: str, endpoint: str) -> Any:
        try:
            connection = await ws_connect(url, headers=self.ws_headers(), egress=self.egress,
                                          open_timeout=self._timeout("image.stream_timeout"))
        except UpstreamError:
            raise
        except Exception as exc:
            err = classify_transport(exc, endpoint=endpoint)
            if err.kind in (UpstreamKind.TRANSPORT, UpstreamKind.TIMEOUT):
                egress_report(egress=self.egress, ok=False, error=err.detail)
            raise err from exc
        egress_report(egress=self.egress, ok=True)
        return connection


# ---------------------------------------------------------------------------------------------
# Imagine frame helpers
# ---------------------------------------------------------------------------------------------

_closing: set[asyncio.Task] = set()


def _close_in_background(ws: Any) -> None:
    """Close a WebSocket without making the consumer wait for the closing handshake: the server
    may still be streaming surplus slots and answer the close frame only after them."""
    try:
        task = asyncio.get_running_loop().create_task(ws.close())
    except RuntimeError:  # no running loop (interpreter shutdown): drop the socket
        return
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_IMAGE_ID_IN_URL = re.compile(r"/images/([0-9A-Za-z-]+)\.[A-Za-z0-9]+")


def _ws_json(raw: Any) -> dict | None:
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", "replace")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # malformed frame: skipped (the per-frame wait still bounds the round)
    return data if isinstance(data, dict) else None


def _slot_id(frame: dict) -> str:
    for key in ("image_id", "job_id", "id"):
        if frame.get(key):
            return str(frame[key])
    match = _IMAGE_ID_IN_URL.search(str(frame.get("url") or ""))
    return match.group(1) if match else ""


def _order(frame: dict, default: int) -> int:
    for key in ("order", "side_by_side_index", "grid_index"):
        value = frame.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return default


def _percent(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0
