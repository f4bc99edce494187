"""Nodes that plan and run a cycle: retrieve -> propose -> design -> execute -> evaluate.

Idempotent: hypothesis and trial ids come from their content, the store ignores
duplicates and the trial service reuses finished trials, so a node that re-runs after a
crash (LangGraph restarts the interrupted node) repeats no work.
"""

from __future__ import annotations

from typing import Any, Literal

from medloop.agents.base import Planner
from medloop.agents.code_moves import campaign_modules, draft_for, planning_spec, queued, readable
from medloop.agents.planners.code_writer import CodeDraft, CodeRequest
from medloop.agents.screening_nodes import ScreeningNodes
from medloop.agents.seeds import explore_seeds, fresh_reproduction_seeds
from medloop.agents.space import apply_changes, config_key, validate_changes
from medloop.agents.state import CampaignState
from medloop.core.code import CodeModule, code_field
from medloop.core.errors import MedloopError
from medloop.core.ids import content_id
from medloop.core.records import Campaign, Hypothesis, Trial
from medloop.core.specs import make_config
from medloop.engine.analysis import arm_data
from medloop.engine.base import TrialRequest, trial_id_for
from medloop.engine.code import register
from medloop.knowledge.base import RetrievedClaim
from medloop.sandbox.base import JobEvent


