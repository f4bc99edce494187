"""The LLM planner's "write code" step: one module for one extension point, with the
interface, the relevant claims and the last error as context, and a bounded debug loop
(AIDE-style): a reply that fails the host checks gets the problems back and another try,
at most `code.write_attempts` tries. The step has its own token cap (`code.write_tokens`)
inside the campaign's LLM budget. It only returns source text: the planning node stores
it, the smoke trial runs it in the sandbox, and the campaign tests it like any other
hypothesis. Nothing the model writes runs on the host.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from medloop.agents.prompts import load_prompt, quote, truncate
from medloop.core import code as contract
from medloop.core.errors import LLMError
from medloop.core.specs import CampaignSpec
from medloop.engine.code import check_source
from medloop.llm.base import Completion, Message

PROMPT_CLAIM_CHARS = 6_000
ERROR_CHARS = 2_000
_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


class CodeRequest(BaseModel):
    """What the write step is told."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    point: contract.CodePoint
    current: str = Field(default="", description="Source of the incumbent's module at the point, if any")
    claims: list[str] = Field(default_factory=list, description="Statements of relevant claims")
    last_error: str = ""


class CodeDraft(BaseModel):
    """What the write step produced: a module that passed the host checks, or why not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    point: str
    source: str | None
    rationale: str = ""
    attempts: int
    errors: list[str] = Field(default_factory=list, description="Each failed try's problems, in order")
    model: str = ""


def _contract_text(point: str) -> str:
    """The module contract of core/code.py and the lines that say what `point` returns."""
    source = inspect.getsource(contract)
    block = source.split("# point -> (function name, parameter names).", 1)[-1].split("INTERFACES", 1)[0]
    lines = [line.strip().lstrip("#").rstrip() for line in block.splitlines() if line.strip().startswith("#")]
    mine, keep = [], False
    for line in lines:  # the point's entry and its continuation lines
        head = line.split()
        if head and head[0] in contract.INTERFACES:
            keep = head[0] == point
        if keep:
            mine.append(line)
    return (contract.__doc__ or "").strip() + "\n\n" + "\n".join(mine)


def extract(reply: Completion) -> tuple[str | None, str]:
    """(source, rationale) of a reply: the first fenced block, and the RATIONALE: line."""
    text = reply.text or ""
    fenced = _FENCE.search(text)
    rationale = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("RATIONALE:")), ""
    )
    return (fenced.group(1) if fenced else None), rationale[:2000]


def write_module(
    call: Callable[[list[Message]], Completion],
    spec: CampaignSpec,
    request: CodeRequest,
) -> CodeDraft:
    """Ask, check, feed the problems back; at most `spec.code.write_attempts` tries.
    LLMError (budget spent, provider down) ends the loop with what was learned so far."""
    fn, params = contract.INTERFACES[request.point]
    system = load_prompt("code_writer_system").replace(
        "{allowed}", ", ".join(sorted(contract.ALLOWED_IMPORTS))
    )
    user = load_prompt("code_writer_user").format(
        goal=quote(spec.goal),
        point=request.point,
        function=fn,
        params=", ".join(params),
        contract=_contract_text(request.point),
        current=truncate(request.current, 8_000) if request.current else "none",
        claims=truncate("\n".join(quote(c) for c in request.claims), PROMPT_CLAIM_CHARS) or "(none)",
        last_error=truncate(request.last_error, ERROR_CHARS) if request.last_error else "(none)",
    )
    messages = [Message(role="system", content=system), Message(role="user", content=user)]
    errors: list[str] = []
    model = ""
    for attempt in range(1, spec.code.write_attempts + 1):
        try:
            reply = call(messages)
        except LLMError as exc:
            errors.append(f"LLM: {exc}")
            return CodeDraft(point=request.point, source=None, attempts=attempt, errors=errors, model=model)
        model = reply.model or model
        source, rationale = extract(reply)
        if source is None:
            problems = ["the reply holds no ```python fenced block"]
        else:
            problems = check_source(source, point=request.point).problems
        if not problems:
            return CodeDraft(
                point=request.point,
                source=source,
                rationale=rationale,
                attempts=attempt,
                errors=errors,
                model=model,
            )
        why = "; ".join(problems)
        errors.append(why)
        messages += [
            Message(role="assistant", content=truncate(reply.text or "(empty)", 12_000)),
            Message(
                role="user",
                content=f"The module failed the host checks: {truncate(why, ERROR_CHARS)}. "
                "Fix it and reply with the whole module in one ```python block and a RATIONALE: line.",
            ),
        ]
    return CodeDraft(
        point=request.point, source=None, attempts=spec.code.write_attempts, errors=errors, model=model
    )
