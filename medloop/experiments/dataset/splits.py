"""Seeded splits by case: a hold-out, k-fold (stratified by site when sites exist) and
leave-one-site-out. Saved next to the dataset in nnU-Net's `splits_final.json` format
(a list of {"train": [...], "val": [...]}) as `medloop_splits_<id>.json`; an existing
file is used as it is (users may edit it, as with nnU-Net), after validation.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from medloop.core.errors import DatasetError
from medloop.core.ids import canonical_json, sha256_hex
from medloop.experiments.dataset.plans import write_json_atomic

NO_SITE = "(none)"
Split = dict[str, Any]  # {"train": [...], "val": [...], optional "site": str}


def stratified_holdout(
    cases: list[str], sites: dict[str, str], *, fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Split `cases` into (kept, held_out) by case, stratified by site, reproducibly.

    Each site gives round(fraction * n) cases, at least one and at most n - 1 when it has
    two or more; at least one case is always kept.
    """
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"eval fraction must lie in (0, 1), got {fraction}")
    by_site: dict[str, list[str]] = defaultdict(list)
    for case in sorted(cases):
        by_site[sites.get(case, NO_SITE)].append(case)
    rng = random.Random(seed)
    held: list[str] = []
    for site in sorted(by_site):
        members = by_site[site]
        rng.shuffle(members)
        n = round(fraction * len(members))
        if len(members) >= 2:
            # every site with two or more cases lands on both sides of the split
            n = min(max(n, 1), len(members) - 1)
        held.extend(members[:n])
    if len(held) >= len(cases):
        held = held[: len(cases) - 1]
    held_set = set(held)
    return sorted(c for c in cases if c not in held_set), sorted(held)


def kfold(cases: list[str], sites: dict[str, str], *, k: int, seed: int) -> list[Split]:
    """k folds by case; within each site the shuffled cases are dealt round-robin, so every
    fold holds about 1/k of each site."""
    if k < 2 or k > len(cases):
        raise DatasetError(f"k-fold needs 2 <= k <= number of cases ({len(cases)}), got k={k}")
    by_site: dict[str, list[str]] = defaultdict(list)
    for case in sorted(cases):
        by_site[sites.get(case, NO_SITE)].append(case)
    rng = random.Random(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    offset = 0
    for site in sorted(by_site):
        members = by_site[site]
        rng.shuffle(members)
        for i, case in enumerate(members):
            folds[(i + offset) % k].append(case)
        offset += len(members)  # continue dealing where the last site stopped: balanced sizes
    return [{"train": sorted(c for c in cases if c not in set(f)), "val": sorted(f)} for f in folds]


def leave_site_out(cases: list[str], sites: dict[str, str]) -> list[Split]:
    """One fold per site: validate on every case of that site, train on the others."""
    names = sorted({sites[c] for c in cases if c in sites})
    if len(names) < 2:
        raise DatasetError("leave-site-out needs at least 2 sites (sites.json)")
    missing = sorted(c for c in cases if c not in sites)
    if missing:
        raise DatasetError(f"leave-site-out: cases without a site in sites.json: {', '.join(missing[:5])}")
    return [
        {
            "train": sorted(c for c in cases if sites[c] != site),
            "val": sorted(c for c in cases if sites[c] == site),
            "site": site,
        }
        for site in names
    ]


def split_id(method: str, *, k: int = 5, seed: int = 12345, fraction: float = 0.3) -> str:
    if method == "kfold":
        return f"kfold{k}_s{seed}"
    if method == "leave_site_out":
        return "leave_site_out"
    if method == "holdout":
        return f"holdout{round(fraction * 100)}_s{seed}"
    raise DatasetError(f"unknown split method {method!r}; use holdout, kfold or leave_site_out")


def make_splits(
    method: str,
    cases: list[str],
    sites: dict[str, str],
    *,
    k: int = 5,
    seed: int = 12345,
    fraction: float = 0.3,
) -> list[Split]:
    if method == "kfold":
        return kfold(cases, sites, k=k, seed=seed)
    if method == "leave_site_out":
        return leave_site_out(cases, sites)
    if method == "holdout":
        train, val = stratified_holdout(cases, sites, fraction=fraction, seed=seed)
        return [{"train": train, "val": val}]
    raise DatasetError(f"unknown split method {method!r}; use holdout, kfold or leave_site_out")


def _validate(path: Path, data: Any, cases: set[str]) -> list[Split]:
    if not isinstance(data, list) or not data:
        raise DatasetError(f"{path}: expected a non-empty list of {{'train': [...], 'val': [...]}}")
    for i, fold in enumerate(data):
        if (
            not isinstance(fold, dict)
            or not isinstance(fold.get("train"), list)
            or not isinstance(fold.get("val"), list)
        ):
            raise DatasetError(f"{path}: fold {i} needs 'train' and 'val' lists")
        unknown = sorted(set(fold["train"] + fold["val"]) - cases)
        if unknown:
            raise DatasetError(f"{path}: fold {i} names unknown cases {', '.join(map(str, unknown[:5]))}")
        both = sorted(set(fold["train"]) & set(fold["val"]))
        if both:
            raise DatasetError(f"{path}: fold {i} has cases in train and val: {', '.join(both[:5])}")
        if not fold["train"] or not fold["val"]:
            raise DatasetError(f"{path}: fold {i} has an empty train or val list")
    return data


def load_or_save_splits(
    root: Path,
    method: str,
    cases: list[str],
    sites: dict[str, str],
    *,
    k: int = 5,
    seed: int = 12345,
    fraction: float = 0.3,
) -> tuple[list[Split], str | None, str]:
    """(splits, file name or None if the dataset folder is read-only, sha256 of the splits).

    An existing `medloop_splits_<id>.json` wins over a freshly computed one."""
    name = f"medloop_splits_{split_id(method, k=k, seed=seed, fraction=fraction)}.json"
    path = Path(root) / name
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, a 5,000-digit number, deep nesting
            raise DatasetError(
                f"{path}: not valid JSON ({exc})", hint="fix or delete it to regenerate"
            ) from None
        splits = _validate(path, data, set(cases))
        return splits, name, sha256_hex(canonical_json(splits))
    splits = make_splits(method, cases, sites, k=k, seed=seed, fraction=fraction)
    saved = write_json_atomic(path, splits)
    return splits, name if saved else None, sha256_hex(canonical_json(splits))


def pick_fold(folds: list[Split], method: str, *, fold: int, site: str | None, where: object) -> Split:
    """The split a trial uses: the held-out `site`'s fold for leave_site_out when one is
    named, otherwise fold number `fold`; DatasetError naming `where` when neither exists."""
    if method == "leave_site_out" and site is not None:
        chosen = [f for f in folds if f.get("site") == site]
        if not chosen:
            have = sorted({str(f.get("site")) for f in folds})
            raise DatasetError(f"held_out_site {site!r} is not a site of {where}; have {have}")
        return chosen[0]
    if fold >= len(folds):
        raise DatasetError(f"fold {fold} does not exist: the split has {len(folds)} fold(s)")
    return folds[fold]
