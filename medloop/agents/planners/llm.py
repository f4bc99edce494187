"""LLM planner: any litellm model proposes hypotheses as validated JSON.

The prompt holds the goal, search space, incumbent, a compact history table and the
retrieved claims as quoted, tier-labelled data. The reply (text JSON or a tool call) is
validated with pydantic and against the search space; an invalid reply gets one repair
turn, then the offline planner takes over (logged). Token use and cost are tracked
against the campaign's LLM budget. The planner can only emit hypotheses.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medloop.agents.base import HypothesisDraft, Planner, PlanningContext
from medloop.agents.planners.code_writer import CodeDraft, CodeRequest, write_module
from medloop.agents.prompts import load_prompt, quote, truncate
from medloop.agents.space import apply_changes, validate_changes
from medloop.core.errors import LLMError
from medloop.core.records import FactorChange
from medloop.core.specs import CampaignSpec, Categorical, Scalar
from medloop.llm.base import Completion, LLMClient, Message

log = logging.getLogger("medloop.planner.llm")

PROMPT_BUDGET_CHARS = 24_000
PLAN_TOOL = {
    "type": "function",
    "function": {
        "name": "propose_hypotheses",
        "description": "Propose hypotheses for the next cycle.",
        "parameters": {
            "type": "object",
            "properties": {
                "hypotheses": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "statement": {"type": "string"},
                            "changes": {"type": "object"},
                            "expected_effect": {"type": ["number", "null"]},
                            "rationale": {"type": "string"},
                            "evidence_ids": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["statement", "changes"],
                    },
                }
            },
            "required": ["hypotheses"],
        },
    },
}


class _LLMHypothesis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statement: str = Field(min_length=1, max_length=500)
    changes: dict[str, Scalar] = Field(min_length=1)
    expected_effect: float | None = None
    rationale: str = Field(default="", max_length=2000)
    evidence_ids: list[str] = Field(default_factory=list)


class _LLMPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hypotheses: list[_LLMHypothesis]


class LLMPlanner:
    name = "llm"

    def __init__(
        self,
        llm: LLMClient,
        *,
        fallback: Planner,
        budget_usd: float | None = None,
        budget_tokens: int | None = None,
    ) -> None:
        self.llm = llm
        self.fallback = fallback
        self.budget_usd = budget_usd
        self.budget_tokens = budget_tokens
        self.spent_usd = 0.0
        self.tokens = 0
        self.unpriced = False  # the model has no price in litellm's map: USD budget is blind
        self.events: list[dict[str, Any]] = []
        self.code_tokens = 0  # spent by the write-code step (also counted in `tokens`)

    def state(self) -> dict[str, Any]:
        return {
            "spent_usd": self.spent_usd,
            "tokens": self.tokens,
            "unpriced": self.unpriced,
            "fallbacks": self.events[-20:],
            "code_tokens": self.code_tokens,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.spent_usd = float(state.get("spent_usd", 0.0))
        self.tokens = int(state.get("tokens", 0))
        self.unpriced = bool(state.get("unpriced", False))
        self.events = list(state.get("fallbacks", []))
        self.code_tokens = int(state.get("code_tokens", 0))

    def budget_left(self) -> str | None:
        """Why no more LLM calls may be made, or None."""
        if self.budget_usd is not None and self.spent_usd >= self.budget_usd:
            return f"LLM budget spent (${self.spent_usd:.4f} of ${self.budget_usd})"
        if self.budget_tokens is not None and self.tokens >= self.budget_tokens:
            return f"LLM token budget spent ({self.tokens} of {self.budget_tokens})"
        return None

    # ------------------------------------------------------------ prompt

    def messages(self, ctx: PlanningContext) -> list[Message]:
        spec = ctx.spec
        space = []
        for name, f in spec.search_space.items():
            allowed = (
                f.choices if isinstance(f, Categorical) else f"[{f.low}, {f.high}]{' log' if f.log else ''}"
            )
            when = f" (only when {f.when})" if f.when else ""
            space.append(f"- {name}: {allowed}{when}")
        history = (
            "\n".join(
                f"{h.cycle} | {json.dumps(h.changes)} | {h.verdict} | "
                f"{'' if h.estimate is None else f'{h.estimate:+.4f}'} | "
                f"{'' if h.p_adjusted is None else f'{h.p_adjusted:.3g}'}"
                for h in ctx.history
            )
            or "(none yet)"
        )

        def claims(role: str) -> str:
            rows = [
                f"[{r.claim.id}] tier={r.claim.tier} score={r.score:.2f}\n{quote(r.claim.statement)}"
                for r in ctx.retrieved
                if r.role == role
            ]
            return truncate("\n".join(rows), PROMPT_BUDGET_CHARS // 3) if rows else "(none)"

        user = load_prompt("planner_user").format(
            goal=quote(spec.goal),
            objective=f"{spec.objective.direction} {spec.objective.aggregation} {spec.objective.metric}"
            f" on the {spec.objective.split} split",
            search_space="\n".join(space),
            incumbent_objective="unknown"
            if ctx.incumbent_objective is None
            else f"{ctx.incumbent_objective:.4f}",
            incumbent=json.dumps({k: v for k, v in ctx.incumbent.items() if k in spec.search_space}),
            history=truncate(history, PROMPT_BUDGET_CHARS // 4),
            evidence=claims("evidence"),
            suggestions=claims("suggestion"),
            n=ctx.n,
            cycle=ctx.cycle,
        )
        return [
            Message(role="system", content=load_prompt("planner_system")),
            Message(role="user", content=user),
        ]

    # ------------------------------------------------------------ parsing

    @staticmethod
    def _payload(reply: Completion) -> Any:
        for call in reply.tool_calls:
            if call.name == "propose_hypotheses":
                return call.arguments
        text = reply.text.strip()
        fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
        if fenced:
            text = fenced.group(1)
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end < start:
            raise ValueError("the reply holds no JSON object")
        return json.loads(text[start : end + 1])

    def parse(self, reply: Completion, ctx: PlanningContext) -> list[HypothesisDraft]:
        """Validated drafts, or ValueError saying precisely what is wrong."""
        try:
            plan = _LLMPlan.model_validate(self._payload(reply))
        except (ValidationError, json.JSONDecodeError) as exc:
            raise ValueError(f"reply does not match the schema: {exc}") from None
        drafts, problems = [], []
        known = {r.claim.id for r in ctx.retrieved}
        for i, h in enumerate(plan.hypotheses[: ctx.n]):
            changes = [
                FactorChange(factor=k, from_value=ctx.incumbent.get(k), to_value=v)
                for k, v in h.changes.items()
            ]
            problem = validate_changes(ctx.spec, ctx.incumbent, changes)
            if problem:
                problems.append(f"hypotheses[{i}]: {problem}")
                continue
            drafts.append(
                HypothesisDraft(
                    statement=h.statement,
                    changes=changes,
                    expected_effect=h.expected_effect,
                    rationale=h.rationale,
                    evidence_ids=[e for e in h.evidence_ids if e in known],
                )
            )
        if not drafts:
            raise ValueError("; ".join(problems) if problems else "the reply proposes no hypotheses")
        return drafts

    # ------------------------------------------------------------ planning

    def write_code(self, spec: CampaignSpec, request: CodeRequest) -> CodeDraft:
        """The write-code step (planners/code_writer.py), on this planner's budget and the
        step's own token cap. Never raises for the model's faults: the draft says why."""

        def call(messages: list[Message]) -> Completion:
            cap = spec.code.write_tokens
            if cap is not None and self.code_tokens >= cap:
                raise LLMError(f"write-code token budget spent ({self.code_tokens} of {cap})")
            before = self.tokens
            try:
                return self._call(messages, tools=None)
            finally:
                self.code_tokens += self.tokens - before

        draft = write_module(call, spec, request)
        self.events.append(
            {"write_code": request.point, "attempts": draft.attempts, "ok": draft.source is not None}
            | ({"errors": [truncate(e, 300) for e in draft.errors]} if draft.errors else {})
        )
        return draft

    def _call(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> Completion:
        spent = self.budget_left()
        if spent:
            raise LLMError(spent)
        reply = self.llm.complete(messages, tools=tools, temperature=0.2)
        used = reply.usage.prompt_tokens + reply.usage.completion_tokens
        self.spent_usd += reply.usage.cost_usd
        self.tokens += used
        if used and reply.usage.cost_usd == 0.0 and self.budget_usd is not None and not self.unpriced:
            self.unpriced = True
            why = (
                f"model {reply.model or '?'} has no price in litellm's cost map: budget.max_llm_usd "
                "cannot be enforced; set budget.max_llm_tokens"
            )
            log.warning(why)
            self.events.append({"warning": why})
        return reply

    def _fallback(self, ctx: PlanningContext, why: str) -> list[HypothesisDraft]:
        log.warning("LLM planner fell back to the offline planner: %s", why)
        self.events.append({"cycle": ctx.cycle, "fallback": why})
        return self.fallback.propose(ctx)

    def propose(self, context: PlanningContext) -> list[HypothesisDraft]:
        drafts = self._propose(context)
        if len(drafts) >= context.n:
            return drafts
        # Fewer ideas than slots: the offline planner's proposer (TPE over every run of the
        # campaign) fills the rest, never repeating a config the LLM already proposed.
        proposed = [apply_changes(context.incumbent, d.changes) for d in drafts]
        rest = context.model_copy(
            update={"n": context.n - len(drafts), "tested_configs": [*context.tested_configs, *proposed]}
        )
        return drafts + self.fallback.propose(rest)[: rest.n]

    def _propose(self, context: PlanningContext) -> list[HypothesisDraft]:
        spent = self.budget_left()
        if spent:
            return self._fallback(context, spent)
        messages = self.messages(context)
        try:
            reply = self._call(messages, tools=[PLAN_TOOL])
            try:
                return self.parse(reply, context)
            except ValueError as first:
                repair = [
                    *messages,
                    Message(role="assistant", content=reply.text or "(tool call)"),
                    Message(
                        role="user",
                        content=f"Your answer was invalid: {truncate(str(first), 2000)}. "
                        "Reply again with corrected JSON only, in the required shape.",
                    ),
                ]
                try:
                    return self.parse(self._call(repair, tools=[PLAN_TOOL]), context)
                except ValueError as second:
                    return self._fallback(context, f"invalid output after one repair: {second}")
        except LLMError as exc:
            return self._fallback(context, str(exc))
