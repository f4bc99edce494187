"""Shared plumbing of the campaign nodes: services, events, per-campaign trial services."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from medloop.agents.base import HistoryRow, PlanningContext
from medloop.agents.budget import final_reserve_runs
from medloop.agents.services import CampaignServices, EventCallback
from medloop.agents.space import config_key
from medloop.agents.state import CampaignState
from medloop.core.records import Campaign, Hypothesis, Trial
from medloop.engine.base import PreparedDataset, TrialService
from medloop.knowledge.base import RetrievalQuery, RetrievedClaim

NodeFn = Callable[[CampaignState], dict[str, Any]]


class NodeBase:
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
        return self.s.store.campaigns.get(state["campaign_id"])

    def trials(self, campaign: Campaign) -> TrialService:
        if campaign.id not in self._trials:
            self._trials[campaign.id] = self.s.make_trials(campaign.spec, campaign.id)
        return self._trials[campaign.id]

    def dataset(self, campaign: Campaign) -> PreparedDataset:
        return self.trials(campaign).dataset

    def close(self) -> None:
        for service in self._trials.values():
            service.close()
        self._trials.clear()

    def hypotheses(self, ids: list[str]) -> list[Hypothesis]:
        return [self.s.store.cycles.get_hypothesis(h) for h in ids]

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

    # ------------------------------------------------------------ helpers

    def campaign_trials(self, campaign_id: str) -> list[Trial]:
        return self.s.store.trials.list(campaign_id=campaign_id, limit=100_000).items

    def planning_context(self, campaign: Campaign, state: CampaignState, n: int) -> PlanningContext:
        """What a planner or proposer sees: the incumbent, history, retrieved claims and
        every finished run of the campaign (all arms, all seeds, screening runs)."""
        retrieved_ids = set(state.get("retrieved", []))
        trials = self.campaign_trials(campaign.id)
        return PlanningContext(
            campaign_id=campaign.id,
            cycle=state["cycle"],
            spec=campaign.spec,
            incumbent=campaign.incumbent,
            incumbent_objective=campaign.incumbent_objective,
            history=self.history(campaign.id),
            retrieved=[r for r in self.retrieval(campaign) if r.claim.id in retrieved_ids],
            tested_configs=[t.spec.config.model_dump(mode="json") for t in trials],
            measured=self.measured(trials),
            runs=[
                (t.spec.config.model_dump(mode="json"), t.spec.seed, t.result.objective)
                for t in trials
                if t.status == "succeeded" and t.result is not None and t.result.objective is not None
            ],
            n=n,
        )

    def history(self, campaign_id: str) -> list[HistoryRow]:
        rows = []
        for h in self.s.store.cycles.hypotheses(campaign_id):
            if h.verdict == "pending":
                continue
            rows.append(
                HistoryRow(
                    cycle=h.cycle,
                    changes={c.factor: c.to_value for c in h.changes},
                    before={c.factor: c.from_value for c in h.changes},
                    verdict=h.verdict,
                    reproduction=h.reproduction,
                    estimate=h.analysis.get("estimate"),
                    p_adjusted=h.analysis.get("p_adjusted"),
                )
            )
        return rows

    @staticmethod
    def measured(trials: list[Trial]) -> list[tuple[dict[str, Any], float | None]]:
        """Mean eval objective per distinct config over this campaign's explore runs."""
        by_config: dict[str, tuple[dict[str, Any], list[float]]] = {}
        for t in trials:
            if t.arm == "reproduction" or t.result is None or t.result.objective is None:
                continue
            cfg = t.spec.config.model_dump(mode="json")
            by_config.setdefault(config_key(cfg), (cfg, []))[1].append(t.result.objective)
        return [(cfg, sum(v) / len(v)) for cfg, v in by_config.values()]

    def affordable_hypotheses(self, campaign: Campaign) -> int:
        """How many hypotheses the trial budget still pays for: a treatment arm each, with
        room kept for this cycle's reproduction and the final fresh-seed runs."""
        budget = campaign.spec.budget.max_trials
        if budget is None:
            return 10**6
        used = len(self.s.store.trials.list(campaign_id=campaign.id, limit=100_000).items)
        policy = campaign.spec.validation
        control = 0 if used else policy.seeds_per_arm
        reserve = 2 * policy.reproduction_seeds + final_reserve_runs(campaign)
        return max(0, (budget - used - control - reserve) // policy.seeds_per_arm)
