"""The nodes of one research cycle.

retrieve -> propose -> design -> execute -> evaluate -> analyze -> record -> review -> reflect

Nodes are idempotent: ids are content-derived (hypotheses, trials, claims), the store
ignores duplicates and the trial runner reuses finished trials, so a node that re-runs
after a crash (LangGraph restarts the interrupted node) repeats no work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langgraph.types import interrupt

from medloop.agents.base import HistoryRow, PlanningContext
from medloop.agents.claims import build_claim, claim_id_for, reproduction_evidence
from medloop.agents.services import CampaignServices, EventCallback
from medloop.agents.space import apply_changes, validate_changes
from medloop.agents.state import CampaignState
from medloop.core.errors import NotFoundError
from medloop.core.ids import content_id
from medloop.core.records import Campaign, Hypothesis, Trial
from medloop.core.specs import make_config
from medloop.knowledge.base import RetrievalQuery, RetrievedClaim
from medloop.sandbox.base import JobEvent
from medloop.tools.analysis import analyze_hypotheses, arm_data, compare_arms, reproduction_agrees
from medloop.tools.base import PreparedDataset, TrialRequest, TrialService, trial_id_for

NodeFn = Callable[[CampaignState], dict[str, Any]]
# Reproduction runs use seeds REPRO_SEED_BASE.. (explore runs use 0..seeds_per_arm-1), so
# they are fresh for every hypothesis and a replay table can record them ahead of time.
REPRO_SEED_BASE = 1000


class CampaignNodes:
    def __init__(self, services: CampaignServices, on_event: EventCallback | None = None) -> None:
        self.s = services
        self._emit = on_event
        self._trials: dict[str, TrialService] = {}

    # ------------------------------------------------------------ plumbing

    def emit(self, kind: str, **payload: Any) -> None:
        if self._emit is not None:
            self._emit(kind, payload)

    def wrap(self, name: str, fn: NodeFn) -> NodeFn:
        """Charge each node's wall time to the campaign (budgets use the host's clock)."""

        def node(state: CampaignState) -> dict[str, Any]:
            start = time.monotonic()
            update = fn(state)
            elapsed = time.monotonic() - start
            update["active_s"] = float(state.get("active_s", 0.0)) + elapsed
            self.emit("node", name=name, cycle=state.get("cycle"), phase=state.get("phase"), seconds=elapsed)
            return update

        node.__name__ = name
        return node

    def campaign(self, state: CampaignState) -> Campaign:
        return self.s.store.get_campaign(state["campaign_id"])

    def trials(self, campaign: Campaign) -> TrialService:
        if campaign.id not in self._trials:
            self._trials[campaign.id] = self.s.make_trials(campaign.spec)
        return self._trials[campaign.id]

    def dataset(self, campaign: Campaign) -> PreparedDataset:
        return self.trials(campaign).dataset

    def close(self) -> None:
        for service in self._trials.values():
            service.close()
        self._trials.clear()

    def hypotheses(self, ids: list[str]) -> list[Hypothesis]:
        return [self.s.store.get_hypothesis(h) for h in ids]

    def retrieval(self, campaign: Campaign) -> list[RetrievedClaim]:
        spec = campaign.spec
        query = RetrievalQuery(
            text=f"{spec.goal} Factors: {', '.join(spec.search_space)}.",
            task=spec.task,
            outcome=spec.objective.metric,
            factors=list(spec.search_space),
            fingerprint=self.dataset(campaign).fingerprint,
            k=30,
            purpose="planning",
        )
        # This campaign's own claims reach the planner through its history instead.
        return [r for r in self.s.knowledge.retrieve(query) if r.claim.campaign_id != campaign.id]

    # ------------------------------------------------------------ nodes

    def retrieve(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        found = self.retrieval(campaign)
        self.emit(
            "retrieved",
            cycle=state["cycle"],
            claims=[
                {
                    "id": r.claim.id,
                    "tier": r.claim.tier,
                    "role": r.role,
                    "score": round(r.score, 3),
                    "statement": r.claim.statement,
                }
                for r in found
            ],
        )
        return {"retrieved": [r.claim.id for r in found]}

    def propose(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        spec = campaign.spec
        cid, cycle = campaign.id, state["cycle"]
        existing = self.s.store.list_hypotheses(cid, cycle)
        if existing:  # re-run after a crash: the plan was already made
            return {"hypothesis_ids": [h.id for h in existing]}
        n = min(spec.planner.hypotheses_per_cycle, self.affordable_hypotheses(campaign))
        if n <= 0:
            return {"hypothesis_ids": [], "stop_reason": "trial budget spent"}
        retrieved_ids = set(state.get("retrieved", []))
        retrieved = [r for r in self.retrieval(campaign) if r.claim.id in retrieved_ids]
        trials = self.s.store.list_trials(campaign_id=cid).items
        context = PlanningContext(
            campaign_id=cid,
            cycle=cycle,
            spec=spec,
            incumbent=campaign.incumbent,
            incumbent_objective=campaign.incumbent_objective,
            history=self.history(cid),
            retrieved=retrieved,
            tested_configs=[t.spec.config.model_dump(mode="json") for t in trials],
            n=n,
        )
        planner = self.s.make_planner(spec)
        planner.load_state(campaign.summary.get("planner", {}))
        drafts = planner.propose(context)
        self.s.store.update_campaign(
            cid, summary={**campaign.summary, "planner": {"name": planner.name, **planner.state()}}
        )
        hypotheses = []
        for draft in drafts[:n]:
            problem = validate_changes(spec, campaign.incumbent, draft.changes)
            if problem:
                self.emit("planner_rejected", cycle=cycle, statement=draft.statement, why=problem)
                continue
            changes = [
                c.model_copy(update={"from_value": campaign.incumbent.get(c.factor)}) for c in draft.changes
            ]
            hyp = Hypothesis(
                id=content_id("hyp", cid, cycle, [c.model_dump(mode="json") for c in changes]),
                campaign_id=cid,
                cycle=cycle,
                statement=draft.statement,
                changes=changes,
                expected_effect=draft.expected_effect,
                rationale=draft.rationale,
                evidence_ids=[e for e in draft.evidence_ids if e in retrieved_ids],
                source="llm" if spec.planner.kind == "llm" else "offline",
            )
            self.s.store.put_hypothesis(hyp)
            hypotheses.append(hyp)
        self.emit(
            "hypotheses",
            cycle=cycle,
            items=[
                {"id": h.id, "statement": h.statement, "evidence": h.evidence_ids, "rationale": h.rationale}
                for h in hypotheses
            ],
        )
        update: dict[str, Any] = {"hypothesis_ids": [h.id for h in hypotheses]}
        if not hypotheses:
            update["stop_reason"] = "no untested hypotheses left in the search space"
        return update

    def design(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        policy = campaign.spec.validation
        reproducing = state.get("phase") == "reproduce"
        ids = state.get("reproduce_ids", []) if reproducing else state.get("hypothesis_ids", [])
        if reproducing:
            seeds = [REPRO_SEED_BASE + i for i in range(policy.reproduction_seeds)]
        else:
            seeds = list(range(policy.seeds_per_arm))
        for hyp in self.hypotheses(ids):
            task = campaign.spec.task
            control_cfg = make_config(
                task, campaign.incumbent if not reproducing else self._config_of(hyp.control_trials[0])
            )
            treat_cfg = make_config(task, apply_changes(control_cfg.model_dump(), hyp.changes))
            control: list[str] = []
            treatment: list[str] = []
            for seed in seeds:
                for cfg, arm, bucket in (
                    (control_cfg, "control", control),
                    (treat_cfg, "treatment", treatment),
                ):
                    spec = self.trials(campaign).spec_for(
                        cfg, seed, max_seconds=campaign.spec.sandbox.timeout
                    )
                    tid = trial_id_for(campaign.id, spec)
                    self.s.store.put_trial(
                        Trial(
                            id=tid,
                            campaign_id=campaign.id,
                            hypothesis_id=hyp.id,
                            arm="reproduction" if reproducing else arm,  # type: ignore[arg-type]
                            spec=spec,
                            spec_hash=spec.spec_hash(),
                        )
                    )
                    bucket.append(tid)
            if reproducing:
                hyp = hyp.model_copy(
                    update={
                        "reproduction_control": control,
                        "reproduction_treatment": treatment,
                        "reproduction": "pending",
                    }
                )
            else:
                hyp = hyp.model_copy(update={"control_trials": control, "treatment_trials": treatment})
            self.s.store.put_hypothesis(hyp)
        return {}

    def _config_of(self, trial_id: str) -> dict[str, Any]:
        return self.s.store.get_trial(trial_id).spec.config.model_dump()

    def _phase_trials(self, state: CampaignState) -> list[tuple[str, str | None]]:
        reproducing = state.get("phase") == "reproduce"
        ids = state.get("reproduce_ids", []) if reproducing else state.get("hypothesis_ids", [])
        out: dict[str, str | None] = {}
        for hyp in self.hypotheses(ids):
            arms = (
                hyp.reproduction_control + hyp.reproduction_treatment
                if reproducing
                else hyp.control_trials + hyp.treatment_trials
            )
            for tid in arms:
                out.setdefault(tid, hyp.id)
        return list(out.items())

    def execute(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        requests = []
        for tid, hyp_id in self._phase_trials(state):
            trial = self.s.store.get_trial(tid)
            requests.append(TrialRequest(trial_id=tid, hypothesis_id=hyp_id, arm=trial.arm, spec=trial.spec))

        def on_job(event: JobEvent) -> None:
            if event.kind == "log" and event.line:
                self.emit("job_log", key=event.key, line=event.line)

        def on_trial(trial: Trial) -> None:
            self.emit(
                "trial",
                cycle=state["cycle"],
                id=trial.id,
                status=trial.status,
                seed=trial.spec.seed,
                objective=trial.result.objective if trial.result else None,
                error=trial.result.error if trial.result else None,
            )

        self.emit("execute", cycle=state["cycle"], phase=state.get("phase"), trials=len(requests))
        self.trials(campaign).run(
            campaign.id,
            requests,
            on_event=on_job,
            on_trial=on_trial,
        )
        return {}

    def evaluate(self, state: CampaignState) -> dict[str, Any]:
        """Summarise the arms; set the baseline's objective from the first control arm."""
        campaign = self.campaign(state)
        objective = campaign.spec.objective
        reproducing = state.get("phase") == "reproduce"
        rows = []
        ids = state.get("reproduce_ids", []) if reproducing else state.get("hypothesis_ids", [])
        for hyp in self.hypotheses(ids):
            c_ids = hyp.reproduction_control if reproducing else hyp.control_trials
            t_ids = hyp.reproduction_treatment if reproducing else hyp.treatment_trials
            control = arm_data([self.s.store.get_trial(t) for t in c_ids], objective)
            treat = arm_data([self.s.store.get_trial(t) for t in t_ids], objective)
            rows.append(
                {
                    "hypothesis": hyp.id,
                    "control": control.objective,
                    "treatment": treat.objective,
                    "failed": len(c_ids) + len(t_ids) - len(control.usable) - len(treat.usable),
                }
            )
            if campaign.baseline_objective is None and not reproducing and control.objective is not None:
                campaign = self.s.store.update_campaign(
                    campaign.id, baseline_objective=control.objective, incumbent_objective=control.objective
                )
        self.emit("evaluated", cycle=state["cycle"], phase=state.get("phase"), arms=rows)
        return {}

    def analyze(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        spec = campaign.spec
        if state.get("phase") == "reproduce":
            for hyp in self.hypotheses(state.get("reproduce_ids", [])):
                control = arm_data(
                    [self.s.store.get_trial(t) for t in hyp.reproduction_control], spec.objective
                )
                treat = arm_data(
                    [self.s.store.get_trial(t) for t in hyp.reproduction_treatment], spec.objective
                )
                comparison = compare_arms(control, treat, spec.validation, seed=state["cycle"])
                detail: dict[str, Any]
                if comparison is None:
                    outcome, detail = "failed", {"note": "reproduction trials failed"}
                else:
                    agrees = reproduction_agrees(hyp.analysis, comparison.estimate)
                    outcome = "agreed" if agrees else "disagreed"
                    detail = {**comparison.model_dump(exclude={"cases"}), "seeds": treat.seeds}
                merged = {**hyp.analysis, "reproduction": {"outcome": outcome, **detail}}
                self.s.store.put_hypothesis(
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
        analyses = analyze_hypotheses(
            self.s.store, hyps, objective=spec.objective, policy=spec.validation, seed=state["cycle"]
        )
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
            if a.by_group:  # per-category effects (VQA), kept as the claim's evidence
                analysis["by_category"] = a.by_group
            self.s.store.put_hypothesis(hyp.model_copy(update={"verdict": a.verdict, "analysis": analysis}))
        self.emit(
            "verdicts",
            cycle=state["cycle"],
            items=[
                {
                    "hypothesis": h.id,
                    "statement": h.statement,
                    "verdict": a.verdict,
                    "estimate": a.comparison.estimate if a.comparison else None,
                    "ci": [a.comparison.ci_low, a.comparison.ci_high] if a.comparison else None,
                    "p_adjusted": a.p_adjusted,
                }
                for h, a in zip(hyps, analyses, strict=True)
            ],
        )
        return {}

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
            trials = [self.s.store.get_trial(t) for t in hyp.control_trials + hyp.treatment_trials]
            claim, evidence = build_claim(campaign, hyp, trials, fingerprint=fingerprint, verdict=hyp.verdict)
            kb.add_claim(claim, evidence, actor=actor)
            current = self.s.store.get_claim(claim.id)
            if current.tier == "proposed":
                kb.transition(
                    claim.id,
                    hyp.verdict,
                    actor=actor,
                    role="agent",  # type: ignore[arg-type]
                    reason=f"paired test on cycle {hyp.cycle}",
                )
            self.s.store.put_hypothesis(hyp.model_copy(update={"claim_id": claim.id}))
            new_claims.append(claim.id)
            if hyp.verdict == "supported":
                to_reproduce.append(hyp.id)
        self.emit("claims", cycle=state["cycle"], ids=new_claims)
        if to_reproduce and campaign.spec.validation.reproduction_seeds > 0:
            return {"new_claim_ids": new_claims, "reproduce_ids": to_reproduce, "phase": "reproduce"}
        changed = self._promote(campaign, [self.s.store.get_hypothesis(h) for h in to_reproduce])
        return {"new_claim_ids": new_claims, "reproduce_ids": [], "incumbent_changed": changed}

    def _record_reproduction(self, state: CampaignState, campaign: Campaign) -> dict[str, Any]:
        kb, actor = self.s.knowledge, self.s.actor
        agreed = []
        for hyp in self.hypotheses(state.get("reproduce_ids", [])):
            claim_id = hyp.claim_id or claim_id_for(hyp)
            trials = [
                self.s.store.get_trial(t) for t in hyp.reproduction_control + hyp.reproduction_treatment
            ]
            self.s.store.add_evidence(reproduction_evidence(claim_id, hyp, trials))
            tier = self.s.store.get_claim(claim_id).tier
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
            else:
                kb.transition(
                    claim_id,
                    "inconclusive",
                    actor=actor,
                    role="agent",
                    reason=f"reproduction {hyp.reproduction}",
                )
        changed = self._promote(campaign, agreed)
        return {"phase": "explore", "reproduce_ids": [], "incumbent_changed": changed}

    def _promote(self, campaign: Campaign, candidates: list[Hypothesis]) -> bool:
        """The incumbent changes only on a supported (and reproduced) improvement: the best."""
        if not candidates:
            return False
        sign = 1.0 if campaign.spec.objective.direction == "maximize" else -1.0
        best = max(candidates, key=lambda h: sign * float(h.analysis.get("estimate", 0.0)))
        new_config = make_config(
            campaign.spec.task, apply_changes(campaign.incumbent, best.changes)
        ).model_dump()
        treat = [self.s.store.get_trial(t) for t in best.treatment_trials + best.reproduction_treatment]
        value = arm_data(treat, campaign.spec.objective).objective
        self.s.store.update_campaign(campaign.id, incumbent=new_config, incumbent_objective=value)
        self.s.store.append_audit(
            self.s.actor,
            "campaign.incumbent",
            "campaign",
            campaign.id,
            {"hypothesis": best.id, "config": new_config, "objective": value},
        )
        self.emit(
            "incumbent", hypothesis=best.id, changes=[c.model_dump() for c in best.changes], objective=value
        )
        return True

    def review(self, state: CampaignState) -> dict[str, Any]:
        """By policy, pause for a human decision on new claims before they steer planning."""
        campaign = self.campaign(state)
        if not campaign.spec.validation.human_review:
            return {}
        pending = [
            c
            for c in state.get("new_claim_ids", [])
            if self.s.store.get_claim(c).tier in ("supported", "reproduced")
        ]
        if not pending:
            return {}
        decisions = interrupt({"kind": "review", "claims": pending})
        for claim_id, decision in dict(decisions or {}).items():
            if claim_id not in pending:
                continue
            action = decision.get("action")
            if action not in ("validate", "reject"):
                continue
            self.s.knowledge.transition(
                claim_id,
                "validated" if action == "validate" else "rejected",
                actor=decision["reviewer"],
                role=decision.get("role", "reviewer"),
                reason=decision["reason"],
            )
        return {}

    def reflect(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        budget = campaign.spec.budget
        cycle = state["cycle"]
        no_gain = 0 if state.get("incumbent_changed") else int(state.get("no_gain_cycles", 0)) + 1
        hyps = self.s.store.list_hypotheses(campaign.id, cycle)
        self.s.store.record_cycle(
            campaign.id,
            cycle,
            {
                "hypotheses": [
                    {"id": h.id, "verdict": h.verdict, "reproduction": h.reproduction} for h in hyps
                ],
                "retrieved": state.get("retrieved", []),
                "incumbent": campaign.incumbent,
                "incumbent_objective": campaign.incumbent_objective,
                "active_s": state.get("active_s", 0.0),
            },
        )
        reason = state.get("stop_reason")
        n_trials = len(self.s.store.list_trials(campaign_id=campaign.id, limit=100_000).items)
        if reason:
            pass
        elif campaign.status == "stopping":
            reason = "stopped by user"
        elif cycle >= budget.max_cycles:
            reason = f"reached max_cycles={budget.max_cycles}"
        elif no_gain >= budget.patience:
            reason = f"no improvement in {no_gain} cycles (patience {budget.patience})"
        elif budget.max_trials is not None and n_trials >= budget.max_trials:
            reason = f"trial budget spent ({n_trials}/{budget.max_trials})"
        elif budget.max_wall is not None and state.get("active_s", 0.0) >= budget.max_wall:
            reason = f"wall-time budget spent ({state.get('active_s', 0.0):.0f}s)"
        self.emit(
            "cycle_end",
            cycle=cycle,
            incumbent_objective=campaign.incumbent_objective,
            trials=n_trials,
            stop=reason,
        )
        if reason:
            return {"stop_reason": reason, "no_gain_cycles": no_gain}
        if campaign.status == "paused":
            interrupt({"kind": "paused", "cycle": cycle})
        return {
            "cycle": cycle + 1,
            "phase": "explore",
            "hypothesis_ids": [],
            "reproduce_ids": [],
            "new_claim_ids": [],
            "incumbent_changed": False,
            "no_gain_cycles": no_gain,
        }

    def finalize(self, state: CampaignState) -> dict[str, Any]:
        """Touch the test split once: baseline vs final incumbent, free of selection bias."""
        campaign = self.campaign(state)
        seeds = range(campaign.spec.validation.seeds_per_arm)
        summary: dict[str, Any] = {
            "stop_reason": state.get("stop_reason"),
            "cycles": state["cycle"],
            "active_s": state.get("active_s", 0.0),
        }
        arms = {}
        for name, config in (("baseline", campaign.baseline), ("incumbent", campaign.incumbent)):
            trials = []
            for seed in seeds:
                spec = self.trials(campaign).spec_for(make_config(campaign.spec.task, dict(config)), seed)
                tid = trial_id_for(campaign.id, spec)
                try:
                    trial = self.s.store.get_trial(tid)
                except NotFoundError:  # the arm never ran (e.g. the budget ended first)
                    continue
                if self.trials(campaign).evaluate_test(trial) is not None:
                    trials.append(self.s.store.get_trial(tid))
            arms[name] = trials
        test_arms = {
            name: arm_data(trials, campaign.spec.objective, split="test") for name, trials in arms.items()
        }
        summary["test"] = {
            name: {"objective": a.objective, "trials": a.usable} for name, a in test_arms.items()
        }
        if test_arms.get("baseline") and test_arms.get("incumbent"):
            comp = compare_arms(test_arms["baseline"], test_arms["incumbent"], campaign.spec.validation)
            if comp is not None:
                summary["test"]["effect"] = comp.model_dump(exclude={"cases"})
        self.s.store.update_campaign(campaign.id, status="completed", summary={**campaign.summary, **summary})
        self.s.store.append_audit(self.s.actor, "campaign.complete", "campaign", campaign.id, summary)
        self.emit("final", summary=summary)
        return {}

    # ------------------------------------------------------------ helpers

    def history(self, campaign_id: str) -> list[HistoryRow]:
        rows = []
        for h in self.s.store.list_hypotheses(campaign_id):
            if h.verdict == "pending":
                continue
            rows.append(
                HistoryRow(
                    cycle=h.cycle,
                    changes={c.factor: c.to_value for c in h.changes},
                    verdict=h.verdict,
                    estimate=h.analysis.get("estimate"),
                    p_adjusted=h.analysis.get("p_adjusted"),
                )
            )
        return rows

    def affordable_hypotheses(self, campaign: Campaign) -> int:
        """How many hypotheses the trial budget still pays for (treatment arm + reproduction)."""
        budget = campaign.spec.budget.max_trials
        if budget is None:
            return 10**6
        used = len(self.s.store.list_trials(campaign_id=campaign.id, limit=100_000).items)
        policy = campaign.spec.validation
        control = 0 if used else policy.seeds_per_arm
        per_hyp = policy.seeds_per_arm
        return max(0, (budget - used - control) // per_hyp)
