"""Offline planner: moves around the incumbent, ranked with the knowledge base.

No LLM. Candidates are one-factor changes: every other choice of a categorical factor,
the grid neighbours of a numeric factor, and, after a numeric move that became the
incumbent, a double step further in the same direction (a line search). Each candidate
is scored by the retrieved claims about the same change: reproduced/validated claims
(evidence) weigh most, lower tiers count as weaker suggestions, refuted or harmful
changes sink to the bottom. Ties are broken by a seeded shuffle so that campaigns are
reproducible.

Warm start: when reproduced or validated claims from similar datasets agree on better
values for several factors, the first hypothesis adopts them together ("transfer"), so a
new campaign can jump to what worked elsewhere in one controlled test instead of walking
there one factor at a time. A model-based proposal (TPE) for the numeric factors can take
the last slot once a few configs have been measured.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from medloop.agents.base import HypothesisDraft, PlanningContext
from medloop.agents.seeds import planning_seed
from medloop.agents.space import active, apply_changes, config_key, neighbours, step
from medloop.core.records import FactorChange
from medloop.core.specs import Categorical, Scalar
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
            values: list[tuple[Scalar, float, str]] = [
                (v, 0.0, "") for v in neighbours(name, factor, current)
            ]
            momentum = self._momentum(ctx, name)
            if momentum and not isinstance(factor, Categorical):
                far = step(factor, current, 2 * momentum)
                near = step(factor, current, momentum)
                if far is not None:
                    values.append((far, 0.6, "line search: double step after an accepted move"))
                values = [
                    (
                        v,
                        b + (0.3 if near is not None and v == near else 0.0),
                        r or ("line search: same direction as the accepted move" if v == near else ""),
                    )
                    for v, b, r in values
                ]
            if not isinstance(factor, Categorical):
                # Once the neighbours were tried in this context, the next untested grid
                # point on each side keeps the search from stalling on a noisy step.
                for direction in (-1, 1):
                    for k in range(2, 8):
                        further = step(factor, current, direction * k)
                        if further is None:
                            break
                        change = FactorChange(factor=name, from_value=current, to_value=further)
                        if config_key(apply_changes(ctx.incumbent, [change])) not in tested:
                            if not any(v == further for v, _, _ in values):
                                values.append(
                                    (further, -0.1 * (k - 1), f"next untested grid point ({k} steps)")
                                )
                            break
            seen: set[str] = set()
            for value, bonus, reason in values:
                change = FactorChange(factor=name, from_value=current, to_value=value)
                key = config_key(apply_changes(ctx.incumbent, [change]))
                if key in tested or key in seen:
                    continue
                seen.add(key)
                out.append(Candidate(change, score=bonus, reasons=[reason] if reason else []))
        return out

    @staticmethod
    def _momentum(ctx: PlanningContext, factor: str) -> int:
        """+1/-1: the grid direction of the last move of `factor` that became the incumbent."""
        spec_factor = ctx.spec.search_space.get(factor)
        if spec_factor is None or isinstance(spec_factor, Categorical):
            return 0
        for row in reversed(ctx.history):
            if list(row.changes) != [factor]:
                continue
            promoted = row.verdict == "supported" and row.reproduction in ("agreed", "none")
            if promoted and ctx.incumbent.get(factor) == row.changes[factor]:
                before, after = row.before.get(factor), row.changes[factor]
                if isinstance(before, int | float) and isinstance(after, int | float):
                    return 1 if float(after) > float(before) else -1
            return 0
        return 0

    @staticmethod
    def transfer(ctx: PlanningContext) -> tuple[list[FactorChange], list[str]] | None:
        """Adopt, together, the values that reproduced/validated claims found better."""
        direction = ctx.spec.objective.direction
        target: dict[str, tuple[Scalar, str]] = {}
        ranked = sorted(
            (r for r in ctx.retrieved if r.role == "evidence" and (_gain(r, direction) or 0.0) > 0),
            key=lambda r: (-TIER_WEIGHT.get(r.claim.tier, 0.0), -r.score),
        )
        for item in ranked:
            for ch in item.claim.changes:
                if ch.factor in ctx.spec.search_space and ch.factor not in target:
                    target[ch.factor] = (ch.to_value, item.claim.id)
        changes = [
            FactorChange(factor=f, from_value=ctx.incumbent.get(f), to_value=v)
            for f, (v, _) in target.items()
            if not _same_value(ctx.incumbent.get(f), v)
        ]
        if len(changes) < 2:  # a single change is already a ranked one-factor candidate
            return None
        tested = {config_key(c) for c in ctx.tested_configs}
        if config_key(apply_changes(ctx.incumbent, changes)) in tested:
            return None
        return changes, list(
            dict.fromkeys(cid for f, (_, cid) in target.items() if any(c.factor == f for c in changes))
        )

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

    @staticmethod
    def score_history(candidates: list[Candidate], ctx: PlanningContext) -> None:
        """What this campaign already learned about the same move (in an earlier context):
        reproduced gains are worth re-testing on the new incumbent first, refuted moves last."""
        changed = {f for row in ctx.history for f in row.changes}
        for cand in candidates:
            if cand.change.factor not in changed:
                cand.score += 1.0  # every factor gets its ablation before others are refined
                cand.reasons.append("factor not yet tested in this campaign (+1.0)")
            for row in ctx.history:
                value = row.changes.get(cand.change.factor)
                if len(row.changes) != 1 or value is None:
                    continue
                undo = row.before.get(cand.change.factor)
                if (
                    row.verdict == "supported"
                    and row.reproduction == "agreed"
                    and undo is not None
                    and _same_value(undo, cand.change.to_value)
                ):
                    cand.score -= 2.0  # going back on a reproduced improvement
                    cand.reasons.append(f"cycle {row.cycle}: undoes a reproduced gain (-2.0)")
                    continue
                if not _same_value(value, cand.change.to_value):
                    continue
                if row.verdict == "supported":
                    delta = 2.0 if row.reproduction == "agreed" else 1.0
                elif row.verdict == "refuted":
                    delta = -2.0
                else:
                    delta = -0.5
                cand.score += delta
                cand.reasons.append(f"cycle {row.cycle}: {row.verdict} ({delta:+.1f})")

    def propose(self, context: PlanningContext) -> list[HypothesisDraft]:
        candidates = self.candidates(context)
        self.score(candidates, context)
        self.score_history(candidates, context)
        # Seeded by the spec, not the campaign id or its paths: the same campaign file plans
        # the same way wherever it is run from.
        rng = random.Random(planning_seed(context.spec, self.seed, "tie-break", context.cycle))
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
        warm = self.transfer(context)
        if warm is not None:
            changes, claim_ids = warm
            lead = Candidate(
                changes[0],
                evidence=claim_ids,
                reasons=[f"transfer: adopt together what {', '.join(claim_ids)} reproduced"],
            )
            drafts_changes = [(changes, lead), *drafts_changes][: context.n]
        if self.model_based and context.n >= 2:
            from medloop.agents.planners.tpe import suggest_numeric

            tpe = suggest_numeric(context, seed=planning_seed(context.spec, self.seed, "tpe", context.cycle))
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
