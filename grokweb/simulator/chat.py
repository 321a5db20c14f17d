"""E1/E2 chat streams of the simulator: line plans and their framing (docs/upstream-protocol.md §4.4–§4.10, §15.4–§15.6).

A stream is first planned as a list of items — ``("line", obj)``, ``("raw", bytes)``,
``("sleep", seconds)``, ``("drop",)``, ``("end",)`` — then rendered by :func:`render` into byte chunks
with the framing of the scenario:

- default NDJSON (``{…}\\n`` per line, one chunk per line);
- ``sse``: ``event: message\\ndata: {…}\\n\\n`` and a closing ``data: [DONE]``;
- ``blank``: an empty line after every object; ``crlf``: ``\\r\\n`` endings;
- ``concat``: up to three objects on one physical line without separators;
- ``nofinalnl``: the last line has no trailing newline.

Line order of a plain answer: conversation → userResponse → uiLayout(SPLIT) → llmInfo →
uiLayout(FUNCTION_CALL) → [thinking / tool lines] → final tokens (+ keep-alives) → soft stop →
[finalMetadata] → modelResponse → title.
"""
from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, AsyncIterator

import orjson

from . import content
from .tokens import Scenario

if TYPE_CHECKING:
    from .core import Simulator

_LINE_ERROR = {"error": {"code": 8, "message": "Too many requests", "details": []}}
_USAGE_LIMIT = "You've reached your usage limit. Please try again later."
_STREAM_ERRORS = [{"code": 8, "message": "Too many requests"}]

MODE_META = {
    "fast": ("grok-3", "MODEL_MODE_FAST", "low"),
    "auto": ("grok-4-auto", "MODEL_MODE_AUTO", "low"),
    "expert": ("grok-4", "MODEL_MODE_EXPERT", "high"),
    "heavy": ("grok-4-heavy", "MODEL_MODE_HEAVY", "high"),
    "grok-420-computer-use-sa": ("grok-420", "MODEL_MODE_GROK_420", "high"),
}


class Drop(Exception):
    """Raised inside a body iterator to abort the connection without finishing the response."""


_COMMON_RECORDS: dict[str, dict] = {}  # model -> ChatContext.common_record's template


@functools.lru_cache(maxsize=32)
def _model_hash(mode: str) -> str:
    return base64.b64encode(hashlib.sha256(f"llm|{mode}".encode()).digest()).decode()


