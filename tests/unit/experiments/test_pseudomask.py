"""Agglomerative pseudo-masks (UniAP-style): similar regions grouped, multi-granular,
deterministic, timed."""

from __future__ import annotations

import pytest
import torch

from medloop.experiments.pretrain.pseudomask import agglomerate, grid_edges, mask_matrix


def _regions(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (8, *shape), region ids): three slabs along axis 0 with distinct feature
    directions plus noise."""
    gen = torch.Generator().manual_seed(seed)
    region = torch.zeros(shape, dtype=torch.long)
    region[shape[0] // 3 :] = 1
    region[2 * shape[0] // 3 :] = 2
    feats = torch.nn.functional.one_hot(region, 8).movedim(-1, 0).float()
    return feats + 0.15 * torch.randn(feats.shape, generator=gen), region


@pytest.mark.parametrize("shape", [(24, 20), (12, 10, 8)])
def test_groups_similar_regions(shape: tuple[int, ...]) -> None:
    feats, region = _regions(shape)
    masks = agglomerate(feats, (0.9, 0.8, 0.5))
    coarse = masks.label_maps()[-1]
    assert masks.counts()[-1] == 3
    for r in range(3):  # each region is exactly one group
        assert len(torch.unique(coarse[region == r])) == 1
    assert masks.counts() == sorted(masks.counts(), reverse=True)  # fine -> coarse
    assert masks.counts()[0] > masks.counts()[-1]  # more than one granularity
    assert masks.seconds > 0 and len(masks.rounds) == 3


def test_dissimilar_neighbours_stay_apart() -> None:
    feats = torch.zeros(2, 4, 4)
    feats[0, :, ::2] = 1.0  # alternating orthogonal columns: no neighbours alike
    feats[1, :, 1::2] = 1.0
    masks = agglomerate(feats, (0.5,))
    # vertical neighbours are alike (same column), horizontal ones are not
    assert masks.counts() == [4]


def test_deterministic() -> None:
    feats, _ = _regions((16, 16, 6), seed=3)
    a, b = agglomerate(feats), agglomerate(feats.clone())
    assert all(torch.equal(x, y) for x, y in zip(a.levels, b.levels, strict=True))
    assert torch.equal(mask_matrix(a), mask_matrix(b))


def test_mask_matrix_rows_and_queries() -> None:
    feats, _ = _regions((24, 20))
    masks = agglomerate(feats, (0.9, 0.8, 0.5))
    m = mask_matrix(masks, max_queries=5)
    assert m.shape == (5, 24 * 20)
    assert torch.allclose(m.sum(1), torch.ones(5))
    rows = {tuple((r > 0).nonzero().flatten().tolist()) for r in m}
    assert len(rows) == 5  # a group kept unchanged by a coarser level is one query


def test_edges_and_bad_input() -> None:
    assert grid_edges((2, 3)).shape == (2, 1 * 3 + 2 * 2)
    with pytest.raises(ValueError, match="strictly decreasing"):
        agglomerate(torch.zeros(2, 4, 4), (0.5, 0.8))
    with pytest.raises(ValueError, match="must be"):
        agglomerate(torch.zeros(4, 4))
