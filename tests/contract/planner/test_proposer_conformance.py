"""Conformance suite of `Proposer` (agents/base.py), the boundary a model-based sampler
sits behind. Implementations: Optuna TPE (planners/tpe.py). The promise checked: up to
`n` distinct configs built on `base`, inside the space, none excluded; fewer when the
space is exhausted; a rated prior is asked before the model's own picks; observations
outside the space or NaN never break it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest

from medloop.agents.base import Proposer
from medloop.agents.planners.tpe import TpeProposer
from medloop.agents.space import config_key
from medloop.core.specs import Categorical, Factor, FloatRange, IntRange

SPACE: dict[str, Factor] = {
    "loss": Categorical(choices=["dice", "dicece", "focal"]),
    "lr": FloatRange(type="float", low=1e-4, high=1e-2, log=True),
    "batch": IntRange(type="int", low=1, high=8),
}
SMALL: dict[str, Factor] = {
    "loss": Categorical(choices=["dice", "dicece"]),
    "augmentation": Categorical(choices=["none", "light"]),
}
BASE = {"loss": "dice", "lr": 1e-3, "batch": 2, "augmentation": "none", "epochs": 5}

BUILDERS: dict[str, Callable[[dict[str, Factor]], Proposer]] = {
    "tpe": lambda space: TpeProposer(space, direction="maximize", seed=0, startup=4),
}


@pytest.fixture(params=list(BUILDERS))
def make(request: pytest.FixtureRequest) -> Callable[[dict[str, Factor]], Proposer]:
    return BUILDERS[request.param]


def inside(space: dict[str, Factor], config: dict[str, Any]) -> bool:
    for name, f in space.items():
        value = config[name]
        if isinstance(f, Categorical):
            if value not in f.choices:
                return False
        elif not f.low <= value <= f.high:
            return False
    return True


def test_distinct_configs_on_the_base_inside_the_space(make: Callable[[dict[str, Factor]], Proposer]) -> None:
    proposer = make(SPACE)
    configs = proposer.ask(5, base=BASE, exclude=set())
    assert 0 < len(configs) <= 5
    assert len({config_key(c) for c in configs}) == len(configs)
    for config in configs:
        assert inside(SPACE, config), config
        assert config["epochs"] == 5 and config["augmentation"] == "none"  # not the model's


def test_excluded_configs_are_never_asked(make: Callable[[dict[str, Factor]], Proposer]) -> None:
    proposer = make(SMALL)
    grid = [
        {**BASE, "loss": loss, "augmentation": aug}
        for loss, aug in itertools.product(["dice", "dicece"], ["none", "light"])
    ]
    exclude = {config_key(c) for c in grid[:3]}
    for config in grid[:3]:
        proposer.tell(config, 0.5, seed=0)
    asked = proposer.ask(3, base=BASE, exclude=exclude)
    assert [config_key(c) for c in asked] == [config_key(grid[3])]  # fewer: only one is left
    assert proposer.ask(2, base=BASE, exclude={config_key(c) for c in grid}) == []


def test_a_rated_prior_is_asked_before_the_models_own_picks(
    make: Callable[[dict[str, Factor]], Proposer],
) -> None:
    proposer = make(SPACE)
    for i, loss in enumerate(["dice", "dicece"]):
        proposer.tell({**BASE, "loss": loss, "lr": 1e-3 * (i + 1)}, 0.6 + 0.1 * i, seed=i)
    favourite = {**BASE, "loss": "focal", "lr": 3e-4, "batch": 4}
    proposer.prior({**BASE, "loss": "focal", "lr": 5e-3, "batch": 6}, 0.5)
    proposer.prior(favourite, 2.0)
    first = proposer.ask(1, base=BASE, exclude=set())
    assert [config_key(c) for c in first] == [config_key(favourite)]


def test_nan_and_out_of_space_observations_do_not_break_asking(
    make: Callable[[dict[str, Factor]], Proposer],
) -> None:
    proposer = make(SPACE)
    proposer.tell({**BASE, "loss": "dice"}, math.nan, seed=0)  # a diverged run
    proposer.tell({**BASE, "lr": 0.5}, 0.9, seed=0)  # a baseline off the declared range
    for seed in range(6):
        proposer.tell({**BASE, "lr": 1e-3 * (1 + seed)}, 0.5 + 0.01 * seed, seed=seed)
    configs = proposer.ask(4, base=BASE, exclude=set())
    assert configs
    assert all(inside(SPACE, c) for c in configs)