@dataclass
class ChatContext:
    sim: "Simulator"
    token: str
    scenario: Scenario
    request_no: int
    payload: dict
    mode: str
    user_id: str
    flat: bool = False  # E2: flat wrapper, no conversation header
    plan: list = field(default_factory=list)
    answered: int = 0  # answer tokens emitted so far (fault positions count these)
    stopped: bool = False
    streamed_text: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Text depends on seed + prompt only (same prompt, same answer); ids on token + request number.
        self.rng = content.prompt_rng(self.sim.seed, str(self.payload.get("message", "")))
        self.response_id = self.uuid("response")
        self.user_response_id = self.uuid("user-response")
        self.conversation_id = self.uuid("conversation")

    def uuid(self, purpose: str) -> str:
        return self.sim.uuid(self.token, self.request_no, purpose)

    # ----------------------------------------------------------- delays
    def delay(self, nominal_ms: float, override_ms: int | None = None) -> None:
        seconds = self.sim.delay_seconds(nominal_ms, override_ms)
        if seconds > 0:
            self.plan.append(("sleep", seconds))

    def token_delay(self) -> None:
        self.delay(1000.0 / self.rng.uniform(30, 60), self.scenario.tok_ms)

    # ----------------------------------------------------------- lines
    def line(self, obj: dict) -> None:
        if not self.stopped:
            self.plan.append(("line", obj))

    def resp(self, payload: dict, *, thinking: bool = False, soft_stop: bool = False, rid: str | None = None) -> None:
        body = dict(payload)
        body.setdefault("isThinking", thinking)
        body.setdefault("isSoftStop", soft_stop)
        body.setdefault("responseId", rid or self.response_id)
        self.line({"result": {"response": body}})

    def keepalive(self) -> None:
        self.resp({"token": ""})

    def _faults_before(self, k: int) -> bool:
        """Apply faults scheduled before answer token k; True when the stream must stop."""
        sc = self.scenario
        if sc.stall and sc.stall[0] == k:
            self.plan.append(("sleep", sc.stall[1] / 1000.0))
        if sc.malformed_at == k:
            self.plan.append(("raw", b'{"result":{"response":{"token":"broken'))
        if sc.inband and sc.inband[1] == k:
            form = sc.inband[0]
            if form == "line":
                self.line(_LINE_ERROR)
            elif form == "response":
                err: dict[str, Any] = {"error": {"message": _USAGE_LIMIT}}
                if self.sim.knobs["inband_image_chunk"]:
                    err["cardAttachment"] = {"jsonData": json.dumps({"image_chunk": {"progress": 100, "systemErrCode": "rate_limit"}})}
                self.line({"result": {"response": err}})
            else:
                self.resp({"modelResponse": self.model_response(errors=_STREAM_ERRORS)})
            self.plan.append(("end",))
            self.stopped = True
            return True
        if sc.drop_at == k:
            self.plan.append(("drop",))
            self.stopped = True
            return True
        if sc.truncate_at == k:
            self.plan.append(("end",))
            self.stopped = True
            return True
        return False

    def answer(self, payload: dict, text: str = "", *, hidden: bool = False) -> bool:
        """Emit one answer token line (with faults and pacing); False once the stream stopped."""
        if self.stopped or self._faults_before(self.answered):
            return False
        self.token_delay()
        if not hidden:
            self.resp(payload)
        self.streamed_text.append(text)
        self.answered += 1
        if self.rng.random() < 0.2:
            self.keepalive()
        return True

    def answer_done(self) -> bool:
        """Faults positioned at or after the last token fire before the soft stop."""
        if self.stopped:
            return False
        sc, k = self.scenario, self.answered

        def clamp(v: int | None) -> int | None:
            return k if v is not None and v >= k else None

        self.scenario = replace(
            sc,
            stall=(k, sc.stall[1]) if sc.stall and sc.stall[0] >= k else None,
            malformed_at=clamp(sc.malformed_at),
            inband=(sc.inband[0], k) if sc.inband and sc.inband[1] >= k else None,
            drop_at=clamp(sc.drop_at),
            truncate_at=clamp(sc.truncate_at),
        )
        try:
            stop = self._faults_before(k)
        finally:
            self.scenario = sc
        return not stop

    # ----------------------------------------------------------- records
    def iso(self, offset: float = 0.0) -> str:
        return self.sim.iso(self.sim.now() + offset)

    def common_record(self) -> dict:
        """The fields every response record carries (a fresh top-level dict; the empty lists inside
        are shared between records, which are serialized as they are and never changed in place)."""
        model = MODE_META.get(self.mode, MODE_META["auto"])[0]
        template = _COMMON_RECORDS.get(model)
        if template is None:
            template = _COMMON_RECORDS[model] = self._common_record(model)
        return dict(template)

    @staticmethod
    def _common_record(model: str) -> dict:
        return {
            "manual": False, "partial": False, "shared": False, "query": "", "queryType": "",
            "webSearchResults": [], "xpostIds": [], "xposts": [], "generatedImageUrls": [],
            "imageAttachments": [], "fileAttachments": [], "cardAttachmentsJson": [], "fileUris": [],
            "fileAttachmentsMetadata": [], "isControl": False, "steps": [], "imageEditUris": [],
            "mediaTypes": [], "webpageUrls": [], "metadata": {}, "citedWebSearchResults": [],
            "toolResponses": [], "model": model, "ragResults": [],
            "citedRagResults": [], "searchProductResults": [], "connectorSearchResults": [],
            "collectionSearchResults": [], "highlightsStories": [], "streamErrors": [],
        }

    def model_hash(self) -> str:
        return _model_hash(self.mode)

    def model_response(self, *, message: str | None = None, errors: list | None = None, **extra: Any) -> dict:
        model, mode_enum, effort = MODE_META.get(self.mode, MODE_META["auto"])
        record: dict[str, Any] = {"responseId": self.response_id}
        record.update(self.common_record())
        record.update({
            "message": "".join(self.streamed_text) if message is None else message,
            "sender": "assistant",
            "createTime": self.iso(),
            "parentResponseId": self.user_response_id,
            "metadata": {
                "deepsearchPreset": "",
                "llm_info": {"modelHash": self.model_hash()},
                "request_metadata": {"effort": effort, "mode": self.mode, "model": model},
                "request_trace_id": hashlib.md5(self.response_id.encode()).hexdigest(),
                "ui_layout": {"effort": effort.upper(), "reasoningUiLayout": "FUNCTION_CALL", "willThinkLong": False},
            },
            "uiLayout": {"reasoningUiLayout": "FUNCTION_CALL", "willThinkLong": False, "effort": effort.upper(), "rolloutIds": []},
            "model": model,
            "requestMetadata": {"model": model, "mode": mode_enum, "effort": effort.upper()},
            "streamErrors": errors or [],
        })
        record.update(extra)
        return record

    def head(self) -> None:
        model, _, effort = MODE_META.get(self.mode, MODE_META["auto"])
        if not self.flat:
            self.line({"result": {"conversation": {
                "conversationId": self.conversation_id, "title": "New conversation", "starred": False,
                "createTime": self.iso(), "modifyTime": self.iso(0.001), "systemPromptName": "",
                "temporary": bool(self.payload.get("temporary", True)), "mediaTypes": [], "workspaces": [],
                "taskResult": None,
            }}})
        user = {"responseId": self.user_response_id, "message": self.payload.get("message", ""),
                "sender": "human", "createTime": self.iso()}
        user.update(self.common_record())
        self.resp({"userResponse": user}, rid=self.user_response_id)

    def layout(self, *, think_long: bool) -> None:
        _, _, effort = MODE_META.get(self.mode, MODE_META["auto"])
        rollouts = [f"Agent {i}" for i in range(1, 5)] if self.mode == "heavy" else []
        self.resp({"uiLayout": {"reasoningUiLayout": "SPLIT", "willThinkLong": think_long, "effort": effort.upper(),
                                "steerModelId": "grok-4", "rolloutIds": rollouts}})
        self.resp({"llmInfo": {"modelHash": self.model_hash()}})
        self.resp({"uiLayout": {"reasoningUiLayout": "FUNCTION_CALL", "willThinkLong": think_long,
                                "effort": effort.upper(), "rolloutIds": rollouts}})

    def tail(self, *, title_text: str, **model_extra: Any) -> None:
        if self.stopped:
            return
        self.resp({"token": ""}, soft_stop=True)
        fm = self.sim.knobs["final_metadata"]
        if fm == "empty":
            self.line({"result": {"response": {"finalMetadata": {}, "responseId": self.response_id}}})
        elif fm == "nonempty":
            self.line({"result": {"response": {"finalMetadata": {"followUpSuggestions": ["Tell me more"], "done": True},
                                               "responseId": self.response_id}}})
        if self.scenario.has("nomodelresponse"):
            self.plan.append(("end",))
            return
        self.resp({"modelResponse": self.model_response(**model_extra)})
        self.line({"result": {"title": {"newTitle": content.title_for(title_text)}}})


