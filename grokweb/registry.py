"""The model registry (protocol docs/upstream-protocol.md §12.2): client model id -> capability, upstream mode, tier, pool order.

Pure data. The pool tries `pools` in order as a hard priority; "prefers higher-tier pools" models
try heavy first. `GET /v1/models` lists a model only while some usable account can serve it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    capability: str  # "chat" | "image" | "image_edit" | "video"
    mode: str  # upstream modeId charged
    tier: str  # minimum pool
    pools: tuple[str, ...]  # try order
    name: str

    @property
    def is_chat(self) -> bool:
        return self.capability == "chat"


_UP = ("basic", "super", "heavy")
_SUPER_UP = ("super", "heavy")
_HEAVY = ("heavy",)

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("grok-4.20-0309-non-reasoning", "chat", "fast", "basic", _UP, "Grok 4.20 0309 Non-Reasoning"),
    ModelSpec("grok-4.20-0309", "chat", "auto", "super", _SUPER_UP, "Grok 4.20 0309"),
    ModelSpec("grok-4.20-0309-reasoning", "chat", "expert", "super", _SUPER_UP, "Grok 4.20 0309 Reasoning"),
    ModelSpec("grok-4.20-0309-non-reasoning-super", "chat", "fast", "super", _SUPER_UP, "Grok 4.20 0309 Non-Reasoning Super"),
    ModelSpec("grok-4.20-0309-super", "chat", "auto", "super", _SUPER_UP, "Grok 4.20 0309 Super"),
    ModelSpec("grok-4.20-0309-reasoning-super", "chat", "expert", "super", _SUPER_UP, "Grok 4.20 0309 Reasoning Super"),
    ModelSpec("grok-4.20-0309-non-reasoning-heavy", "chat", "fast", "heavy", _HEAVY, "Grok 4.20 0309 Non-Reasoning Heavy"),
    ModelSpec("grok-4.20-0309-heavy", "chat", "auto", "heavy", _HEAVY, "Grok 4.20 0309 Heavy"),
    ModelSpec("grok-4.20-0309-reasoning-heavy", "chat", "expert", "heavy", _HEAVY, "Grok 4.20 0309 Reasoning Heavy"),
    ModelSpec("grok-4.20-multi-agent-0309", "chat", "heavy", "heavy", _HEAVY, "Grok 4.20 Multi-Agent 0309"),
    ModelSpec("grok-4.20-fast", "chat", "fast", "basic", ("heavy", "super", "basic"), "Grok 4.20 Fast"),
    ModelSpec("grok-4.20-auto", "chat", "auto", "super", ("heavy", "super"), "Grok 4.20 Auto"),
    ModelSpec("grok-4.20-expert", "chat", "expert", "super", ("heavy", "super"), "Grok 4.20 Expert"),
    ModelSpec("grok-4.20-heavy", "chat", "heavy", "heavy", _HEAVY, "Grok 4.20 Heavy"),
    ModelSpec("grok-4.3-beta", "chat", "grok-420-computer-use-sa", "super", _SUPER_UP, "Grok 4.3 Beta"),
    ModelSpec("grok-imagine-image-lite", "image", "fast", "basic", _UP, "Grok Imagine Image Lite"),
    ModelSpec("grok-imagine-image", "image", "auto", "super", _SUPER_UP, "Grok Imagine Image"),
    ModelSpec("grok-imagine-image-pro", "image", "auto", "super", _SUPER_UP, "Grok Imagine Image Pro"),
    ModelSpec("grok-imagine-image-edit", "image_edit", "auto", "super", _SUPER_UP, "Grok Imagine Image Edit"),
    ModelSpec("grok-imagine-video", "video", "auto", "super", _SUPER_UP, "Grok Imagine Video"),
)

BY_ID: dict[str, ModelSpec] = {m.id: m for m in MODELS}

# Modes each pool supports (docs/upstream-protocol.md §9.3).
POOL_MODES: dict[str, frozenset[str]] = {
    "basic": frozenset({"fast"}),
    "super": frozenset({"auto", "fast", "expert", "grok-420-computer-use-sa"}),
    "heavy": frozenset({"auto", "fast", "expert", "heavy", "grok-420-computer-use-sa"}),
}

# auto chat models fall back auto -> fast -> expert when features.auto_chat_mode_fallback is on.
AUTO_FALLBACK: tuple[str, ...] = ("auto", "fast", "expert")


def model_get(model_id: str) -> ModelSpec | None:
    return BY_ID.get(model_id)
