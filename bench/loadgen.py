"""A lean HTTP/1.1 load generator on raw asyncio streams (uvloop), made for this benchmark.

Wire format it speaks: HTTP/1.1 keep-alive over TCP; the request is one pre-built bytes object
(`POST <path>` with `Content-Length`); the response is read by `Content-Length`, `chunked` or
until EOF. Stream bodies are looked at per HTTP chunk (the servers under test send one chunk per
SSE frame / NDJSON line), each chunk timestamped with `time.perf_counter()` as it is read:
- OpenAI SSE (`text/event-stream`): a content event is a frame whose `delta` carries a non-empty
  `"content":"..."`; the stream is complete when `data: [DONE]` arrived and no `{"error":` frame did;
- Grok Web NDJSON (the simulator's upstream face): a content event is a line with a non-empty
  `"token":"..."`; complete when the chunked body ended with a `modelResponse`.

Why not httpx/aiohttp: the generator shares the same 2 cores as the servers under test, so it must
cost as little CPU per request as possible; `bench.run` reports its CPU share for every lane.
"""
from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

perf = time.perf_counter

OPENAI = "openai"
GROK = "grok"

_CONTENT_MARK = {OPENAI: b'"content":"', GROK: b'"token":"'}


@dataclass(frozen=True, slots=True)
class Target:
    """One HTTP endpoint: where to send and how to read what comes back."""

    name: str
    host: str
    port: int
    path: str
    kind: str  # OPENAI (SSE / chat.completion JSON) or GROK (NDJSON)
    headers: tuple[tuple[str, str], ...] = ()

    def request(self, body: bytes) -> bytes:
        head = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Type: application/json",
                f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass(slots=True)
class Sample:
    target: str
    t0: float
    status: int = 0
    t_headers: float = 0.0
    t_first: float = 0.0  # first content event (stream) / body read (non-stream)
    t_end: float = 0.0
    ok: bool = False
    error: str = ""
    events: int = 0  # content events seen
    chunk_times: list[float] | None = None  # time of each chunk carrying content (detail mode)
    chunk_events: list[int] | None = None  # content events in that chunk
    body: bytes = b""

    @property
    def latency(self) -> float:
        return self.t_end - self.t0

    @property
    def ttft(self) -> float:
        return self.t_first - self.t0


def count_content(data: bytes, kind: str) -> int:
    """Content events in one chunk: occurrences of the content marker not followed by `"`."""
    mark = _CONTENT_MARK[kind]
    n = 0
    i = data.find(mark)
    while i >= 0:
        j = i + len(mark)
        if j < len(data) and data[j] != 0x22:  # '"' means an empty string
            n += 1
        i = data.find(mark, j)
    return n


