"""Offline planner: one-factor moves around the incumbent, ranked with the knowledge base.

No LLM. Candidates are every one-step change of one factor (other choices of a
categorical, the grid neighbours of a numeric factor). Each candidate is scored by the
retrieved claims about the same change: reproduced/validated claims (evidence) weigh most,
lower tiers count as weaker suggestions, refuted or harmful changes sink to the bottom.
Ties are broken by a seeded shuffle so that campaigns are reproducible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from medloop.agents.base import HypothesisDraft, PlanningContext
from medloop.agents.space import active, apply_changes, config_key, neighbours
from medloop.core.ids import sha256_hex
from medloop.core.records import FactorChange
from medloop.core.specs import Scalar
from medloop.knowledge.base import RetrievedClaim

# How much one claim moves a candidate's score, by tier (sign from the claim's effect).
TIER_WEIGHT = {
    "validated": 4.0,
    "reproduced": 3.0,
    "supported": 1.5,
    "external": 0.75,
    "inconclusive": 0.25,
    "refuted": 2.0,
}


@dataclass
class Candidate:
    change: FactorChange
    score: float = 0.0
    evidence: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    expected: float | None = None


def _gain(claim: RetrievedClaim, direction: str) -> float | None:
    effect = claim.claim.effect
    if effect is None:
        return None
    sign = 1.0 if direction == "maximize" else -1.0
    return sign * effect.estimate


def _same_value(a: Scalar | None, b: Scalar | None) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    return a == b


class OfflinePlanner:
    name = "offline"

    def __init__(self, seed: int = 0, *, model_based: bool = True) -> None:
        self.seed = seed
        self.model_based = model_based

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        return None

    def candidates(self, ctx: PlanningContext) -> list[Candidate]:
        tested = {config_key(c) for c in ctx.tested_configs}
        out = []
        for name, factor in ctx.spec.search_space.items():
            if not active(factor, ctx.incumbent):
                continue
            current = ctx.incumbent.get(name)
            for value in neighbours(name, factor, current):
                change = FactorChange(factor=name, from_value=current, to_value=value)
                if config_key(apply_changes(ctx.incumbent, [change])) in tested:
                    continue
                out.append(Candidate(change))
        return out

    def score(self, candidates: list[Candidate], ctx: PlanningContext) -> None:
        direction = ctx.spec.objective.direction
        for cand in candidates:
            for item in ctx.retrieved:
                for ch in item.claim.changes:
                    if ch.factor != cand.change.factor or not _same_value(ch.to_value, cand.change.to_value):
                        continue
                    gain = _gain(item, direction)
                    tier = item.claim.tier
                    weight = TIER_WEIGHT.get(tier, 0.0)
                    harmful = tier == "refuted" or (gain is not None and gain < 0)
                    delta = -weight if harmful else weight
                    # claims from closer datasets (higher retrieval score) count more
                    delta *= 0.5 + 0.5 * max(0.0, min(1.0, item.score))
                    cand.score += delta
                    cand.evidence.append(item.claim.id)
                    cand.reasons.append(f"{item.claim.id} ({tier}, {item.role}): {delta:+.2f}")
                    if gain is not None and tier not in ("refuted",):
                        cand.expected = gain if cand.expected is None else max(cand.expected, gain)

    def propose(self, context: PlanningContext) -> list[HypothesisDraft]:
        candidates = self.candidates(context)
        self.score(candidates, context)
        # Seeded by the spec, not the campaign id: the same campaign file plans the same way.
        spec_key = sha256_hex(context.spec.model_dump_json())
        rng = random.Random(f"{self.seed}:{spec_key}:{context.cycle}")
        rng.shuffle(candidates)  # seeded tie-break; the sort below is stable
        candidates.sort(key=lambda c: -c.score)
        chosen: list[Candidate] = []
        used_factors: set[str] = set()
        for cand in candidates:  # one hypothesis per factor per cycle keeps arms independent
            if cand.change.factor in used_factors:
                continue
            chosen.append(cand)
            used_factors.add(cand.change.factor)
            if len(chosen) == context.n:
                break
        drafts_changes: list[tuple[list[FactorChange], Candidate | None]] = [([c.change], c) for c in chosen]
        if self.model_based and context.n >= 2:
            from medloop.agents.planners.tpe import suggest_numeric

            tpe = suggest_numeric(context, seed=int(spec_key[:8], 16) + context.cycle)
            if tpe and all(tpe != ch for ch, _ in drafts_changes):
                # The model-based proposal takes the last slot, unless knowledge ranked that
                # slot's one-factor move positively (evidence beats a surrogate model).
                if len(drafts_changes) < context.n:
                    drafts_changes.append((tpe, None))
                elif drafts_changes[-1][1] is not None and drafts_changes[-1][1].score <= 0:
                    drafts_changes[-1] = (tpe, None)
        metric = context.spec.objective.metric
        verb = "raises" if context.spec.objective.direction == "maximize" else "lowers"
        dataset = context.spec.dataset.path.name
        out = []
        for changes, source in drafts_changes:
            moved = ", ".join(f"{c.factor} from {c.from_value} to {c.to_value}" for c in changes)
            if source is None:
                rationale = f"TPE over {len(context.measured)} measured configs of this campaign"
                evidence: list[str] = []
                expected = None
            else:
                rationale = (
                    "; ".join(source.reasons) or "one-factor ablation around the incumbent; no prior claims"
                )
                evidence = list(dict.fromkeys(source.evidence))
                expected = source.expected
            out.append(
                HypothesisDraft(
                    statement=f"Changing {moved} {verb} mean {metric} on {dataset}",
                    changes=changes,
                    expected_effect=expected,
                    rationale=rationale,
                    evidence_ids=evidence,
                )
            )
        return out
