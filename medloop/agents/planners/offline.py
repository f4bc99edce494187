"""Offline planner: a model-based proposer over the whole space, steered by knowledge.

No LLM. Two sources of hypotheses share a cycle's slots:
- knowledge-ranked one-factor moves around the incumbent (every other choice of a
  categorical factor, grid neighbours of a numeric one, a line search after an accepted
  numeric move), scored by retrieved claims about the same change (reproduced/validated
  weigh most, refuted or harmful changes sink) and by this campaign's history. Only moves
  with a positive score (evidence, or a factor not yet tried) take slots, and never all
  of them;
- the proposer (Optuna TPE, planners/tpe.py) fitted to every run of the campaign, which
  proposes full configs: any number of factors at once, float ranges as floats. Claims
  from related campaigns are its priors (configs asked first, by tier and similarity),
  not a single jump.
When both run dry the planner returns nothing only because the space is exhausted. Ties
and samples are seeded from the planner seed and the spec without its paths.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from medloop.agents.base import HypothesisDraft, PlanningContext
from medloop.agents.planners.tpe import TpeProposer
from medloop.agents.seeds import SEED_STRIDE, planning_seed
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


# Knowledge priors: the tier a claim needs (supported and up) and how many configs at most
# are asked before the model's own proposals.
MIN_PRIOR_WEIGHT = TIER_WEIGHT["supported"]
MAX_PRIORS = 3


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


def _show(value: Scalar | None) -> str:
    """A value for a statement: floats to 4 significant digits (the config keeps them all)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _prior_weight(item: RetrievedClaim) -> float:
    """A claim's weight as a prior: its tier, times how close its context is (0.5-1)."""
    return TIER_WEIGHT.get(item.claim.tier, 0.0) * (0.5 + 0.5 * max(0.0, min(1.0, item.score)))


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
    def priors(ctx: PlanningContext) -> list[tuple[list[FactorChange], float, list[str]]]:
        """Changes of the incumbent that claims from related campaigns found better, each
        with a weight (tier x dataset similarity) and the claims behind it."""
        direction = ctx.spec.objective.direction
        out: dict[str, tuple[list[FactorChange], float, list[str]]] = {}
        found: list[tuple[list[FactorChange], float, list[str]]] = []
        for item in ctx.retrieved:
            gain = _gain(item, direction)
            # Only claims that showed a gain (supported or better) become priors: weaker
            # tiers would queue up runs ahead of the model's own proposals.
            if TIER_WEIGHT.get(item.claim.tier, 0.0) < MIN_PRIOR_WEIGHT or item.claim.tier == "refuted":
                continue
            if gain is None or gain <= 0:
                continue
            changes = [
                FactorChange(factor=c.factor, from_value=ctx.incumbent.get(c.factor), to_value=c.to_value)
                for c in item.claim.changes
                if c.factor in ctx.spec.search_space
                and not _same_value(ctx.incumbent.get(c.factor), c.to_value)
            ]
            if not changes:
                continue
            found.append((changes, _prior_weight(item), [item.claim.id]))
        # Priors that lead to the same config add up.
        for changes, weight, ids in [*found, *OfflinePlanner._chains(ctx)]:
            key = config_key(apply_changes(ctx.incumbent, changes))
            old = out.get(key)
            out[key] = (changes, weight + (old[1] if old else 0.0), [*(old[2] if old else []), *ids])
        return sorted(out.values(), key=lambda p: -p[1])[:MAX_PRIORS]

    @staticmethod
    def _chains(ctx: PlanningContext) -> list[tuple[list[FactorChange], float, list[str]]]:
        """Where an earlier campaign moved its incumbent more than once, the config it ended
        with: its reproduced (or validated) gains applied one after another, in the order
        they were made, to this campaign's incumbent. One claim alone is one step of that
        path; the path's end is the earlier campaign's certified answer, the config worth
        trying first. Weight: the sum of the steps' weights, so it leads the priors."""
        steps: dict[str, list[RetrievedClaim]] = {}
        for item in ctx.retrieved:
            gain = _gain(item, ctx.spec.objective.direction)
            if item.claim.campaign_id and item.claim.tier in ("reproduced", "validated") and (gain or 0) > 0:
                steps.setdefault(item.claim.campaign_id, []).append(item)
        out = []
        for items in steps.values():
            if len(items) < 2:
                continue
            items.sort(key=lambda i: (i.claim.created_at, i.claim.id))
            config = dict(ctx.incumbent)
            for item in items:
                for c in item.claim.changes:
                    if c.factor in ctx.spec.search_space:
                        config[c.factor] = c.to_value
            changes = [
                FactorChange(factor=f, from_value=ctx.incumbent.get(f), to_value=config[f])
                for f in sorted(ctx.spec.search_space)
                if f in config and not _same_value(ctx.incumbent.get(f), config[f])
            ]
            if changes:
                out.append((changes, sum(_prior_weight(i) for i in items), [i.claim.id for i in items]))
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

    def proposer(self, ctx: PlanningContext, salt: str = "tpe") -> TpeProposer:
        """TPE fitted to every run of the campaign, with knowledge as enqueued priors."""
        proposer = TpeProposer(
            ctx.spec.search_space,
            direction=ctx.spec.objective.direction,
            seed=planning_seed(ctx.spec, self.seed, salt, ctx.cycle),
        )
        for config, seed, value in ctx.runs:
            proposer.tell(config, value, seed=seed % SEED_STRIDE)
        for changes, weight, _ in self.priors(ctx):
            proposer.prior(apply_changes(ctx.incumbent, changes), weight)
        return proposer

    def screen(self, ctx: PlanningContext, n: int) -> list[dict[str, Any]]:
        """Up to n untested full configs for one-seed screening runs: the proposer's asks
        (knowledge priors first), seeded by the planner seed, the spec and the cycle."""
        proposer = self.proposer(ctx, salt="screen")
        tested = {config_key(c) for c in ctx.tested_configs}
        return proposer.ask(n, base=ctx.incumbent, exclude=tested)

    def propose(self, context: PlanningContext) -> list[HypothesisDraft]:
        candidates = self.candidates(context)
        self.score(candidates, context)
        self.score_history(candidates, context)
        # Seeded by the spec, not the campaign id or its paths: the same campaign file plans
        # the same way wherever it is run from.
        rng = random.Random(planning_seed(context.spec, self.seed, "tie-break", context.cycle))
        rng.shuffle(candidates)  # seeded tie-break; the sort below is stable
        candidates.sort(key=lambda c: -c.score)
        n = context.n
        # Knowledge-ranked one-factor moves take the slots they earn (a positive score), but
        # with a model the last slot is always the model's: one-factor moves alone get stuck
        # where the optimum needs several factors to change together.
        # Before the campaign has measured two configs the model has nothing to fit, so
        # (unless knowledge supplies priors) the first cycle ablates one factor per slot.
        fitted = len({config_key(c) for c, _, _ in context.runs}) >= 2 or bool(self.priors(context))
        one_factor_slots = n if not (self.model_based and fitted) else max(0, n - 1) if n > 1 else 0
        chosen: list[tuple[list[FactorChange], Candidate | None]] = []
        used_factors: set[str] = set()
        taken: set[str] = set()

        def take(cands: list[Candidate], limit: int) -> None:
            for cand in cands:  # one one-factor hypothesis per factor per cycle
                if len(chosen) >= limit or cand.change.factor in used_factors:
                    continue
                chosen.append(([cand.change], cand))
                used_factors.add(cand.change.factor)
                taken.add(config_key(apply_changes(context.incumbent, [cand.change])))

        take(
            [c for c in candidates if c.score > 0] if self.model_based and fitted else candidates,
            one_factor_slots,
        )
        prior_evidence: dict[str, list[str]] = {}
        if self.model_based and len(chosen) < n:
            proposer = self.proposer(context)
            prior_evidence = {
                config_key(apply_changes(context.incumbent, ch)): ids for ch, _, ids in self.priors(context)
            }
            tested = {config_key(c) for c in context.tested_configs} | taken
            for config in proposer.ask(n - len(chosen), base=context.incumbent, exclude=tested):
                changes = [
                    FactorChange(factor=f, from_value=context.incumbent.get(f), to_value=config[f])
                    for f in sorted(context.spec.search_space)
                    if f in config and not _same_value(config[f], context.incumbent.get(f))
                ]
                if changes:
                    chosen.append((changes, None))
        take(candidates, n)  # the model ran dry (a finite space, all tested): any move left
        metric = context.spec.objective.metric
        verb = "raises" if context.spec.objective.direction == "maximize" else "lowers"
        dataset = context.spec.dataset.path.name
        out = []
        for changes, source in chosen:
            moved = ", ".join(
                f"{c.factor} from {_show(c.from_value)} to {_show(c.to_value)}" for c in changes
            )
            if source is None:
                evidence = prior_evidence.get(config_key(apply_changes(context.incumbent, changes)), [])
                rationale = f"TPE over {len(context.runs)} runs of this campaign" + (
                    f"; prior from {', '.join(evidence)}" if evidence else ""
                )
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
