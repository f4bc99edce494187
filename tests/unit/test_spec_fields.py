"""Spec fields (issue 14, item 15): numbers are numbers, counts and texts are bounded."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from medloop.core import specs as S
from medloop.core.errors import SpecError
from medloop.core.fields import numeric_fields
from medloop.core.specs import parse_campaign_spec

MINIMAL: dict[str, Any] = {
    "name": "n",
    "goal": "g",
    "dataset": {"path": "/data"},
    "search_space": {"loss": ["dice", "dicece"]},
}
REQUIRED: dict[type[S.Spec], dict[str, Any]] = {
    S.IntRange: {"type": "int", "low": 1, "high": 5},
    S.FloatRange: {"type": "float", "low": 0.1, "high": 0.5},
    S.DatasetRef: {"path": "/data"},
    S.CampaignSpec: MINIMAL,
    S.Constraint: {"metric": "gpu_hours"},
}


def _spec_models() -> list[type[S.Spec]]:
    out, todo = [], list(S.Spec.__subclasses__())
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


@pytest.mark.parametrize(
    ("model", "name"),
    [(m, n) for m in _spec_models() for n in sorted(numeric_fields(m))],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_every_number_field_refuses_a_boolean(model: type[S.Spec], name: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({**REQUIRED.get(model, {}), name: True})
    assert info.value.errors()[0]["loc"][0] == name


def _check(patch: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        parse_campaign_spec({**MINIMAL, **patch}, source="c.yaml", check_dataset=False)
    return info.value.message


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"budget": {"max_trials": True}}, "c.yaml: budget.max_trials: expected a number, got true"),
        ({"budget": {"max_cycles": False}}, "budget.max_cycles: expected a number, got false"),
        ({"baseline": {"lr": True}}, "lr: expected a number, got true"),
        ({"budget": {"max_trials": 10**9}}, "budget.max_trials: Input should be less than or equal to"),
        ({"budget": {"max_cycles": 10**7}}, "budget.max_cycles"),
        ({"budget": {"max_wall": "9999d"}}, "budget.max_wall"),
        ({"budget": {"max_gpu_hours": 1e12}}, "budget.max_gpu_hours"),
        ({"validation": {"bootstrap_resamples": 10**9}}, "validation.bootstrap_resamples"),
        ({"sandbox": {"memory_mb": 10**12}}, "sandbox.memory_mb"),
        ({"dataset": {"path": "/d", "split_seed": 2**40}}, "dataset.split_seed"),
        ({"goal": "x" * 50_000_000}, "goal: String should have at most 4000 characters"),
        ({"dataset": {"path": "/" + "d" * 10_000}}, "dataset.path: a path of 10,001 characters"),
        ({"planner": {"model": "m" * 10_000}}, "planner.model"),
        ({"validation": {"deferred_looks": 9}}, "validation.deferred_looks"),
        # a deferred look resumes only through screening's promotion
        ({"validation": {"deferred_looks": 1}}, "validation.deferred_looks: needs planner.screening > 0"),
        ({"validation": {"spending": "haybittle"}}, "validation.spending"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(patch: dict[str, Any], needle: str) -> None:
    assert needle in _check(patch)


def test_a_long_duration_string_is_refused_in_linear_time() -> None:
    # The duration regex backtracks quadratically on '1' + spaces + 'x' (200k spaces: minutes).
    start = time.process_time()
    assert "is not a duration" in _check({"budget": {"max_wall": "1" + " " * 200_000 + "x"}})
    assert time.process_time() - start < 5


def test_deferred_looks_with_screening_are_accepted() -> None:
    spec = parse_campaign_spec(
        {**MINIMAL, "validation": {"deferred_looks": 1}, "planner": {"screening": 3}},
        source="c.yaml",
        check_dataset=False,
    )
    assert spec.validation.deferred_looks == 1


def test_pocock_spending_is_accepted_and_obrien_fleming_is_the_default() -> None:
    spec = parse_campaign_spec(
        {**MINIMAL, "validation": {"spending": "pocock"}}, source="c.yaml", check_dataset=False
    )
    assert spec.validation.spending == "pocock"
    default = parse_campaign_spec(MINIMAL, source="c.yaml", check_dataset=False)
    assert default.validation.spending == "obrien_fleming"


def test_every_spending_the_spec_accepts_has_a_spending_function() -> None:
    """The spec's Literal and stats.SPENDING name the same functions: a name added to one
    only would be accepted by the spec and refused by the analysis mid-campaign."""
    from typing import get_args

    from medloop.core.specs import ValidationPolicy
    from medloop.evaluation.stats import SPENDING

    accepted = set(get_args(ValidationPolicy.model_fields["spending"].annotation))
    assert accepted == set(SPENDING)
