"""Small helpers for simulator tests: plain httpx calls with the SSO cookie pair, NDJSON decoding."""
from __future__ import annotations

import json
import socket

import httpx

CHAT = "/rest/app-chat/conversations/new"


def cookies(token: str) -> dict[str, str]:
    return {"Cookie": f"sso={token}; sso-rw={token}"}


_CLIENTS: dict[str, httpx.Client] = {}


def client_for(server) -> httpx.Client:
    """One pooled client per server (building an httpx client per call costs an SSL context)."""
    client = _CLIENTS.get(server.url)
    if client is None:
        # TCP_NODELAY: the sync client writes headers and body separately (Nagle + delayed ACK = 40 ms).
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        client = _CLIENTS[server.url] = httpx.Client(base_url=server.url, timeout=10, transport=transport)
    return client


def call(server, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
    headers = dict(kwargs.pop("headers", {}) or {})
    if token is not None:
        headers.update(cookies(token))
    return client_for(server).request(method, path, headers=headers, **kwargs)


def chat(server, token: str, message: str, mode: str = "fast", **payload) -> httpx.Response:
    body = {"message": message, "modeId": mode, "temporary": True, **payload}
    if mode is None:
        body.pop("modeId")
    return call(server, "POST", CHAT, token, json=body)


def lines(resp: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in resp.text.split("\n") if line.strip()]


def responses(objs: list[dict]) -> list[dict]:
    return [o["result"]["response"] for o in objs if "response" in o.get("result", {})]


def answer_text(objs: list[dict]) -> str:
    return "".join(r["token"] for r in responses(objs)
                   if r.get("token") and not r.get("isThinking") and r.get("messageTag", "final") == "final")


def model_response(objs: list[dict]) -> dict:
    found = [r["modelResponse"] for r in responses(objs) if "modelResponse" in r]
    assert len(found) == 1, f"expected one modelResponse, got {len(found)}"
    return found[0]


def kinds(objs: list[dict]) -> list[str]:
    """A compact name per line, for order assertions."""
    out = []
    for o in objs:
        result = o.get("result", {})
        if "conversation" in result:
            out.append("conversation")
        elif "title" in result:
            out.append("title")
        elif "error" in o:
            out.append("error")
        elif "response" in result:
            r = result["response"]
            for key in ("userResponse", "llmInfo", "modelResponse", "cardAttachment", "finalMetadata",
                        "streamingImageGenerationResponse", "streamingVideoGenerationResponse", "error"):
                if key in r:
                    out.append(key)
                    break
            else:
                if "uiLayout" in r:
                    out.append("uiLayout:" + r["uiLayout"]["reasoningUiLayout"])
                elif r.get("isSoftStop"):
                    out.append("softStop")
                elif r.get("messageTag") in ("tool_usage_card", "raw_function_result"):
                    out.append(r["messageTag"])
                elif r.get("isThinking"):
                    out.append("thinking")
                elif r.get("token"):
                    out.append("token")
                elif "token" in r:
                    out.append("keepalive")
                else:
                    out.append("other")
    return out
