"""Host-side click simulation and interactive metrics (issue 16, item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from medloop.evaluation.interactive import Click, bounding_box, curve_metrics, dice, next_click, noc


def _box(shape: tuple[int, int, int], lo: tuple[int, int, int], hi: tuple[int, int, int]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return m


def test_first_click_is_the_centre_of_the_target() -> None:
    ref = _box((20, 20, 20), (5, 5, 5), (10, 10, 10))  # centre voxel (7, 7, 7)
    click = next_click(np.zeros_like(ref), ref)
    assert click == Click(7, 7, 7, True)


def test_next_click_goes_to_the_largest_error_region() -> None:
    ref = _box((30, 30, 30), (2, 2, 2), (12, 12, 12))
    pred = ref.copy()
    pred[2:5, 2:5, 2:5] = False  # a small false negative (27 voxels)
    pred |= _box((30, 30, 30), (18, 18, 18), (25, 25, 25))  # a larger false positive
    click = next_click(pred, ref)
    assert click is not None and not click.positive
    assert (click.x, click.y, click.z) == (21, 21, 21)


def test_click_on_a_region_at_the_border_stays_inside_the_volume() -> None:
    ref = _box((8, 8, 4), (0, 0, 0), (8, 8, 4))  # the whole volume
    click = next_click(np.zeros_like(ref), ref)
    assert click is not None
    assert 0 <= click.x < 8 and 0 <= click.y < 8 and 0 <= click.z < 4
    assert ref[click.x, click.y, click.z]


def test_clicks_are_deterministic_and_none_when_exact() -> None:
    rng = np.random.default_rng(0)
    ref = rng.random((16, 16, 8)) > 0.6
    pred = rng.random((16, 16, 8)) > 0.6
    assert next_click(pred, ref) == next_click(pred.copy(), ref.copy())
    assert next_click(ref, ref) is None


def test_spacing_moves_the_centre_along_the_fine_axes() -> None:
    # an elongated region: with coarse z spacing the deepest voxel is still its middle
    ref = _box((10, 10, 10), (2, 2, 0), (7, 7, 10))
    click = next_click(np.zeros_like(ref), ref, spacing=(1.0, 1.0, 5.0))
    assert click is not None and (click.x, click.y) == (4, 4)


def test_dice_and_noc_on_known_arrays() -> None:
    a = _box((10, 10, 10), (0, 0, 0), (4, 10, 10))  # 400 voxels
    b = _box((10, 10, 10), (2, 0, 0), (6, 10, 10))  # 400 voxels, 200 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    curve = [0.5, 0.79, 0.81, 0.86, 0.95]
    assert noc(curve, 0.80, 20) == 3
    assert noc(curve, 0.85, 20) == 4
    assert noc(curve, 0.90, 20) == 5
    assert noc([0.1, 0.2], 0.9, 20) == 20  # never reached: the cap
    metrics = curve_metrics(curve, 20)
    assert metrics["dice@1"] == 0.5 and metrics["dice@5"] == 0.95
    assert (metrics["noc@80"], metrics["noc@85"], metrics["noc@90"]) == (3.0, 4.0, 5.0)
    assert "dice@6" not in metrics


def test_bounding_box() -> None:
    ref = _box((10, 10, 10), (1, 2, 3), (4, 6, 9))
    assert bounding_box(ref) == [1, 2, 3, 3, 5, 8]
    assert bounding_box(np.zeros_like(ref)) is None
