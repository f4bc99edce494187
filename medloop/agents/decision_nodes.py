"""Nodes that decide: analyze (paired statistics, Holm) -> record (claims, reproduction,
incumbent) -> review (a human, when the policy asks)."""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from medloop.agents.budget import cancelled_by_budget, final_reserve_runs
from medloop.agents.claims import build_claim, claim_id_for, reproduction_evidence
from medloop.agents.node_base import NodeBase
from medloop.agents.screening_nodes import planned_looks, resume_look
from medloop.agents.seeds import explore_seeds
from medloop.agents.space import apply_changes
from medloop.agents.state import CampaignState
from medloop.core.errors import NotFoundError, TrustError
from medloop.core.records import Campaign, Claim, Evidence, Hypothesis, Trial
from medloop.core.specs import make_config
from medloop.engine.analysis import (
    HypothesisAnalysis,
    analyze_hypotheses,
    arm_data,
    compare_arms,
    pooled_estimate,
    reproduction_agrees,
    sequential_levels,
)
from medloop.engine.base import TrialRequest, trial_id_for
from medloop.engine.efficiency import arm_violations

# Earlier comparisons whose seed differences join a cycle's variance pool (the latest ones:
# about 2 degrees of freedom each for the explore pair and 2 for the reproduction).
POOL_HISTORY = 12


