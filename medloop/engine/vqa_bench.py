"""Benchmark runs outside a campaign: a VQA TSV answered by one model, scored on the host.

Local Hugging Face models run inside a sandbox job (the campaign job with method `none`):
the host stages the TSV without answers, the job writes raw answers, the host scores them.
API models (any litellm chat model) run on the host, since sandboxes have no network.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from medloop.core import safe_tree
from medloop.core.errors import DatasetError, MedloopError
from medloop.core.ids import sha256_hex
from medloop.core.records import DatasetManifest, JobOutcome, JobSpec, TrialSpec
from medloop.core.specs import SandboxSpec, VqaConfig
from medloop.engine.outputs import OutputTree, UnsafeOutput
from medloop.experiments.vlm.base import AnswerModel
from medloop.experiments.vlm.runner import RunSummary, run_benchmark
from medloop.experiments.vlm.tsv import read_tsv, write_tsv
from medloop.sandbox.base import Executor, limits_for

# The job contract (DESIGN.md): the same command campaigns run.
JOB_COMMAND = ["python", "-m", "medloop.experiments", "run", "--spec", "/in/spec.json", "--out", "/out"]


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_api_model(
    tsv: Path, model: AnswerModel, out: Path, *, batch_size: int = 8, timeout_s: float = 60.0
) -> RunSummary:
    """Answer every item of `tsv` with an API model on the host; writes `out` (JSON lines)."""
    table = read_tsv(tsv)
    return run_benchmark(table.items, model, out, batch_size=batch_size, timeout_s=timeout_s)


def run_local_model(
    tsv: Path,
    config: VqaConfig,
    executor: Executor,
    work: Path,
    *,
    sandbox: SandboxSpec,
) -> Path:
    """Answer every item of `tsv` with a local model in a sandbox job; returns the predictions
    file. Raises SandboxUnavailable with the job's reason when the job does not complete."""
    table = read_tsv(tsv)
    checksum = file_sha256(tsv)
    config = config.model_copy(update={"method": "none"})
    staged = work / f"bench-{checksum[:16]}"
    eval_dir = staged / "eval"
    if not (eval_dir / "eval.tsv").is_file():
        write_tsv(eval_dir / "eval.tsv", table.items, with_answers=False)
    manifest = DatasetManifest(
        name=tsv.stem,
        checksum=checksum,
        channel_names={},
        labels={},
        file_ending=".tsv",
        train_cases=[],
        eval_cases=[i.index for i in table.items],
        split={"method": "benchmark", "n_eval_items": len(table.items)},
    )
    spec = TrialSpec(task="vqa", dataset=manifest, config=config, seed=0)
    spec_path = work / "specs" / f"{spec.spec_hash()}.json"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=spec_path.parent, prefix=".spec-")
    with os.fdopen(fd, "w") as fh:
        fh.write(spec.model_dump_json(indent=2))
    Path(tmp).replace(spec_path)
    inputs: dict[str, Path] = {"spec.json": spec_path, "eval": eval_dir}
    model_dir = Path(config.model_path).expanduser()
    if config.model_path != "tiny":
        if not (model_dir / "config.json").is_file():
            raise DatasetError(f"{model_dir}: not a Hugging Face model folder (no config.json)")
        inputs["model"] = model_dir.resolve()
    threads = str(config.num_threads)
    job = JobSpec(
        key=f"vqa-bench.{sha256_hex(spec.spec_hash() + str(model_dir.resolve()))[:24]}",
        command=list(JOB_COMMAND),
        inputs=inputs,
        env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
        limits=limits_for(sandbox),
        image=sandbox.image,
        labels={"medloop.kind": "vqa-bench"},
    )
    [result] = executor.run([job])
    if result.status != "succeeded":
        raise MedloopError(
            f"benchmark job {job.key} {result.status}: {result.reason or result.log_tail[-500:]}",
            hint="see `medloop sandbox jobs` for its log",
        )
    # Read through the safe reader: the job controls every name in its output folder.
    outputs = OutputTree(result.out_dir, result.out_dir.parent / "scratch")
    copy = result.out_dir.parent / "predictions-eval.jsonl"  # host-owned, beside /out
    try:
        outputs.check()
        outcome = JobOutcome.model_validate_json(outputs.read_text("result.json"))
        if outcome.status != "completed" or "eval" not in outcome.predictions:
            raise MedloopError(f"benchmark job {job.key} failed: {outcome.error}")
        copy.unlink(missing_ok=True)
        safe_tree.copy_file(result.out_dir, outcome.predictions["eval"], copy)
    except UnsafeOutput as exc:
        raise MedloopError(f"benchmark job {job.key}: unsafe output: {exc.message}") from None
    except (OSError, ValidationError, ValueError) as exc:
        raise MedloopError(
            f"benchmark job {job.key}: result.json or predictions missing or invalid ({exc})"
        ) from None
    return copy


def save_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(data, indent=2, default=str) + "\n")
    Path(tmp).replace(path)
    return path
