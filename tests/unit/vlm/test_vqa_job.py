"""The VQA trial through the job contract: `python -m medloop.experiments run`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medloop.core.records import DatasetManifest, JobOutcome, TrialSpec
from medloop.core.specs import VqaConfig
from medloop.evaluation.vqa import evaluate_split
from medloop.experiments.dataset import synth_phantom
from medloop.experiments.vlm.convert import convert_dataset
from medloop.experiments.vlm.manifest import build_vqa_manifest, held_out_items, stage_vqa_inputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DatasetManifest, dict[str, Path]]:
    root = tmp_path_factory.mktemp("vqajob")
    vqa = convert_dataset(
        synth_phantom(root / "Dataset952_P", cases=8, seed=2, test_cases=2), root / "vqa", seed=0
    )
    manifest = build_vqa_manifest(vqa, eval_fraction=0.25, split_seed=1)
    return vqa, manifest, stage_vqa_inputs(vqa, manifest, root / "staging")


def _run(
    tmp_path: Path, parts: dict[str, Path], spec: TrialSpec
) -> tuple[subprocess.CompletedProcess[str], Path]:
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    for name, path in parts.items():
        (in_dir / name).symlink_to(path)
    (in_dir / "spec.json").write_text(spec.model_dump_json())
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "medloop.experiments",
            "run",
            "--spec",
            str(in_dir / "spec.json"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    return run, out


def test_full_finetune_then_answers_scored_on_host(
    staged: tuple[Path, DatasetManifest, dict[str, Path]], tmp_path: Path
) -> None:
    vqa, manifest, parts = staged
    config = VqaConfig(method="full", lr=3e-3, epochs=2, batch_size=8, max_new_tokens=4)
    run, out = _run(tmp_path, parts, TrialSpec(task="vqa", dataset=manifest, config=config, seed=0))
    assert run.returncode == 0, run.stderr[-2000:]
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert next(e["event"] for e in events) == "start" and events[-1] == {
        "event": "done",
        "status": "completed",
    }
    assert sum(e["event"] == "epoch" for e in events) == 2
    outcome = JobOutcome.model_validate_json((out / "result.json").read_text())
    assert outcome.predictions == {"eval": "predictions/eval.jsonl", "test": "predictions/test.jsonl"}
    assert outcome.history[1]["loss"] < outcome.history[0]["loss"]
    assert (
        outcome.versions["transformers"] and outcome.setup["train_items"] == manifest.split["n_train_items"]
    )
    eval_items = held_out_items(vqa, manifest, "eval")
    evaluation = evaluate_split(eval_items, out / outcome.predictions["eval"], split="eval", model="t")
    assert len(evaluation.cases) == len(eval_items.items) == manifest.split["n_eval_items"]
    assert evaluation.summary["accuracy"] is not None and 0.0 <= evaluation.summary["accuracy"] <= 1.0
    assert evaluation.settings["extraction"].get("missing", 0) == 0


def test_lora_keeps_its_adapter(
    staged: tuple[Path, DatasetManifest, dict[str, Path]], tmp_path: Path
) -> None:
    _, manifest, parts = staged
    config = VqaConfig(method="lora", lora_rank=4, lr=1e-2, epochs=1, train_categories="task=laterality")
    run, out = _run(tmp_path, parts, TrialSpec(task="vqa", dataset=manifest, config=config, seed=1))
    assert run.returncode == 0, run.stderr[-2000:]
    outcome = JobOutcome.model_validate_json((out / "result.json").read_text())
    assert outcome.checkpoint == "checkpoint" and (out / "checkpoint" / "adapter_model.safetensors").is_file()
    assert outcome.efficiency["trainable_params"] < outcome.efficiency["total_params"]
    assert 0 < outcome.setup["train_items"] < manifest.split["n_train_items"]  # laterality items only


def test_missing_weights_fail_the_trial_with_a_clear_reason(
    staged: tuple[Path, DatasetManifest, dict[str, Path]], tmp_path: Path
) -> None:
    _, manifest, parts = staged
    config = VqaConfig(model_path="/nonexistent/llava", method="none")
    run, out = _run(tmp_path, parts, TrialSpec(task="vqa", dataset=manifest, config=config, seed=0))
    assert run.returncode == 1
    outcome = JobOutcome.model_validate_json((out / "result.json").read_text())
    assert outcome.status == "failed" and "model_path /nonexistent/llava" in (outcome.error or "")


def test_bench_runs_local_weights_in_the_sandbox(tmp_path: Path, workspace: Path) -> None:
    """`medloop vqa bench --model hf:DIR`: a model folder (here a saved tiny model standing in
    for real weights) is mounted into a sandbox job; the answers are scored on the host."""
    from typer.testing import CliRunner

    from medloop.cli import app
    from medloop.experiments.vlm.prompting import prompt_text
    from medloop.experiments.vlm.tiny import build_tiny_model
    from medloop.experiments.vlm.tsv import read_tsv
    from tests.unit.vlm.builders import COLOURS, colour_row, write_rows

    colours = list(COLOURS)
    tsv = write_rows(
        tmp_path / "b.tsv", [colour_row(str(i), colours[i % 4], colours[i % 4]) for i in range(8)]
    )
    weights = build_tiny_model(
        [prompt_text(i) for i in read_tsv(tsv).items], tmp_path / "weights", image_size=16
    )
    result = CliRunner().invoke(
        app,
        [
            *("vqa", "bench", str(tsv), "--model", f"hf:{weights}"),
            *("--image-size", "16", "--max-new-tokens", "3", "--out", str(tmp_path / "out"), "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)["reports"]
    assert report["overall"]["n"] == 8 and report["model"] == f"hf:{weights}"
    assert sum(report["extraction"].values()) == 8 and "missing" not in report["extraction"]
    jobs = list((workspace / "jobs").iterdir())
    assert len(jobs) == 1  # one sandbox job answered the whole benchmark
