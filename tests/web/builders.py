"""Test data for the web tests: users with tokens, and finished campaigns made the real
way (bootstrap runner, LangGraph graph, statistics, knowledge base) on replay tables."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from medloop import bootstrap
from medloop.core.settings import Settings
from medloop.core.specs import CampaignSpec, parse_campaign_spec
from medloop.web.accounts import add_user, issue_token

ROLES = {"alice": "reviewer", "bob": "reviewer", "vic": "viewer", "ada": "admin", "agt": "agent"}


def replay_table(path: Path) -> Path:
    """A table with a planted effect: dicece +0.04 Dice, lr best at 1e-3, augmentation none."""
    from medloop.engine.replay import save_table, synthetic_table

    lrs = _table_lrs()
    space: dict[str, list[Any]] = {"loss": ["dice", "dicece"], "augmentation": ["none", "light"], "lr": lrs}

    def effect(cfg: dict[str, Any]) -> float:
        return 0.04 * (cfg["loss"] == "dicece") + 0.03 - 0.03 * abs(math.log10(cfg["lr"] / 0.001))

    save_table(synthetic_table(space=space, effect=effect, n_cases=24, rng_seed=3), path)
    return path


def _table_lrs() -> list[float]:
    from medloop.agents.space import grid
    from medloop.core.specs import FloatRange

    return [float(v) for v in grid(FloatRange(type="float", low=0.0003, high=0.003, log=True))]


def replay_yaml(table: Path, *, name: str = "replay demo", max_cycles: int = 3) -> str:
    # A replay table is a grid of recorded configs: its lr values are choices (a float
    # range would let the search propose values the table never recorded).
    lrs = ", ".join(repr(v) for v in _table_lrs())
    return f"""name: {name}
goal: Raise Dice on the replayed phantom
dataset: {{path: {table.parent}}}
baseline: {{loss: dice, augmentation: none, lr: 0.0003}}
search_space:
  loss: [dice, dicece]
  augmentation: [none, light]
  lr: [{lrs}]
validation: {{seeds_per_arm: 3, reproduction_seeds: 3, min_effect: 0.005}}
budget: {{max_cycles: {max_cycles}, patience: 2}}
executor: {{kind: table, table: {table}}}
planner: {{hypotheses_per_cycle: 2}}
"""


def replay_spec(table: Path, **kw: Any) -> CampaignSpec:
    import yaml

    return parse_campaign_spec(yaml.safe_load(replay_yaml(table, **kw)), source="test")


def run_campaign(settings: Settings, spec: CampaignSpec, *, owner: str) -> str:
    runner = bootstrap.campaign_runner(settings)
    campaign = runner.create(spec, owner=owner)
    runner.run(campaign.id)
    return campaign.id


def add_users(settings: Settings) -> dict[str, str]:
    """The users of ROLES; returns name -> API token."""
    store = bootstrap.store(settings)
    tokens = {}
    for name, role in ROLES.items():
        add_user(store, name, role, actor="test")
        tokens[name] = issue_token(store, name, actor="test")[1]
    return tokens


def tiny_real_campaign(settings: Settings, root: Path, *, owner: str) -> str:
    """A finished campaign of two real MONAI trainings (sandboxed local jobs) on a tiny
    phantom: real training curves, predictions on disk, host-recomputed metrics."""
    from medloop.experiments.dataset import synth_phantom

    ds = synth_phantom(root / "Dataset901_TinyPhantom", cases=12, size=32, seed=1)
    data = {
        "name": "tiny phantom",
        "goal": "Raise mean foreground Dice on a tiny two-site phantom",
        "dataset": {"path": str(ds), "eval_fraction": 0.34},
        "baseline": {
            "model": "unet",
            "base_features": 8,
            "depth": 3,
            "loss": "dice",
            "lr": 0.003,
            "iterations": 20,
            "epoch_iterations": 5,
            "batch_size": 4,
        },
        "search_space": {"loss": ["dice", "dicece"]},
        "validation": {"seeds_per_arm": 2, "reproduction_seeds": 0, "bootstrap_resamples": 200},
        "budget": {"max_cycles": 1, "max_trials": 2},
        "executor": {"kind": "local", "slots": 2},
        "sandbox": {"timeout": "4m"},
        "planner": {"hypotheses_per_cycle": 1},
    }
    return run_campaign(settings, parse_campaign_spec(data, source="tiny"), owner=owner)
