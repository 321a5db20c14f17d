"""Chat calls of the Grok Web client (E1, docs/upstream-protocol.md §4): the payload with the
runtime switches, the NDJSON stream parsed into neutral events (grokweb/parse.py, one state
machine), and the background read of a completed body's tail so its connection is reused.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import orjson

from grokweb.classify import classify_transport
from grokweb.core import ERROR_BODY_CAP, GrokCore, read_capped
from grokweb.egress import egress_report
from grokweb.parse import ChatStreamParser
from grokweb.payloads import chat_payload
from grokweb.transport import upstream_client

EP_CHAT = "/rest/app-chat/conversations/new"
CHAT_TOTAL_CAP = 900.0  # overall cap of one chat/media stream, on top of the idle timeout
DRAIN_TAIL_SECONDS = 5.0  # a completed chat body's tail is read for at most this long, then the connection is dropped
DRAIN_TAIL_BYTES = 256 * 1024
_draining: set[asyncio.Task] = set()


async def chat_drains_settle() -> None:
    """Wait for the background reads of completed chat bodies (their connections then are back in
    the pool, and the upstream has sent everything). Tests and shutdown use it."""
    while _draining:
        await asyncio.gather(*list(_draining), return_exceptions=True)


def chat_drains_running() -> int:
    """How many background reads of completed chat bodies are running on any loop."""
    return len(_draining)


def _drain(response: httpx2.Response, chunks: AsyncIterator[bytes]) -> None:
    """Read the rest of a completed body in a background task so the connection can be reused.
    The answer is already complete: the client's response never waits for this tail."""
    _drain_in_background(response, chunks)


def _drain_in_background(response: httpx2.Response, chunks: AsyncIterator[bytes]) -> asyncio.Task:
    async def drain() -> None:
        try:
            seen = 0
            async with asyncio.timeout(DRAIN_TAIL_SECONDS):
                async for chunk in chunks:
                    seen += len(chunk)
                    if seen > DRAIN_TAIL_BYTES:
                        break
        except Exception:  # best effort (timeout, reset): aclose below drops the connection
            pass
        finally:
            await response.aclose()

    task = asyncio.get_running_loop().create_task(drain())
    _draining.add(task)
    task.add_done_callback(_draining.discard)
    return task



