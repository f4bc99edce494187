"""Promptable 3D segmentation: a trial is a training job, then an interactive evaluation
that the host drives round by round (docs/promptable.md).

Round k: the host computes each target's k-th click from the error of the job's round k-1
prediction against the reference label it keeps (medloop.evaluation.interactive), writes
every click so far to a prompts file, and runs one sandboxed *round job* with the trained
checkpoint, the split's images and that file (never a label: the round job's inputs hold no
labels of any split). It reads the predicted masks back through OutputTree and scores them.
After `eval_clicks` rounds (or sooner, once every target has had 10 clicks and reached
Dice 0.90, or is exact) it reports Dice after 1..k clicks and NoC@80/85/90 per case and
class, recomputed from the raw masks.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from medloop.core.errors import DatasetError
from medloop.core.records import CaseEvaluation, JobOutcome, SplitEvaluation, TrialSpec
from medloop.core.specs import DatasetRef, Objective, PromptableConfig
from medloop.engine.base import PreparedDataset
from medloop.engine.outputs import OutputTree
from medloop.engine.tasks.base import FollowUpJobs, ScoringContext, TaskFamily
from medloop.engine.tasks.segmentation import FAMILY as SEGMENTATION
from medloop.evaluation.interactive import (
    IMPLEMENTATION,
    Click,
    bounding_box,
    curve_metrics,
    dice,
    next_click,
)
from medloop.experiments.dataset import held_out_labels
from medloop.experiments.dataset.checkpoints import stage_checkpoint
from medloop.experiments.dataset.imageio import read_volume

ROUND_COMMAND = [
    "python",
    "-m",
    "medloop.experiments",
    "interact",
    "--spec",
    "/in/spec.json",
    "--prompts",
    "/in/prompts/prompts.json",
    "--out",
    "/out",
]
EARLY_STOP_CLICKS, EARLY_STOP_DICE = 10, 0.90
_MASK_BYTES_SLACK = 1024  # an .npy header is at most this long


@dataclass
class Target:
    case: str
    label: int
    name: str
    ref: NDArray[np.bool_]
    spacing: tuple[float, float, float]
    clicks: list[Click] = field(default_factory=list)
    curve: list[float] = field(default_factory=list)
    pred: NDArray[np.bool_] | None = None
    exact: bool = False
    error: str | None = None

    def done(self) -> bool:
        return self.exact or (
            len(self.curve) >= EARLY_STOP_CLICKS and max(self.curve, default=0.0) >= EARLY_STOP_DICE
        )


def read_mask(path: Path | None, shape: tuple[int, ...], where: str) -> NDArray[np.bool_]:
    """A job's .npy mask, checked before it is read: a plain uint8/bool array of `shape`."""
    if path is None:
        raise DatasetError(f"the round job wrote no {where}")
    expected = int(np.prod(shape))
    if path.stat().st_size > expected + _MASK_BYTES_SLACK:
        raise DatasetError(f"{where}: {path.stat().st_size} bytes for a mask of shape {shape}")
    with path.open("rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            header = reader(fh)
        except ValueError as exc:
            raise DatasetError(f"{where}: not an .npy array ({exc})") from None
        got_shape, fortran, dtype = header
        if tuple(got_shape) != tuple(shape) or dtype not in (np.dtype(np.uint8), np.dtype(bool)):
            raise DatasetError(f"{where}: {dtype} array of shape {tuple(got_shape)}; expected uint8 {shape}")
        data = np.frombuffer(fh.read(expected), dtype=np.uint8)
    if data.size != expected:
        raise DatasetError(f"{where}: truncated")
    return np.asarray(data.reshape(shape, order="F" if fortran else "C") > 0)


def _safe_name(case: str) -> str:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$", case):
        raise DatasetError(f"case id {case!r} cannot name a prediction file")
    return case


class PromptableFamily:
    name = "promptable"

    def prepare(self, ref: DatasetRef, staging_dir: Path) -> PreparedDataset:
        # The same nnU-Net dataset, split and staging as segmentation: training images with
        # labels, evaluation and test images without.
        return SEGMENTATION.prepare(ref, staging_dir)

    def extra_inputs(self, spec: TrialSpec) -> dict[str, Path]:
        return {}

    def metrics(self, objective: Objective) -> tuple[str, ...]:
        return tuple(
            dict.fromkeys(("dice@1", "dice@3", "dice@5", "dice@10", "noc@85", "noc@90", objective.metric))
        )

    def _targets(self, ctx: ScoringContext, spec: TrialSpec, split: str) -> list[Target]:
        names = {v: k for k, v in spec.dataset.labels.items() if v != 0}
        out = []
        for case, path in sorted(held_out_labels(ctx.dataset.path, spec.dataset, split).items()):
            vol = read_volume(path, dtype=np.float32)
            label = np.rint(vol.array).astype(np.int64)
            label = label[:, :, None] if label.ndim == 2 else label.reshape(label.shape[:3])
            spacing = tuple(float(s) for s in (*vol.spacing, 1.0, 1.0)[:3])
            for value, name in sorted(names.items()):
                ref = label == value
                if ref.any():
                    out.append(Target(_safe_name(case), value, name, ref, spacing))  # type: ignore[arg-type]
        return out

    @contextlib.contextmanager
    def _checkpoint(self, outputs: OutputTree, jobs: FollowUpJobs, trial_id: str) -> Iterator[Path]:
        copy = outputs.file("checkpoints/last.safetensors")  # private copy; a link is refused
        if copy is None:
            raise DatasetError("the job wrote no checkpoints/last.safetensors")
        staged = stage_checkpoint(copy, f"trial:{trial_id}", jobs.staging_dir)
        yield staged.folder

    def score(
        self, ctx: ScoringContext, trial_id: str, spec: TrialSpec, outputs: OutputTree, split: str
    ) -> SplitEvaluation | None:
        config = spec.config_as(PromptableConfig)
        if split == "test" and not spec.dataset.test_cases:
            return None
        if ctx.jobs is None:
            raise DatasetError("promptable trials are scored by interactive rounds, which need a sandbox")
        jobs = ctx.jobs
        targets = self._targets(ctx, spec, split)
        if not targets:
            return None if split == "test" else _evaluation(split, [], config, 0)
        rounds_dir = ctx.workspace / "interaction" / trial_id / split
        spec_path = rounds_dir / "spec.json"
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        spec_path.write_text(spec.model_dump_json(indent=2))
        rounds = 0
        with self._checkpoint(outputs, jobs, trial_id) as model_dir:
            for k in range(1, config.eval_clicks + 1):
                if all(t.done() for t in targets):
                    break  # every NoC is known and Dice@1..10 too: further rounds change nothing reported
                active = [t for t in targets if not t.exact]
                for t in active:
                    pred = t.pred if t.pred is not None else np.zeros_like(t.ref)
                    click = next_click(pred, t.ref, t.spacing)
                    assert click is not None  # an exact target is done
                    t.clicks.append(click)
                prompts = rounds_dir / f"round{k:02d}"
                prompts.mkdir(parents=True, exist_ok=True)
                payload = {
                    "split": split,
                    "round": k,
                    "targets": [
                        {
                            "case": t.case,
                            "label": t.label,
                            "clicks": [c.as_json() for c in t.clicks],
                            "box": bounding_box(t.ref) if config.prompt == "box" else None,
                        }
                        for t in active
                    ],
                }
                (prompts / "prompts.json").write_text(json.dumps(payload))
                result = jobs.run(
                    f"{split}.round{k:02d}",
                    ROUND_COMMAND,
                    {
                        "spec.json": spec_path,
                        split: ctx.dataset.staged[split],
                        "model": model_dir,
                        "prompts": prompts,
                    },
                    config.num_threads,
                )
                if result.status != "succeeded":
                    raise DatasetError(
                        f"interactive round {k} ({split}) {result.status}: {result.reason or result.log_tail[-300:]}"
                    )
                with jobs.outputs(result) as round_out:
                    round_out.check()
                    folder = round_out.folder(f"predictions/{split}")
                    for t in active:
                        where = f"predictions/{split}/{t.case}/{t.label}.npy"
                        path = folder / t.case / f"{t.label}.npy" if folder is not None else None
                        try:
                            t.pred = read_mask(
                                path if path is not None and path.is_file() else None, t.ref.shape, where
                            )
                        except DatasetError as exc:  # scored as an empty mask, with the reason
                            t.pred, t.error = np.zeros_like(t.ref), exc.message
                        t.curve.append(dice(t.pred, t.ref))
                        t.exact = bool(np.array_equal(t.pred, t.ref))
                rounds = k
        for t in targets:  # an exact target got no further clicks: its Dice holds
            while t.exact and len(t.curve) < rounds:
                t.curve.append(t.curve[-1])
        return _evaluation(split, targets, config, rounds, sites=spec.dataset.sites)

    def tamper_gap(
        self, ctx: ScoringContext, spec: TrialSpec, outputs: OutputTree, outcome: JobOutcome
    ) -> float | None:
        return None  # the training job reports no metrics about itself


def _evaluation(
    split: str,
    targets: list[Target],
    config: PromptableConfig,
    rounds: int,
    sites: dict[str, str] | None = None,
) -> SplitEvaluation:
    cap = config.eval_clicks
    by_case: dict[str, dict[str, dict[str, float | None]]] = {}
    errors: dict[str, str] = {}
    for t in targets:
        metrics = curve_metrics(t.curve, cap)
        for name, value in metrics.items():
            by_case.setdefault(t.case, {}).setdefault(name, {})[t.name] = value
        if t.error:
            errors.setdefault(t.case, t.error)
    cases = [
        CaseEvaluation(case=c, site=(sites or {}).get(c), metrics=m, error=errors.get(c))
        for c, m in sorted(by_case.items())
    ]
    summary: dict[str, float | None] = {}
    for name in sorted({n for m in by_case.values() for n in m}, key=_metric_order):
        per_case = [
            float(np.mean([v for v in m[name].values() if v is not None]))
            for m in by_case.values()
            if name in m
        ]
        summary[name] = float(np.mean(per_case)) if per_case else None
    curve = [summary.get(f"dice@{k}") for k in range(1, rounds + 1)]
    return SplitEvaluation(
        split=split,
        cases=cases,
        summary=summary,
        implementation=IMPLEMENTATION,
        settings={
            "clicks": cap,
            "rounds": rounds,
            "targets": len(targets),
            "prompt": config.prompt,
            "click_rule": "centre of the largest error region (FN: positive, FP: negative)",
            "early_stop": f"every target >= {EARLY_STOP_CLICKS} clicks and Dice >= {EARLY_STOP_DICE}, or exact",
            "click_curve": curve,
        },
    )


def _metric_order(name: str) -> tuple[str, int]:
    kind, _, n = name.partition("@")
    return kind, int(n) if n.isdigit() else 0


FAMILY: TaskFamily = PromptableFamily()  # typed: mypy checks the family against the protocol
