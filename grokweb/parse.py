"""grok.com chat stream → neutral events (docs/upstream-protocol.md §4.4–§4.10, §6.1, §6.3, §7.3).

Wire format read here: the body of `POST /rest/app-chat/conversations/new` after HTTP 200 —
NDJSON, one JSON object per line:

    {"result":{"conversation":{"conversationId":"…",…}}}
    {"result":{"response":{"userResponse":{…},"responseId":"…"}}}
    {"result":{"response":{"token":"Hi","isThinking":false,"isSoftStop":false,"messageTag":"final",…}}}
    {"result":{"response":{"token":"","isSoftStop":true,…}}}
    {"result":{"response":{"modelResponse":{"message":"Hi…","streamErrors":[],…}}}}
    {"result":{"title":{"newTitle":"…"}}}

Tolerated (docs/upstream-protocol.md §4.4): bytes split anywhere (inside a line, a UTF-8 character or a JSON string);
CRLF and surrounding whitespace; blank lines; SSE framing (`data:` with or without a space,
`event:` / `id:` / `retry:` / `:` comment lines ignored, `data: [DONE]` ends the stream); several
objects concatenated on one line (brace-depth scanner aware of strings and escapes); the flat
wrapper `{"result":{<response fields>}}` of follow-up turns; unknown keys and line kinds; a final
line without a newline. A malformed line is logged and skipped; `max_malformed` consecutive ones
end the stream as PROTOCOL; one object above 8 MiB is a PROTOCOL error.

Failures are raised as UpstreamError, never emitted: the three in-band error forms (§4.10) via
classify_inband, EOF before the soft stop as TRUNCATED. Events produced earlier in the same
`feed()` call are returned first; the error is raised by the next `feed()` / `finish()` /
`check()` call (iter_chat_events does this for you).
"""
from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import replace
from typing import Any

import orjson

from grokweb.classify import UpstreamError, UpstreamKind, classify_inband, classify_transport
from grokweb.events import (
    AnswerDelta,
    Card,
    Completed,
    Conversation,
    Event,
    ImageFailed,
    ImageProgress,
    ImageResult,
    KeepAlive,
    SearchResults,
    SearchSource,
    SoftStop,
    ThinkingDelta,
    ToolUsage,
    VideoProgress,
    VideoResult,
)

log = logging.getLogger(__name__)

MAX_OBJECT_BYTES = 8 * 1024 * 1024

# Keys of a plain token line; a response whose keys are a subset of these takes the fast path.
_TOKEN_LINE_KEYS = frozenset(
    {"token", "isThinking", "isSoftStop", "messageTag", "messageStepId", "responseId", "rolloutId"}
)
# Keys that identify `result` itself as the response object (flat wrapper, docs/upstream-protocol.md §4.4 rule 4).
_RESPONSE_KEYS = frozenset(
    {
        "token", "modelResponse", "userResponse", "cardAttachment", "streamingImageGenerationResponse",
        "streamingVideoGenerationResponse", "isSoftStop", "isThinking", "finalMetadata", "webSearchResults",
        "xSearchResults", "toolUsageCard", "toolUsageCardId", "messageTag", "error", "uiLayout", "llmInfo",
        "responseId",
    }
)
_VIDEO_URL_KEYS = ("videoUrl", "contentUrl", "assetUrl", "fileUri")
_STRUCT = re.compile(rb'[{}"\\]')
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_KEEP_ALIVE = KeepAlive()
_SOFT_STOP = SoftStop()

# states (docs/upstream-protocol.md §4.7; AWAIT_* belong to the HTTP client)
STREAMING, SOFT_STOPPED, COMPLETED, FAILED = "streaming", "soft_stopped", "completed", "failed"


class _Malformed(Exception):
    pass


