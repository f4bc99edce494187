"""Nodes that end a cycle or the campaign: reflect (stop rules, budgets, pause) and
finalize (the test split, touched once)."""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from medloop.agents.node_base import NodeBase
from medloop.agents.state import CampaignState
from medloop.core.errors import NotFoundError
from medloop.core.specs import make_config
from medloop.tools.analysis import arm_data, compare_arms
from medloop.tools.base import trial_id_for


class ClosingNodes(NodeBase):
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
