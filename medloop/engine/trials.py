"""Run trials end to end on the host: spec -> sandboxed job -> metrics recomputed from the
job's raw predictions against labels it never saw -> a TrialResult in the store.

The job's own numbers are never trusted: the host recomputes everything, and a job whose
reported internal-validation metrics disagree with the recomputation is `tampered`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medloop.core.errors import DatasetError
from medloop.core.records import (
    JobOutcome,
    JobResult,
    JobSpec,
    SplitEvaluation,
    Trial,
    TrialResult,
    TrialSpec,
)
from medloop.core.specs import (
    CampaignSpec,
    DatasetRef,
    Objective,
    SandboxSpec,
    SegConfig,
    TrialConfig,
    VqaConfig,
)
from medloop.core.store import Store
from medloop.engine.base import (
    FINAL_STATUSES,
    PreparedDataset,
    TrialCallback,
    TrialRequest,
    aggregate,
    case_objective,
)
from medloop.evaluation.metrics import evaluate_split, tamper_gap
from medloop.evaluation.vqa import evaluate_split as evaluate_vqa_split
from medloop.experiments.dataset import (
    build_manifest,
    fingerprint_summary,
    held_out_labels,
    stage_inputs,
)
from medloop.experiments.dataset.checkpoints import resolve_init, stage_checkpoint
from medloop.experiments.vlm.manifest import (
    build_vqa_manifest,
    ensure_vqa_folder,
    stage_vqa_inputs,
    vqa_fingerprint,
)
from medloop.experiments.vlm.manifest import held_out_items as vqa_items
from medloop.sandbox.base import EventSink, Executor, job_key, limits_for

JOB_COMMAND = ["python", "-m", "medloop.experiments", "run", "--spec", "/in/spec.json", "--out", "/out"]
# Reported vs recomputed Dice may differ by resampling/rounding; anything beyond is tampering.
TAMPER_TOLERANCE = 1e-3


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    Path(tmp).chmod(0o644)  # mkstemp makes it 0600; a container's non-root user must read it
    Path(tmp).replace(path)


def prepare_dataset(ref: DatasetRef, staging_dir: Path, task: str = "segmentation") -> PreparedDataset:
    """Split the dataset (by case, seeded) and stage read-only job inputs."""
    if task == "vqa":
        return prepare_vqa_dataset(ref, staging_dir)
    if not (ref.path / "dataset.json").is_file():
        raise DatasetError(f"{ref.path}: no dataset.json", hint="is this an nnU-Net raw dataset?")
    manifest = build_manifest(
        ref.path,
        eval_fraction=ref.eval_fraction,
        split_seed=ref.split_seed,
        method=ref.split,
        k=ref.folds,
        fold=ref.fold,
        site=ref.held_out_site,
    )
    staged = stage_inputs(ref.path, manifest, staging_dir)
    return PreparedDataset(ref.path.resolve(), manifest, staged, fingerprint_summary(ref.path))


def prepare_vqa_dataset(ref: DatasetRef, staging_dir: Path) -> PreparedDataset:
    """A VQA folder (or an nnU-Net dataset, converted once) split by case and staged with
    the answers of evaluation and test items left out."""
    root = ensure_vqa_folder(ref.path, staging_dir, seed=ref.split_seed)
    manifest = build_vqa_manifest(root, eval_fraction=ref.eval_fraction, split_seed=ref.split_seed)
    staged = stage_vqa_inputs(root, manifest, staging_dir)
    return PreparedDataset(root.resolve(), manifest, staged, vqa_fingerprint(root, manifest))


class SandboxTrials:
    """Trials of one campaign run as sandboxed jobs, scored on the host."""

    def __init__(
        self,
        store: Store,
        spec: CampaignSpec,
        *,
        executor: Executor,
        workspace: Path,
        staging_dir: Path,
    ) -> None:
        self.store = store
        self.executor = executor
        self.sandbox: SandboxSpec = spec.sandbox
        self.objective: Objective = spec.objective
        self.task = spec.task
        self.workspace = workspace
        self._ref = spec.dataset
        self._staging_dir = staging_dir
        self._dataset: PreparedDataset | None = None
        self._init_folders: dict[str, Path] = {}

    @property
    def dataset(self) -> PreparedDataset:
        if self._dataset is None:
            self._dataset = prepare_dataset(self._ref, self._staging_dir, self.task)
        return self._dataset

    def spec_for(self, config: TrialConfig, seed: int, *, max_seconds: float | None = None) -> TrialSpec:
        init: dict[str, Any] = {}
        if isinstance(config, SegConfig) and config.init != "scratch":
            # Transfer: the parent checkpoint (an earlier trial's, or a file) is staged
            # content-addressed and mounted read-only as the job input `init`.
            resolved = resolve_init(config.init, self._trial_checkpoint)
            if resolved is not None:
                staged = stage_checkpoint(resolved[0], resolved[1], self._staging_dir)
                self._init_folders[staged.relative] = staged.folder
                init = {"init_checkpoint": staged.relative, "provenance": dict(staged.provenance)}
        return TrialSpec(
            task=config.task,
            dataset=self.dataset.manifest,
            config=config,
            seed=seed,
            max_seconds=max_seconds,
            **init,
        )

    def _trial_checkpoint(self, trial_id: str) -> Path | None:
        """The checkpoint a finished trial kept (best, else last), on the host."""
        trial = self.store.get_trial(trial_id)
        job = trial.result.job if trial.result else None
        if job is None or trial.status != "succeeded":
            return None
        for name in ("best.safetensors", "last.safetensors"):
            path = job.out_dir / "checkpoints" / name
            if path.is_file():
                return path
        return None

    @property
    def metrics(self) -> tuple[str, ...]:
        """DSC, NSD and HD95 (mm), per case, class and site: what challenges report and
        what the objective may name. MONAI's implementation, recorded in every result."""
        return tuple(dict.fromkeys(("dice", "nsd", "hd95", self.objective.metric)))

    def _restage(self, spec: TrialSpec) -> Path:
        """The staged parent checkpoint of a spec made by an earlier process (a resume)."""
        sha = str(spec.provenance.get("init_sha256", ""))
        folder = self._staging_dir / f"init-{sha[:16]}"
        if not sha or not folder.is_dir():
            raise DatasetError(
                f"trial spec {spec.spec_hash()[:12]}: its init checkpoint is no longer staged",
                hint="re-run from a config whose init trial still has its checkpoint",
            )
        return folder

    def close(self) -> None:
        self.executor.close()

    # ------------------------------------------------------------ running

    def run(
        self,
        campaign_id: str,
        requests: Sequence[TrialRequest],
        *,
        on_event: EventSink | None = None,
        on_trial: TrialCallback | None = None,
    ) -> list[Trial]:
        """Run what is not done yet; reuse finished trials (this campaign's or, by spec
        hash, any campaign's). Returns the trials in request order."""
        to_run: list[tuple[TrialRequest, JobSpec]] = []
        for req in requests:
            self.store.put_trial(
                Trial(
                    id=req.trial_id,
                    campaign_id=campaign_id,
                    hypothesis_id=req.hypothesis_id,
                    arm=req.arm,
                    spec=req.spec,
                    spec_hash=req.spec.spec_hash(),
                )
            )
            current = self.store.get_trial(req.trial_id)
            if current.status in FINAL_STATUSES:
                continue
            previous = self.store.find_trial(current.spec_hash)
            if previous is not None and previous.result is not None and previous.id != current.id:
                reused = previous.result.model_copy(update={"trial_id": current.id})
                done = self.store.set_trial_result(current.id, reused)
                if on_trial:
                    on_trial(done)
                continue
            to_run.append((req, self._job_for(campaign_id, req)))
        if to_run:
            for req, _ in to_run:
                self.store.set_trial_status(req.trial_id, "running")
            results = self.executor.run([job for _, job in to_run], on_event=on_event)
            for (req, _), job_result in zip(to_run, results, strict=True):
                result = self.collect(req.trial_id, req.spec, job_result)
                done = self.store.set_trial_result(req.trial_id, result)
                if on_trial:
                    on_trial(done)
        return [self.store.get_trial(req.trial_id) for req in requests]

    def _job_for(self, campaign_id: str, req: TrialRequest) -> JobSpec:
        sandbox = self.sandbox
        spec_hash = req.spec.spec_hash()
        spec_path = self.workspace / "specs" / f"{spec_hash}.json"
        _write_atomic(spec_path, req.spec.model_dump_json(indent=2))
        staged = self.dataset.staged
        threads = str(req.spec.config.num_threads)
        inputs: dict[str, Path] = {"spec.json": spec_path, **staged}
        config = req.spec.config
        if req.spec.init_checkpoint:
            inputs["init"] = self._init_folders.get(req.spec.init_checkpoint) or self._restage(req.spec)
        if isinstance(config, VqaConfig) and config.model_path != "tiny":
            # real weights are mounted read-only at /in/model
            inputs["model"] = Path(config.model_path).expanduser().resolve()
        return JobSpec(
            # Deterministic: after a crash the scheduler re-attaches to (or collects) the
            # job with this key instead of running it twice.
            key=job_key(campaign_id, spec_hash),
            command=list(JOB_COMMAND),
            inputs=inputs,
            env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
            limits=limits_for(sandbox),
            image=sandbox.image,
            labels={
                "medloop.campaign": campaign_id,
                "medloop.trial": req.trial_id,
                "medloop.spec_hash": spec_hash,
            },
        )

    # ------------------------------------------------------------ evaluation

    def collect(self, trial_id: str, spec: TrialSpec, job: JobResult) -> TrialResult:
        """Turn a finished job into a TrialResult with host-recomputed metrics."""
        prov = job.provenance.model_copy(
            update={
                "spec_hash": spec.spec_hash(),
                "dataset_checksum": spec.dataset.checksum,
                "seed": spec.seed,
            }
        )
        job = job.model_copy(update={"provenance": prov})
        base = {"trial_id": trial_id, "spec_hash": spec.spec_hash(), "job": job}
        if job.status != "succeeded":
            return TrialResult(status=job.status, error=job.reason or f"exit code {job.exit_code}", **base)
        try:
            outcome = JobOutcome.model_validate_json((job.out_dir / "result.json").read_text())
        except (OSError, ValidationError, ValueError) as exc:
            return TrialResult(status="failed", error=f"result.json missing or invalid: {exc}", **base)
        if outcome.status != "completed":
            return TrialResult(status="failed", error=outcome.error or "job reported failure", **base)

        if spec.task == "vqa":
            return self._collect_vqa(trial_id, spec, job, outcome, base)
        manifest, dataset, objective = spec.dataset, self.dataset, self.objective
        evaluation = evaluate_split(
            job.out_dir / "predictions" / "eval",
            held_out_labels(dataset.path, manifest, "eval"),
            labels=manifest.labels,
            sites=manifest.sites,
            split="eval",
            metrics=self.metrics,
        )
        gap = self._tamper_gap(outcome, job)
        per_case = case_objective(evaluation, objective.metric)
        value = aggregate(list(per_case.values()), objective.aggregation)
        status = "tampered" if gap > TAMPER_TOLERANCE else "succeeded"
        return TrialResult(
            status=status,
            objective=value,
            evaluations={"eval": evaluation},
            tamper_gap=gap,
            history=outcome.history,
            efficiency=outcome.efficiency,
            error="reported metrics differ from the host's recomputation" if status == "tampered" else None,
            **base,
        )

    def _score_vqa(self, trial_id: str, spec: TrialSpec, job: JobResult, split: str) -> SplitEvaluation:
        """Host scoring of a VQA job's raw answers (the path is fixed, never the job's word)."""
        return evaluate_vqa_split(
            vqa_items(self.dataset.path, spec.dataset, split),
            job.out_dir / "predictions" / f"{split}.jsonl",
            split=split,
            model=trial_id,
            report_path=self.workspace / "vqa_scores" / trial_id / f"{split}.json",
        )

    def _collect_vqa(
        self, trial_id: str, spec: TrialSpec, job: JobResult, outcome: JobOutcome, base: dict[str, Any]
    ) -> TrialResult:
        try:
            evaluation = self._score_vqa(trial_id, spec, job, "eval")
        except DatasetError as exc:
            return TrialResult(status="failed", error=f"VQA predictions unusable: {exc.message}", **base)
        per_case = case_objective(evaluation, self.objective.metric)
        return TrialResult(
            status="succeeded",
            objective=aggregate(list(per_case.values()), self.objective.aggregation),
            evaluations={"eval": evaluation},
            tamper_gap=None,
            history=outcome.history,
            efficiency=outcome.efficiency,
            **base,
        )

    def _tamper_gap(self, outcome: JobOutcome, job: JobResult) -> float:
        """Max |reported - recomputed| over everything the job reported (0 if nothing)."""
        dataset = self.dataset
        train_cases = set(dataset.manifest.train_cases)
        worst = 0.0
        for reported in outcome.reported:
            cases = set(reported.per_case)
            if not cases <= train_cases or reported.split not in outcome.predictions:
                return math.inf  # claims metrics on cases whose labels it never had
            labels = held_out_labels(dataset.path, dataset.manifest, "train")
            recomputed = evaluate_split(
                job.out_dir / "predictions" / reported.split,
                {case: labels[case] for case in cases},
                labels=dataset.manifest.labels,
                sites=dataset.manifest.sites,
                split=reported.split,
                metrics=(reported.metric,),
            )
            worst = max(worst, tamper_gap(reported, recomputed))
        return worst

    def evaluate_test(self, trial: Trial) -> SplitEvaluation | None:
        """Score a finished trial's test-split predictions (used once, at campaign end)."""
        dataset = self.dataset
        if trial.result is None or trial.result.job is None or trial.status != "succeeded":
            return None
        if "test" in trial.result.evaluations:
            cached: SplitEvaluation = trial.result.evaluations["test"]
            return cached
        if trial.spec.task == "vqa":
            if not trial.spec.dataset.test_cases:
                return None
            try:
                evaluation = self._score_vqa(trial.id, trial.spec, trial.result.job, "test")
            except DatasetError:
                return None
        else:
            labels = held_out_labels(dataset.path, trial.spec.dataset, "test")
            pred_dir = trial.result.job.out_dir / "predictions" / "test"
            if not labels or not pred_dir.is_dir():
                return None
            evaluation = evaluate_split(
                pred_dir,
                labels,
                labels=trial.spec.dataset.labels,
                sites=trial.spec.dataset.sites,
                split="test",
                metrics=self.metrics,
            )
        updated = trial.result.model_copy(
            update={"evaluations": {**trial.result.evaluations, "test": evaluation}}
        )
        self.store.set_trial_result(trial.id, updated)
        return evaluation


def describe(trial: Trial) -> str:
    """One line for logs: config factors that matter, seed, status, objective."""
    cfg = trial.spec.config.model_dump(exclude={"task", "num_threads", "internal_val_fraction"})
    obj = f"{trial.result.objective:.4f}" if trial.result and trial.result.objective is not None else "-"
    return f"{trial.id[:12]} seed={trial.spec.seed} {trial.status} obj={obj} {json.dumps(cfg)}"