def split_objects(buf: bytes, start: int = 0) -> tuple[list[bytes], int]:
    """Split concatenated JSON objects (`{…}{…}`) by brace depth, respecting strings and escapes.

    Returns the complete objects and the index where an unfinished object starts (len(buf) when
    none is open). Text between objects at depth 0 (an SSE prefix, whitespace) is skipped.
    """
    parts: list[bytes] = []
    depth = 0
    in_str = False
    skip = -1
    obj_start = -1
    for m in _STRUCT.finditer(buf, start):
        i = m.start()
        if i == skip:
            continue
        c = buf[i]
        if in_str:
            if c == 92:  # backslash: the next byte is escaped
                skip = i + 1
            elif c == 34:
                in_str = False
            continue
        if c == 34:
            if depth:
                in_str = True
        elif c == 123:
            if depth == 0:
                obj_start = i
            depth += 1
        elif c == 125 and depth:
            depth -= 1
            if depth == 0:
                parts.append(buf[obj_start : i + 1])
                obj_start = -1
    return parts, (obj_start if depth else len(buf))


def _snake(name: str, _cache: dict[str, str] = {}) -> str:  # noqa: B006 - deliberate memo
    out = _cache.get(name)
    if out is None:
        out = _cache[name] = _CAMEL.sub("_", name).lower()
    return out


def _int(value: Any, default: int = 0) -> int:
    if type(value) is int:
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _generated_id(path: str) -> str:
    """`users/<u>/generated/<id>[-part-0]/image.jpg` → `<id>` ("" when the path has another shape)."""
    marker = path.find("/generated/")
    if marker < 0:
        return ""
    rest = path[marker + 11 :]
    return rest.split("/", 1)[0]


def _results(value: Any) -> list:
    if isinstance(value, dict):
        value = value.get("results")
    return value if isinstance(value, list) else []


