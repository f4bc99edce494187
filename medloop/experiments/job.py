"""The job contract, inside the sandbox: read the TrialSpec, run the trial, write
`result.json` (a JobOutcome) atomically and stream JSON-lines events on stdout.

Exit codes: 0 completed; 1 the trial failed (result.json says why); 2 the spec is
malformed (one line on stderr, nothing written).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medloop.core.errors import SpecError
from medloop.core.records import JobOutcome, TrialSpec
from medloop.core.specs import format_validation_error

EXIT_OK, EXIT_FAILED, EXIT_BAD_SPEC = 0, 1, 2

# task -> "module:function(spec, in_dir, out_dir, emit) -> JobOutcome", imported only when
# a job of that task runs (a segmentation job never imports the VLM stack, and so on).
JOB_RUNNERS: dict[str, str] = {
    "segmentation": "medloop.experiments.segmentation.job:run_segmentation",
    "vqa": "medloop.experiments.vlm.job:run_vqa",
    "audio": "medloop.experiments.audio.train:run_audio",
    "pretrain": "medloop.experiments.pretrain.train:run_pretrain",
    "promptable": "medloop.experiments.promptable.train:run_promptable",
    "classification": "medloop.experiments.classification.train:run_classification",
}


def emit(event: dict[str, Any]) -> None:
    """One JSON line on stdout, flushed so the host streams it live."""
    sys.stdout.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def load_spec(path: Path) -> TrialSpec:
    """Parse `path` as a TrialSpec; SpecError (one line naming the file and key) otherwise."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read spec ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a JSON object")
    try:
        return TrialSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, str(path))) from None


def write_outcome(out_dir: Path, outcome: JobOutcome) -> Path:
    """Write result.json via a temp file and rename: the host never sees half of it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".result-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        fh.write(outcome.model_dump_json(indent=2))
    dest = out_dir / "result.json"
    Path(tmp).replace(dest)
    return dest


def run_job(spec_path: Path, out_dir: Path) -> int:
    spec = load_spec(spec_path)  # SpecError propagates: the entry point exits 2
    out_dir.mkdir(parents=True, exist_ok=True)
    emit({"event": "start", "task": spec.task, "spec_hash": spec.spec_hash(), "seed": spec.seed})
    try:
        runner = JOB_RUNNERS.get(spec.task)
        if runner is None:
            raise ValueError(f"task {spec.task!r} has no trainer in this job image")
        if spec.task in ("segmentation", "pretrain"):
            check_inputs(spec, spec_path.parent)  # fail in a second, before torch is imported
        if spec.task == "vqa" and "transformers" in sys.modules and sys.modules["transformers"] is None:
            # The entry point hides `transformers` from MONAI for segmentation jobs; a VLM
            # job runs on it.
            del sys.modules["transformers"]
        module, _, attr = runner.partition(":")
        outcome: JobOutcome = getattr(importlib.import_module(module), attr)(
            spec, spec_path.parent, out_dir, emit
        )
    except Exception as exc:  # noqa: BLE001 - any trial fault becomes a failed outcome (data)
        error = f"{type(exc).__name__}: {exc}"
        tail = traceback.format_exc(limit=-6)
        emit({"event": "failed", "error": error})
        sys.stderr.write(tail)
        write_outcome(out_dir, JobOutcome(status="failed", error=error, versions=versions()))
        return EXIT_FAILED
    write_outcome(out_dir, outcome)
    emit({"event": "done", "status": outcome.status})
    return EXIT_OK


def check_inputs(spec: TrialSpec, in_dir: Path) -> None:
    """Every file the spec names must be staged: DatasetError naming the first missing one."""
    from medloop.core.errors import DatasetError

    ds = spec.dataset
    channels = range(len(ds.channel_names))
    wanted = [in_dir / "train" / "labelsTr" / f"{c}{ds.file_ending}" for c in ds.train_cases]
    for folder, cases in (
        ("train/imagesTr", ds.train_cases),
        ("eval/imagesTs", ds.eval_cases),
        ("test/imagesTs", ds.test_cases),
    ):
        wanted += [in_dir / folder / f"{c}_{ch:04d}{ds.file_ending}" for c in cases for ch in channels]
    if spec.init_checkpoint is not None:
        wanted.append(in_dir / spec.init_checkpoint)
    missing = [p for p in wanted if not p.is_file()]
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"input not staged: {missing[0].relative_to(in_dir)}{more}")


def versions() -> dict[str, str]:
    """Library versions for provenance. torch/MONAI only if already imported."""
    import platform

    from medloop import __version__

    out = {"medloop": __version__, "python": platform.python_version()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = str(torch.__version__)
        if torch.version.cuda:
            out["cuda"] = str(torch.version.cuda)
            if torch.cuda.is_available():
                out["cudnn"] = str(torch.backends.cudnn.version())
                out["gpu"] = str(torch.cuda.get_device_name(0))
    monai = sys.modules.get("monai")
    if monai is not None:
        out["monai"] = str(monai.__version__)
    for name in ("numpy", "nibabel", "safetensors"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = str(getattr(module, "__version__", "unknown"))
    return out