def _body_chunks(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body as it arrives. Without a Content-Encoding the raw chunks are the bytes: httpx2's
    decoder chain (an identity decoder and a re-chunker per chunk) is skipped on the hot path."""
    if response.headers.get("content-encoding", "identity").strip().lower() in ("", "identity"):
        return response.aiter_raw()
    return response.aiter_bytes()


@functools.lru_cache(maxsize=64)
def _parsed_url(url: str) -> httpx2.URL:
    """httpx2 parses a str URL on every request (~2 % of a chat request's CPU in the profile); the
    chat endpoint's URL is one of a handful per configuration, so parse each once."""
    return httpx2.URL(url)


class ChatCalls(GrokCore):
    """Chat: E1."""

    # -- chat (E1) -----------------------------------------------------------------------------

    def build_chat_payload(self, *, message: str, mode: str, file_ids: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
        """chat_payload() with the account-independent feature switches of the runtime config."""
        return chat_payload(
            message=message,
            mode=mode,
            file_ids=file_ids,
            temporary=bool(self.cfg.get("features.temporary", True)),
            memory=bool(self.cfg.get("features.memory", False)),
            custom_personality=self.cfg.get("features.custom_instruction", "") or "",
        )

    @contextlib.asynccontextmanager
    async def chat_stream(
        self,
        *,
        payload: dict[str, Any],
        referer_path: str = "/",
        mode: str | None = None,
        idle_timeout: float | None = None,
        total_timeout: float | None = None,
    ) -> AsyncIterator[AsyncIterator[Any]]:
        """POST E1 and yield an async iterator of neutral events (grokweb/events.py).

        Non-200 answers raise the classified UpstreamError before anything is yielded. The idle
        timeout (gap between chunks, also the wait for the response headers) defaults to
        `chat.timeout` (`video.timeout` for video payloads, `image.timeout` for image edits);
        the whole stream is capped by `total_timeout` (default CHAT_TOTAL_CAP), checked as each chunk arrives. Leaving the
        context before the answer completed — by an exception, by cancellation or early — closes
        the upstream response at once; after `Completed`, the rest of the body (the title line) is
        read in the background (≤ DRAIN_TAIL_SECONDS)
        — so the connection returns to the pool.
        """
        endpoint = EP_CHAT
        model_name = payload.get("modelName")
        mode = mode if mode is not None else payload.get("modeId")
        if idle_timeout is None:
            key = {"imagine-video-gen": "video.timeout", "imagine-image-edit": "image.timeout"}.get(model_name, "chat.timeout")
            idle_timeout = self._timeout(key)
        total = total_timeout or CHAT_TOTAL_CAP
        url = self.web_url(endpoint)
        headers = self.rest_headers(url=url, referer_path=referer_path)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            client = await upstream_client(egress=self.egress, cfg=self.cfg)
            request = client.build_request(
                "POST", _parsed_url(url), headers=headers, content=orjson.dumps(payload),
                timeout=httpx2.Timeout(connect=min(15.0, idle_timeout), read=idle_timeout, write=idle_timeout,
                                      pool=idle_timeout),
            )
            async with asyncio.timeout(min(idle_timeout, total)):
                response = await client.send(request, stream=True)
        except (httpx2.HTTPError, OSError, TimeoutError) as exc:
            raise self._transport_failed(exc, endpoint) from exc
        egress_report(egress=self.egress, ok=True)
        events: AsyncIterator[Any] | None = None
        parser = None
        chunks = _body_chunks(response)
        try:
            if response.status_code != 200:
                try:
                    async with asyncio.timeout(idle_timeout):
                        body = await read_capped(response, ERROR_BODY_CAP)
                except (httpx2.HTTPError, OSError, TimeoutError):
                    body = b""
                raise self._http_failed(status=response.status_code, body=body, response=response,
                                        endpoint=endpoint, mode=mode)
            parser = ChatStreamParser(assets_base_url=self.assets_base, endpoint=endpoint, mode=mode,
                                      user_id=self.user_id)
            events = self._chat_events(response, parser, idle_timeout, started + total, endpoint, chunks=chunks)
            yield events
        finally:
            if events is not None:
                await events.aclose()  # type: ignore[attr-defined]
            if parser is not None and parser.completed and not response.is_closed:
                # Completed: only the short tail (title line) is left. Read it, so the HTTP/1.1
                # connection goes back to the pool instead of being closed (measured in
                # docs/benchmarks.md: a new upstream connection per request otherwise).
                _drain(response, chunks)
            else:
                await response.aclose()

    async def _chat_events(
        self, response: httpx2.Response, parser: Any, idle: float, deadline_at: float, endpoint: str,
        chunks: AsyncIterator[bytes] | None = None,
    ) -> AsyncIterator[Any]:
        # Consumption pattern of grokweb/parse.py: yield what feed() returned, then
        # check() (an in-band error after those events raises here), stop at Completed / [DONE],
        # finish() only when the body ended before completion.
        loop = asyncio.get_running_loop()
        if chunks is None:
            chunks = _body_chunks(response)
        got_data = False
        while True:
            remaining = deadline_at - loop.time()
            if remaining <= 0:
                raise classify_transport(TimeoutError("the stream exceeded its total deadline"), endpoint=endpoint)
            try:
                # The idle timeout is httpx2's read timeout (set on the request): no timer of our own
                # per read. The total deadline is checked between chunks, so a stream that stalls
                # right before it ends at most one idle timeout later.
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except httpx2.RemoteProtocolError as exc:
                if got_data:
                    # The connection broke mid-body: the parser reports an incomplete stream as
                    # truncated (EOF before the soft stop), which is what happened.
                    break
                raise classify_transport(exc, endpoint=endpoint) from exc
            except (httpx2.HTTPError, OSError, TimeoutError) as exc:
                raise classify_transport(exc, endpoint=endpoint) from exc
            got_data = True
            for event in parser.feed(chunk):
                yield event
            parser.check()
            if parser.completed or parser.done:
                return
        if not parser.completed:
            for event in parser.finish():
                yield event
            parser.check()
