"""`medloop dataset`: Create, check and fingerprint datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medloop.cli.common import console, print_json

app = typer.Typer(help="Create, check and fingerprint datasets.", no_args_is_help=True)

KINDS = ("phantom", "phantom3d", "mni", "speech", "brain-cls")


@app.command()
def synth(
    dest: Annotated[Path, typer.Argument(help="Folder to create (an nnU-Net v2 raw dataset)")],
    kind: Annotated[
        str,
        typer.Option(
            help="phantom (2D abdominal CT), phantom3d (3D abdominal CT), mni (MNI152 brain), "
            "speech (speech-like recordings with class-dependent prosody; cases = subjects), "
            "brain-cls (3-channel brain-like volumes, lesion classification; cases = patients)"
        ),
    ] = "phantom",
    cases: Annotated[int, typer.Option(min=2, help="Training cases")] = 48,
    test_cases: Annotated[int | None, typer.Option(min=0, help="Test cases (default cases // 3)")] = None,
    sites: Annotated[int | None, typer.Option(min=1, max=6, help="Number of sites (phantom3d, mni)")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Write a synthetic dataset with sites, held-out test labels and dataset.json."""
    from medloop.core.errors import SpecError
    from medloop.experiments.dataset import dataset_checksum, read_dataset, synth_phantom

    if kind not in KINDS:
        raise SpecError(f"--kind {kind!r} is not known", hint=f"use one of {', '.join(KINDS)}")
    if kind == "speech":
        _synth_speech(dest, cases=cases, test_cases=test_cases, sites=sites, seed=seed, json_out=json_out)
        return
    if kind == "brain-cls":
        _synth_brain_cls(dest, cases=cases, test_cases=test_cases, sites=sites, seed=seed, json_out=json_out)
        return
    if kind == "phantom":
        if sites is not None:
            raise SpecError("--sites applies to phantom3d and mni", hint="the 2D phantom has two sites")
        path = synth_phantom(dest, cases=cases, seed=seed, test_cases=test_cases)
    elif kind == "phantom3d":
        from medloop.experiments.dataset.phantom3d import synth_phantom3d

        path = synth_phantom3d(dest, cases=cases, seed=seed, test_cases=test_cases, n_sites=sites or 3)
    else:
        from medloop.experiments.dataset.mni import synth_mni

        path = synth_mni(dest, cases=cases, seed=seed, test_cases=test_cases, n_sites=sites or 3)
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


def _synth_speech(
    dest: Path, *, cases: int, test_cases: int | None, sites: int | None, seed: int, json_out: bool
) -> None:
    from medloop.experiments.dataset.audio_manifest import read_manifest
    from medloop.experiments.dataset.audio_synth import synth_speech

    path = synth_speech(dest, subjects=cases, test_subjects=test_cases, sites=sites or 2, seed=seed)
    recs = read_manifest(path)
    summary = {
        "path": str(path),
        "kind": "speech",
        "subjects": len({r.subject for r in recs}),
        "test_subjects": len({r.subject for r in recs if r.split == "test"}),
        "recordings": len(recs),
        "condition_subjects": len({r.subject for r in recs if r.label == 1}),
    }
    if json_out:
        print_json(summary)
        return
    console.print(
        f"[bold]{path}[/]: {summary['subjects']} subjects ({summary['test_subjects']} test, "
        f"{summary['condition_subjects']} in the condition class), {summary['recordings']} recordings"
    )


def _synth_brain_cls(
    dest: Path, *, cases: int, test_cases: int | None, sites: int | None, seed: int, json_out: bool
) -> None:
    from medloop.experiments.dataset.brain_cls import synth_brain_cls
    from medloop.experiments.dataset.cls_manifest import read_cls_dataset

    path = synth_brain_cls(dest, patients=cases, test_patients=test_cases, sites=sites or 2, seed=seed)
    ds = read_cls_dataset(path)
    summary = {
        "path": str(path),
        "kind": "brain-cls",
        "patients": len({r.patient for r in ds.rows.values()}),
        "training_cases": len(ds.training),
        "test_cases": len(ds.test),
        "channels": ds.channel_names,
        "classes": ds.classes,
    }
    if json_out:
        print_json(summary)
        return
    console.print(
        f"[bold]{path}[/]: {summary['patients']} patients, {len(ds.training)} training + {len(ds.test)} "
        f"test scans, channels {', '.join(ds.channel_names.values())}, classes {', '.join(ds.classes)}"
    )


