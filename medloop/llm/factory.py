"""Pick the LLM backend from settings. Provider choice is litellm's model string."""

from __future__ import annotations

from medloop.core.errors import SpecError
from medloop.core.extras import installed, missing
from medloop.core.settings import Settings
from medloop.llm.base import LLMClient
from medloop.llm.litellm_client import LiteLLMClient


def make_llm(settings: Settings, model: str | None) -> LLMClient:
    name = model or settings.llm_model
    if not name:
        raise SpecError("no LLM model configured", hint="set MEDLOOP_LLM_MODEL or planner.model")
    if not installed("litellm"):
        # Here, not at the first completion: a planner would fall back to offline silently.
        raise missing("litellm", f"the LLM model {name!r}", instead="planner.kind: offline")
    return LiteLLMClient(name, api_base=settings.llm_api_base, api_key=settings.llm_api_key)
