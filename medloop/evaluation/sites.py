"""Per-site and in-domain vs out-of-domain summaries (Touchstone, FLARE and FeTA report
results per centre and at centres unseen in training)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from medloop.core.records import DatasetManifest, SplitEvaluation
from medloop.evaluation.ranking import describe


def training_sites(manifest: DatasetManifest) -> set[str]:
    """Sites that contributed training cases (the job trains on train_cases only)."""
    return {manifest.sites[c] for c in manifest.train_cases if c in manifest.sites}


def domain_summary(
    evaluation: SplitEvaluation, train_sites: Iterable[str], *, resamples: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """For each metric: in-domain (sites seen in training) and out-of-domain (unseen sites)
    mean, SD and bootstrap CI over cases, plus the gap in - out. Cases without a site count
    as in-domain only if no site information exists at all."""
    seen = set(train_sites)
    cases = evaluation.cases
    in_domain = [c for c in cases if (c.site in seen) or (c.site is None and not seen)]
    out_domain = [c for c in cases if c.site is not None and c.site not in seen]
    out: dict[str, Any] = {
        "train_sites": sorted(seen),
        "unseen_sites": sorted({c.site for c in out_domain if c.site is not None}),
        "n_in_domain": len(in_domain),
        "n_out_of_domain": len(out_domain),
        "metrics": {},
    }
    for metric in evaluation.summary:
        ind = describe(in_domain, metric, resamples=resamples, seed=seed)
        ood = describe(out_domain, metric, resamples=resamples, seed=seed)
        gap = None
        if isinstance(ind["mean"], float) and isinstance(ood["mean"], float):
            gap = ind["mean"] - ood["mean"]
        out["metrics"][metric] = {"in_domain": ind, "out_of_domain": ood, "gap": gap}
    return out
