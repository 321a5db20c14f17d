"""uvicorn's h11 protocol with a deadline for request heads and a 431 for oversized ones.

Why: uvicorn arms its keep-alive timer only after a response, so a connection that sends a head a
byte at a time (or never finishes it) is held open for as long as the client likes; a few hundred
of those use up a worker's `SERVER_MAX_CONNECTIONS`. h11 already caps the size of an incomplete head
(`h11_max_incomplete_event_size`); this adds the time limit uvicorn lacks: from the first byte of a
head — or from the connection's start, for the first one — the whole head must arrive within
`SERVER_HEAD_TIMEOUT_SECONDS`, else the connection is closed the way uvicorn closes an idle
keep-alive connection. Bodies and responses are not limited here (streams may run for minutes).

A head over `h11_max_incomplete_event_size` is refused by h11 with a hint of 431; uvicorn answers
every refused request 400, so `send_400_response` answers that case 431 Request Header Fields Too
Large instead, in the OpenAI error envelope.

It is uvicorn's own protocol class, chosen through its public `http=` setting; it only adds a timer
and reads h11's public connection state (`their_state`: IDLE until a request head is complete;
`trailing_data`: what was received and not yet parsed).
"""
from __future__ import annotations

import asyncio

import h11
from django.conf import settings
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadTimeoutH11Protocol(H11Protocol):
    head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_wait()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            if self.head_timer is None:  # the first bytes of the next head on a kept connection
                self._head_wait()
        else:
            self._head_done()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def _head_wait(self) -> None:
        if settings.SERVER_HEAD_TIMEOUT_SECONDS > 0:
            self.head_timer = self.loop.call_later(settings.SERVER_HEAD_TIMEOUT_SECONDS, self._head_expired)

    def _head_done(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_expired(self) -> None:
        self.head_timer = None
        if self.conn.their_state is h11.IDLE:
            self.timeout_keep_alive_handler()  # uvicorn's own way of closing a quiet connection

    def send_400_response(self, msg: str) -> None:
        if len(self.conn.trailing_data[0]) <= self.config.h11_max_incomplete_event_size:
            super().send_400_response(msg)
            return
        body = (b'{"error":{"message":"Request header fields too large","type":"invalid_request_error",'
                b'"param":null,"code":"request_header_fields_too_large"}}')
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=431, headers=headers, reason=b"Request Header Fields Too Large"),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()