@app.command()
def check(
    path: Annotated[
        Path, typer.Argument(help="nnU-Net v2 raw dataset folder, or an audio folder with manifest.csv")
    ],
    strict: Annotated[bool, typer.Option(help="Treat warnings (e.g. empty labels) as errors")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """List every problem in a dataset (each with its case and file); exit 1 on errors.
    An audio dataset (a folder with manifest.csv) gets the audio checks."""
    from medloop.experiments.dataset.checks import check_dataset

    if (path / "manifest.csv").is_file() and not (path / "dataset.json").is_file():
        from medloop.experiments.dataset.audio_checks import check_audio_dataset

        report = check_audio_dataset(path)
    elif (path / "labels.csv").is_file() and (path / "dataset.json").is_file():
        from medloop.experiments.dataset.cls_checks import check_cls_dataset

        report = check_cls_dataset(path)  # a classification dataset (images + labels.csv)
    else:
        report = check_dataset(path)
    failed = not report.ok or (strict and bool(report.warnings))
    if json_out:
        print_json(report.to_dict())
        if failed:  # the report above is the answer; a second (error) JSON document would break parsers
            raise SystemExit(1)
    else:
        for problem in report.problems:
            style = "red" if problem.severity == "error" else "yellow"
            console.print(f"[{style}]{problem.line()}[/]", highlight=False)
        verdict = "[red]FAILED[/]" if failed else "[green]OK[/]"
        console.print(
            f"{verdict} {path}: {report.n_training} training + {report.n_test} test cases, "
            f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        )
    if failed:
        from medloop.core.errors import MedloopError

        # MedloopError (exit 1) rather than typer.Exit: the entry point runs typer with
        # standalone_mode=False, where an Exit's code is returned, not used.
        raise MedloopError(
            f"{path}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)",
            hint="fix the files listed above" + (" (--strict counts warnings)" if strict else ""),
        )


@app.command()
def fingerprint(
    path: Annotated[Path, typer.Argument(help="nnU-Net v2 raw dataset folder")],
    memory_mb: Annotated[
        float, typer.Option(help="Memory budget for the planned patch and batch (MB)")
    ] = 8000.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print fingerprint and plans as JSON")] = False,
) -> None:
    """Fingerprint a dataset and plan its nnU-Net-style baseline (saved as medloop_plans.json)."""
    from medloop.experiments.dataset.fingerprint import summarize_fingerprint
    from medloop.experiments.dataset.plans import PLANS_FILE, load_or_make_plans, plan_baseline

    plans = load_or_make_plans(path, memory_mb=memory_mb)
    fp: dict[str, Any] = plans["fingerprint"]
    out = {
        "path": str(path),
        "plans_file": str(path / PLANS_FILE) if (path / PLANS_FILE).is_file() else None,
        "summary": summarize_fingerprint(fp),
        "fingerprint": {k: v for k, v in fp.items() if k not in ("shapes", "shapes_before_crop", "spacings")},
        "configurations": plans["configurations"],
        "default": plans["default"],
        "baseline": plan_baseline(path, memory_mb=memory_mb),
    }
    if json_out:
        print_json(out)
        return
    s = out["summary"]
    console.print(
        f"[bold]{fp['dataset']}[/]: {fp['n_cases']} cases, {int(s['n_classes'])} classes, "
        f"{int(s['n_sites'])} site(s), median shape {fp['median_shape']}, spacing {fp['median_spacing']} mm"
    )
    for name, cfg in plans["configurations"].items():
        mark = " (default)" if name == plans["default"] else ""
        console.print(
            f"  {name}{mark}: patch {cfg['patch_size']}, batch {cfg['batch_size']}, depth {cfg['depth']}, "
            f"spacing {cfg['target_spacing']}, ~{cfg['estimated_memory_mb']:.0f} MB"
        )
    console.print("baseline: " + ", ".join(f"{k}={v}" for k, v in out["baseline"].items()))


@app.command("convert-daic-woz")
def convert_daic_woz(
    src: Annotated[Path, typer.Argument(help="DAIC-WOZ folder (<id>_P/<id>_AUDIO.wav and *split*.csv)")],
    dst: Annotated[Path, typer.Argument(help="New audio dataset folder (manifest.csv)")],
) -> None:
    """Convert DAIC-WOZ (participant folders + AVEC split CSVs) to an audio dataset."""
    from medloop.experiments.dataset.audio_convert import convert_daic_woz as convert

    _converted(convert(src, dst))


@app.command("convert-modma")
def convert_modma(
    src: Annotated[Path, typer.Argument(help="MODMA audio folder (subject folders of .wav files)")],
    dst: Annotated[Path, typer.Argument(help="New audio dataset folder (manifest.csv)")],
    info: Annotated[
        Path | None, typer.Option(help="Subject information table (default: the one in SRC)")
    ] = None,
) -> None:
    """Convert MODMA audio (subject folders + subject info with type MDD/HC, PHQ-9)."""
    from medloop.experiments.dataset.audio_convert import convert_modma as convert

    _converted(convert(src, dst, info))


def _converted(path: Path) -> None:
    from medloop.experiments.dataset.audio_manifest import read_manifest

    recs = read_manifest(path)
    subjects = {r.subject for r in recs}
    positive = {r.subject for r in recs if r.label == 1}
    console.print(
        f"[bold]{path}[/]: {len(recs)} recordings of {len(subjects)} subjects ({len(positive)} in the "
        "condition class); check it with `medloop dataset check`"
    )


@app.command("convert-msd")
def convert_msd(
    src: Annotated[Path, typer.Argument(help="Medical Segmentation Decathlon task folder")],
    dst: Annotated[Path, typer.Argument(help="New nnU-Net v2 raw dataset folder")],
) -> None:
    """Convert an MSD task (4D NIfTI, modality/labels/training lists) to nnU-Net v2 raw."""
    from medloop.experiments.dataset import read_dataset
    from medloop.experiments.dataset.msd import convert_msd as convert

    path = convert(src, dst)
    ds = read_dataset(path)
    console.print(
        f"[bold]{path}[/]: {len(ds.training)} training + {len(ds.test)} test cases, {ds.n_channels} channel(s)"
    )


@app.command()
def split(
    path: Annotated[Path, typer.Argument(help="nnU-Net v2 raw dataset folder")],
    method: Annotated[str, typer.Option(help="holdout | kfold | leave_site_out")] = "kfold",
    k: Annotated[int, typer.Option(min=2, help="Folds for kfold")] = 5,
    seed: Annotated[int, typer.Option(help="Split seed (nnU-Net uses 12345)")] = 12345,
    fraction: Annotated[float, typer.Option(help="Held-out fraction for holdout")] = 0.3,
    json_out: Annotated[bool, typer.Option("--json", help="Print the splits as JSON")] = False,
) -> None:
    """Create (or show) the saved splits file of a dataset."""
    from medloop.experiments.dataset import read_dataset
    from medloop.experiments.dataset.splits import load_or_save_splits

    ds = read_dataset(path)
    splits, file, digest = load_or_save_splits(
        ds.root, method, [c.id for c in ds.training], ds.sites, k=k, seed=seed, fraction=fraction
    )
    if json_out:
        print_json({"file": file, "sha256": digest, "splits": splits})
        return
    for i, fold in enumerate(splits):
        site = f" (site {fold['site']})" if "site" in fold else ""
        console.print(f"fold {i}{site}: {len(fold['train'])} train, {len(fold['val'])} val")
    console.print(f"saved as {file}" if file else "[yellow]dataset folder is read-only: splits not saved[/]")
