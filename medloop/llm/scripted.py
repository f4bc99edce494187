"""A scripted LLM for tests: replays queued replies and records what it was sent."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from medloop.core.errors import LLMError
from medloop.llm.base import Completion, Message


class ScriptedLLM:
    name = "scripted"

    def __init__(self, replies: Iterable[str | Completion]) -> None:
        self.replies: deque[str | Completion] = deque(replies)
        self.calls: list[list[Message]] = []

    def complete(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> Completion:
        self.calls.append(list(messages))
        if not self.replies:
            raise LLMError("scripted LLM has no replies left")
        reply = self.replies.popleft()
        return reply if isinstance(reply, Completion) else Completion(text=reply, model="scripted")
