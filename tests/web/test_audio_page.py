"""The trial page of an audio trial shows its robustness curve and per-subject scores."""

from __future__ import annotations

from medloop.core.records import DatasetManifest, Trial, TrialResult, TrialSpec
from medloop.core.specs import AudioConfig
from medloop.evaluation.audio import evaluate_audio_split
from tests.web.conftest import Web


def test_audio_trial_page(web: Web) -> None:
    labels = {f"spk{i:03d}": i % 2 for i in range(6)}
    scores = {
        "clean": {s: 0.9 if y else 0.2 for s, y in labels.items()},
        "babble_0db": {s: 0.55 for s in labels},
    }
    ev = evaluate_audio_split(scores, labels, split="eval", aggregation="mean", resamples=100)
    manifest = DatasetManifest(
        name="speech",
        checksum="c",
        channel_names={"0": "audio"},
        labels={"control": 0, "condition": 1},
        train_cases=["a", "b"],
        eval_cases=sorted(labels),
    )
    spec = TrialSpec(task="audio", dataset=manifest, config=AudioConfig(neuron="arslif"), seed=1)
    trial = Trial(
        id="trl_audio",
        campaign_id=web.campaign_id,
        hypothesis_id=None,
        arm="baseline",
        spec=spec,
        spec_hash="h",
    )
    web.store.trials.put(trial)
    web.store.trials.set_result(
        "trl_audio",
        TrialResult(
            trial_id="trl_audio", spec_hash="h", status="succeeded", objective=0.5, evaluations={"eval": ev}
        ),
    )
    client, _ = web.login("vic")
    page = client.get("/trials/trl_audio")
    assert page.status_code == 200
    assert 'id="audio-robustness"' in page.text and 'id="audio-subjects"' in page.text
    assert "spk005" in page.text and "0.550" in page.text
    # a segmentation trial of the same campaign has no audio section
    other = next(
        t.id for t in web.store.trials.list(campaign_id=web.campaign_id).items if t.id != "trl_audio"
    )
    assert 'id="audio"' not in client.get(f"/trials/{other}").text
