"""The trial page of a classification trial shows the patient-level metrics with CIs,
the adapter's trainable parameters and every evaluation patient's probability."""

from __future__ import annotations

from medloop.core.records import DatasetManifest, Trial, TrialResult, TrialSpec
from medloop.core.specs import ClassifyConfig
from medloop.evaluation.classification import evaluate_classification_split
from tests.web.conftest import Web


def test_classification_trial_page(web: Web) -> None:
    labels = {"p1_s1": 1, "p1_s2": 1, "p2_s1": 0, "p3_s1": 1, "p4_s1": 0}
    patients = {c: c.split("_")[0] for c in labels}
    probs = {"p1_s1": 0.9, "p1_s2": 0.7, "p2_s1": 0.61, "p3_s1": 0.2, "p4_s1": 0.1}
    ev = evaluate_classification_split(probs, labels, patients, split="eval", resamples=200)
    manifest = DatasetManifest(
        name="brain",
        checksum="c",
        channel_names={"0": "T1", "1": "FLAIR"},
        labels={"stable": 0, "active": 1},
        train_cases=["a"],
        eval_cases=sorted(labels),
    )
    spec = TrialSpec(task="classification", dataset=manifest, config=ClassifyConfig(adapter="hyda"), seed=1)
    web.store.trials.put(
        Trial(
            id="trl_cls",
            campaign_id=web.campaign_id,
            hypothesis_id=None,
            arm="baseline",
            spec=spec,
            spec_hash="h",
        )
    )
    web.store.trials.set_result(
        "trl_cls",
        TrialResult(
            trial_id="trl_cls",
            spec_hash="h",
            status="succeeded",
            objective=ev.summary["auroc"],
            evaluations={"eval": ev},
            efficiency={
                "parameters": 1000,
                "trainable_parameters": 123,
                "trainable_by_part": {"hyda": 100, "head": 23},
            },
        ),
    )
    client, _ = web.login("vic")
    page = client.get("/trials/trl_cls")
    assert page.status_code == 200
    text = page.text
    assert 'id="cls-patients"' in text and 'id="cls-patients-table"' in text and 'id="cls-metrics"' in text
    assert ">123<" in text and "hyda 100" in text
    lo, hi = ev.settings["ci95"]["auroc"]
    assert f"{ev.summary['auroc']:.3f}" in text and f"{lo:.3f}" in text and f"{hi:.3f}" in text
    assert "0.800" in text and "p1_s1, p1_s2" in text  # patient p1: mean of its two scans
    assert text.index(">p1<") < text.index(">p2<") < text.index(">p3<")  # highest probability first
    other = next(t.id for t in web.store.trials.list(campaign_id=web.campaign_id).items if t.id != "trl_cls")
    assert 'id="classification"' not in client.get(f"/trials/{other}").text
