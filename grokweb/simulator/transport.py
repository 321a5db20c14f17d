"""In-process ``httpx2.MockTransport`` over a :class:`~.core.Simulator` (HTTP roles only).

Bodies stream through an async iterator, so per-line chunk timing (pace, ``tokms``, ``stall``) is the
same as on a real socket; ``drop@n`` surfaces as ``httpx2.ReadError``. Use with ``httpx2.AsyncClient``.
WebSocket roles (Imagine, LiveKit) need the real server (:class:`~.server.SimServer`).
"""
from __future__ import annotations

from typing import AsyncIterator

import httpx2

from . import handlers
from .chat import Drop
from .core import SimRequest, SimResponse, Simulator


class _SimStream(httpx2.AsyncByteStream):
    def __init__(self, resp: SimResponse) -> None:
        self._resp = resp
        self._iter: AsyncIterator[bytes] = resp.body  # type: ignore[assignment]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._iter:
                yield chunk
        except Drop:
            raise httpx2.ReadError("simulated connection drop") from None

    async def aclose(self) -> None:
        aclose = getattr(self._iter, "aclose", None)
        try:
            if aclose is not None:
                await aclose()
        finally:
            self._resp.close()


def mock_transport(sim: Simulator) -> httpx2.MockTransport:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        headers = list(request.headers.multi_items())
        raw_path = request.url.raw_path.decode("latin-1")
        req = SimRequest.build(request.method, raw_path, headers, body)
        resp = await handlers.handle(sim, req)
        if isinstance(resp.body, (bytes, bytearray)):
            resp.close()
            return httpx2.Response(resp.status, headers=resp.headers, content=bytes(resp.body))
        return httpx2.Response(resp.status, headers=resp.headers, stream=_SimStream(resp))

    return httpx2.MockTransport(handler)
