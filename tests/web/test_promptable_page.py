"""The trial page of a promptable trial shows its click curve (Dice vs clicks) and NoC."""

from __future__ import annotations

import numpy as np

from medloop.core.records import DatasetManifest, Trial, TrialResult, TrialSpec
from medloop.core.specs import PromptableConfig
from medloop.engine.tasks.promptable import Target, _evaluation
from tests.web.conftest import Web


def test_promptable_trial_page_draws_the_click_curve(web: Web) -> None:
    config = PromptableConfig(eval_clicks=10)
    ref = np.ones((2, 2, 2), dtype=bool)
    targets = [
        Target("c1", 1, "liver", ref, (1.0, 1.0, 1.0), curve=[0.6, 0.8, 0.92]),
        Target("c2", 1, "liver", ref, (1.0, 1.0, 1.0), curve=[0.4, 0.6, 0.8]),
    ]
    ev = _evaluation("eval", targets, config, rounds=3)
    manifest = DatasetManifest(
        name="phantom3d",
        checksum="c",
        channel_names={"0": "CT"},
        labels={"background": 0, "liver": 1},
        train_cases=["a", "b"],
        eval_cases=["c1", "c2"],
    )
    spec = TrialSpec(task="promptable", dataset=manifest, config=config, seed=1)
    web.store.trials.put(
        Trial(
            id="trl_prompt",
            campaign_id=web.campaign_id,
            hypothesis_id=None,
            arm="baseline",
            spec=spec,
            spec_hash="h",
        )
    )
    web.store.trials.set_result(
        "trl_prompt",
        TrialResult(
            trial_id="trl_prompt", spec_hash="h", status="succeeded", objective=0.7, evaluations={"eval": ev}
        ),
    )
    client, _ = web.login("vic")
    page = client.get("/trials/trl_prompt")
    assert page.status_code == 200
    assert 'id="click-curve"' in page.text and 'id="noc-table"' in page.text
    assert "6.50" in page.text  # NoC@85: c1 at 3 clicks, c2 never (cap 10) -> 6.5
    other = next(
        t.id for t in web.store.trials.list(campaign_id=web.campaign_id).items if t.id != "trl_prompt"
    )
    assert 'id="click-curve"' not in client.get(f"/trials/{other}").text
