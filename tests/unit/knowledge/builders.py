"""Builders for knowledge tests: claims with effects, campaigns with owners, trials."""

from __future__ import annotations

from typing import Any

from medloop.core.records import (
    Campaign,
    Claim,
    ClaimContext,
    DatasetManifest,
    Effect,
    Evidence,
    FactorChange,
    Trial,
    TrialSpec,
)
from medloop.core.specs import SegConfig, parse_campaign_spec
from medloop.core.store import SqlStore

FP = {"spacing_z": 1.0, "n_cases": 48.0, "intensity_mean": 0.3}


def effect(estimate: float, *, half: float = 0.01, p: float = 0.001, metric: str = "dice") -> Effect:
    return Effect(
        metric=metric,
        direction="maximize",
        estimate=estimate,
        ci_low=estimate - half,
        ci_high=estimate + half,
        p_value=p,
        p_adjusted=p,
        test="wilcoxon",
        n_cases=12,
        n_seeds=3,
        min_effect=0.0,
        alpha=0.05,
    )


def make_claim(
    cid: str,
    *,
    factor: str = "loss",
    frm: Any = "dice",
    to: Any = "dicece",
    estimate: float | None = 0.03,
    p: float = 0.001,
    tier: str = "supported",
    campaign: str | None = None,
    dataset: str = "Phantom",
    checksum: str = "c" * 64,
    fingerprint: dict[str, float] | None = None,
    outcome: str = "dice",
    statement: str | None = None,
    author: str = "agent",
) -> Claim:
    return Claim(
        id=cid,
        campaign_id=campaign,
        hypothesis_id=None,
        statement=statement or f"Changing {factor} from {frm} to {to} changes {outcome} on {dataset}",
        changes=[FactorChange(factor=factor, from_value=frm, to_value=to)],
        context=ClaimContext(
            task="segmentation",
            dataset=dataset,
            dataset_checksum=checksum,
            fingerprint=FP if fingerprint is None else fingerprint,
        ),
        outcome=outcome,
        effect=None if estimate is None else effect(estimate, p=p, metric=outcome),
        tier=tier,  # type: ignore[arg-type]
        author=author,
    )


def add_campaign(store: SqlStore, cid: str, owner: str) -> Campaign:
    spec = parse_campaign_spec(
        {"name": cid, "goal": "g", "dataset": "/nonexistent", "search_space": {"loss": ["dice", "dicece"]}},
        source="test",
        check_dataset=False,
    )
    campaign = Campaign(id=cid, name=cid, spec=spec, owner=owner)
    store.campaigns.add(campaign)
    return campaign


def add_trial(store: SqlStore, tid: str, campaign: str, *, seed: int = 0, arm: str = "treatment") -> Trial:
    manifest = DatasetManifest(
        name="Phantom",
        checksum="c" * 64,
        channel_names={"0": "CT"},
        labels={"background": 0, "a": 1},
        train_cases=["a"],
        eval_cases=["b"],
    )
    spec = TrialSpec(dataset=manifest, config=SegConfig(loss="dicece"), seed=seed)
    trial = Trial(
        id=tid, campaign_id=campaign, hypothesis_id=None, arm=arm, spec=spec, spec_hash=spec.spec_hash()
    )  # type: ignore[arg-type]
    store.trials.put(trial)
    return trial


def trial_evidence(claim_id: str, *trials: str, role: str = "treatment") -> list[Evidence]:
    return [Evidence(claim_id=claim_id, kind="trial", ref_id=t, role=role) for t in trials]