# ---------------------------------------------------------------- helpers for tool lines

def _tool_card_token(card_id: str, tool: str, args: dict) -> str:
    return ("<xai:tool_usage_card>\n  <xai:tool_usage_card_id>" + card_id + "</xai:tool_usage_card_id>\n"
            "  <xai:tool_name>" + tool + "</xai:tool_name>\n  <xai:tool_args><![CDATA["
            + json.dumps(args, ensure_ascii=False) + "]]></xai:tool_args>\n</xai:tool_usage_card>")


_TOOL_KEYS = {"web_search": "webSearch", "x_search": "xSearch", "browse_page": "browsePage",
              "code_execution": "codeExecution", "search_images": "searchImages"}


def _tool_card(ctx: ChatContext, tool: str, args: dict, step: int) -> tuple[str, dict]:
    card_id = ctx.uuid(f"card-{tool}")
    card = {"toolUsageCardId": card_id, _TOOL_KEYS[tool]: {"args": args}}
    token = _tool_card_token(card_id, tool, args)
    ctx.delay(400)
    ctx.resp({"token": token, "messageTag": "tool_usage_card", "messageStepId": step,
              "toolUsageCardId": card_id, "toolUsageCard": card}, thinking=True)
    # A card-id-only follow-up (the reference ignores these lines).
    ctx.resp({"toolUsageCardId": card_id, "messageStepId": step})
    return card_id, card


