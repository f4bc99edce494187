"""Function-calling adapter for OpenAI-style agent loops (litellm, medloop's LLMClient):
the tools as OpenAI tool schemas, and tool calls the model made turned into `tool`
messages to send back (the output as JSON, or the refusal with field-level problems)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from medloop.core.errors import MedloopError
from medloop.llm.base import Message, ToolCall
from medloop.tools.context import ToolContext
from medloop.tools.registry import Registry, error_payload
from medloop.tools.schemas import openai_tool

log = logging.getLogger(__name__)


def openai_tools(registry: Registry, *, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """OpenAI / litellm `tools=` entries for the registry (or the `only` tools, in order)."""
    names = list(only) if only is not None else registry.names()
    return [openai_tool(registry.get(name)) for name in names]


def run_tool_call(registry: Registry, ctx: ToolContext, call: ToolCall) -> Message:
    """Run one tool call as `ctx.caller`; the answer is the `tool` message to send back.
    A refused call (bad arguments, role, budget) is answered, not raised: the model reads
    which field is wrong and what is allowed, and can try again."""
    try:
        if "_unparsed" in call.arguments:
            raise MedloopError(
                f"{call.name}: the arguments are not a JSON object",
                hint="send the arguments as one JSON object",
            )
        payload: dict[str, Any] = json.loads(registry.call(call.name, ctx, call.arguments).model_dump_json())
    except MedloopError as exc:
        payload = error_payload(exc)
    return Message(role="tool", name=call.name, tool_call_id=call.id, content=json.dumps(payload))


def run_tool_calls(registry: Registry, ctx: ToolContext, calls: Sequence[ToolCall]) -> list[Message]:
    return [run_tool_call(registry, ctx, call) for call in calls]
