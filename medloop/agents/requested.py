"""Reproductions a reviewer asked for (`POST /api/v1/claims/{id}/request-reproduction`, or
the button in the review queue), run by `medloop claims reproduce`.

The claim's hypothesis gives both arms: its control configuration and its treatment
configuration, re-run on seeds no earlier run of the campaign used (agents/seeds.py,
"requested"). The paired comparison is recomputed on the host exactly as for the agent's
own reproduction; the runs and the statistic become `reproduction` evidence on the claim.
The tier follows the agent's rule: a `supported` claim becomes `reproduced` when the new
estimate agrees with the original (same sign, inside its CI) and `inconclusive` when it
does not. A claim in any other tier only gains the evidence: moving it is a reviewer's
decision. The request is then closed and the outcome audited.

Running a request again after a crash repeats nothing: trial ids are deterministic (the
finished ones are reused), the evidence is attached once, and the tier moves once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from medloop.agents.seeds import requested_seeds
from medloop.agents.services import CampaignServices
from medloop.core.accounts import ReproductionRequest
from medloop.core.errors import ConflictError
from medloop.core.records import Evidence, Hypothesis, Trial
from medloop.core.specs import CampaignSpec, make_config
from medloop.core.store import Store
from medloop.engine.analysis import arm_data, compare_arms, pooled_estimate, reproduction_agrees
from medloop.engine.base import TrialRequest, TrialService, trial_id_for

Outcome = Literal["agreed", "disagreed", "failed"]


class RequestOutcome(BaseModel):
    request_id: str
    claim_id: str
    outcome: Outcome
    estimate: float | None
    ci: tuple[float, float] | None
    seeds: list[int]
    tier_before: str
    tier_after: str
    trials: list[str]


def _arms(hyp: Hypothesis, store: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not hyp.control_trials or not hyp.treatment_trials:
        raise ConflictError(
            f"hypothesis {hyp.id} has no control and treatment runs to repeat",
            hint="only claims a campaign tested can be reproduced",
        )
    control = store.trials.get(hyp.control_trials[0]).spec.config.model_dump()
    treatment = store.trials.get(hyp.treatment_trials[0]).spec.config.model_dump()
    return control, treatment


def _design(
    services: CampaignServices,
    trials: TrialService,
    spec: CampaignSpec,
    hyp: Hypothesis,
    seeds: list[int],
) -> tuple[list[str], list[str]]:
    control_cfg, treat_cfg = _arms(hyp, services.store)
    control: list[str] = []
    treatment: list[str] = []
    for seed in seeds:
        for cfg, bucket in ((control_cfg, control), (treat_cfg, treatment)):
            tspec = trials.spec_for(make_config(spec.task, cfg), seed, max_seconds=spec.sandbox.timeout)
            tid = trial_id_for(hyp.campaign_id, tspec)
            services.store.trials.put(  # insert-or-ignore: a re-run keeps finished trials
                Trial(
                    id=tid,
                    campaign_id=hyp.campaign_id,
                    hypothesis_id=hyp.id,
                    arm="reproduction",
                    spec=tspec,
                    spec_hash=tspec.spec_hash(),
                )
            )
            bucket.append(tid)
    return control, treatment


def run_request(
    services: CampaignServices,
    request_id: str,
    *,
    on_trial: Callable[[Trial], None] | None = None,
) -> RequestOutcome:
    """Run one open reproduction request to its end; returns what it found."""
    store = services.store
    request = store.reviews.get(request_id)
    if request.status != "open":
        raise ConflictError(f"reproduction request {request_id} is {request.status}, not open")
    claim = store.claims.get(request.claim_id)
    if claim.hypothesis_id is None or claim.campaign_id is None:
        raise ConflictError(
            f"claim {claim.id} did not come from a campaign's hypothesis (imported or proposed by a tool)",
            hint="there are no runs to repeat; withdraw the request",
        )
    hyp = store.cycles.get_hypothesis(claim.hypothesis_id)
    campaign = store.campaigns.get(hyp.campaign_id)
    spec = campaign.spec
    index = _request_index(store, campaign.id, request)
    policy = spec.validation
    seeds = requested_seeds(campaign.id, index, policy.reproduction_seeds or policy.seeds_per_arm)
    trials = services.make_trials(spec, campaign.id)
    try:
        control, treatment = _design(services, trials, spec, hyp, seeds)
        trials.run(
            campaign.id,
            [
                TrialRequest(
                    trial_id=t, hypothesis_id=hyp.id, arm="reproduction", spec=store.trials.get(t).spec
                )
                for t in control + treatment
            ],
            on_trial=on_trial,
        )
    finally:
        trials.close()
    c_arm = arm_data([store.trials.get(t) for t in control], spec.objective)
    t_arm = arm_data([store.trials.get(t) for t in treatment], spec.objective)
    comparison = compare_arms(c_arm, t_arm, policy, seed=index)
    outcome: Outcome
    detail: dict[str, Any]
    if comparison is None or "estimate" not in hyp.analysis:
        outcome, detail = "failed", {"note": "the reproduction runs did not finish"}
    else:
        pooled = pooled_estimate(
            store, hyp.control_trials + control, hyp.treatment_trials + treatment, spec.objective, policy
        )
        agrees = pooled is not None and reproduction_agrees(hyp.analysis, comparison.estimate, pooled)
        outcome = "agreed" if agrees else "disagreed"
        detail = {**comparison.model_dump(exclude={"cases"}), "seeds": t_arm.seeds, "pooled_estimate": pooled}
    detail = {**detail, "outcome": outcome, "request": request.id, "requested_by": request.actor}
    tier_before = store.claims.get(claim.id).tier
    if outcome != "failed":
        _attach(services, claim.id, request, control, treatment, detail)
        _move_tier(services, claim.id, request, outcome)
    tier_after = store.claims.get(claim.id).tier
    result = RequestOutcome(
        request_id=request.id,
        claim_id=claim.id,
        outcome=outcome,
        estimate=comparison.estimate if comparison else None,
        ci=(comparison.ci_low, comparison.ci_high) if comparison else None,
        seeds=seeds,
        tier_before=tier_before,
        tier_after=tier_after,
        trials=control + treatment,
    )
    if outcome != "failed":  # a failed run (budget, infrastructure) leaves the request open
        with store.transaction():
            store.reviews.close(request.id, "done")
            store.audit.append(
                services.actor,
                "claim.reproduction_run",
                "claim",
                claim.id,
                result.model_dump(mode="json", exclude={"trials"}),
            )
    return result


def _request_index(store: Store, campaign_id: str, request: ReproductionRequest) -> int:
    """The request's position among all requests on this campaign's claims (by creation),
    so each gets its own block of fresh seeds and a re-run gets the same one."""
    ordered = [r.id for r in store.reviews.list() if store.claims.get(r.claim_id).campaign_id == campaign_id]
    return ordered.index(request.id)


def _attach(
    services: CampaignServices,
    claim_id: str,
    request: ReproductionRequest,
    control: list[str],
    treatment: list[str],
    detail: dict[str, Any],
) -> None:
    if any(e.ref_id == request.id for e in services.store.evidence.list(claim_id)):
        return  # attached before a crash
    evidence = [
        Evidence(
            claim_id=claim_id,
            kind="trial",
            ref_id=t.id,
            role="reproduction",
            detail={
                "seed": t.spec.seed,
                "spec_hash": t.spec_hash,
                "status": t.status,
                "arm": "control" if t.id in control else "treatment",
                "request": request.id,
            },
        )
        for t in (services.store.trials.get(i) for i in control + treatment)
    ]
    evidence.append(
        Evidence(claim_id=claim_id, kind="statistic", ref_id=request.id, role="reproduction", detail=detail)
    )
    services.knowledge.add_evidence(claim_id, evidence, actor=services.actor)


def _move_tier(
    services: CampaignServices, claim_id: str, request: ReproductionRequest, outcome: Outcome
) -> None:
    if services.store.claims.get(claim_id).tier != "supported":
        return
    services.knowledge.transition(
        claim_id,
        "reproduced" if outcome == "agreed" else "inconclusive",
        actor=services.actor,
        role="agent",
        reason=f"reproduction requested by {request.actor} ({request.id}) {outcome}",
    )
