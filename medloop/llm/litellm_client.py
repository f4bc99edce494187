"""Any LLM provider through litellm (OpenAI, Anthropic, Ollama, vLLM, ...)."""

from __future__ import annotations

import json
from typing import Any

from medloop.core.errors import LLMError
from medloop.core.extras import require
from medloop.llm.base import Completion, Message, ToolCall, Usage


class LiteLLMClient:
    name = "litellm"

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 2,
    ) -> None:
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries

    def complete(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> Completion:
        litellm = require("litellm", f"the LLM model {self.model!r}")
        # litellm prints provider help to stdout for models without a price entry; stdout
        # belongs to the caller (`--json` output).
        litellm.suppress_debug_info = True
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump(exclude_none=True) for m in messages],
            "temperature": temperature,
            "timeout": self.timeout_s,
            "num_retries": self.retries,
        }
        for key, value in (
            ("tools", tools),
            ("response_format", response_format),
            ("max_tokens", max_tokens),
            ("api_base", self.api_base),
            ("api_key", self.api_key),
        ):
            if value is not None:
                kwargs[key] = value
        try:
            response = litellm.completion(**kwargs)
        except Exception as exc:
            raise LLMError(f"LLM call to {self.model} failed: {type(exc).__name__}: {exc}") from exc
        message = response.choices[0].message
        calls = []
        for i, call in enumerate(getattr(message, "tool_calls", None) or []):
            try:
                arguments = json.loads(call.function.arguments or "{}")
            except json.JSONDecodeError:
                arguments = {"_unparsed": call.function.arguments}
            calls.append(ToolCall(id=call.id or f"call_{i}", name=call.function.name, arguments=arguments))
        usage = getattr(response, "usage", None)
        try:
            cost = float(litellm.completion_cost(completion_response=response))
        except Exception:  # noqa: BLE001 - unknown models have no price: count tokens only
            cost = 0.0
        return Completion(
            text=message.content or "",
            tool_calls=calls,
            usage=Usage(
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                cost_usd=cost,
            ),
            model=str(getattr(response, "model", self.model)),
        )