class Connection:
    """One keep-alive connection; reconnects when the server closed it."""

    __slots__ = ("target", "reader", "writer")

    def __init__(self, target: Target) -> None:
        self.target = target
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _ensure(self) -> None:
        if self.writer is None or self.writer.is_closing() or self.reader.at_eof():
            await self.close()
            self.reader, self.writer = await asyncio.open_connection(self.target.host, self.target.port, limit=1 << 20)

    async def close(self) -> None:
        w, self.writer, self.reader = self.writer, None, None
        if w is not None:
            w.close()
            try:
                await w.wait_closed()
            except Exception:
                pass

    async def send(self, raw: bytes, *, stream: bool, detail: bool = False, keep_body: bool = False,
                   timeout: float = 60.0) -> Sample:
        s = Sample(target=self.target.name, t0=perf())
        stream = stream or self.target.kind == GROK  # the Grok Web face always answers with an NDJSON stream
        try:
            async with asyncio.timeout(timeout):
                await self._ensure()
                s.t0 = perf()
                self.writer.write(raw)
                await self._read(s, stream=stream, detail=detail, keep_body=keep_body)
        except (TimeoutError, asyncio.TimeoutError):
            s.error = "timeout"
            await self.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            s.error = type(exc).__name__
            await self.close()
        if not s.t_end:
            s.t_end = perf()
        return s

    async def _read(self, s: Sample, *, stream: bool, detail: bool, keep_body: bool) -> None:
        reader = self.reader
        head = await reader.readuntil(b"\r\n\r\n")
        s.t_headers = perf()
        s.status = int(head[9:12])
        lower = head.lower()
        chunked = b"transfer-encoding: chunked" in lower
        close = b"connection: close" in lower
        kind = self.target.kind
        if detail:
            s.chunk_times, s.chunk_events = [], []
        parts: list[bytes] = []
        if chunked:
            while True:
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                data = (await reader.readexactly(size + 2))[:-2]
                if stream:
                    n = count_content(data, kind)
                    if n:
                        now = perf()
                        if not s.events:
                            s.t_first = now
                        s.events += n
                        if detail:
                            s.chunk_times.append(now)
                            s.chunk_events.append(n)
                parts.append(data)
        else:
            i = lower.find(b"content-length:")
            if i >= 0:
                n = int(lower[i + 15:lower.index(b"\r\n", i)])
                parts.append(await reader.readexactly(n))
            else:
                parts.append(await reader.read())
                close = True
            if stream:
                s.events = count_content(parts[-1], kind)
                s.t_first = perf()
        s.t_end = perf()
        if not s.t_first:
            s.t_first = s.t_end
        body = b"".join(parts) if (keep_body or not stream or s.status != 200) else b""
        if stream:
            tail = parts[-1] if parts else b""
            if kind == OPENAI:
                whole = b"".join(parts[-3:])
                s.ok = s.status == 200 and b"data: [DONE]" in whole and b'data: {"error"' not in whole
            else:
                s.ok = s.status == 200 and (b"modelResponse" in tail or b"modelResponse" in b"".join(parts[-3:]))
        else:
            s.ok = s.status == 200 and (b'"finish_reason":"stop"' in body or b'"finish_reason": "stop"' in body)
            s.events = 1 if s.ok else 0
        if not s.ok and not s.error:
            s.error = f"http {s.status}" if s.status != 200 else "incomplete"
        s.body = body if (keep_body or not s.ok) else b""
        if close:
            await self.close()


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; nan when empty."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(q / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


@dataclass(slots=True)
class LoadResult:
    target: str
    concurrency: int
    duration: float
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)
    gen_cpu: float = 0.0  # generator CPU seconds / wall seconds (1.0 = one full core)

    @property
    def rps(self) -> float:
        return self.ok / self.duration if self.duration else 0.0

    @property
    def error_rate(self) -> float:
        total = self.ok + self.errors
        return self.errors / total if total else 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)


async def closed_loop(target: Target, *, concurrency: int, duration: float, body: Callable[[int], bytes],
                      stream: bool, warmup: float = 1.0, timeout: float = 30.0) -> LoadResult:
    """`concurrency` clients, each sending its next request as soon as the previous one ended.

    Requests that end during the first `warmup` seconds are not counted (connections and caches
    warm up); counting then runs for `duration` seconds. A request still running at the end is
    awaited but not counted, so the measured window holds only whole requests.
    """
    res = LoadResult(target=target.name, concurrency=concurrency, duration=duration)
    t_start = perf()
    t_count = t_start + warmup
    t_stop = t_count + duration
    seq = 0

    async def client() -> None:
        nonlocal seq
        conn = Connection(target)
        try:
            while perf() < t_stop:
                seq += 1
                s = await conn.send(target.request(body(seq)), stream=stream, timeout=timeout)
                if s.t_end < t_count or s.t_end > t_stop:
                    continue
                if s.ok:
                    res.ok += 1
                    res.latencies.append(s.latency)
                else:
                    res.errors += 1
                    res.error_kinds[s.error] = res.error_kinds.get(s.error, 0) + 1
        finally:
            await conn.close()

    cpu0 = cpu_seconds()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = perf() - t_start
    res.gen_cpu = (cpu_seconds() - cpu0) / wall if wall else 0.0
    return res
