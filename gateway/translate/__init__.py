"""Pure translation between client protocols and the neutral upstream events (no Django, no httpx).

See docs/translation.md. Convenience re-exports of the shared core; the per-family parsers and
encoders live in openai_chat.py, responses.py and anthropic.py.
"""
from gateway.translate.assembler import (
    ImagePiece,
    Piece,
    ReasoningPiece,
    TextPiece,
    ToolCallsPiece,
    TurnAssembler,
    TurnResult,
    VideoPiece,
)
from gateway.translate.common import (
    Attachment,
    ChatRequest,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Turn,
    flatten,
    new_id,
)
from gateway.translate.tokens import Usage, count_tokens, prompt_tokens, usage_for

__all__ = [
    "Attachment", "ChatRequest", "ImagePiece", "Piece", "ReasoningPiece", "TextPiece", "ToolCall", "ToolCallsPiece",
    "ToolChoice", "ToolSpec", "Turn", "TurnAssembler", "TurnResult", "Usage", "VideoPiece", "count_tokens", "flatten",
    "new_id", "prompt_tokens", "usage_for",
]
