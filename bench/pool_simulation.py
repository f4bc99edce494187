"""The run-level test's seed-variance pool, simulated (design note 8).

One paired comparison of 3 seeds beside 16 earlier ones; a share of the earlier ones (and,
in one case, the comparison itself) is 3x noisier. Per pool rule: the rate of p < 0.05 under
the null, and the power at an effect of 2 seed sds. The rules:

    own        the comparison's own variance (2 degrees of freedom)
    whole      every comparison pooled (the campaign-wide pool before design note 8)
    narrower   whichever of own and whole gives the narrower interval (proposed, not built)
    trim@a     one pass: earlier comparisons noisier than the rest at level a left out
    stable     medloop's stats.stable_pool: the same, iterated, noisiest first, at 0.01

    python bench/pool_simulation.py --reps 2500     # about 5 minutes on one core
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as st

from medloop.evaluation import stats

SEEDS, EARLIER = 3, 16
Pool = tuple[float, int] | None


def _test(d: np.ndarray, pooled: Pool) -> tuple[float, float]:
    """(p, interval width) of the paired run-level test on per-seed differences d."""
    p, low, high = stats.run_level_test(np.zeros((d.size, 1)), d[:, None], paired=True, pooled=pooled)
    return p, high - low


def _trim(others: Sequence[np.ndarray], alpha: float) -> list[np.ndarray]:
    keep = []
    for i, o in enumerate(others):
        rest = stats.pooled_seed_variance([x for j, x in enumerate(others) if j != i])
        assert rest is not None
        if st.f.sf(float(o.var(ddof=1)) / rest[0], o.size - 1, rest[1]) >= alpha:
            keep.append(o)
    return keep


def _narrower(d: np.ndarray, others: Sequence[np.ndarray]) -> float:
    own, whole = _test(d, None), _test(d, stats.pooled_seed_variance([d, *others]))
    return whole[0] if whole[1] < own[1] else own[0]


RULES: dict[str, Callable[[np.ndarray, Sequence[np.ndarray]], float]] = {
    "own": lambda d, o: _test(d, None)[0],
    "whole": lambda d, o: _test(d, stats.pooled_seed_variance([d, *o]))[0],
    "narrower": _narrower,
    "trim@0.10": lambda d, o: _test(d, stats.pooled_seed_variance([d, *_trim(o, 0.10)]))[0],
    "trim@0.01": lambda d, o: _test(d, stats.pooled_seed_variance([d, *_trim(o, 0.01)]))[0],
    "stable": lambda d, o: _test(d, stats.stable_pool(d, o))[0],
}

CASES = [  # (label, share of noisy earlier comparisons, this comparison's sd, effect)
    ("null, all alike", 0.0, 1.0, 0.0),
    ("null, 20% noisy, this one stable", 0.2, 1.0, 0.0),
    ("null, 20% noisy, this one noisy", 0.2, 3.0, 0.0),
    ("null, 40% noisy, this one stable", 0.4, 1.0, 0.0),
    ("power, all alike", 0.0, 1.0, 2.0),
    ("power, 20% noisy, this one stable", 0.2, 1.0, 2.0),
    ("power, 40% noisy, this one stable", 0.4, 1.0, 2.0),
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"{'case':36s}" + "".join(f"{r:>11s}" for r in RULES))
    for label, noisy, sd, effect in CASES:
        hits = dict.fromkeys(RULES, 0)
        for _ in range(args.reps):
            sds = np.where(rng.random(EARLIER) < noisy, 3.0, 1.0)
            others = [rng.normal(0.0, s, SEEDS) for s in sds]
            d = rng.normal(effect, sd, SEEDS)
            for name, rule in RULES.items():
                hits[name] += rule(d, others) < 0.05
        print(f"{label:36s}" + "".join(f"{hits[r] / args.reps:11.3f}" for r in RULES), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