class ChatStreamParser:
    """Incremental parser: `feed(bytes)` as chunks arrive, `finish()` at EOF; both return events."""

    def __init__(
        self,
        *,
        assets_base_url: str,
        endpoint: str = "/rest/app-chat/conversations/new",
        mode: str | None = None,
        max_malformed: int = 3,
        user_id: str = "",
        max_object_bytes: int = MAX_OBJECT_BYTES,
    ) -> None:
        self._assets = assets_base_url.rstrip("/")
        self.endpoint = endpoint
        self.mode = mode
        self._max_malformed = max(1, max_malformed)
        self._max_obj = max_object_bytes
        self._user_id = user_id

        self._tail: list[bytes] = []
        self._tail_len = 0
        self._out: list[Event] = []
        self._completed_at: int | None = None
        self._error: UpstreamError | None = None
        self.state = STREAMING
        self.done = False  # `data: [DONE]` seen
        self.lines = 0  # parsed objects
        self.malformed = 0  # malformed lines in total
        self._malformed_run = 0
        self._last_line: bytes = b""

        self._answer: list[str] = []
        self.answer_started = False
        self.soft_stopped = False
        self.conversation_id = ""
        self.title = ""
        self.parent_response_id = ""
        self._sources: set[str] = set()
        self._tool_cards: set[str] = set()
        self._image_keys: set[str] = set()
        self._failed_images: set[tuple[str, int]] = set()
        self._image_edit_seen = False
        self._video_ids: list[str] = []
        self._video_done: set[str] = set()

    # ----------------------------------------------------------------------------------- API

    @property
    def completed(self) -> bool:
        return self.state == COMPLETED

    def check(self) -> None:
        """Raise the error recorded by the last feed()/finish() call, if any."""
        if self._error is not None:
            raise self._error

    def feed(self, data: bytes) -> list[Event]:
        self.check()
        out = self._out = []
        self._completed_at = None
        if self.done or not data:
            return out
        if type(data) is not bytes:
            data = bytes(data)
        try:
            if b"\n" not in data:
                self._tail.append(data)
                self._tail_len += len(data)
                if self._tail_len > self._max_obj:
                    self._scan_tail()
            else:
                if self._tail:
                    self._tail.append(data)
                    data = b"".join(self._tail)
                    self._tail.clear()
                    self._tail_len = 0
                lines = data.split(b"\n")
                rest = lines.pop()
                line_fn = self._line
                for line in lines:
                    line_fn(line)
                    if self.done:
                        rest = b""
                        break
                if rest:
                    self._tail.append(rest)
                    self._tail_len = len(rest)
                    if self._tail_len > self._max_obj:
                        self._scan_tail()
        except UpstreamError as exc:
            self._fail(exc)
            if not out:
                raise
        self._patch_title(out)
        return out

    def finish(self) -> list[Event]:
        """End of the body: parse a final unterminated line, then complete or raise TRUNCATED."""
        self.check()
        out = self._out = []
        self._completed_at = None
        try:
            if self._tail:
                line = b"".join(self._tail)
                self._tail.clear()
                self._tail_len = 0
                if not self.done:
                    self._line(line)
            if self.state == STREAMING or self.state == SOFT_STOPPED:
                if self.soft_stopped:
                    log.warning("upstream stream on %s ended after the soft stop without modelResponse", self.endpoint)
                    self._emit_completed(Completed(title=self.title, had_model_response=False))
                else:
                    raise self._truncated()
        except UpstreamError as exc:
            self._fail(exc)
            if not out:
                raise
        self._patch_title(out)
        return out

    # ------------------------------------------------------------------------------ framing

    def _fail(self, exc: UpstreamError) -> None:
        self.state = FAILED
        self._error = exc

    def _patch_title(self, out: list[Event]) -> None:
        # The title line follows modelResponse; when it was already buffered in the same chunk,
        # Completed carries it (docs/upstream-protocol.md §4.7: "the title line may be read if it is already buffered").
        pos = self._completed_at
        if pos is not None and self.title:
            done = out[pos]
            if isinstance(done, Completed) and done.title != self.title:
                out[pos] = replace(done, title=self.title)

    def _scan_tail(self) -> None:
        """No newline for more than the object cap: extract complete objects, enforce the cap."""
        buf = b"".join(self._tail)
        parts, rest = split_objects(buf)
        remainder = buf[rest:]
        self._tail = [remainder] if remainder else []
        self._tail_len = len(remainder)
        for part in parts:
            self._payload(part)
        if self._tail_len > self._max_obj:
            raise self._protocol(f"one upstream JSON object exceeded {self._max_obj} bytes")

    def _line(self, raw: bytes) -> None:
        line = raw.strip()
        if not line:
            return
        if line[0] != 123:  # not "{": SSE framing or junk
            if line.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark before the first line
                line = line[3:].lstrip()
                if not line:
                    return
            if line.startswith(b"data:"):
                line = line[5:].strip()
                if not line:
                    return
                if line == b"[DONE]":
                    self.done = True
                    return
            elif line.startswith((b"event:", b":", b"id:", b"retry:")):
                return
        self._payload(line)

    def _payload(self, line: bytes) -> None:
        if self.state == FAILED:
            return
        self._last_line = line
        if len(line) > self._max_obj:
            parts, rest = split_objects(line)
            if not parts or rest != len(line) or any(len(p) > self._max_obj for p in parts):
                raise self._protocol(f"one upstream JSON object exceeded {self._max_obj} bytes")
            objs = []
            for part in parts:
                try:
                    objs.append(orjson.loads(part))
                except orjson.JSONDecodeError:
                    self._malformed_line(line)
                    return
        else:
            try:
                objs = (orjson.loads(line),)
            except orjson.JSONDecodeError:
                # several objects on one line ({…}{…}) or a broken line
                parts, rest = split_objects(line)
                if len(parts) < 2 or rest != len(line):
                    self._malformed_line(line)
                    return
                try:
                    objs = [orjson.loads(p) for p in parts]
                except orjson.JSONDecodeError:
                    self._malformed_line(line)
                    return
        for obj in objs:
            try:
                self._handle(obj)
            except _Malformed:
                self._malformed_line(line)
                continue
            except (TypeError, AttributeError, ValueError, KeyError, IndexError):
                # an unexpected shape inside a known line kind: tolerate it like a malformed line
                log.warning("could not interpret an upstream line on %s", self.endpoint, exc_info=True)
                self._malformed_line(line)
                continue
            self.lines += 1
            self._malformed_run = 0

    def _malformed_line(self, line: bytes) -> None:
        self.malformed += 1
        self._malformed_run += 1
        log.warning(
            "skipping malformed upstream line on %s (%d in a row): %r",
            self.endpoint, self._malformed_run, line[:200],
        )
        if self._malformed_run >= self._max_malformed:
            raise self._protocol(f"{self._malformed_run} consecutive malformed lines")

    def _protocol(self, what: str) -> UpstreamError:
        detail = f"{what}; last line starts {self._last_line[:80]!r}"
        return UpstreamError(
            f"Upstream sent an unreadable chat stream on {self.endpoint} ({what}).",
            kind=UpstreamKind.PROTOCOL,
            endpoint=self.endpoint,
            mode=self.mode,
            detail=detail[:300],
        )

    def _truncated(self) -> UpstreamError:
        if self.lines == 0:
            what = "the upstream answered HTTP 200 but the stream ended before any line arrived"
        else:
            what = f"the stream ended after {self.lines} lines, before the answer was complete (no soft stop)"
        log.warning("truncated upstream stream on %s; last line: %r", self.endpoint, self._last_line[:300])
        return UpstreamError(
            f"Upstream chat stream was cut off on {self.endpoint}: {what}.",
            kind=UpstreamKind.TRUNCATED,
            endpoint=self.endpoint,
            mode=self.mode,
            detail=what,
        )

    # ------------------------------------------------------------------------- line rules

    def _handle(self, obj: Any) -> None:
        if type(obj) is not dict:
            raise _Malformed
        result = obj.get("result")
        if self.state == COMPLETED:
            # After modelResponse only the informational title still matters.
            if type(result) is dict and type(result.get("title")) is dict:
                self.title = str(result["title"].get("newTitle") or self.title)
            return
        # rule 1: whole-line error
        if obj.get("error"):
            raise classify_inband(obj, endpoint=self.endpoint, mode=self.mode)
        if type(result) is not dict:
            return  # unknown line kind
        resp = result.get("response")
        if resp is None:
            # rule 2: conversation header / title; rule 3: flat wrapper
            conv = result.get("conversation")
            title = result.get("title")
            if conv is None and title is None:
                if result.keys() & _RESPONSE_KEYS:
                    resp = result
                else:
                    return
            else:
                if type(conv) is dict:
                    cid = conv.get("conversationId")
                    if cid and not self.conversation_id:
                        self.conversation_id = str(cid)
                        self._out.append(Conversation(self.conversation_id))
                if type(title) is dict:
                    self.title = str(title.get("newTitle") or "")
                return
        if type(resp) is not dict:
            return
        if resp.keys() <= _TOKEN_LINE_KEYS:
            self._token_line(resp)
        else:
            self._response(resp, obj)

    def _token_line(self, resp: dict) -> None:
        """Fast path: answer / thinking tokens, keep-alives and the soft stop (rules 12–15)."""
        token = resp.get("token")
        tag = resp.get("messageTag")
        if token:
            if type(token) is not str:
                raise _Malformed
            if tag == "tool_usage_card":
                self._tool_card(resp)
            elif tag == "raw_function_result":
                pass  # rule 11: tool results carry no text
            elif resp.get("isThinking") is True:
                self._thinking(token, tag, resp)
            elif tag == "final" or not tag:
                self.answer_started = True
                self._answer.append(token)
                self._out.append(AnswerDelta(token))
        elif resp.get("isSoftStop") is not True and token is not None and not tag:
            self._out.append(_KEEP_ALIVE)
        if resp.get("isSoftStop") is True:
            self._soft_stop()

    def _thinking(self, token: str, tag: Any, resp: dict) -> None:
        rollout = resp.get("rolloutId")
        step = resp.get("messageStepId")
        self._out.append(
            ThinkingDelta(
                token,
                tag if type(tag) is str else "",
                str(rollout) if rollout else None,
                step if type(step) is int else None,
                self.answer_started,
            )
        )

    def _soft_stop(self) -> None:
        if not self.soft_stopped:
            self.soft_stopped = True
            self.state = SOFT_STOPPED
            self._out.append(_SOFT_STOP)

    def _response(self, resp: dict, line: dict) -> None:
        out = self._out
        # rule 4: response-level error
        if resp.get("error"):
            raise classify_inband(line, endpoint=self.endpoint, mode=self.mode)
        # rule 5: the user echo (never emit its message)
        user = resp.get("userResponse")
        if user is not None:
            if type(user) is dict and user.get("responseId"):
                self.parent_response_id = str(user["responseId"])
            return
        # rule 6: uiLayout / llmInfo are metadata only
        handled = False
        card = resp.get("cardAttachment")
        if card is not None:  # rule 7
            self._card(card)
            handled = True
        sig = resp.get("streamingImageGenerationResponse")
        if type(sig) is dict:  # rule 8
            self._image_edit(sig)
            handled = True
        svg = resp.get("streamingVideoGenerationResponse")
        if type(svg) is dict:
            self._video(svg)
            handled = True
        web = resp.get("webSearchResults")
        xs = resp.get("xSearchResults")
        if web is not None or xs is not None:  # rule 9
            self._add_sources(web, xs)
            handled = True
        tag = resp.get("messageTag")
        token = resp.get("token")
        if tag == "tool_usage_card" or type(resp.get("toolUsageCard")) is dict:  # rule 10
            self._tool_card(resp)
        elif tag == "raw_function_result" or "codeExecutionResult" in resp:  # rule 11
            pass
        elif token:
            if type(token) is not str:
                raise _Malformed
            if resp.get("isThinking") is True:  # rule 12
                self._thinking(token, tag, resp)
            elif tag == "final" or not tag:  # rule 13
                self.answer_started = True
                self._answer.append(token)
                out.append(AnswerDelta(token))
        elif token == "" and not handled and not tag and resp.get("isSoftStop") is not True \
                and "toolUsageCardId" not in resp and "modelResponse" not in resp:
            out.append(_KEEP_ALIVE)  # rule 14
        # rule 15: soft stop; a non-empty finalMetadata counts as one, an empty one does not
        if resp.get("isSoftStop") is True:
            self._soft_stop()
        meta = resp.get("finalMetadata")
        if meta and type(meta) is dict:
            self._soft_stop()
        model = resp.get("modelResponse")
        if type(model) is dict:  # rule 16
            self._model_response(model, line)

    # ----------------------------------------------------------------------- payload kinds

    def _abs(self, url: Any) -> str:
        if not url or type(url) is not str:
            return ""
        if url.startswith(("https://", "http://")):
            return url
        path = url.lstrip("/")
        if not self._user_id and path.startswith("users/"):
            end = path.find("/", 6)
            if end > 6:
                self._user_id = path[6:end]
        return f"{self._assets}/{path}"

    def _asset_url(self, asset_id: str) -> str:
        if not asset_id or not self._user_id:
            return ""
        return f"{self._assets}/users/{self._user_id}/{asset_id}/content"

    def _card(self, att: Any) -> None:
        if type(att) is not dict:
            return
        raw = att.get("jsonData")
        if type(raw) is str:
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log.warning("ignoring a card attachment with invalid jsonData on %s", self.endpoint)
                return
        else:
            data = raw
        if type(data) is not dict:
            return
        card_id = str(data.get("id") or "")
        self._out.append(Card(card_id, data))
        chunk = data.get("image_chunk")
        if type(chunk) is dict:
            self._image_chunk(chunk, card_id)

    def _image_chunk(self, chunk: dict, card_id: str) -> None:
        """Lite generation through chat (docs/upstream-protocol.md §6.1): progress, final, moderated, failed."""
        index = _int(chunk.get("imageIndex"))
        err = chunk.get("systemErrCode")
        if err:
            key = (card_id, index)
            if key not in self._failed_images:
                self._failed_images.add(key)
                self._out.append(ImageFailed(index, str(err)))
            return
        progress = _int(chunk.get("progress"))
        rel = chunk.get("imageUrl") or ""
        url = self._abs(rel)
        if progress < 100:
            self._out.append(ImageProgress(index, progress, url))
            return
        image_id = str(chunk.get("imageUuid") or "") or _generated_id(url)
        if (image_id and image_id in self._image_keys) or (url and url in self._image_keys):
            return
        self._remember_image(url, image_id)
        if chunk.get("moderated") is True:
            self._out.append(ImageResult("", index, moderated=True, image_id=image_id))
        elif url:
            self._out.append(ImageResult(url, index, image_id=image_id))
        else:
            self._out.append(ImageFailed(index, "finished image without imageUrl"))

    def _remember_image(self, url: str, *ids: str) -> None:
        keys = self._image_keys
        if url:
            keys.add(url)
            gid = _generated_id(url)
            if gid:
                keys.add(gid)
        for i in ids:
            if i:
                keys.add(i)

    def _image_edit(self, sig: dict) -> None:
        """Image edit progress (docs/upstream-protocol.md §6.3 step 5); the asset content URL is preferred when known."""
        self._image_edit_seen = True
        index = _int(sig.get("imageIndex"))
        progress = _int(sig.get("progress"))
        url = self._abs(sig.get("imageUrl"))
        if progress < 100 and sig.get("isFinal") is not True:
            self._out.append(ImageProgress(index, progress, url))
            return
        asset_id = str(sig.get("assetId") or "")
        image_id = _generated_id(url)
        final = self._asset_url(asset_id) or url
        if any(k and k in self._image_keys for k in (final, url, asset_id, image_id)):
            return
        self._remember_image(url, asset_id, image_id, final)
        if sig.get("moderated") is True:
            self._out.append(ImageResult("", index, moderated=True, asset_id=asset_id, image_id=image_id))
        elif final:
            self._out.append(ImageResult(final, index, asset_id=asset_id, image_id=image_id))
        else:
            self._out.append(ImageFailed(index, "finished image without imageUrl or assetId"))

    def _video(self, v: dict) -> None:
        """Video progress/result (docs/upstream-protocol.md §7.3, §7.5)."""
        video_id = str(v.get("videoId") or v.get("assetId") or "")
        if video_id not in self._video_ids:
            self._video_ids.append(video_id)
        progress = _int(v.get("progress"))
        if progress < 100:
            self._out.append(VideoProgress(video_id, progress))
            return
        if video_id in self._video_done:
            return
        self._video_done.add(video_id)
        asset_id = str(v.get("assetId") or "")
        post_id = str(v.get("videoPostId") or video_id)
        if v.get("moderated") is True:
            self._out.append(VideoResult(video_id, "", moderated=True, asset_id=asset_id, video_post_id=post_id))
            return
        url = ""
        for key in _VIDEO_URL_KEYS:
            cand = v.get(key)
            if cand and type(cand) is str and (key != "fileUri" or cand.endswith(".mp4") or "/content" in cand):
                url = self._abs(cand)
                break
        if not url:
            url = self._asset_url(asset_id)
        self._out.append(
            VideoResult(
                video_id, url, asset_id=asset_id, video_post_id=post_id,
                thumbnail_url=self._abs(v.get("thumbnailImageUrl")),
            )
        )

    def _add_sources(self, web: Any, xs: Any) -> None:
        new: list[SearchSource] = []
        seen = self._sources
        for item in _results(web):
            if type(item) is not dict:
                continue
            url = item.get("url")
            if url and type(url) is str and url not in seen:
                seen.add(url)
                new.append(SearchSource(url, str(item.get("title") or url), "web"))
        for item in _results(xs):
            if type(item) is not dict:
                continue
            post_id, user = item.get("postId"), item.get("username")
            if not post_id or not user:
                continue
            url = f"https://x.com/{user}/status/{post_id}"
            if url not in seen:
                seen.add(url)
                text = str(item.get("text") or "")
                new.append(SearchSource(url, f"𝕏/@{user}: {text[:50]}", "x_post"))
        if new:
            self._out.append(SearchResults(tuple(new)))

    def _tool_card(self, resp: dict) -> None:
        """Server tool call card (rule 10); the XML token itself is never emitted as text."""
        card = resp.get("toolUsageCard")
        card_id = resp.get("toolUsageCardId")
        name: str | None = None
        args: Any = {}
        if type(card) is dict:
            card_id = card_id or card.get("toolUsageCardId")
            for key, value in card.items():
                if key != "toolUsageCardId":
                    name = _snake(key)
                    if type(value) is dict and type(value.get("args")) is dict:
                        args = value["args"]
                    break
        if name is None:
            name, args = self._tool_from_xml(resp.get("token"))
            if name is None:
                return
        card_id = str(card_id or "")
        if card_id:
            if card_id in self._tool_cards:
                return
            self._tool_cards.add(card_id)
        self._out.append(ToolUsage(card_id, name, args, self.answer_started))

    @staticmethod
    def _tool_from_xml(token: Any) -> tuple[str | None, dict]:
        # Only when the structured toolUsageCard is missing: read <xai:tool_name> / CDATA args.
        if type(token) is not str or "<xai:tool_name>" not in token:
            return None, {}
        start = token.index("<xai:tool_name>") + 15
        end = token.find("</xai:tool_name>", start)
        name = token[start:end].strip() if end > 0 else ""
        args: dict = {}
        a = token.find("<![CDATA[")
        if a >= 0:
            b = token.find("]]>", a)
            try:
                parsed = orjson.loads(token[a + 9 : b])
                args = parsed if type(parsed) is dict else {}
            except orjson.JSONDecodeError:
                args = {}
        return (_snake(name) if name else None), args

    def _model_response(self, model: dict, line: dict) -> None:
        """Rule 16: streamErrors ⇒ failure; else fill in missing text and media, then Completed."""
        if model.get("streamErrors"):
            raise classify_inband(line if line.get("result") else {"result": {"response": {"modelResponse": model}}},
                                  endpoint=self.endpoint, mode=self.mode)
        out = self._out
        message = model.get("message")
        message = message if type(message) is str else ""
        streamed = "".join(self._answer)
        if message:
            if not streamed:
                out.append(AnswerDelta(message))
            elif len(message) > len(streamed) and message.startswith(streamed):
                out.append(AnswerDelta(message[len(streamed) :]))
            elif message != streamed:
                log.info("modelResponse.message differs from the streamed answer on %s; keeping the stream",
                         self.endpoint)
        self._add_sources(model.get("webSearchResults"), None)

        images = tuple(u for u in (model.get("generatedImageUrls") or ()) if type(u) is str and u)
        files = tuple(str(f) for f in (model.get("fileAttachments") or ()) if f and type(f) in (str, int))
        for index, rel in enumerate(images):
            url = self._abs(rel)
            gid = _generated_id(url)
            if url in self._image_keys or (gid and gid in self._image_keys):
                continue
            self._remember_image(url, gid)
            out.append(ImageResult(url, index, image_id=gid))
        if files:
            if self._video_ids and not self._video_done:
                asset_id = files[0]
                video_id = self._video_ids[-1] or asset_id
                self._video_done.add(video_id)
                out.append(VideoResult(video_id, self._asset_url(asset_id), asset_id=asset_id,
                                       video_post_id=video_id))
            elif self._image_edit_seen and not images:
                for index, asset_id in enumerate(files):
                    url = self._asset_url(asset_id)
                    if asset_id in self._image_keys or not url:
                        continue
                    self._remember_image(url, asset_id)
                    out.append(ImageResult(url, index, asset_id=asset_id))
        self._emit_completed(
            Completed(
                message=message,
                generated_image_urls=images,
                file_attachments=files,
                title=self.title,
                had_model_response=True,
            )
        )

    def _emit_completed(self, done: Completed) -> None:
        self.state = COMPLETED
        self._completed_at = len(self._out)
        self._out.append(done)