class DecisionNodes(NodeBase):
    def analyze(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        spec = campaign.spec
        if state.get("phase") == "reproduce":
            for hyp in self.hypotheses(state.get("reproduce_ids", [])):
                control = arm_data(
                    [self.s.store.trials.get(t) for t in hyp.reproduction_control], spec.objective
                )
                treat = arm_data(
                    [self.s.store.trials.get(t) for t in hyp.reproduction_treatment], spec.objective
                )
                comparison = compare_arms(control, treat, spec.validation, seed=state["cycle"])
                detail: dict[str, Any]
                if comparison is None:
                    outcome, detail = "failed", {"note": "reproduction trials failed"}
                else:
                    pooled = pooled_estimate(
                        self.s.store,
                        hyp.control_trials + hyp.reproduction_control,
                        hyp.treatment_trials + hyp.reproduction_treatment,
                        spec.objective,
                        spec.validation,
                    )
                    agrees = pooled is not None and reproduction_agrees(
                        hyp.analysis, comparison.estimate, pooled
                    )
                    outcome = "agreed" if agrees else "disagreed"
                    detail = {
                        **comparison.model_dump(exclude={"cases"}),
                        "seeds": treat.seeds,
                        "pooled_estimate": pooled,
                    }
                merged = {**hyp.analysis, "reproduction": {"outcome": outcome, **detail}}
                self.s.store.cycles.put_hypothesis(
                    hyp.model_copy(update={"reproduction": outcome, "analysis": merged})
                )
                self.emit(
                    "reproduction",
                    cycle=state["cycle"],
                    hypothesis=hyp.id,
                    outcome=outcome,
                    estimate=detail.get("estimate"),
                )
            return {}
        hyps = self.hypotheses(state.get("hypothesis_ids", []))
        analyses, looks = self._sequential(campaign, hyps, state["cycle"])
        hyps = self.hypotheses(state.get("hypothesis_ids", []))  # arms may have grown
        verdicts: dict[str, str] = {}
        for hyp, a in zip(hyps, analyses, strict=True):
            analysis: dict[str, Any] = {
                "control_objective": a.control.objective,
                "treatment_objective": a.treatment.objective,
                "note": a.note,
            }
            if a.comparison is not None:
                analysis.update(a.comparison.model_dump(exclude={"cases"}))
                analysis.update(
                    p_adjusted=a.p_adjusted, n_seeds=min(len(a.control.seeds), len(a.treatment.seeds))
                )
            analysis["looks"] = looks.get(hyp.id, {})
            if "resume" in hyp.analysis:  # provenance: the certification it continues
                analysis["resume"] = hyp.analysis["resume"]
            if a.by_group:  # per-category effects (VQA), kept as the claim's evidence
                analysis["by_category"] = a.by_group
            verdict = a.verdict
            if verdict == "failed":  # the budget stopped its trials: no evidence, not a failure
                cut = cancelled_by_budget(
                    [self.s.store.trials.get(t) for t in [*hyp.control_trials, *hyp.treatment_trials]]
                )
                if cut is not None:
                    verdict, analysis["note"] = "cancelled", f"cancelled (budget): {cut}"
            verdicts[hyp.id] = verdict
            self.s.store.cycles.put_hypothesis(
                hyp.model_copy(update={"verdict": verdict, "analysis": analysis})
            )
        self.emit(
            "verdicts",
            cycle=state["cycle"],
            items=[
                {
                    "hypothesis": h.id,
                    "statement": h.statement,
                    "verdict": verdicts[h.id],
                    "estimate": a.comparison.estimate if a.comparison else None,
                    "ci": [a.comparison.ci_low, a.comparison.ci_high] if a.comparison else None,
                    "p_adjusted": a.p_adjusted,
                }
                for h, a in zip(hyps, analyses, strict=True)
            ],
        )
        return {}

    def _sequential(
        self, campaign: Campaign, hyps: list[Hypothesis], cycle: int
    ) -> tuple[list[HypothesisAnalysis], dict[str, dict[str, Any]]]:
        """The paired test as a group-sequential one: at look k of K (validation.stages
        + deferred_looks) a change is decided at the nominal level that the alpha spending
        (validation.spending) allows; an undecided one gets seeds_per_arm more seeds per
        arm, while the trial budget pays for them, up to the last in-cycle look. A resumed
        certification (screening_nodes: a parked pair promoted again) first gets the seeds
        of the look it resumes at and takes that one look. Seeds already run are reused
        (trial ids are content ids). Hypotheses of one cycle that are at different looks
        are all judged at the strictest of their levels (O'Brien-Fleming's rise over the
        looks, Pocock's fall), so none is judged more leniently than its own look allows."""
        spec = campaign.spec
        policy = spec.validation
        total = planned_looks(spec)
        levels = sequential_levels([(k + 1) / total for k in range(total)], policy.alpha, policy.spending)
        per_arm = policy.seeds_per_arm
        start = {h.id: min(resume_look(h), total) - 1 for h in hyps}
        for h in hyps:
            if start[h.id] > 0:
                self.emit(
                    "certification_look", cycle=cycle, look=start[h.id] + 1, hypotheses=[h.id], deferred=True
                )
                self._add_seeds(
                    campaign, [h], explore_seeds(campaign.id, per_arm * (start[h.id] + 1))[per_arm:]
                )
        hyps = self.hypotheses([h.id for h in hyps])
        first = min(start.values(), default=0)
        last = max(first, policy.stages - 1)  # the in-cycle looks; a resumed one takes one
        looks: dict[str, dict[str, Any]] = {}
        # Earlier comparisons of this campaign: their seed differences join the variance pool.
        earlier = sorted(
            (
                h
                for h in self.s.store.cycles.hypotheses(campaign.id)
                if h.cycle < cycle
                and h.verdict in ("supported", "refuted", "inconclusive")
                and h.control_trials
                and h.treatment_trials
            ),
            key=lambda h: (h.cycle, h.id),
        )

        # A resumed certification's earlier looks share its trials: they are the same
        # comparison, not another one, so they stay out of its pool.
        def same_comparison(e: Hypothesis) -> bool:
            return any(
                set(h.control_trials) & set(e.control_trials)
                and set(h.treatment_trials) & set(e.treatment_trials)
                for h in hyps
            )

        earlier = [e for e in earlier if not same_comparison(e)]
        history = earlier[-POOL_HISTORY:] if POOL_HISTORY > 0 else []  # [-0:] would keep all
        analyses: list[HypothesisAnalysis] = []
        for k in range(first, last + 1):
            at = {h.id: min(k + 1 + start[h.id] - first, total) for h in hyps}  # each one's look
            level = min(levels[look - 1] for look in at.values())
            staged = policy.model_copy(update={"alpha": level})
            analyses = analyze_hypotheses(
                self.s.store, hyps, objective=spec.objective, policy=staged, seed=cycle, history=history
            )
            for h in hyps:
                look = at[h.id]
                looks[h.id] = {
                    "look": look,
                    "of": total,
                    "nominal_alpha": level,
                    "deferred": look > policy.stages,
                }
            undecided = [h for h, a in zip(hyps, analyses, strict=True) if a.verdict == "inconclusive"]
            undecided = [h for h in undecided if h.treatment_trials and h.control_trials]
            if k == last or not undecided:
                return analyses, looks
            if len(undecided) * 2 * per_arm > self._spare_trials(campaign):
                return analyses, looks  # the budget ends the test here: it stays inconclusive
            seeds = explore_seeds(campaign.id, per_arm * (k + 2))[per_arm * (k + 1) :]
            self.emit("certification_look", cycle=cycle, look=k + 2, hypotheses=[h.id for h in undecided])
            self._add_seeds(campaign, undecided, seeds)
            hyps = self.hypotheses([h.id for h in hyps])
        return analyses, looks

    def _spare_trials(self, campaign: Campaign) -> int:
        """Trials the budget still pays for beyond a reproduction and the final runs."""
        budget = campaign.spec.budget.max_trials
        if budget is None:
            return 10**6
        used = len(self.s.store.trials.list(campaign_id=campaign.id, limit=100_000).items)
        policy = campaign.spec.validation
        return budget - used - 2 * policy.reproduction_seeds - final_reserve_runs(campaign)

    def _add_seeds(self, campaign: Campaign, hyps: list[Hypothesis], seeds: list[int]) -> None:
        service = self.trials(campaign)
        requests: list[TrialRequest] = []
        for hyp in hyps:
            arms: dict[str, list[str]] = {
                "control": list(hyp.control_trials),
                "treatment": list(hyp.treatment_trials),
            }
            for arm, ids in arms.items():
                config = self.s.store.trials.get(ids[0]).spec.config
                for seed in seeds:
                    tspec = service.spec_for(config, seed, max_seconds=campaign.spec.sandbox.timeout)
                    tid = trial_id_for(campaign.id, tspec)
                    self.s.store.trials.put(
                        Trial(
                            id=tid,
                            campaign_id=campaign.id,
                            hypothesis_id=hyp.id,
                            arm=arm,  # type: ignore[arg-type]
                            spec=tspec,
                            spec_hash=tspec.spec_hash(),
                        )
                    )
                    if tid not in ids:
                        ids.append(tid)
                        requests.append(
                            TrialRequest(trial_id=tid, hypothesis_id=hyp.id, arm=arm, spec=tspec)  # type: ignore[arg-type]
                        )
            self.s.store.cycles.put_hypothesis(
                hyp.model_copy(
                    update={"control_trials": arms["control"], "treatment_trials": arms["treatment"]}
                )
            )
        unique = list({r.trial_id: r for r in requests}.values())
        service.run(campaign.id, unique)

    def record(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        kb, actor = self.s.knowledge, self.s.actor
        if state.get("phase") == "reproduce":
            return self._record_reproduction(state, campaign)
        fingerprint = self.dataset(campaign).fingerprint
        new_claims, to_reproduce = [], []
        for hyp in self.hypotheses(state.get("hypothesis_ids", [])):
            if hyp.verdict not in ("supported", "refuted", "inconclusive") or "estimate" not in hyp.analysis:
                continue
            trials = [self.s.store.trials.get(t) for t in hyp.control_trials + hyp.treatment_trials]
            claim, evidence = build_claim(campaign, hyp, trials, fingerprint=fingerprint, verdict=hyp.verdict)
            earlier = self._earlier_look_claim(hyp)
            if earlier is not None:
                evidence.append(
                    Evidence(
                        claim_id=claim.id,
                        kind="claim",
                        ref_id=earlier.id,
                        role="continues",
                        detail={"look": hyp.analysis.get("looks", {}).get("look")},
                    )
                )
            kb.add_claim(claim, evidence, actor=actor)
            current = self.s.store.claims.get(claim.id)
            if current.tier == "proposed":
                kb.transition(
                    claim.id,
                    hyp.verdict,
                    actor=actor,
                    role="agent",  # type: ignore[arg-type]
                    reason=f"paired test on cycle {hyp.cycle}",
                )
            if earlier is not None and earlier.tier == "inconclusive":
                # After the new claim is in: a crash between the two steps re-runs this
                # node, which finds the earlier claim still inconclusive and retires it.
                kb.transition(
                    earlier.id,
                    "superseded",
                    actor=actor,
                    role="agent",
                    reason=f"its certification continued at a deferred look in claim {claim.id}, "
                    "on the same seeds and more",
                )
            self.s.store.cycles.put_hypothesis(hyp.model_copy(update={"claim_id": claim.id}))
            new_claims.append(claim.id)
            if hyp.verdict == "supported":
                to_reproduce.append(hyp.id)
        self.emit("claims", cycle=state["cycle"], ids=new_claims)
        if to_reproduce and campaign.spec.validation.reproduction_seeds > 0:
            # Every supported change is reproduced (`reproduce: all`): a supported claim
            # left unreproduced is knowledge the next campaign cannot lean on. With
            # `reproduce: best` only the change that could become the incumbent is.
            if campaign.spec.validation.reproduce == "best":
                sign = 1.0 if campaign.spec.objective.direction == "maximize" else -1.0
                to_reproduce = [
                    max(
                        to_reproduce,
                        key=lambda h: (
                            sign * float(self.s.store.cycles.get_hypothesis(h).analysis.get("estimate", 0.0))
                        ),
                    )
                ]
            return {"new_claim_ids": new_claims, "reproduce_ids": to_reproduce, "phase": "reproduce"}
        # Reproduction is off (reproduction_seeds: 0): claims stay `supported` and, since the
        # incumbent changes only on a reproduced improvement, it stays where it is.
        return {"new_claim_ids": new_claims, "reproduce_ids": [], "incumbent_changed": False}

    def _earlier_look_claim(self, hyp: Hypothesis) -> Claim | None:
        """The claim of the look a resumed certification continues (screening_nodes). Its
        seeds are all in the resumed comparison, so the two are one comparison: the newer
        claim carries the evidence and the earlier one is `superseded`, instead of a
        reviewer finding two claims, one inconclusive, about the same change."""
        resume = hyp.analysis.get("resume")
        if not isinstance(resume, dict):
            return None
        try:
            earlier = self.s.store.cycles.get_hypothesis(str(resume.get("from")))
            if earlier.campaign_id != hyp.campaign_id or not earlier.claim_id:
                return None  # only this campaign's own earlier look is continued
            return self.s.store.claims.get(earlier.claim_id)
        except NotFoundError:
            return None

    def _record_reproduction(self, state: CampaignState, campaign: Campaign) -> dict[str, Any]:
        kb, actor = self.s.knowledge, self.s.actor
        agreed = []
        for hyp in self.hypotheses(state.get("reproduce_ids", [])):
            claim_id = hyp.claim_id or claim_id_for(hyp)
            trials = [
                self.s.store.trials.get(t) for t in hyp.reproduction_control + hyp.reproduction_treatment
            ]
            if not any(e.role == "reproduction" for e in self.s.store.evidence.list(claim_id)):
                # once: a node re-run after a crash must not audit the same evidence twice
                self.s.knowledge.add_evidence(
                    claim_id, reproduction_evidence(claim_id, hyp, trials), actor=actor
                )
            tier = self.s.store.claims.get(claim_id).tier
            if tier != "supported":
                if tier == "reproduced":
                    agreed.append(hyp)
                continue
            if hyp.reproduction == "agreed":
                kb.transition(
                    claim_id,
                    "reproduced",
                    actor=actor,
                    role="agent",
                    reason="reproduction with fresh seeds agreed",
                )
                agreed.append(hyp)
            elif hyp.reproduction == "failed":
                # The reproduction runs did not finish (budget, infrastructure): that says
                # nothing against the claim, which stays supported.
                self.emit(
                    "reproduction", cycle=state["cycle"], hypothesis=hyp.id, outcome="not run", estimate=None
                )
            else:
                kb.transition(
                    claim_id,
                    "inconclusive",
                    actor=actor,
                    role="agent",
                    reason=f"reproduction {hyp.reproduction}",
                )
        if campaign.spec.validation.human_review:
            # The incumbent waits for a reviewer: the review node promotes what is validated.
            return {
                "phase": "explore",
                "reproduce_ids": [],
                "incumbent_changed": False,
                "awaiting_review": [h.id for h in agreed],
            }
        changed = self._promote(campaign, agreed)
        return {"phase": "explore", "reproduce_ids": [], "incumbent_changed": changed}

    def _promote(self, campaign: Campaign, candidates: list[Hypothesis]) -> bool:
        """The incumbent changes only on a supported, reproduced improvement: the best such
        one. No floor at min_effect on the estimate (design note 8): `supported` already
        needs a CI above zero that still reaches min_effect, and the fresh seeds agreed, so
        a smaller certified step is still a certified step; a floor kept the answer within
        min_effect of the best forever."""
        sign = 1.0 if campaign.spec.objective.direction == "maximize" else -1.0
        candidates = [h for h in candidates if sign * float(h.analysis.get("estimate", 0.0)) > 0]
        candidates = [h for h in candidates if not self._breaks_constraints(campaign, h)]
        if not candidates:
            return False
        best = max(candidates, key=lambda h: sign * float(h.analysis.get("estimate", 0.0)))
        new_config = make_config(
            campaign.spec.task, apply_changes(campaign.incumbent, best.changes)
        ).model_dump()
        if new_config == campaign.incumbent:  # re-run after a crash: already promoted
            return True
        treat = [self.s.store.trials.get(t) for t in best.treatment_trials + best.reproduction_treatment]
        value = arm_data(treat, campaign.spec.objective).objective
        self.s.store.campaigns.update(campaign.id, incumbent=new_config, incumbent_objective=value)
        self.s.store.audit.append(
            self.s.actor,
            "campaign.incumbent",
            "campaign",
            campaign.id,
            {"hypothesis": best.id, "config": new_config, "objective": value},
        )
        self.emit("incumbent", hypothesis=best.id, changes=self._labelled(best), objective=value)
        return True

    def _labelled(self, hyp: Hypothesis) -> list[dict[str, Any]]:
        """The changes as dicts; a code module's hash also as `name (short hash)`."""
        out = []
        for c in hyp.changes:
            row = c.model_dump()
            if c.factor.startswith("code_") and isinstance(c.to_value, str) and c.to_value != "none":
                try:
                    module, _ = self.s.store.code.get(c.to_value)
                    row["to_label"] = f"{module.name} ({c.to_value[:12]})"
                except NotFoundError:
                    row["to_label"] = c.to_value[:12]
            out.append(row)
        return out

    def _breaks_constraints(self, campaign: Campaign, hyp: Hypothesis) -> bool:
        """A change whose runs break an objective constraint (e.g. inference <= 60 s per
        case) never becomes the incumbent, however large its gain; the reason is logged."""
        objective = campaign.spec.objective
        if not objective.constraints:
            return False
        runs = [self.s.store.trials.get(t) for t in hyp.treatment_trials + hyp.reproduction_treatment]
        broken = arm_violations(runs, objective)
        if broken:
            self.emit("constraint", hypothesis=hyp.id, violations=broken[:10])
        return bool(broken)

    def review(self, state: CampaignState) -> dict[str, Any]:
        """By policy, pause for a human decision on reproduced claims before they steer
        planning (and before one can move the incumbent).

        Resumed with {claim_id: {"action": "validate" | "reject", "reviewer": name,
        "reason": text}}. The knowledge lifecycle enforces who may decide (not the campaign
        owner, not an agent). A refused or missing decision keeps the campaign waiting.
        """
        campaign = self.campaign(state)
        if not campaign.spec.validation.human_review:
            return {}
        new = state.get("new_claim_ids", [])

        def undecided() -> list[str]:
            return [c for c in new if self.s.store.claims.get(c).tier == "reproduced"]

        pending = undecided()
        while pending:
            # On resume the node re-runs from its start and earlier answers are replayed to
            # the earlier interrupts; decisions already applied are skipped below.
            decisions = interrupt({"kind": "review", "claims": pending})
            for claim_id, decision in dict(decisions or {}).items():
                action = decision.get("action") if isinstance(decision, dict) else None
                if claim_id not in pending or action not in ("validate", "reject"):
                    self.emit("review_refused", claim=claim_id, why="not awaiting review, or unknown action")
                    continue
                try:
                    self.s.knowledge.transition(
                        claim_id,
                        "validated" if action == "validate" else "rejected",
                        actor=str(decision.get("reviewer", "")),
                        role="reviewer",
                        reason=str(decision.get("reason", "")),
                    )
                except TrustError as exc:
                    self.emit("review_refused", claim=claim_id, why=str(exc))
            pending = undecided()
        validated = [
            h
            for h in self.hypotheses(state.get("awaiting_review", []))
            if h.claim_id and self.s.store.claims.get(h.claim_id).tier == "validated"
        ]
        changed = self._promote(campaign, validated)
        return {"incumbent_changed": bool(state.get("incumbent_changed")) or changed, "awaiting_review": []}
