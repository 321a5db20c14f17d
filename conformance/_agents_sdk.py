"""Driven by conformance/agents_sdk.sh with the OpenAI Agents SDK's own virtualenv (never the project's).

For each model class of the SDK (Chat Completions and Responses), against the gateway at
G2A_BASE/v1 with the key G2A_KEY: a plain answer, a streamed answer (the text deltas add up to the
final output) and a function tool the simulator calls (`#sim:tool=shout`, its argument scripted by
`#sim:args`): the SDK runs it, sends the result back, and the run ends in a text answer.
Prints one `ok   …` line per check; any failure raises (non-zero exit).
"""
from __future__ import annotations

import asyncio
import os
import sys

from agents import (
    Agent,
    ItemHelpers,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent

MODEL = "grok-4.20-fast"
shouted: list[str] = []


@function_tool
def shout(text: str) -> str:
    """Shout the text back."""
    shouted.append(text)
    return text.upper() + "!"


def check(cond: bool, what: str, detail: object = "") -> None:
    if not cond:
        raise SystemExit(f"{what}: {str(detail)[:600]}")


async def one_model(label: str, model) -> None:
    plain = Agent(name="plain", instructions="Be brief.", model=model)
    result = await Runner.run(plain, "Say hello")
    check(isinstance(result.final_output, str) and result.final_output.strip(), f"{label}: no plain answer",
          result.final_output)
    print(f"ok   agents_sdk ({label}): plain answer")

    streamed = Runner.run_streamed(plain, "Tell me about kites")
    deltas = []
    async for event in streamed.stream_events():
        if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent):
            deltas.append(event.data.delta)
    check(len(deltas) > 1, f"{label}: the answer was not streamed", deltas)
    check("".join(deltas) == streamed.final_output and streamed.final_output.strip(),
          f"{label}: the streamed deltas do not make the final output", (deltas, streamed.final_output))
    print(f"ok   agents_sdk ({label}): streamed answer")

    shouted.clear()
    tooled = Agent(name="tools", instructions="Use the tools.", model=model, tools=[shout])
    result = await Runner.run(tooled, 'Shout it #sim:tool=shout #sim:args={"text":"conformance-ok"}')
    kinds = [item.type for item in result.new_items]
    check(shouted == ["conformance-ok"], f"{label}: the function tool did not run with the scripted argument",
          shouted)
    outputs = [item.output for item in result.new_items if item.type == "tool_call_output_item"]
    check(outputs == ["CONFORMANCE-OK!"], f"{label}: no tool output item", kinds)
    check(kinds[-1] == "message_output_item" and "CONFORMANCE-OK!" in ItemHelpers.text_message_outputs(
        result.new_items[-1:]), f"{label}: no text answer built on the tool result", result.final_output)
    print(f"ok   agents_sdk ({label}): function tool round trip")


async def main() -> None:
    set_tracing_disabled(True)  # traces would go to OpenAI's servers: nothing leaves the machine
    client = AsyncOpenAI(base_url=os.environ["G2A_BASE"] + "/v1", api_key=os.environ["G2A_KEY"], max_retries=0)
    await one_model("chat completions", OpenAIChatCompletionsModel(model=MODEL, openai_client=client))
    await one_model("responses", OpenAIResponsesModel(model=MODEL, openai_client=client))


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
