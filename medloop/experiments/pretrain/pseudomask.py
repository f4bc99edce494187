"""Fast in-loop pseudo-masks by agglomerative pooling of features (UniAP-style, as in
S2-UniSeg).

The nodes are the cells of a (coarse) feature grid. In every round, each group of nodes
picks its most similar neighbouring group (cosine similarity of the groups' mean
features, 4-/6-connected neighbours on the grid); every pick above the level's threshold
is merged *in parallel* (connected components of the picked edges), and the groups'
features are pooled again. Rounds repeat until nothing merges; the groups at the end of
each threshold level (from high to low similarity) are the masks of one granularity, so
one call yields fine-to-coarse, multi-granular masks. All work is a handful of
vectorised tensor operations per round plus scipy's connected components (C), which is
why it stays in tens of milliseconds per image and can run inside the training loop.

Determinism: no randomness anywhere; ties in the "best neighbour" pick are broken by the
order of the edge list (fixed by the grid), and components are numbered by their lowest
node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from numpy.typing import NDArray

DEFAULT_THRESHOLDS = (0.9, 0.8, 0.7)
MAX_ROUNDS = 16  # per level; each round at least halves nothing only when nothing merges


@dataclass(frozen=True)
class PseudoMasks:
    """Group ids per node, one (N,) int64 array per granularity level (fine -> coarse),
    on a grid of `shape` (N = prod(shape)); `seconds` is the wall time of the call."""

    levels: list[torch.Tensor]
    shape: tuple[int, ...]
    seconds: float
    rounds: list[int] = field(default_factory=list)

    def counts(self) -> list[int]:
        """Number of groups (masks) per level."""
        return [int(level.max().item()) + 1 if level.numel() else 0 for level in self.levels]

    def label_maps(self) -> list[torch.Tensor]:
        """The levels as label maps of the grid's shape."""
        return [level.reshape(self.shape) for level in self.levels]


@lru_cache(maxsize=32)
def grid_edges(shape: tuple[int, ...]) -> torch.Tensor:
    """(2, E) int64: every pair of face-adjacent grid cells (row-major ids), each once."""
    ids = np.arange(int(np.prod(shape))).reshape(shape)
    pairs = []
    for axis in range(len(shape)):
        lo = np.take(ids, np.arange(shape[axis] - 1), axis=axis).ravel()
        hi = np.take(ids, np.arange(1, shape[axis]), axis=axis).ravel()
        pairs.append(np.stack([lo, hi]))
    return torch.from_numpy(np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), dtype=np.int64))


def _components(n: int, a: NDArray[np.int64], b: NDArray[np.int64]) -> tuple[int, NDArray[np.int64]]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    return int(count), labels.astype(np.int64)


def _group_means(nodes: torch.Tensor, labels: NDArray[np.int64], n_groups: int) -> NDArray[np.float32]:
    """(G, C) unit-norm mean feature of every group."""
    sums = torch.zeros(n_groups, nodes.shape[1], dtype=torch.float32)
    sums.index_add_(0, torch.from_numpy(labels), nodes)
    return torch.nn.functional.normalize(sums, dim=1).numpy()


def _best_per_group(
    n_groups: int, a: NDArray[np.int64], b: NDArray[np.int64], sim: NDArray[np.float32]
) -> NDArray[np.float32]:
    """(G,) the highest similarity among each group's edges."""
    best = torch.full((n_groups,), -2.0, dtype=torch.float32)
    values = torch.from_numpy(sim)
    best.scatter_reduce_(0, torch.from_numpy(a), values, "amax")
    best.scatter_reduce_(0, torch.from_numpy(b), values, "amax")
    return best.numpy()


def agglomerate(
    features: torch.Tensor,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
    *,
    max_rounds: int = MAX_ROUNDS,
) -> PseudoMasks:
    """Multi-granular pseudo-masks of one feature map.

    features: (C, *grid) with a 2D or 3D grid (e.g. a network's features pooled to 1/4
    resolution). thresholds: cosine similarities, one level each, strictly decreasing.
    """
    if features.ndim not in (3, 4):
        raise ValueError(f"features must be (C, H, W) or (C, H, W, D), got shape {tuple(features.shape)}")
    if list(thresholds) != sorted(thresholds, reverse=True) or len(set(thresholds)) != len(thresholds):
        raise ValueError(f"thresholds must be strictly decreasing, got {thresholds}")
    tic = time.perf_counter()
    shape = tuple(int(s) for s in features.shape[1:])
    with torch.no_grad():
        nodes = torch.nn.functional.normalize(
            features.detach().float().cpu().reshape(features.shape[0], -1).T.contiguous(), dim=1
        )  # (N, C)
    n_groups = nodes.shape[0]
    labels = np.arange(n_groups, dtype=np.int64)  # node -> group
    edges = grid_edges(shape).numpy()
    ea, eb = edges[0], edges[1]  # group-level edges (duplicates allowed), never inside a group
    levels: list[torch.Tensor] = []
    rounds: list[int] = []
    for threshold in thresholds:
        done = 0
        for _ in range(max_rounds):
            if ea.size == 0:
                break
            means = _group_means(nodes, labels, n_groups)
            sim = np.einsum("ij,ij->i", means[ea], means[eb])  # (E,) cosine of neighbouring groups
            # each group's best neighbour: the edges that attain its maximum similarity
            best = _best_per_group(n_groups, ea, eb, sim)
            picked = ((sim >= best[ea]) | (sim >= best[eb])) & (sim > threshold)
            if not picked.any():
                break
            n_groups, comp = _components(n_groups, ea[picked], eb[picked])
            labels = comp[labels]
            ea, eb = comp[ea], comp[eb]
            keep = ea != eb
            ea, eb = ea[keep], eb[keep]
            done += 1
        levels.append(torch.from_numpy(labels.copy()))
        rounds.append(done)
    return PseudoMasks(levels, shape, time.perf_counter() - tic, rounds)


def mask_matrix(masks: PseudoMasks, *, min_nodes: int = 2, max_queries: int = 32) -> torch.Tensor:
    """(Q, N) row-normalised membership matrix of the masks used as queries: every group
    of every level with at least `min_nodes` nodes (a group that a coarser level keeps
    unchanged counts once), the largest `max_queries` of them (ties: finer level, lower id)."""
    candidates: list[tuple[int, int, int]] = []  # (-size, level, group)
    previous: torch.Tensor | None = None
    for index, level in enumerate(masks.levels):
        sizes = torch.bincount(level)
        if previous is not None:
            # a group is new at this level unless it is exactly one group of the finer level
            finer = torch.bincount(previous)
            one_of = torch.zeros_like(sizes).scatter_reduce_(0, level, finer[previous], "amax")
            new = one_of != sizes
        else:
            new = torch.ones_like(sizes, dtype=torch.bool)
        for group in torch.nonzero(new & (sizes >= min_nodes)).flatten().tolist():
            candidates.append((-int(sizes[group]), index, group))
        previous = level
    n = masks.levels[0].numel()
    if not candidates:  # one group covering everything, or only single nodes: a global query
        return torch.full((1, n), 1.0 / n)
    chosen = sorted(candidates)[:max_queries]
    rows = torch.stack([(masks.levels[lv] == g).float() for _, lv, g in chosen])
    return rows / rows.sum(1, keepdim=True)