class PlanningNodes(ScreeningNodes):
    def retrieve(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        found = self.retrieval(campaign)
        # This campaign's own claims (earlier cycles) reach the planner through its history,
        # not through retrieval; they are listed here so that a later cycle shows, and
        # records, that it planned with them.
        own_ids = [h.claim_id for h in self.s.store.cycles.hypotheses(campaign.id) if h.claim_id]
        own = self.s.store.claims.get_many(own_ids) if own_ids else []
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
            ]
            + [
                {"id": c.id, "tier": c.tier, "role": "campaign", "score": 1.0, "statement": c.statement}
                for c in own
            ],
        )
        return {"retrieved": [r.claim.id for r in found] + [c.id for c in own]}

    def propose(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        spec = campaign.spec
        cid, cycle = campaign.id, state["cycle"]
        existing = self.s.store.cycles.hypotheses(cid, cycle)
        if existing:  # re-run after a crash: the plan was already made
            return {"hypothesis_ids": [h.id for h in existing]}
        if spec.planner.screening:
            return self.promote_screened(campaign, state)
        n = min(spec.planner.hypotheses_per_cycle, self.affordable_hypotheses(campaign))
        if n <= 0:
            return {"hypothesis_ids": [], "stop_reason": "trial budget spent"}
        retrieved_ids = set(state.get("retrieved", []))
        retrieved = [r for r in self.retrieval(campaign) if r.claim.id in retrieved_ids]
        planner = self.s.make_planner(spec)
        planner.load_state(campaign.summary.get("planner", {}))
        # Code hypotheses: the campaign's modules become `code_<point>` factors; modules a
        # person or the LLM wrote for it are tested first (agents/code_moves.py).
        modules = campaign_modules(self.s.store, spec, cid)
        if spec.code.points and spec.code.modules_per_cycle:
            modules += self._write_code(campaign, cycle, planner, retrieved, modules)
        plan_spec = planning_spec(spec, modules)
        verb = "raises" if spec.objective.direction == "maximize" else "lowers"
        first = [
            draft_for(m, campaign.incumbent, spec.objective.metric, verb)
            for m in queued(modules, self.s.store.cycles.hypotheses(cid), cid)
        ][:n]
        context = self.planning_context(campaign, state, n - len(first)).model_copy(
            update={"spec": plan_spec}
        )
        drafts = first + (planner.propose(context) if context.n > 0 else [])
        authors = {m.sha256: m.author_kind for m in modules}
        hypotheses: dict[str, Hypothesis] = {}
        for draft in drafts:
            problem = validate_changes(plan_spec, campaign.incumbent, draft.changes)
            if problem:
                self.emit("planner_rejected", cycle=cycle, statement=draft.statement, why=problem)
                continue
            changes = sorted(
                (
                    c.model_copy(update={"from_value": campaign.incumbent.get(c.factor)})
                    for c in draft.changes
                ),
                key=lambda c: c.factor,
            )
            hyp = Hypothesis(
                id=content_id("hyp", cid, cycle, [c.model_dump(mode="json") for c in changes]),
                campaign_id=cid,
                cycle=cycle,
                statement=readable(draft.statement, modules),
                changes=changes,
                expected_effect=draft.expected_effect,
                rationale=draft.rationale,
                evidence_ids=[e for e in draft.evidence_ids if e in retrieved_ids],
                source=_source(spec.planner.kind, [authors.get(str(c.to_value), "") for c in changes]),
            )
            if hyp.id in hypotheses:  # the same change twice would be tested (and counted) twice
                self.emit("planner_rejected", cycle=cycle, statement=draft.statement, why="duplicate")
                continue
            hypotheses[hyp.id] = hyp
            if len(hypotheses) == n:
                break
        # All of the cycle's plan or none of it: a crash half-way must not shrink the plan.
        with self.s.store.transaction():
            for hyp in hypotheses.values():
                self.s.store.cycles.put_hypothesis(hyp)
            self.s.store.campaigns.update(
                cid, summary={**campaign.summary, "planner": {"name": planner.name, **planner.state()}}
            )
        hyps = list(hypotheses.values())
        self.emit(
            "hypotheses",
            cycle=cycle,
            items=[
                {"id": h.id, "statement": h.statement, "evidence": h.evidence_ids, "rationale": h.rationale}
                for h in hyps
            ],
        )
        update: dict[str, Any] = {"hypothesis_ids": [h.id for h in hyps]}
        if not hyps:
            update["stop_reason"] = "no untested hypotheses left in the search space"
        return update

    def _write_code(
        self,
        campaign: Campaign,
        cycle: int,
        planner: Planner,
        retrieved: list[RetrievedClaim],
        modules: list[CodeModule],
    ) -> list[CodeModule]:
        """The LLM planner's write-code step (planners/code_writer.py): new modules for
        this campaign, checked and stored, queued for this cycle. [] for other planners."""
        write = getattr(planner, "write_code", None)
        if write is None:
            return []
        spec = campaign.spec
        mine = [m for m in self.s.store.code.list(campaign_id=campaign.id) if m.campaign_id == campaign.id]
        last_error = ""
        for m in reversed(mine):
            state = self.s.store.code.state(m.sha256)
            if m.author_kind == "llm" and state.smoke == "failed":
                last_error = f"module {m.name} ({m.sha256[:12]}) failed its smoke trial: {state.smoke_reason}"
                break
        written: list[CodeModule] = []
        for i in range(spec.code.modules_per_cycle):
            point = spec.code.points[(cycle + i) % len(spec.code.points)]
            current_sha = str(campaign.incumbent.get(code_field(point), "none"))
            current = self.s.store.code.get(current_sha)[1] if current_sha != "none" else ""
            request = CodeRequest(
                point=point,
                current=current,
                claims=[r.claim.statement for r in retrieved[:5]],
                last_error=last_error,
            )
            draft: CodeDraft = write(spec, request)
            self.emit(
                "code_written",
                cycle=cycle,
                point=point,
                ok=draft.source is not None,
                attempts=draft.attempts,
                errors=draft.errors,
            )
            if draft.source is None:
                last_error = draft.errors[-1] if draft.errors else last_error
                continue
            try:
                module = register(
                    self.s.store,
                    draft.source,
                    name=f"llm-{point}-c{cycle}-{i}",
                    author=f"llm:{draft.model or spec.planner.model or '?'}",
                    author_kind="llm",
                    rationale=draft.rationale,
                    baseline=current if current else None,
                    point=point,
                    campaign_id=campaign.id,
                )
            except MedloopError as exc:  # the checks passed in the writer; a race is still data
                self.emit("code_written", cycle=cycle, point=point, ok=False, errors=[exc.message])
                continue
            if module.sha256 not in {m.sha256 for m in modules + written}:
                written.append(module)
        return written

    def design(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        policy = campaign.spec.validation
        reproducing = state.get("phase") == "reproduce"
        ids = state.get("reproduce_ids", []) if reproducing else state.get("hypothesis_ids", [])
        seeds = explore_seeds(campaign.id, policy.seeds_per_arm)
        used = self._runs_before(campaign.id, ids) if reproducing else set()
        for hyp in self.hypotheses(ids):
            task = campaign.spec.task
            control_cfg = make_config(
                task, campaign.incumbent if not reproducing else self._config_of(hyp.control_trials[0])
            )
            treat_cfg = make_config(task, apply_changes(control_cfg.model_dump(), hyp.changes))
            if reproducing:
                arms = [config_key(c.model_dump(mode="json")) for c in (control_cfg, treat_cfg)]
                seeds = fresh_reproduction_seeds(campaign.id, policy.reproduction_seeds, arms, used)
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
                    self.s.store.trials.put(
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
            self.s.store.cycles.put_hypothesis(hyp)
        return {}

    def _runs_before(self, campaign_id: str, reproducing: list[str]) -> set[tuple[str, int]]:
        """(config key, seed) of every run of the campaign but the reproduction runs of the
        hypotheses reproduced now: a node that re-runs after a crash chooses the same seeds,
        and hypotheses of one phase with the same control share its reproduction runs."""
        now = set(reproducing)
        return {
            (config_key(t.spec.config.model_dump(mode="json")), t.spec.seed)
            for t in self.campaign_trials(campaign_id)
            if not (t.arm == "reproduction" and t.hypothesis_id in now)
        }

    def _config_of(self, trial_id: str) -> dict[str, Any]:
        return self.s.store.trials.get(trial_id).spec.config.model_dump()

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
            trial = self.s.store.trials.get(tid)
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
            control = arm_data([self.s.store.trials.get(t) for t in c_ids], objective)
            treat = arm_data([self.s.store.trials.get(t) for t in t_ids], objective)
            rows.append(
                {
                    "hypothesis": hyp.id,
                    "control": control.objective,
                    "treatment": treat.objective,
                    "failed": len(c_ids) + len(t_ids) - len(control.usable) - len(treat.usable),
                }
            )
            if campaign.baseline_objective is None and not reproducing and control.objective is not None:
                campaign = self.s.store.campaigns.update(
                    campaign.id, baseline_objective=control.objective, incumbent_objective=control.objective
                )
        self.emit("evaluated", cycle=state["cycle"], phase=state.get("phase"), arms=rows)
        return {}


def _source(planner: str, authors: list[str]) -> Literal["offline", "llm", "user"]:
    """Who proposed a hypothesis: a person (a module they added), the LLM, or the offline planner."""
    if "human" in authors:
        return "user"
    if "llm" in authors or planner == "llm":
        return "llm"
    return "offline"