def _thinking(ctx: ChatContext, prompt: content.Prompt) -> None:
    rng = ctx.rng
    topic = " ".join(prompt.last_text.split()[:6]) or "the request"
    heavy = ctx.mode == "heavy"
    agents = [f"Agent {i}" for i in range(1, 5)] if heavy else [None]
    step = 0
    nominal = 3500 if not heavy else 9000
    lines_total = 3 + (len(agents) * 3 if heavy else 3)
    per_line = nominal / lines_total

    def think(token: str, tag: str | None, agent: str | None) -> None:
        ctx.delay(per_line)
        body: dict[str, Any] = {"token": token}
        if tag:
            body["messageTag"] = tag
        body["messageStepId"] = step
        if agent:
            body["rolloutId"] = agent
        ctx.resp(body, thinking=True)

    think("Thinking about your request", "header", agents[0])
    for agent in agents:
        step += 1
        think(f"Considering {topic}", "header", agent)
        for _ in range(2):
            words = " ".join(rng.choice(content.WORDS) for _ in range(rng.randint(5, 9)))
            think(f"- {words.capitalize()}.", "summary", agent)
    if prompt.has("rawthink"):
        for frag in ("Let me ", "reason ", "about this ", "step by step."):
            think(frag, "analysis", agents[-1])
        think(" Done.", None, agents[-1])


def _thinks(ctx: ChatContext, prompt: content.Prompt) -> bool:
    if ctx.mode == "fast":
        return False
    if ctx.mode in ("expert", "heavy", "grok-420-computer-use-sa"):
        return True
    if prompt.has("think"):
        return True
    return int(hashlib.sha256(prompt.last_text.encode()).hexdigest(), 16) % 3 == 0


_SEARCH_RESULTS = [
    ("https://docs.example.com/guide/overview", "Overview | Example Docs", "A concise overview of the topic from the example documentation."),
    ("https://news.example.org/2026/06/update", "Latest update — Example News", "Reporting on the most recent developments."),
    ("https://wiki.example.net/Topic", "Topic — Example Wiki", "Background, history and references."),
]


def _search_block(ctx: ChatContext, prompt: content.Prompt, step: int) -> dict:
    """Tool card + results for #sim:search/#sim:xsearch/#sim:browse/#sim:code/#sim:searchimages."""
    query = " ".join(prompt.last_text.replace("#sim:", " ").split()[:6]) or "query"
    out: dict[str, Any] = {"web": [], "x": [], "steps": [], "search_image": None}
    if prompt.has("search"):
        card_id, card = _tool_card(ctx, "web_search", {"query": query, "num_results": "10"}, step)
        results = [{"url": u, "title": t, "preview": p} for u, t, p in _SEARCH_RESULTS]
        if prompt.directives["search"]:  # #sim:search=<url>: the first result links there (any scheme)
            results[0]["url"] = prompt.directives["search"]
        ctx.resp({"token": "", "messageTag": "raw_function_result", "messageStepId": step,
                  "toolUsageCardId": card_id, "webSearchResults": {"results": results}})
        out["web"] = results
        out["steps"].append({"text": [_tool_card_token(card_id, "web_search", {"query": query})],
                             "tags": ["tool_usage_card"], "webSearchResults": [],
                             "toolUsageResults": [{"toolUsageCardId": card_id, "webSearchResults": {"results": results}}],
                             "toolUsageCards": [card]})
        ctx.resp({"token": "Reviewing the search results", "messageTag": "summary", "messageStepId": step + 1}, thinking=True)
    if prompt.has("xsearch"):
        card_id, card = _tool_card(ctx, "x_search", {"query": query}, step)
        posts = [{"postId": str(1800000000000000000 + i), "username": f"example_user{i}", "name": f"Example {i}",
                  "text": f"Post {i} about {query}: a short simulated update.", "createTime": ctx.iso()} for i in range(2)]
        ctx.resp({"token": "", "messageTag": "raw_function_result", "messageStepId": step,
                  "toolUsageCardId": card_id, "xSearchResults": {"results": posts}})
        out["x"] = posts
    if prompt.has("browse"):
        _tool_card(ctx, "browse_page", {"url": _SEARCH_RESULTS[0][0], "instructions": "summarise"}, step)
    if prompt.has("code"):
        card_id, _ = _tool_card(ctx, "code_execution", {"code": "print(6 * 7)", "language": "python"}, step)
        ctx.resp({"token": "", "messageTag": "raw_function_result", "messageStepId": step, "toolUsageCardId": card_id,
                  "codeExecutionResult": {"stdout": "42\n", "stderr": "", "exitCode": 0}})
    if prompt.has("searchimages"):
        _tool_card(ctx, "search_images", {"query": query}, step)
        out["search_image"] = query
    return out


