"""The validation policy on simulated campaigns (deterministic seeds): null campaigns keep
the family-wise false-positive rate under alpha; a planted effect of the pre-registered
minimum size is found with >= 80% power. bench/calibration.py runs the 1,000-campaign version."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import calibration  # noqa: E402


def test_null_campaigns_control_family_wise_error() -> None:
    rows = [calibration.one(("null", i)) for i in range(40)]
    cycles = sum(r["cycles"] for r in rows)
    assert sum(r["cycle_fp"] for r in rows) / cycles <= 0.05
    assert sum(r["any_reproduced"] for r in rows) / len(rows) <= 0.05


def test_planted_minimum_effect_is_found_with_power() -> None:
    rows = [calibration.one(("planted", 10_000 + i)) for i in range(20)]
    assert sum(r["planted_supported"] for r in rows) / len(rows) >= 0.8
