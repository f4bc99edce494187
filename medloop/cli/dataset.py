"""`medloop dataset`: Create, check and fingerprint datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medloop.cli.common import console, print_json

app = typer.Typer(help="Create, check and fingerprint datasets.", no_args_is_help=True)


@app.command()
def synth(
    dest: Annotated[Path, typer.Argument(help="Folder to create (an nnU-Net v2 raw dataset)")],
    kind: Annotated[str, typer.Option(help="phantom (2D abdominal CT phantom)")] = "phantom",
    cases: Annotated[int, typer.Option(min=2, help="Training cases")] = 48,
    test_cases: Annotated[int | None, typer.Option(min=0, help="Test cases (default cases // 3)")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Write a synthetic dataset with sites, held-out test labels and dataset.json."""
    from medloop.core.errors import SpecError
    from medloop.experiments.dataset import dataset_checksum, read_dataset, synth_phantom

    if kind != "phantom":
        raise SpecError(f"--kind {kind!r} is not known", hint="use --kind phantom")
    path = synth_phantom(dest, cases=cases, seed=seed, test_cases=test_cases)
    ds = read_dataset(path)
    site_names = sorted(set(ds.sites.values()))
    summary = {
        "path": str(path),
        "kind": kind,
        "training_cases": len(ds.training),
        "test_cases": len(ds.test),
        "labels": ds.labels,
        "sites": site_names,
        "checksum": dataset_checksum(path),
    }
    if json_out:
        print_json(summary)
        return
    console.print(
        f"[bold]{path}[/]: {summary['training_cases']} training + {summary['test_cases']} test cases, "
        f"classes {', '.join(n for n, v in ds.labels.items() if v)}, sites {', '.join(site_names)}"
    )