def _emit_tokens(ctx: ChatContext, tokens: list[str], *, untagged: bool, gap_index: int | None) -> None:
    for i, tok in enumerate(tokens):
        payload: dict[str, Any] = {"token": tok}
        if not untagged:
            payload["messageTag"] = "final"
        if not ctx.answer(payload, tok, hidden=(i == gap_index)):
            return


def _lite_images(ctx: ChatContext, prompt_text: str) -> tuple[list[str], list[str]]:
    """Two in-chat generated images (§15.9); returns (render-tag text list, final relative urls)."""
    sim, moderated = ctx.sim, ctx.scenario.has("moderate")
    finals: list[str] = []
    for index in range(2):
        card_id = hashlib.sha256(ctx.uuid(f"img-card-{index}").encode()).hexdigest()[:6]
        image_uuid = ctx.uuid(f"image-{index}")
        base = f"users/{ctx.user_id}/generated/{image_uuid}"
        card = {"id": card_id, "type": "render_file", "cardType": "generated_image_card"}
        ctx.resp({"cardAttachment": {"jsonData": json.dumps({**card, "image_chunk": None})}, "messageTag": "final"})
        tag = (f'<grok:render card_id="{card_id}" card_type="generated_image_card" type="render_file">'
               f'<argument name="file_path">/home/sandbox/artifacts/imagine_images/image_{index}.jpg</argument></grok:render>')
        if not ctx.answer({"token": tag, "messageTag": "final"}, tag):
            return [], finals
        ctx.delay(1500)
        preview = f"{base}-part-0/image.jpg"
        sim.asset_put(token=ctx.token, user_id=ctx.user_id, path=preview, asset_id=image_uuid + "-part-0",
                      content_type="image/jpeg", gen=("jpeg", image_uuid + "-preview", 32, 32), listed=False)
        chunk = {"imageUuid": image_uuid, "imageUrl": preview, "seq": 0, "progress": 50, "imageIndex": index}
        ctx.resp({"cardAttachment": {"jsonData": json.dumps({**card, "image_chunk": chunk})}, "messageTag": "final"})
        ctx.delay(1500)
        final = f"{base}/image.jpg"
        chunk = {"imageUuid": image_uuid, "imageUrl": final, "seq": 1, "progress": 100, "moderated": moderated,
                 "imageIndex": index, "rRated": False}
        if sim.knobs["lite_image_error"]:
            chunk["systemErrCode"] = "rate_limit"
        elif not moderated:
            sim.asset_put(token=ctx.token, user_id=ctx.user_id, path=final, asset_id=image_uuid,
                          content_type="image/jpeg", gen=("jpeg", image_uuid, 64, 64), file_name="image.jpg")
            finals.append(final)
        ctx.resp({"cardAttachment": {"jsonData": json.dumps({**card, "image_chunk": chunk})}, "messageTag": "final"})
    return [], finals


