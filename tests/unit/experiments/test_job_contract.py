"""The job contract: `python -m medloop.experiments run --spec SPEC --out OUT`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medloop.core.records import DatasetManifest, JobOutcome, TrialSpec
from medloop.core.specs import SegConfig
from medloop.evaluation.metrics import evaluate_split, tamper_gap
from medloop.experiments.dataset import (
    build_manifest,
    held_out_labels,
    read_volume,
    stage_inputs,
    synth_phantom,
)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DatasetManifest, dict[str, Path]]:
    root = tmp_path_factory.mktemp("job")
    ds = synth_phantom(root / "Dataset900_Tiny", cases=8, seed=3, test_cases=3)
    manifest = build_manifest(ds, eval_fraction=0.25, split_seed=1)
    return ds, manifest, stage_inputs(ds, manifest, root / "staging")


def _job_dir(tmp_path: Path, parts: dict[str, Path], spec: TrialSpec | str) -> Path:
    in_dir = tmp_path / "in"
    in_dir.mkdir(parents=True)
    for name, path in parts.items():
        (in_dir / name).symlink_to(path)
    text = spec if isinstance(spec, str) else spec.model_dump_json(indent=1)
    (in_dir / "spec.json").write_text(text)
    return in_dir / "spec.json"


def _run(spec: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medloop.experiments", "run", "--spec", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )


TINY = SegConfig(
    iterations=20, epoch_iterations=10, batch_size=4, internal_val_fraction=0.34, base_features=8
)


@pytest.mark.slow
def test_job_trains_predicts_and_reports_what_the_host_recomputes(tmp_path: Path, staged) -> None:
    ds, manifest, parts = staged
    spec = TrialSpec(dataset=manifest, config=TINY, seed=11)
    spec_path = _job_dir(tmp_path / "a", parts, spec)
    proc = _run(spec_path, tmp_path / "a" / "out")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "setup" in kinds
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["iteration"] for e in epochs] == [10, 20]
    assert all({"loss", "val_dice", "seconds", "peak_memory_mb"} <= set(e) for e in epochs)
    assert any(e["event"] == "progress" and e["loss"] > 0 for e in events)

    out = tmp_path / "a" / "out"
    result = JobOutcome.model_validate_json((out / "result.json").read_text())
    assert result.status == "completed" and result.error is None
    assert result.predictions == {s: f"predictions/{s}" for s in ("internal_val", "eval", "test")}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.safetensors", "last.safetensors"]
    assert result.checkpoint == "checkpoints/best.safetensors"
    for key in ("s_per_iteration", "train_seconds", "inference_s_per_case", "peak_memory_mb", "device"):
        assert result.efficiency[key], key
    assert {"torch", "monai", "medloop", "python"} <= set(result.versions)
    assert len(result.history) == 2 and result.history[-1]["iteration"] == 20

    for split, cases in (("eval", manifest.eval_cases), ("test", manifest.test_cases)):
        for case in cases:
            pred = read_volume(out / "predictions" / split / f"{case}.nii.gz", dtype=np.int16)
            image = read_volume(ds / ("imagesTr" if split == "eval" else "imagesTs") / f"{case}_0000.nii.gz")
            assert pred.shape == image.shape
            np.testing.assert_allclose(pred.affine, image.affine)
            assert set(np.unique(pred.array)) <= {0, 1, 2, 3}

    reported = result.reported[0]
    internal = sorted(reported.per_case)
    assert len(internal) == 2 and not set(internal) & set(manifest.eval_cases)
    labels = {c: p for c, p in held_out_labels(ds, manifest, "internal_val").items() if c in internal}
    recomputed = evaluate_split(
        out / "predictions" / "internal_val",
        labels,
        labels=manifest.labels,
        sites=manifest.sites,
        split="internal_val",
    )
    assert tamper_gap(reported, recomputed) < 1e-9

    # same spec, same seed: the same predictions
    again = _run(_job_dir(tmp_path / "b", parts, spec), tmp_path / "b" / "out")
    assert again.returncode == 0, again.stderr
    for case in manifest.eval_cases:
        first = read_volume(out / "predictions" / "eval" / f"{case}.nii.gz").array
        second = read_volume(tmp_path / "b" / "out" / "predictions" / "eval" / f"{case}.nii.gz").array
        np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        (None, "config.learning_rate: unknown key"),
    ],
)
def test_malformed_spec_exits_2_with_one_line(
    tmp_path: Path, staged, text: str | None, expected: str
) -> None:
    _, manifest, parts = staged
    if text is None:
        good = json.loads(TrialSpec(dataset=manifest, config=TINY, seed=0).model_dump_json())
        good["config"]["learning_rate"] = 0.1
        text = json.dumps(good)
    spec_path = _job_dir(tmp_path, parts, text)
    proc = _run(spec_path, tmp_path / "out")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "result.json").exists()


def test_missing_spec_exits_2(tmp_path: Path) -> None:
    proc = _run(tmp_path / "nope.json", tmp_path / "out")
    assert proc.returncode == 2 and "spec file not found" in proc.stderr


def test_missing_input_fails_fast_with_a_failed_result(tmp_path: Path, staged) -> None:
    _, manifest, parts = staged
    broken = manifest.model_copy(update={"train_cases": [*manifest.train_cases, "phantom_999"]})
    spec_path = _job_dir(tmp_path, parts, TrialSpec(dataset=broken, config=TINY, seed=0))
    proc = _run(spec_path, tmp_path / "out")
    assert proc.returncode == 1
    result = JobOutcome.model_validate_json((tmp_path / "out" / "result.json").read_text())
    assert result.status == "failed" and "phantom_999" in str(result.error)
    assert json.loads(proc.stdout.splitlines()[-1])["event"] == "failed"


def test_error_inside_the_trainer_is_a_failed_outcome(tmp_path: Path, staged, capsys) -> None:
    import torch

    from medloop.experiments.job import EXIT_FAILED, run_job

    threads = torch.get_num_threads()  # the job sets its own; restore this process's value

    _, manifest, parts = staged
    bad = TINY.model_copy(update={"patch_size": "32x32x32"})  # three axes for a 2D model
    spec_path = _job_dir(tmp_path, parts, TrialSpec(dataset=manifest, config=bad, seed=0))
    try:
        assert run_job(spec_path, tmp_path / "out") == EXIT_FAILED
    finally:
        torch.set_num_threads(threads)
    result = JobOutcome.model_validate_json((tmp_path / "out" / "result.json").read_text())
    assert result.status == "failed" and "does not have 2 axes" in str(result.error)
    assert "torch" in result.versions
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["event"] == "failed"


@pytest.mark.slow
def test_job_records_size_flops_and_per_case_inference_cost(tmp_path: Path, staged) -> None:
    _, manifest, parts = staged
    config = SegConfig(
        iterations=4, epoch_iterations=4, batch_size=2, internal_val_fraction=0.34, model_size="S"
    )
    spec_path = _job_dir(tmp_path / "s", parts, TrialSpec(dataset=manifest, config=config, seed=2))
    proc = _run(spec_path, tmp_path / "s" / "out")
    assert proc.returncode == 0, proc.stderr
    eff = JobOutcome.model_validate_json((tmp_path / "s" / "out" / "result.json").read_text()).efficiency
    assert eff["model_size"] == "S" and eff["flops_per_patch"] > 0 and eff["parameters"] > 0
    timed = set(eff["inference_seconds"])
    wanted = {f"eval/{c}" for c in manifest.eval_cases} | {f"test/{c}" for c in manifest.test_cases}
    assert wanted <= timed  # every case the host scores was timed
    assert eff["inference_s_per_case_max"] == max(eff["inference_seconds"].values())
    assert eff["peak_inference_memory_mb"] > 0 and eff["memory_measure"] == "cpu max RSS"
