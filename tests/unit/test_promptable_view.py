"""Dashboard click curve of a promptable trial (issue 16): Dice after k clicks per split,
drawn from the host's recomputed evaluation, with NoC beside it."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np

from medloop.core.records import Trial, TrialResult, TrialSpec
from medloop.core.specs import PromptableConfig
from medloop.engine.tasks.promptable import Target, _evaluation
from medloop.experiments.dataset import build_manifest
from medloop.experiments.dataset.phantom3d import synth_phantom3d
from medloop.web.promptable_view import click_curve


def test_click_curve_from_the_recomputed_evaluation(tmp_path: Path) -> None:
    ds = synth_phantom3d(tmp_path / "Dataset988_View", cases=4, seed=0, test_cases=0)
    manifest = build_manifest(ds, eval_fraction=0.5, split_seed=0)
    config = PromptableConfig(eval_clicks=10)
    ref = np.ones((2, 2, 2), dtype=bool)
    targets = [
        Target("a", 1, "liver", ref, (1.0, 1.0, 1.0), curve=[0.5, 0.7, 0.9]),
        Target("b", 1, "liver", ref, (1.0, 1.0, 1.0), curve=[0.3, 0.5, 0.7]),
    ]
    ev = _evaluation("eval", targets, config, rounds=3)
    assert ev.settings["click_curve"] == [0.4, 0.6, 0.8]
    assert ev.summary["noc@85"] == (3 + 10) / 2  # b never reaches 0.85: the cap
    spec = TrialSpec(task="promptable", dataset=manifest, config=config, seed=0)
    trial = Trial(
        id="t1",
        campaign_id="c1",
        hypothesis_id=None,
        arm="baseline",
        spec=spec,
        spec_hash="h",
        status="succeeded",
        result=TrialResult(
            trial_id="t1", spec_hash="h", status="succeeded", objective=0.8, evaluations={"eval": ev}
        ),
    )
    panel = click_curve(trial)
    assert panel is not None and 'id="click-curve"' in panel["chart"]
    data = json.loads(html.unescape(re.search(r'data-chart="([^"]*)"', panel["chart"]).group(1)))  # type: ignore[union-attr]
    assert data["x"] == [1.0, 2.0, 3.0] and data["series"][0]["y"] == [0.4, 0.6, 0.8]
    assert panel["noc"]["eval"]["noc@85"] == 6.5
    other = trial.model_copy(update={"spec": spec.model_copy(update={"task": "segmentation"})})
    assert click_curve(other) is None
