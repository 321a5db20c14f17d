"""Base classes of the /v1 request and response schemas (docs/api.md, "Request schemas").

The rule: a request schema documents what the endpoint accepts (types, enums, bounds) and checks
the JSON types strictly (no coercion: "5" is not an integer, true is not a number). The family's
translator stays the authority on values and on the wording of refusals: when the schema refuses a
body, the translator's own check (`refusal`) is run on the same body and its error — a 400 naming
the parameter in that family's words — is what the client gets. Only when the translator would
have accepted the body does the schema's own error go out (grok2api/api.py renders it in the
family's envelope, naming the parameter). Unknown parameters are allowed through (extra="allow"):
the translators refuse or ignore them with their own wording.
"""
from __future__ import annotations

from typing import Annotated, Any, Callable, ClassVar

from ninja import Schema
from pydantic import BaseModel, ConfigDict, ValidationError, WithJsonSchema, model_validator

from grokweb.errors import InvalidRequest


class Part(BaseModel):
    """A nested object of a request: documented fields, unknown keys kept, JSON types checked.

    Plain pydantic rather than ninja.Schema (which Ninja takes alike): ninja.Schema wraps every
    object in a DjangoGetter for reading ORM rows, which made validating a small chat body ~8×
    slower (250 µs → 33 µs measured); request bodies are dicts.
    """

    model_config = ConfigDict(extra="allow", strict=True)


class RequestBody(Part):
    """A whole request body. Subclasses set `refusal`: the translator's check of the raw body."""

    refusal: ClassVar[Callable[[Any], None] | None] = None

    @model_validator(mode="wrap")
    @classmethod
    def _translator_words_first(cls, data: Any, handler):
        try:
            return handler(data)
        except ValidationError:
            if not isinstance(data, dict):
                # The words of gateway/jsonbody.py for a body that is JSON but not an object.
                raise InvalidRequest("The request body must be a JSON object.", param=None, code="invalid_json") from None
            if cls.refusal is not None:
                cls.refusal(data)  # raises the translator's InvalidRequest when it refuses too
            raise


class Answer(Schema):
    """A documented response object: the top-level shape; extra fields are part of the answer."""

    model_config = ConfigDict(extra="allow")


def documented(schema: dict) -> WithJsonSchema:
    """Document `schema` for a field whose run-time check is looser (the translator checks the value:
    e.g. sizes are matched case-insensitively, numbers may arrive as decimal text)."""
    return WithJsonSchema(schema)


# A field the translator reads only when it has the documented type and otherwise ignores.
LooseStr = Annotated[Any, documented({"type": "string"})]