def plan_chat(ctx: ChatContext) -> list:
    """The standard E1 answer (text, thinking, search, tools, lite images)."""
    prompt = content.parse_prompt(str(ctx.payload.get("message", "")))
    sc, knobs = ctx.scenario, ctx.sim.knobs
    draw = content.is_drawing(prompt)
    thinks = _thinks(ctx, prompt) and not draw
    ctx.delay(ctx.rng.uniform(300, 800), sc.firstbyte_ms)
    ctx.head()
    ctx.layout(think_long=thinks and ctx.mode in ("expert", "heavy"))
    if thinks:
        _thinking(ctx, prompt)
    searched = _search_block(ctx, prompt, step=2 if thinks else 0)

    extra: dict[str, Any] = {}
    cards_json: list[str] = []
    n_len = prompt.directives.get("len")
    n_tokens = int(n_len) if n_len and n_len.isdigit() else knobs["answer_tokens"]
    if draw:
        _, finals = _lite_images(ctx, prompt.last_text)
        if not ctx.stopped:
            _emit_tokens(ctx, ["Here", " are", " your", " images."], untagged=prompt.has("untagged"), gap_index=None)
        extra["generatedImageUrls"] = finals
    elif any(prompt.has(t) for t in ("tool", "tool-fenced", "tool-json", "tool-prose")):
        text = content.tool_answer(prompt)
        _emit_tokens(ctx, content.split_tokens(text, ctx.rng), untagged=prompt.has("untagged"), gap_index=None)
    elif searched["web"]:
        for i, result in enumerate(searched["web"][:2]):
            words = content.canned_text(ctx.rng, 8)
            if i:
                words[0] = " " + words[0].lstrip()
            words[-1] = words[-1].rstrip(".")
            _emit_tokens(ctx, words, untagged=prompt.has("untagged"), gap_index=None)
            card_id = hashlib.sha256(f"{ctx.response_id}|cite|{i}".encode()).hexdigest()[:6]
            card = json.dumps({"id": card_id, "type": "render_inline_citation", "cardType": "citation_card",
                               "url": result["url"]})
            cards_json.append(card)
            if not ctx.stopped:
                ctx.resp({"cardAttachment": {"jsonData": card}, "messageTag": "final"})
            tag = (f'.<grok:render card_id="{card_id}" card_type="citation_card" type="render_inline_citation">'
                   f'<argument name="citation_id">{i}</argument></grok:render>')
            if not ctx.answer({"token": tag, "messageTag": "final"}, tag):
                break
        extra["webSearchResults"] = searched["web"]
        extra["steps"] = searched["steps"]
    else:
        if prompt.response_schema is not None:  # structured output (docs/simulator.md)
            tokens = content.split_tokens(content.structured_answer(prompt), ctx.rng)
        elif prompt.last_role.startswith("tool result"):
            tokens = content.split_tokens(content.tool_result_answer(prompt), ctx.rng)
        elif prompt.directives.get("say"):  # #sim:say=<text>: exactly this answer (percent-decoded)
            tokens = content.split_tokens(content.directive_text(prompt, "say"), ctx.rng)
        else:
            tokens = content.canned_text(ctx.rng, n_tokens, knobs["chars_per_token"])
        gap = len(tokens) // 2 if prompt.has("gap") and len(tokens) >= 3 else None
        _emit_tokens(ctx, tokens, untagged=prompt.has("untagged"), gap_index=gap)
    if searched["search_image"] and not ctx.stopped:
        card_id = hashlib.sha256(f"{ctx.response_id}|simg".encode()).hexdigest()[:6]
        img = ctx.sim.public_image(ctx.uuid("searched-image"), ext="jpg")
        card = json.dumps({"id": card_id, "type": "render_searched_image", "cardType": "searched_image_card",
                           "image": {"title": f"Image of {searched['search_image']}", "thumbnail": img,
                                     "original": img, "link": "https://images.example.com/page"}})
        cards_json.append(card)
        ctx.resp({"cardAttachment": {"jsonData": card}, "messageTag": "final"})
        tag = (f'<grok:render card_id="{card_id}" card_type="searched_image_card" type="render_searched_image">'
               f'<argument name="image_id">0</argument></grok:render>')
        ctx.answer({"token": tag, "messageTag": "final"}, tag)
    if searched["x"]:
        extra["xpostIds"] = [p["postId"] for p in searched["x"]]
        extra["xposts"] = searched["x"]
    if cards_json:
        extra["cardAttachmentsJson"] = cards_json
    if not ctx.answer_done():
        return ctx.plan
    message = "".join(ctx.streamed_text)
    ctx.tail(title_text=prompt.last_text.replace("#sim:", " "), message=message, **extra)
    return ctx.plan


