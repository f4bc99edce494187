"""One round of simulated interaction, inside the sandbox:

    python -m medloop.experiments interact --spec /in/spec.json --prompts /in/prompts/prompts.json --out /out

Inputs: the trial spec, the split's images (`/in/<split>/imagesTs`, no labels), the
trained checkpoint (`/in/model/<file>`) and the host's prompts of this round:

    {"split": "eval", "round": 3,
     "targets": [{"case": "c1", "label": 1, "clicks": [[x, y, z, 1], [x, y, z, 0], ...],
                  "box": [x0, y0, z0, x1, y1, z1] or null}]}

(voxel indices of the volume; 1 a positive, 0 a negative click; every click so far).
Output: `predictions/<split>/<case>/<label>.npy`, a uint8 0/1 mask of the volume's shape
per target, and result.json. The host derives the next clicks from these predictions and
the labels it keeps (medloop.evaluation.interactive).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medloop.core.records import JobOutcome, TrialSpec
from medloop.core.specs import PromptableConfig
from medloop.experiments.job import versions
from medloop.experiments.promptable.checkpoints import load_into, read_meta
from medloop.experiments.promptable.data import Roi
from medloop.experiments.promptable.model import build_model
from medloop.experiments.segmentation.data import Normalizer, load_cases

Emit = Callable[[dict[str, Any]], None]
_SPLITS = ("eval", "test")
_CASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")


def read_prompts(path: Path, spec: TrialSpec) -> tuple[str, list[dict[str, Any]]]:
    """(split, targets) of a round's prompts file; ValueError naming the bad entry."""
    data = json.loads(path.read_text())
    split = data.get("split")
    if split not in _SPLITS:
        raise ValueError(f"{path.name}: split {split!r} is not one of {_SPLITS}")
    cases = set(spec.dataset.eval_cases if split == "eval" else spec.dataset.test_cases)
    targets = data.get("targets")
    if not isinstance(targets, list):
        raise ValueError(f"{path.name}: targets must be a list")
    for i, t in enumerate(targets):
        if t.get("case") not in cases or not _CASE.match(str(t.get("case"))):
            raise ValueError(f"{path.name}: targets[{i}].case {t.get('case')!r} is not a {split} case")
        if not isinstance(t.get("label"), int) or not t.get("clicks"):
            raise ValueError(f"{path.name}: targets[{i}] needs an integer label and at least one click")
    return split, targets


def _model_file(in_dir: Path) -> Path:
    files = sorted(p for p in (in_dir / "model").iterdir() if p.name.endswith(".safetensors"))
    if len(files) != 1:
        raise ValueError(f"/in/model holds {len(files)} checkpoints; expected one")
    return files[0]


def run_round(spec: TrialSpec, in_dir: Path, prompts: Path, out_dir: Path, emit: Emit) -> JobOutcome:
    from medloop.experiments.segmentation.training import peak_memory_mb

    t0 = time.perf_counter()
    config = spec.config_as(PromptableConfig)
    torch.set_num_threads(config.num_threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    split, targets = read_prompts(prompts, spec)
    ckpt = _model_file(in_dir)
    meta = read_meta(ckpt)
    model = build_model(str(meta["preset"]), int(meta["in_chans"]), bool(meta["boxes"]))
    load_into(model, ckpt, preset=str(meta["preset"]))
    model = model.to(device).eval()
    norm_meta = meta["normalizer"]
    norm = Normalizer(
        list(norm_meta["schemes"]),
        {int(k): tuple(v) for k, v in norm_meta["ct"].items()},  # type: ignore[misc]
    )
    size = model.arch.image_size
    ds = spec.dataset
    by_case: dict[str, list[dict[str, Any]]] = {}
    for t in targets:
        by_case.setdefault(str(t["case"]), []).append(t)
    n_cases, infer_s = 0, 0.0
    with torch.inference_mode():
        for case_id, items in sorted(by_case.items()):
            (case,) = load_cases(
                in_dir / split / "imagesTs",
                None,
                [case_id],
                n_channels=len(ds.channel_names),
                ending=ds.file_ending,
                sites=ds.sites,
            )
            image = norm.apply(case.image)
            tic = time.perf_counter()
            embeddings: dict[Roi, torch.Tensor] = {}
            for t in items:
                clicks = np.asarray(t["clicks"], dtype=np.float32)
                first = tuple(int(v) for v in clicks[0, :3])
                roi = (
                    Roi(size, case.spatial, None)
                    if config.roi == "volume"
                    else Roi.around(size, case.spatial, first)  # type: ignore[arg-type]
                )
                if roi not in embeddings:
                    embeddings[roi] = model.image_encoder(roi.image(image)[None].to(device))
                points = torch.from_numpy(roi.points(clicks[:, :3]))[None].to(device)
                labels = torch.from_numpy(clicks[:, 3].astype(np.int64))[None].to(device)
                box = None
                if config.prompt == "box" and t.get("box") is not None:
                    corners = roi.points(np.asarray(t["box"], dtype=np.float32).reshape(2, 3)).reshape(1, 6)
                    box = torch.from_numpy(corners).to(device)
                logits = model.decode(embeddings[roi], points, labels, box)[0, 0]
                mask = roi.back(logits)
                dest = out_dir / "predictions" / split / case_id / f"{int(t['label'])}.npy"
                dest.parent.mkdir(parents=True, exist_ok=True)
                np.save(dest, mask.astype(np.uint8), allow_pickle=False)
            infer_s += time.perf_counter() - tic
            n_cases += 1
    emit({"event": "round", "split": split, "targets": len(targets), "seconds": time.perf_counter() - t0})
    return JobOutcome(
        status="completed",
        predictions={split: f"predictions/{split}"},
        efficiency={
            "device": str(device),
            "inference_s_per_case": infer_s / max(n_cases, 1),
            "round_seconds": time.perf_counter() - t0,
            "peak_memory_mb": peak_memory_mb(device),
        },
        versions=versions(),
    )


def run_interaction(spec_path: Path, prompts: Path, out_dir: Path) -> int:
    """Entry point of a round job: the same exit codes and result.json as `run`."""
    import sys
    import traceback

    from medloop.experiments.job import EXIT_FAILED, EXIT_OK, emit, load_spec, write_outcome

    spec = load_spec(spec_path)  # SpecError propagates: the entry point exits 2
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        outcome = run_round(spec, spec_path.parent, prompts, out_dir, emit)
    except Exception as exc:  # noqa: BLE001 - a failed round is an outcome (data)
        error = f"{type(exc).__name__}: {exc}"
        emit({"event": "failed", "error": error})
        sys.stderr.write(traceback.format_exc(limit=-6))
        write_outcome(out_dir, JobOutcome(status="failed", error=error, versions=versions()))
        return EXIT_FAILED
    write_outcome(out_dir, outcome)
    emit({"event": "done", "status": outcome.status})
    return EXIT_OK
