"""Shared helpers for the pure translator tests: fixture loading, event decoding, SSE parsing."""
from __future__ import annotations

import json
from itertools import count
from pathlib import Path
from typing import Any

from grokweb import events as ev

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fixture_names(prefix: str) -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob(f"{prefix}__*.json"))


def decode_event(item: list) -> Any:
    """["AnswerDelta", {"text": "Hi"}] → AnswerDelta("Hi"); SearchResults sources are dicts."""
    name, fields = item[0], dict(item[1]) if len(item) > 1 else {}
    cls = getattr(ev, name)
    if cls is ev.SearchResults:
        fields["sources"] = tuple(ev.SearchSource(**s) for s in fields["sources"])
    for key in ("generated_image_urls", "file_attachments"):
        if key in fields:
            fields[key] = tuple(fields[key])
    return cls(**fields)


def events_of(fixture: dict) -> list:
    return [decode_event(e) for e in fixture["events"]]


class Ids:
    """Deterministic id factory: <prefix><n zero-padded to the requested hex width>."""

    def __init__(self) -> None:
        self._n = count(1)

    def __call__(self, prefix: str, nhex: int = 8) -> str:
        return f"{prefix}1700000000000{next(self._n):0{nhex}x}"


def sse_frames(data: bytes) -> list[tuple[str | None, str]]:
    """Split an SSE byte stream into (event, data) frames; comments are skipped."""
    frames = []
    for block in data.decode().split("\n\n"):
        if not block.strip():
            continue
        event = None
        datas = []
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                datas.append(line[6:])
        if datas:
            frames.append((event, "\n".join(datas)))
    return frames