def plan_image_edit(ctx: ChatContext, references: list[str]) -> list:
    sim, moderated = ctx.sim, ctx.scenario.has("moderate")
    ctx.delay(ctx.rng.uniform(300, 800), ctx.scenario.firstbyte_ms)
    ctx.head()
    urls, assets = [], []
    for index in range(2):
        image_uuid = ctx.uuid(f"edit-{index}")
        base = f"users/{ctx.user_id}/generated/{image_uuid}"
        preview = f"{base}-part-0/image.jpg"
        sim.asset_put(token=ctx.token, user_id=ctx.user_id, path=preview, asset_id=image_uuid + "-part-0",
                      content_type="image/jpeg", gen=("jpeg", image_uuid + "-preview", 32, 32), listed=False)
        ctx.delay(2000)
        if not ctx.answer({"streamingImageGenerationResponse": {"imageUrl": preview, "progress": 50, "imageIndex": index}}):
            return ctx.plan
        ctx.delay(2000)
        final = f"{base}/image.jpg"
        body: dict[str, Any] = {"imageUrl": final, "progress": 100, "imageIndex": index, "assetId": image_uuid,
                                "moderated": moderated, "isFinal": True}
        if not moderated:
            sim.asset_put(token=ctx.token, user_id=ctx.user_id, path=final, asset_id=image_uuid,
                          content_type="image/jpeg", gen=("jpeg", image_uuid, 64, 64), file_name="image.jpg")
            urls.append(final)
            assets.append(image_uuid)
        if not ctx.answer({"streamingImageGenerationResponse": body}):
            return ctx.plan
    text = "I edited the image as requested."
    ctx.streamed_text = []
    for tok in content.split_tokens(text, ctx.rng):
        if not ctx.answer({"token": tok, "messageTag": "final"}, tok):
            return ctx.plan
    if not ctx.answer_done():
        return ctx.plan
    ctx.tail(title_text="Image Edit " + str(ctx.payload.get("message", "")), generatedImageUrls=urls,
             fileAttachments=assets, imageEditUris=references)
    return ctx.plan


VIDEO_STEPS = (1, 5, 13, 22, 29, 38, 46, 57, 95)


