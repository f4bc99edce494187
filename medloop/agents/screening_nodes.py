"""Screening: finding separated from certifying (`planner.screening: k`).

A cycle first *screens*: the proposer (Optuna TPE, planners/tpe.py, fitted to every run
of the campaign: all arms, all seeds, earlier screening runs) suggests k untested configs,
and each is trained once, with the campaign's first explore seed. A screening run is an
observation for the model and a line on the dashboard ("best screened"); it never makes a
claim and never moves the incumbent.

Then *promotion* (the `propose` node): the best config by the mean of its runs so far is
certified against the certified incumbent only when that mean beats the incumbent's by the
pre-registered minimum effect (a change smaller than that could not move the incumbent
even if certified, so a certification below the margin is spent in vain), and the pair
(incumbent, candidate) was not certified before. Only the best is considered: it is the
only one that could become the answer, and certification is the expensive part (a few
seeds per arm, then fresh seeds of both arms to reproduce).

Certification is the existing paired, sequential test. The candidate's screening run is
its first explore seed, so it is pooled as the treatment arm's first seed (same spec, same
trial id: reused, not re-run). That seed selected the candidate, so it is optimistic; the
`reproduced` tier rests on the reproduction's fresh seeds of both arms, which no
selection has seen (bench/research_efficiency.py measures the family-wise false
`reproduced` rate on null tables with screening on).

A certification still undecided after its in-cycle looks is *parked*, not closed, when
the policy plans deferred looks (`validation.deferred_looks`): when the same candidate is
again the best against the same incumbent (its mean over all its runs still beats the
incumbent by the margin), it resumes at its next planned look with seeds_per_arm more
seeds per arm. The levels of all stages + deferred_looks looks are fixed by the alpha
spending before the first look, so resuming later spends no alpha the plan did not
reserve; the search decides *when* a look is worth its seeds, not whether a look counts.

Budget: screening never eats the runs one more certification and the final test-split
runs need; when the budget left cannot pay a certification, the campaign ends, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medloop.agents.budget import final_reserve_runs
from medloop.agents.node_base import NodeBase
from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.seeds import explore_seeds
from medloop.agents.space import config_key
from medloop.agents.state import CampaignState
from medloop.core.ids import content_id
from medloop.core.records import Campaign, FactorChange, Hypothesis, Trial
from medloop.core.specs import CampaignSpec, make_config
from medloop.engine.analysis import arm_data
from medloop.engine.base import TrialRequest, trial_id_for


@dataclass(frozen=True)
class Promotion:
    config: dict[str, Any]
    screened: float  # mean objective of its runs so far
    gain: float  # over the certified incumbent, in the objective's direction


def promotion_candidate(
    measured: list[tuple[dict[str, Any], float | None]],
    *,
    incumbent: dict[str, Any],
    incumbent_objective: float | None,
    maximize: bool,
    margin: float,
    certified: set[tuple[str, str]],
) -> Promotion | None:
    """The config to certify next, or None: the best measured config (ties by content)
    other than the incumbent and not yet certified against it, if its mean beats the
    incumbent's objective by at least `margin` (and by more than nothing)."""
    if incumbent_objective is None:
        return None
    sign = 1.0 if maximize else -1.0
    inc = config_key(incumbent)
    pool = [
        (cfg, v)
        for cfg, v in measured
        if v is not None and config_key(cfg) != inc and (inc, config_key(cfg)) not in certified
    ]
    if not pool:
        return None
    cfg, value = max(pool, key=lambda cv: (sign * float(cv[1] or 0.0), config_key(cv[0])))
    assert value is not None
    gain = sign * (value - incumbent_objective)
    if gain <= 0 or gain < margin:
        return None
    return Promotion(config=cfg, screened=value, gain=gain)


def planned_looks(spec: CampaignSpec) -> int:
    """Looks of the sequential test the alpha spending plans for: in-cycle and deferred."""
    return spec.validation.stages + spec.validation.deferred_looks


