"""GrokClient: one account's view of grok.com, the only code that knows its paths, headers and payloads.

It is the core (grokweb/core.py: settings, URLs, credential scope, header sets, the REST plumbing,
the quota probe, voice token and session) with its calls along their seams: chat
(grokweb/chat.py), uploads and assets (grokweb/assets.py), Imagine and media posts
(grokweb/imagine.py). Each part is a subclass of the core, so each is read and typed on its own;
this class only puts them together. The stream parser (grokweb/parse.py) stays one state machine.

Wire format: docs/upstream-protocol.md §2–§10; the client's own doc: docs/upstream-client.md.
"""
from __future__ import annotations

from grokweb.assets import AssetCalls
from grokweb.chat import ChatCalls
from grokweb.imagine import ImagineCalls


class GrokClient(ChatCalls, AssetCalls, ImagineCalls):
    """One account's view of grok.com. Cheap to build (the httpx2 client underneath is pooled).

    `cfg` (settings with `.get(key, default)`) and `egress` default to the host's (grokweb/host.py:
    the runtime config snapshot and the proxy pool of the core); `cfg` is read once here.
    """


__all__ = ["GrokClient"]