async def iter_chat_events(
    chunks: AsyncIterable[bytes] | Iterable[bytes], **parser_kwargs: Any
) -> AsyncIterator[Event]:
    """Parse an upstream chat body into events; stops reading after Completed or `[DONE]`.

    Failures surface as UpstreamError: in-band errors and stream faults from the parser, and any
    exception raised by `chunks` (reset, timeout, …) through classify_transport.
    """
    parser = ChatStreamParser(**parser_kwargs)
    endpoint = parser.endpoint
    iterator = chunks.__aiter__() if hasattr(chunks, "__aiter__") else None
    try:
        if iterator is None:
            for chunk in chunks:  # type: ignore[union-attr]
                for event in parser.feed(chunk):
                    yield event
                parser.check()
                if parser.completed or parser.done:
                    break
        else:
            while True:
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except UpstreamError:
                    raise
                except Exception as exc:  # a reset / timeout / decoding failure of the body
                    raise classify_transport(exc, endpoint=endpoint) from exc
                for event in parser.feed(chunk):
                    yield event
                parser.check()
                if parser.completed or parser.done:
                    break
        if not parser.completed:
            for event in parser.finish():
                yield event
            parser.check()
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # closing a broken body must not mask the real outcome
                log.debug("closing the upstream body iterator failed", exc_info=True)