def resume_look(hyp: Hypothesis) -> int:
    """The 1-based look a resumed certification takes first; 1 for a fresh one."""
    resume = hyp.analysis.get("resume") if isinstance(hyp.analysis, dict) else None
    look = resume.get("look") if isinstance(resume, dict) else None
    return look if isinstance(look, int) and look >= 1 else 1


def certification_state(
    hyps: list[tuple[Hypothesis, tuple[str, str]]], looks: int
) -> tuple[set[tuple[str, str]], dict[tuple[str, str], tuple[str, int]]]:
    """(closed pairs, parked pairs) from a campaign's certifications, each given with its
    (incumbent config key, candidate config key) pair, in the order they ran. A pair is
    parked, as (latest hypothesis id, looks it has taken), while every certification of
    it ended inconclusive and the last took fewer than `looks` looks; anything else
    (supported, refuted, failed, cancelled, interrupted, or every look spent) closes it."""
    closed: set[tuple[str, str]] = set()
    parked: dict[tuple[str, str], tuple[str, int]] = {}
    for hyp, pair in hyps:
        if pair in closed:
            continue
        taken = hyp.analysis.get("looks", {}).get("look") if isinstance(hyp.analysis, dict) else None
        if hyp.verdict == "inconclusive" and isinstance(taken, int) and 1 <= taken < looks:
            parked[pair] = (hyp.id, taken)
        else:
            closed.add(pair)
            parked.pop(pair, None)
    return closed, parked


def certification_cost(spec: CampaignSpec) -> int:
    """Runs one certification needs beyond the screening seed to decide at its first look
    and be reproduced: the treatment's other explore seeds and the reproduction's fresh
    seeds of both arms. A later sequential look is paid only while the budget lasts
    (DecisionNodes._spare_trials); reserving every look for every certification left a
    3-look campaign's last 20 runs unspent."""
    v = spec.validation
    return (v.seeds_per_arm - 1) + 2 * v.reproduction_seeds


def resumption_cost(spec: CampaignSpec) -> int:
    """Runs a parked certification needs to take its next look and be reproduced:
    seeds_per_arm new seeds of both arms and the reproduction's fresh seeds."""
    v = spec.validation
    return 2 * v.seeds_per_arm + 2 * v.reproduction_seeds


