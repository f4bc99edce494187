"""Search-space helpers shared by planners: neighbours of a config, applying and
validating factor changes, and conditional factors (`when`)."""

from __future__ import annotations

import math
from typing import Any

from medloop.core.ids import canonical_json
from medloop.core.records import FactorChange
from medloop.core.specs import CampaignSpec, Categorical, Factor, FloatRange, IntRange, Scalar, make_config

# Numeric factors are explored on a grid of this many points (log-spaced when log=True).
GRID_POINTS = 7


def grid(factor: IntRange | FloatRange) -> list[Scalar]:
    lo, hi = float(factor.low), float(factor.high)
    if factor.log:
        points = [
            math.exp(math.log(lo) + i * (math.log(hi) - math.log(lo)) / (GRID_POINTS - 1))
            for i in range(GRID_POINTS)
        ]
    else:
        points = [lo + i * (hi - lo) / (GRID_POINTS - 1) for i in range(GRID_POINTS)]
    if isinstance(factor, IntRange):
        return sorted({round(p) for p in points})
    return [float(f"{p:.3g}") for p in points]


def active(factor: Factor, config: dict[str, Any]) -> bool:
    """A conditional factor is active only when its `when` conditions hold."""
    return all(config.get(name) in values for name, values in (factor.when or {}).items())


def neighbours(name: str, factor: Factor, value: Any) -> list[Scalar]:
    """One-step moves of a factor from its current value."""
    if isinstance(factor, Categorical):
        return [c for c in factor.choices if c != value]
    points = grid(factor)
    if value is None:
        return points

    # nearest grid index, then one step down and up (on the log scale when log=True)
    def apart(a: float, b: float) -> float:
        return abs(math.log(a) - math.log(b)) if factor.log and a > 0 and b > 0 else abs(a - b)

    def dist(p: Scalar) -> float:
        return apart(float(p), float(value))

    idx = min(range(len(points)), key=lambda i: dist(points[i]))
    out = []
    for j in (idx - 1, idx + 1):
        if 0 <= j < len(points) and dist(points[j]) > 1e-12:
            out.append(points[j])
    # An off-grid incumbent: the nearest grid point is a move too, unless it is so close
    # (within a quarter grid step) that testing it would spend runs on no change at all.
    grid_step = apart(float(points[1]), float(points[0])) if len(points) > 1 else 0.0
    if dist(points[idx]) > max(0.25 * grid_step, 1e-9):
        out.append(points[idx])
    return out


def grid_index(factor: IntRange | FloatRange, value: Any) -> int | None:
    """Index of the grid point nearest to `value` (log distance for log factors)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    points = grid(factor)

    def dist(p: Scalar) -> float:
        a, b = float(p), float(value)
        return abs(math.log(a) - math.log(b)) if factor.log and a > 0 and b > 0 else abs(a - b)

    return min(range(len(points)), key=lambda i: dist(points[i]))


def step(factor: IntRange | FloatRange, value: Any, k: int) -> Scalar | None:
    """The grid value `k` steps from `value` (negative = down), or None past the edge."""
    idx = grid_index(factor, value)
    points = grid(factor)
    if idx is None or not 0 <= idx + k < len(points):
        return None
    return points[idx + k]


def apply_changes(config: dict[str, Any], changes: list[FactorChange]) -> dict[str, Any]:
    return {**config, **{c.factor: c.to_value for c in changes}}


def validate_changes(spec: CampaignSpec, config: dict[str, Any], changes: list[FactorChange]) -> str | None:
    """Why these changes are not allowed, or None when they are."""
    new = apply_changes(config, changes)
    if len({c.factor for c in changes}) != len(changes):
        return "a factor is changed twice in one hypothesis"
    if config_key(new) == config_key(config):
        return "no change: every value equals the incumbent's"
    for change in changes:
        if change.to_value == config.get(change.factor):
            return f"{change.factor} is already {change.to_value!r} in the incumbent"
        factor = spec.search_space.get(change.factor)
        if factor is None:
            return f"{change.factor!r} is not in the search space ({sorted(spec.search_space)})"
        if not active(factor, new):
            return f"{change.factor!r} is inactive for this config (when: {factor.when})"
        value = change.to_value
        if isinstance(factor, Categorical):
            if value not in factor.choices:
                return f"{change.factor}={value!r} is not one of {factor.choices}"
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"{change.factor}={value!r} is not a number"
            if not factor.low <= float(value) <= factor.high:
                return f"{change.factor}={value!r} is outside [{factor.low}, {factor.high}]"
    try:
        make_config(spec.task, new)
    except ValueError as exc:
        return f"invalid config: {exc}"
    return None


def _number(value: Any) -> Any:
    """1 and 1.0 are one value (a config field coerces an int choice to a float)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_number(v) for v in value]
    return value


def config_key(config: dict[str, Any]) -> str:
    """A config's identity for "already tested": canonical JSON, numbers by value."""
    return canonical_json(_number(config))
