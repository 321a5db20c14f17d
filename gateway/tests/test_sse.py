"""gateway/sse.py: keep-alive wrapper semantics and frame encoding."""
import asyncio

import orjson

from gateway.sse import KEEPALIVE, data_frame, event_frame, with_keepalive


async def _slow_source(log: list, gaps: list[float]):
    try:
        for i, gap in enumerate(gaps):
            await asyncio.sleep(gap)
            yield i
    finally:
        log.append("closed")


async def test_it_yields_keepalives_during_a_gap_without_losing_or_reordering_items():
    log: list = []
    out = [item async for item in with_keepalive(_slow_source(log, [0, 0.25, 0]), interval=0.02)]
    items = [x for x in out if x is not KEEPALIVE]
    assert items == [0, 1, 2]
    # the gap before item 1 produced keep-alives, and none of them cancelled the pending read
    first, second = out.index(0), out.index(1)
    assert any(x is KEEPALIVE for x in out[first:second])
    assert log == ["closed"]


async def test_it_sends_no_keepalive_when_items_flow():
    log: list = []
    out = [item async for item in with_keepalive(_slow_source(log, [0, 0, 0]), interval=5)]
    assert out == [0, 1, 2]


async def test_closing_the_wrapper_closes_the_source_at_once():
    log: list = []
    wrapper = with_keepalive(_slow_source(log, [0, 3600]), interval=0.01)
    assert await wrapper.__anext__() == 0
    assert await wrapper.__anext__() is KEEPALIVE  # source is now parked in its hour-long sleep
    await wrapper.aclose()
    assert log == ["closed"]


async def test_cancelling_the_consumer_closes_the_source():
    log: list = []
    started = asyncio.Event()

    async def consume():
        async for item in with_keepalive(_slow_source(log, [0, 3600]), interval=10):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert log == ["closed"]


async def test_source_errors_propagate_unchanged():
    async def failing():
        yield 1
        raise ValueError("boom")

    got = []
    try:
        async for item in with_keepalive(failing(), interval=1):
            got.append(item)
    except ValueError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the error was swallowed")
    assert got == [1]


def test_frames_are_sse_encoded():
    assert data_frame({"a": "é"}) == b"data: " + orjson.dumps({"a": "é"}) + b"\n\n"
    assert event_frame("ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'


async def test_keepalive_frames_fill_the_gaps_of_a_stream_and_never_follow_its_end():
    async def parts():
        yield b"data: 1\n\n"
        await asyncio.sleep(0.35)
        yield b"data: 2\n\n"
        yield b"data: 3\n\n"
        await asyncio.sleep(0.25)
        yield b"data: [DONE]\n\n"

    bodies = [b": ka\n\n" if item is KEEPALIVE else item async for item in with_keepalive(parts(), interval=0.1)]
    data = [b for b in bodies if b.startswith(b"data")]
    assert data == [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n", b"data: [DONE]\n\n"]
    assert bodies[-1] == b"data: [DONE]\n\n"
    first_gap = bodies[bodies.index(b"data: 1\n\n") + 1:bodies.index(b"data: 2\n\n")]
    second_gap = bodies[bodies.index(b"data: 3\n\n") + 1:bodies.index(b"data: [DONE]\n\n")]
    assert first_gap and set(first_gap) == {b": ka\n\n"} and 2 <= len(first_gap) <= 4
    assert second_gap and set(second_gap) == {b": ka\n\n"}
    assert bodies.index(b"data: 2\n\n") + 1 == bodies.index(b"data: 3\n\n")  # no frame between back-to-back parts


async def test_the_reader_stays_at_most_read_ahead_items_ahead_and_a_close_then_closes_the_source():
    from gateway.sse import READ_AHEAD

    log: list = []
    pulled: list = []

    async def endless():
        try:
            n = 0
            while True:
                pulled.append(n)
                yield n
                n += 1
        finally:
            log.append("closed")

    wrapper = with_keepalive(endless(), interval=10)
    assert await wrapper.__anext__() == 0
    for _ in range(5):
        await asyncio.sleep(0)  # let the reader run as far as it may
    assert READ_AHEAD <= len(pulled) <= READ_AHEAD + 2
    await wrapper.aclose()  # the reader is parked on a full buffer, not inside the source
    assert log == ["closed"]


async def test_batches_hold_what_has_arrived_in_order_and_wait_for_nothing_else():
    gate = asyncio.Event()

    async def bursts():
        yield 1
        yield 2
        yield 3
        await gate.wait()
        yield 4
        raise ValueError("after four")

    wrapper = with_keepalive(bursts(), interval=10, batches=True)
    assert await wrapper.__anext__() == [1, 2, 3]
    gate.set()
    assert await wrapper.__anext__() == [4]  # the items before an error are handed over first
    try:
        await wrapper.__anext__()
    except ValueError as exc:
        assert str(exc) == "after four"
    else:
        raise AssertionError("the error was swallowed")