class ScreeningNodes(NodeBase):
    def _budget_left(self, campaign: Campaign, used: int) -> int:
        budget = campaign.spec.budget.max_trials
        return 10**9 if budget is None else budget - used - final_reserve_runs(campaign)

    def _run(self, campaign: Campaign, cycle: int, items: list[tuple[dict[str, Any], int, str]]) -> None:
        """Train (config, seed, arm) runs with no hypothesis; finished ones are reused."""
        service = self.trials(campaign)
        requests = []
        for config, seed, arm in items:
            spec = service.spec_for(
                make_config(campaign.spec.task, config), seed, max_seconds=campaign.spec.sandbox.timeout
            )
            tid = trial_id_for(campaign.id, spec)
            trial = Trial(
                id=tid,
                campaign_id=campaign.id,
                hypothesis_id=None,
                arm=arm,  # type: ignore[arg-type]
                spec=spec,
                spec_hash=spec.spec_hash(),
            )
            self.s.store.trials.put(trial)
            requests.append(TrialRequest(trial_id=tid, hypothesis_id=None, arm=trial.arm, spec=spec))
        if not requests:
            return
        self.emit("execute", cycle=cycle, phase="screen", trials=len(requests))
        service.run(
            campaign.id,
            requests,
            on_trial=lambda t: self.emit(
                "trial",
                cycle=cycle,
                id=t.id,
                status=t.status,
                seed=t.spec.seed,
                objective=t.result.objective if t.result else None,
                error=t.result.error if t.result else None,
            ),
        )

    def screen(self, state: CampaignState) -> dict[str, Any]:
        """Measure the baseline (first cycle), then train the proposer's k configs once each."""
        campaign = self.campaign(state)
        spec = campaign.spec
        k = spec.planner.screening
        if not k:
            return {}
        cycle = state["cycle"]
        seeds = explore_seeds(campaign.id, spec.validation.seeds_per_arm)
        if campaign.baseline_objective is None:
            # The certified starting point: the baseline on every explore seed (these runs
            # are the control arm of the first certification, reused by trial id).
            self._run(campaign, cycle, [(campaign.incumbent, s, "baseline") for s in seeds])
            base_trials = [
                self.s.store.trials.get(
                    trial_id_for(campaign.id, self._spec(campaign, campaign.incumbent, s))
                )
                for s in seeds
            ]
            value = arm_data(base_trials, spec.objective).objective
            if value is not None:
                campaign = self.s.store.campaigns.update(
                    campaign.id, baseline_objective=value, incumbent_objective=value
                )
        used = len(self.campaign_trials(campaign.id))
        k = min(k, self._budget_left(campaign, used) - certification_cost(spec))
        if k <= 0:
            return {"screened": []}
        context = self.planning_context(campaign, state, k)
        planner = self.s.make_planner(spec)
        screener = planner if isinstance(planner, OfflinePlanner) else OfflinePlanner()
        runs = [(c, seeds[0]) for c in screener.screen(context, k)]
        if len(runs) < k:  # every config was screened once: more seeds for the best ones
            runs += self._rescreen(campaign, seeds, k - len(runs))
        self._run(campaign, cycle, [(c, seed, "screen") for c, seed in runs])
        configs = [c for c, _ in runs]
        values = []
        for c, seed in runs:
            trial = self.s.store.trials.get(trial_id_for(campaign.id, self._spec(campaign, c, seed)))
            values.append(trial.result.objective if trial.result else None)
        space = spec.search_space
        self.emit(
            "screened",
            cycle=cycle,
            items=[
                {"config": {f: v for f, v in c.items() if f in space}, "objective": val}
                for c, val in zip(configs, values, strict=True)
            ],
            incumbent_objective=campaign.incumbent_objective,
        )
        return {"screened": [config_key(c) for c in configs]}

    def _rescreen(self, campaign: Campaign, seeds: list[int], n: int) -> list[tuple[dict[str, Any], int]]:
        """When the space has no untested config left: the next explore seed of the best
        configs by mean (a finite space is refined, not abandoned), up to seeds_per_arm
        seeds each; the incumbent is left out (its seeds are the controls)."""
        sign = 1.0 if campaign.spec.objective.direction == "maximize" else -1.0
        trials = self.campaign_trials(campaign.id)
        have: dict[str, set[int]] = {}
        for t in trials:
            have.setdefault(config_key(t.spec.config.model_dump(mode="json")), set()).add(t.spec.seed)
        inc = config_key(make_config(campaign.spec.task, campaign.incumbent).model_dump(mode="json"))
        ranked = sorted(
            (cv for cv in self.measured(trials) if cv[1] is not None and config_key(cv[0]) != inc),
            key=lambda cv: (-sign * float(cv[1] or 0.0), config_key(cv[0])),
        )
        out = []
        for cfg, _ in ranked:
            missing = [s for s in seeds if s not in have.get(config_key(cfg), set())]
            if missing:
                out.append((cfg, missing[0]))
            if len(out) == n:
                break
        return out

    def _spec(self, campaign: Campaign, config: dict[str, Any], seed: int) -> Any:
        return self.trials(campaign).spec_for(
            make_config(campaign.spec.task, config), seed, max_seconds=campaign.spec.sandbox.timeout
        )

    def _certifications(
        self, campaign: Campaign
    ) -> tuple[set[tuple[str, str]], dict[tuple[str, str], tuple[str, int]]]:
        """(incumbent config, candidate config) pairs this campaign certified: closed ones,
        and parked ones (undecided, with deferred looks left) as (hypothesis id, looks)."""
        done = []
        hyps = sorted(self.s.store.cycles.hypotheses(campaign.id), key=lambda h: (h.cycle, h.id))
        for h in hyps:
            if h.control_trials and h.treatment_trials:
                control = self.s.store.trials.get(h.control_trials[0]).spec.config.model_dump(mode="json")
                treat = self.s.store.trials.get(h.treatment_trials[0]).spec.config.model_dump(mode="json")
                done.append((h, (config_key(control), config_key(treat))))
        return certification_state(done, planned_looks(campaign.spec))

    def promote_screened(self, campaign: Campaign, state: CampaignState) -> dict[str, Any]:
        """The `propose` step with screening on: at most one hypothesis, the promoted config."""
        spec = campaign.spec
        cycle = state["cycle"]
        trials = self.campaign_trials(campaign.id)
        incumbent = make_config(spec.task, campaign.incumbent).model_dump(mode="json")
        closed, parked = self._certifications(campaign)
        best = promotion_candidate(
            self.measured(trials),
            incumbent=incumbent,
            incumbent_objective=campaign.incumbent_objective,
            maximize=spec.objective.direction == "maximize",
            margin=spec.validation.min_effect,
            certified=closed,
        )
        resumed = parked.get((config_key(incumbent), config_key(best.config))) if best else None
        cost = certification_cost(spec) if resumed is None else resumption_cost(spec)
        left = self._budget_left(campaign, len(trials))
        affordable = left >= cost + 1
        if best is None or not affordable:
            if state.get("screened"):
                return {"hypothesis_ids": []}  # a screening cycle: the search goes on
            if not affordable:
                why = (
                    f"trial budget spent: {max(0, left)} runs left beside the final runs, fewer than "
                    f"one more screening run and a certification need ({cost + 1})"
                )
            else:
                why = "search space exhausted: every config was screened and none beats the incumbent"
            return {"hypothesis_ids": [], "stop_reason": why}
        changes = [
            FactorChange(factor=f, from_value=campaign.incumbent.get(f), to_value=best.config[f])
            for f in sorted(spec.search_space)
            if f in best.config and best.config[f] != incumbent.get(f)
        ]
        moved = ", ".join(f"{c.factor} from {c.from_value} to {c.to_value}" for c in changes)
        verb = "raises" if spec.objective.direction == "maximize" else "lowers"
        rationale = (
            f"promoted from screening: mean {best.screened:.4g} over its runs beats the certified "
            f"incumbent {campaign.incumbent_objective:.4g} by {best.gain:.4g} "
            f"(>= min_effect {spec.validation.min_effect:g})"
        )
        analysis: dict[str, Any] = {}
        if resumed is not None:
            earlier, taken = resumed
            analysis["resume"] = {"from": earlier, "look": taken + 1}
            rationale += (
                f"; resumes the undecided certification {earlier} at look {taken + 1} of "
                f"{planned_looks(spec)} (deferred)"
            )
        hyp = Hypothesis(
            id=content_id("hyp", campaign.id, cycle, [c.model_dump(mode="json") for c in changes]),
            campaign_id=campaign.id,
            cycle=cycle,
            statement=f"Changing {moved} {verb} mean {spec.objective.metric} on {spec.dataset.path.name}",
            changes=changes,
            expected_effect=(1.0 if spec.objective.direction == "maximize" else -1.0) * best.gain,
            rationale=rationale,
            source="offline",
            analysis=analysis,
        )
        self.s.store.cycles.put_hypothesis(hyp)
        self.emit(
            "hypotheses",
            cycle=cycle,
            items=[{"id": hyp.id, "statement": hyp.statement, "evidence": [], "rationale": hyp.rationale}],
        )
        return {"hypothesis_ids": [hyp.id]}