def plan_video(ctx: ChatContext, cfg: dict) -> list:
    sim, moderated = ctx.sim, ctx.scenario.has("moderate")
    ctx.delay(ctx.rng.uniform(300, 800), ctx.scenario.firstbyte_ms)
    ctx.head()
    video_id = ctx.uuid("video")
    post_id = ctx.uuid("video-post")
    segment_ms = ctx.rng.uniform(20000, 60000)
    mode = cfg.get("mode", "custom")
    image_ref = cfg.get("imageReference", "")
    common = {"videoId": video_id, "audioUrls": [], "videoPrompt": "", "imageReference": image_ref,
              "audioTranscripts": [], "moderated": False, "mode": mode, "modelName": "imagine_w_1"}
    for p in VIDEO_STEPS:
        ctx.delay(segment_ms / (len(VIDEO_STEPS) + 1))
        if not ctx.answer({"streamingVideoGenerationResponse": {**common, "progress": p}}):
            return ctx.plan
    ctx.delay(segment_ms / (len(VIDEO_STEPS) + 1))
    base = f"users/{ctx.user_id}/generated/{video_id}"
    audio_id = ctx.uuid("audio")
    final: dict[str, Any] = {**common, "progress": 100, "assetId": video_id, "videoPostId": post_id,
                             "resolutionName": cfg.get("resolutionName", "720p"), "moderated": moderated,
                             "videoPrompt": f"{cfg.get('prompt', '')} (upsampled)"}
    files: list[str] = []
    if not moderated:
        vpath = f"{base}/generated_video.mp4"
        apath = f"users/{ctx.user_id}/generated/{audio_id}/generated_audio.flac"
        tpath = f"{base}/preview_image.jpg"
        sim.asset_put(token=ctx.token, user_id=ctx.user_id, path=vpath, asset_id=video_id, content_type="video/mp4",
                      gen=("mp4", video_id), file_name="generated_video.mp4")
        sim.asset_put(token=ctx.token, user_id=ctx.user_id, path=apath, asset_id=audio_id, content_type="audio/flac",
                      gen=("flac",), listed=False)
        sim.asset_put(token=ctx.token, user_id=ctx.user_id, path=tpath, asset_id=video_id + "-thumb",
                      content_type="image/jpeg", gen=("jpeg", video_id + "-thumb", 64, 64), listed=False)
        final.update({"videoUrl": vpath, "audioUrls": [apath], "thumbnailImageUrl": tpath})
        files = [video_id]
        sim.posts[post_id] = {"id": post_id, "mediaType": "MEDIA_POST_TYPE_VIDEO", "videoId": video_id,
                              "token": ctx.token, "prompt": cfg.get("prompt", "")}
    if not ctx.answer({"streamingVideoGenerationResponse": final}):
        return ctx.plan
    ctx.streamed_text = []
    for tok in ["I generated", " a video"]:
        if not ctx.answer({"token": tok, "messageTag": "final"}, tok):
            return ctx.plan
    if not ctx.answer_done():
        return ctx.plan
    # The reference capture shows the uppercase sender on video answers.
    ctx.tail(title_text="Video Generation " + str(cfg.get("prompt", "")), fileAttachments=files, sender="ASSISTANT")
    return ctx.plan


# ---------------------------------------------------------------- rendering

def _flatten_wrapper(obj: dict) -> dict | None:
    result = obj.get("result")
    if isinstance(result, dict):
        if "conversation" in result:
            return None
        if "response" in result:
            return {"result": result["response"]}
    return obj


async def render(plan: list, framing: frozenset[str], *, flat: bool = False) -> AsyncIterator[bytes]:
    """Serialize a plan into byte chunks (one per physical line, concat groups up to 3 objects)."""
    nl = b"\r\n" if "crlf" in framing else b"\n"
    sse, blank, concat = "sse" in framing, "blank" in framing, "concat" in framing
    pending: list[bytes] = []
    # Split the plan into emitted physical chunks so the "last line" is known for nofinalnl.
    chunks: list[tuple[str, Any]] = []

    def flush() -> None:
        if pending:
            chunks.append(("data", b"".join(pending)))
            pending.clear()

    for item in plan:
        kind = item[0]
        if kind == "line":
            obj = _flatten_wrapper(item[1]) if flat else item[1]
            if obj is None:
                continue
            data = orjson.dumps(obj)
            if concat:
                pending.append(data)
                if len(pending) == 3:
                    flush()
            else:
                chunks.append(("data", data))
        elif kind == "raw":
            flush()
            chunks.append(("data", item[1]))
        elif kind == "sleep":
            flush()
            chunks.append(("sleep", item[1]))
        elif kind in ("drop", "end"):
            flush()
            chunks.append((kind, None))
            break
    flush()
    data_positions = [i for i, c in enumerate(chunks) if c[0] == "data"]
    last_data = data_positions[-1] if data_positions else -1
    ended_by_drop = any(c[0] == "drop" for c in chunks)
    for i, (kind, value) in enumerate(chunks):
        if kind == "sleep":
            await asyncio.sleep(value)
        elif kind == "drop":
            raise Drop()
        elif kind == "end":
            break
        else:
            if sse:
                out = b"event: message" + nl + b"data: " + value + nl + nl
            else:
                out = value + nl + (nl if blank else b"")
                if i == last_data and "nofinalnl" in framing and not ended_by_drop:
                    out = value
            yield out
    if sse and not ended_by_drop:
        yield b"data: [DONE]" + nl + nl
