"""Nodes that end a cycle or the campaign: reflect (stop rules, budgets, pause) and
finalize (the test split, touched once)."""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from medloop.agents.budget import incomplete_reason, reserve_stop_reason
from medloop.agents.node_base import NodeBase
from medloop.agents.requested import run_request
from medloop.agents.seeds import final_seeds
from medloop.agents.space import config_key
from medloop.agents.state import CampaignState
from medloop.core.errors import MedloopError
from medloop.core.records import Campaign, Trial
from medloop.core.specs import make_config
from medloop.engine.analysis import arm_data, compare_arms, split_breakdown
from medloop.engine.base import TrialRequest, trial_id_for


class ClosingNodes(NodeBase):
    def reflect(self, state: CampaignState) -> dict[str, Any]:
        campaign = self.campaign(state)
        budget = campaign.spec.budget
        cycle = state["cycle"]
        no_gain = 0 if state.get("incumbent_changed") else int(state.get("no_gain_cycles", 0)) + 1
        if campaign.spec.planner.screening and not state.get("hypothesis_ids"):
            # A screening-only cycle certified nothing: it is search, not a failed step
            # (screening campaigns converge by patience_trials, counted in trials).
            no_gain = int(state.get("no_gain_cycles", 0))
        self._run_requests(campaign.id, cycle)
        hyps = self.s.store.cycles.hypotheses(campaign.id, cycle)
        self.s.store.cycles.record(
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
        trials = self.s.store.trials.list(campaign_id=campaign.id, limit=100_000).items
        n_trials = len(trials)
        screened = self.best_screened(campaign, trials)
        best, at_best = state.get("best_screened"), int(state.get("trials_at_best", 0))
        sign = 1.0 if campaign.spec.objective.direction == "maximize" else -1.0
        if screened is not None and (best is None or sign * screened["objective"] > sign * best):
            best, at_best = screened["objective"], n_trials
        since_best = n_trials - at_best
        if reason:
            pass
        elif campaign.status == "stopping":
            reason = "stopped by user"
        elif cycle >= budget.max_cycles:
            reason = f"reached max_cycles={budget.max_cycles}"
        elif budget.patience_trials is not None and since_best >= budget.patience_trials:
            reason = (
                f"converged: no better screened value in {since_best} trials "
                f"(patience_trials {budget.patience_trials})"
            )
        elif budget.patience_trials is None and no_gain >= budget.patience:
            reason = f"no improvement in {no_gain} cycles (patience {budget.patience})"
        elif budget.max_trials is not None and n_trials >= budget.max_trials:
            reason = f"trial budget spent ({n_trials}/{budget.max_trials})"
        elif budget.max_wall is not None and state.get("active_s", 0.0) >= budget.max_wall:
            reason = f"wall-time budget spent ({state.get('active_s', 0.0):.0f}s)"
        else:  # never start a cycle that would leave the final test-split runs no time
            reason = reserve_stop_reason(
                campaign, float(state.get("active_s", 0.0)), trials, self.s.store.cycles.list(campaign.id)
            )
        current = self.s.store.campaigns.get(campaign.id)
        if screened is not None and current.summary.get("best_screened") != screened:
            # What the search believes beside what the campaign claims (the incumbent).
            self.s.store.campaigns.update(campaign.id, summary={**current.summary, "best_screened": screened})
        self.emit(
            "cycle_end",
            cycle=cycle,
            incumbent_objective=campaign.incumbent_objective,
            best_screened=None if screened is None else screened["objective"],
            trials=n_trials,
            stop=reason,
        )
        progress = {"no_gain_cycles": no_gain, "best_screened": best, "trials_at_best": at_best}
        if reason:
            return {"stop_reason": reason, **progress}
        if campaign.status == "paused":
            interrupt({"kind": "paused", "cycle": cycle})
        return {
            "cycle": cycle + 1,
            "phase": "explore",
            "hypothesis_ids": [],
            "screened": [],
            "reproduce_ids": [],
            "new_claim_ids": [],
            "incumbent_changed": False,
            **progress,
        }

    def _run_requests(self, campaign_id: str, cycle: int) -> None:
        """Reproductions reviewers asked for on this campaign's claims run between cycles,
        charged to the campaign (agents/requested.py). One that cannot run to its end
        stays open for `medloop claims reproduce`. Idempotent, so a re-run of this node
        after a crash repeats nothing."""
        store = self.s.store
        for req in store.reviews.list(status="open"):
            if store.claims.get(req.claim_id).campaign_id != campaign_id:
                continue
            try:
                result = run_request(self.s, req.id)
            except MedloopError as exc:
                self.emit(
                    "reproduction_request", cycle=cycle, request=req.id, claim=req.claim_id, outcome=str(exc)
                )
                continue
            self.emit(
                "reproduction_request",
                cycle=cycle,
                request=req.id,
                claim=req.claim_id,
                outcome=f"{result.outcome}, claim {result.tier_before} -> {result.tier_after}",
            )

    def finalize(self, state: CampaignState) -> dict[str, Any]:
        """Touch the test split once: baseline vs final incumbent, retrained on fresh seeds.

        The incumbent was selected on its explore runs' evaluation scores; a seed's luck
        lifts a run's test cases too, so reusing those runs would inflate the reported
        gain. Both arms are therefore run again with seeds no decision has seen."""
        campaign = self.campaign(state)
        service = self.trials(campaign)
        seeds = final_seeds(campaign.id, campaign.spec.validation.seeds_per_arm)
        summary: dict[str, Any] = {
            "stop_reason": state.get("stop_reason"),
            "cycles": state["cycle"],
            "active_s": state.get("active_s", 0.0),
            "final_seeds": seeds,
        }
        plan: dict[str, list[TrialRequest]] = {}
        for name, config in (("baseline", campaign.baseline), ("incumbent", campaign.incumbent)):
            plan[name] = []
            for seed in seeds:
                spec = service.spec_for(make_config(campaign.spec.task, dict(config)), seed)
                plan[name].append(TrialRequest(trial_id_for(campaign.id, spec), None, "final", spec))
        requests = list({r.trial_id: r for reqs in plan.values() for r in reqs}.values())
        self.emit("execute", cycle=state["cycle"], phase="final", trials=len(requests))
        service.run(
            campaign.id,
            requests,
            on_trial=lambda t: self.emit(
                "trial",
                cycle=state["cycle"],
                id=t.id,
                status=t.status,
                seed=t.spec.seed,
                objective=t.result.objective if t.result else None,
                error=t.result.error if t.result else None,
            ),
        )
        test_arms = {}
        scored: set[str] = set()
        for name, reqs in plan.items():
            trials = []
            for req in reqs:
                trial = self.s.store.trials.get(req.trial_id)
                if service.evaluate_test(trial) is not None:
                    trials.append(self.s.store.trials.get(req.trial_id))
                    scored.add(req.trial_id)
            test_arms[name] = arm_data(trials, campaign.spec.objective, split="test")
        # With a test split, a final run without a test result leaves the campaign
        # incomplete (with the reason), never `completed` with a silent gap.
        missing = (
            incomplete_reason([self.s.store.trials.get(r.trial_id) for r in requests], scored)
            if service.dataset.manifest.test_cases
            else None
        )
        if missing:
            summary["incomplete"] = missing
        summary["test"] = {
            name: {"objective": a.objective, "trials": a.usable} for name, a in test_arms.items()
        }
        summary["test_report"] = {
            name: split_breakdown([self.s.store.trials.get(t) for t in test_arms[name].usable], "test")
            for name in test_arms
        }
        same = campaign.baseline == campaign.incumbent
        if not same and test_arms["baseline"].per_case and test_arms["incumbent"].per_case:
            comp = compare_arms(test_arms["baseline"], test_arms["incumbent"], campaign.spec.validation)
            if comp is not None:
                summary["test"]["effect"] = comp.model_dump(exclude={"cases"})
        status = "incomplete" if missing else "completed"
        first_time = campaign.status != status
        self.s.store.campaigns.update(campaign.id, status=status, summary={**campaign.summary, **summary})
        if first_time:  # a re-run after a crash must not audit the completion twice
            action = "campaign.incomplete" if missing else "campaign.complete"
            self.s.store.audit.append(self.s.actor, action, "campaign", campaign.id, summary)
        self.emit("final", summary=summary)
        return {}

    # ------------------------------------------------------------ helpers

    def best_screened(self, campaign: Campaign, trials: list[Trial]) -> dict[str, Any] | None:
        """The config with the best mean objective over its runs so far (any arm, any
        seed): the search's belief, shown beside the certified incumbent."""
        sign = 1.0 if campaign.spec.objective.direction == "maximize" else -1.0
        scored = [(cfg, v) for cfg, v in self.measured(trials) if v is not None]
        if not scored:
            return None
        cfg, value = max(scored, key=lambda cv: (sign * cv[1], config_key(cv[0])))
        runs = sum(
            1
            for t in trials
            if t.result is not None
            and t.result.objective is not None
            and config_key(t.spec.config.model_dump(mode="json")) == config_key(cfg)
        )
        space = campaign.spec.search_space
        return {"objective": value, "config": {k: v for k, v in cfg.items() if k in space}, "runs": runs}
