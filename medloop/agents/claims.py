"""Turn an analysed hypothesis into a claim with evidence and provenance."""

from __future__ import annotations

from typing import Any

from medloop.core.code import CODE_FIELD_PREFIX, SHA256
from medloop.core.ids import content_id
from medloop.core.records import Campaign, Claim, ClaimContext, Effect, Evidence, Hypothesis, Trial
from medloop.core.specs import Scalar
from medloop.engine.smoke import quarantine_target


def claim_id_for(hypothesis: Hypothesis) -> str:
    return content_id("clm", hypothesis.campaign_id, hypothesis.id)


def effect_from(analysis: dict[str, Any], campaign: Campaign) -> Effect:
    policy = campaign.spec.validation
    return Effect(
        metric=campaign.spec.objective.metric,
        direction=campaign.spec.objective.direction,
        estimate=analysis["estimate"],
        ci_low=analysis["ci_low"],
        ci_high=analysis["ci_high"],
        ci_level=analysis["ci_level"],
        p_value=analysis["p_value"],
        p_adjusted=analysis["p_adjusted"],
        test=analysis["test"],
        n_cases=analysis["n_cases"],
        n_seeds=analysis["n_seeds"],
        min_effect=policy.min_effect,
        alpha=policy.alpha,
    )


def statement_for(hypothesis: Hypothesis, effect: Effect, dataset: str) -> str:
    """What was found, without the verdict: the tier changes over the claim's life (a
    reproduction, a review) and pages add the current one when they show the title."""
    change = ", ".join(f"{c.factor} {c.from_value} -> {c.to_value}" for c in hypothesis.changes)
    moved = "raised" if effect.estimate > 0 else "lowered" if effect.estimate < 0 else "did not change"
    return (
        f"On {dataset}, changing {change} {moved} mean {effect.metric} by {effect.estimate:+.4f} "
        f"(95% CI {effect.ci_low:+.4f} to {effect.ci_high:+.4f}; {effect.test} p={effect.p_value:.3g}, "
        f"Holm p={effect.p_adjusted:.3g}; {effect.n_cases} cases x {effect.n_seeds} seeds)"
    )


def build_claim(
    campaign: Campaign,
    hypothesis: Hypothesis,
    trials: list[Trial],
    *,
    fingerprint: dict[str, float],
    verdict: str,
) -> tuple[Claim, list[Evidence]]:
    effect = effect_from(hypothesis.analysis, campaign)
    manifest = trials[0].spec.dataset
    claim_id = claim_id_for(hypothesis)
    base_config: dict[str, Scalar] = {
        k: v for k, v in campaign.incumbent.items() if k not in ("task", "num_threads")
    }
    claim = Claim(
        id=claim_id,
        campaign_id=campaign.id,
        hypothesis_id=hypothesis.id,
        statement=statement_for(hypothesis, effect, manifest.name),
        changes=hypothesis.changes,
        context=ClaimContext(
            task=campaign.spec.task,
            dataset=manifest.name,
            dataset_checksum=manifest.checksum,
            fingerprint=fingerprint,
            sites=sorted(set(manifest.sites.values())),
            base_config=base_config,
        ),
        outcome=effect.metric,
        effect=effect,
        tier="proposed",
    )
    evidence = [
        Evidence(
            claim_id=claim_id,
            kind="trial",
            ref_id=t.id,
            role="control" if t.id in hypothesis.control_trials else "treatment",
            detail={
                "seed": t.spec.seed,
                "spec_hash": t.spec_hash,
                "status": t.status,
                "objective": t.result.objective if t.result else None,
            },
        )
        for t in trials
    ]
    evidence.append(
        Evidence(
            claim_id=claim_id, kind="statistic", ref_id=hypothesis.id, role="test", detail=hypothesis.analysis
        )
    )
    evidence += [
        Evidence(claim_id=claim_id, kind="claim", ref_id=cid, role="derived_from")
        for cid in hypothesis.evidence_ids
    ]
    evidence += code_evidence(claim_id, hypothesis)
    return claim, evidence


def code_evidence(claim_id: str, hypothesis: Hypothesis) -> list[Evidence]:
    """A claim about a code hypothesis names each module's hash as a source it derives
    from (graph node `code:<sha256>`): quarantining the module quarantines the claim."""
    return [
        Evidence(
            claim_id=claim_id,
            kind="source",
            ref_id=quarantine_target(str(c.to_value)),
            role="code",
            detail={
                "name": f"code module {str(c.to_value)[:12]}",
                "point": c.factor.removeprefix("code_"),
                "sha256": str(c.to_value),
            },
        )
        for c in hypothesis.changes
        if c.factor.startswith(CODE_FIELD_PREFIX) and isinstance(c.to_value, str) and SHA256.match(c.to_value)
    ]


def reproduction_evidence(claim_id: str, hypothesis: Hypothesis, trials: list[Trial]) -> list[Evidence]:
    out = [
        Evidence(
            claim_id=claim_id,
            kind="trial",
            ref_id=t.id,
            role="reproduction",
            detail={
                "seed": t.spec.seed,
                "spec_hash": t.spec_hash,
                "status": t.status,
                "arm": "control" if t.id in hypothesis.reproduction_control else "treatment",
            },
        )
        for t in trials
    ]
    out.append(
        Evidence(
            claim_id=claim_id,
            kind="statistic",
            ref_id=f"{hypothesis.id}:reproduction",
            role="reproduction",
            detail=hypothesis.analysis.get("reproduction", {}),
        )
    )
    return out
