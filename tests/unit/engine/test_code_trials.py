"""Code hypotheses through the engine and the job: untrusted code never reaches the local
runtime unless the campaign allows it; staged modules are checked again inside the job; a
shipped post-processing move runs in a real (tiny) trial and shapes its predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from medloop.core.records import JobResult, JobSpec
from medloop.core.specs import CampaignSpec, SegConfig
from medloop.core.store import open_store
from medloop.engine.base import TrialRequest, trial_id_for
from medloop.engine.code import CodeStore, library
from medloop.engine.trials import SandboxTrials
from medloop.experiments.dataset import synth_phantom
from medloop.experiments.extensions import ExtensionError, load_extension

UNTRUSTED = """
import numpy as np

EXTENSION_POINT = "postprocess"


def postprocess(label_map, spacing, labels):
    return np.zeros_like(label_map)
"""


class RecordingExecutor:
    """Records the jobs it is asked to run and fails them (no job runs in these tests)."""

    def __init__(self) -> None:
        self.jobs: list[JobSpec] = []

    def run(self, jobs: Sequence[JobSpec], *, on_event: object = None) -> list[JobResult]:
        from medloop.core.records import Provenance

        self.jobs += list(jobs)
        return [
            JobResult(
                key=j.key,
                status="failed",
                exit_code=1,
                wall_s=0.0,
                out_dir=Path("/nonexistent"),
                reason="not run in this test",
                provenance=Provenance(
                    code_version="test", runtime="fake", host="test", started_at="", ended_at=""
                ),
            )
            for j in jobs
        ]

    def cancel(self, key: str) -> None:
        return None

    def close(self) -> None:
        return None


def _service(
    ws: Path, *, allow: bool = False, smoke: bool = False
) -> tuple[SandboxTrials, RecordingExecutor]:
    ds = synth_phantom(ws / "data" / "Dataset990_Code", cases=6, seed=1, test_cases=2, size=32)
    spec = CampaignSpec.model_validate(
        {
            "name": "code",
            "goal": "code hypotheses",
            "dataset": {"path": ds},
            "search_space": {"lr": [1e-3, 1e-2]},
            "sandbox": {"runtime": "local", "allow_untrusted_code": allow},
            "code": {"smoke": smoke},
        }
    )
    executor = RecordingExecutor()
    store = open_store(ws / "medloop.db")
    from medloop.core.records import Campaign

    store.campaigns.add(Campaign(id="cmp_code", name="code", owner="t", spec=spec))
    trials = SandboxTrials(store, spec, executor=executor, workspace=ws, staging_dir=ws / "staging")
    return trials, executor


def _run(trials: SandboxTrials, config: SegConfig) -> str:
    spec = trials.spec_for(config, seed=0)
    tid = trial_id_for("cmp_code", spec)
    [trial] = trials.run("cmp_code", [TrialRequest(tid, None, "control", spec)])
    return f"{trial.status}: {trial.result.error if trial.result else ''}"


def test_local_runtime_refuses_untrusted_code_without_starting_a_job(workspace: Path) -> None:
    trials, executor = _service(workspace)
    module = trials.code.put(UNTRUSTED, name="erase", author="llm:test")
    outcome = _run(trials, SegConfig(iterations=2, code_postprocess=module.sha256))
    assert outcome.startswith("failed: code module") and "untrusted" in outcome
    assert "allow_untrusted_code" in outcome
    assert executor.jobs == []


def test_unknown_code_hash_is_a_failed_trial_not_a_crash(workspace: Path) -> None:
    trials, executor = _service(workspace)
    outcome = _run(trials, SegConfig(iterations=2, code_postprocess="f" * 64))
    assert outcome.startswith("failed: code hypothesis (postprocess)") and "not in this workspace" in outcome
    assert executor.jobs == []


@pytest.mark.parametrize("allow", [False, True])
def test_trusted_or_allowed_code_is_staged_read_only_for_the_job(workspace: Path, allow: bool) -> None:
    trials, executor = _service(workspace, allow=allow)
    source = library()["largest_component"] if not allow else UNTRUSTED
    module = trials.code.put(source, name="m", author="medloop-library" if not allow else "llm:test")
    _run(trials, SegConfig(iterations=2, code_postprocess=module.sha256))
    [job] = executor.jobs
    staged = job.inputs["code"] / f"{module.sha256}.py"
    assert staged.read_text() == source and staged.stat().st_mode & 0o222 == 0


def test_the_job_refuses_a_staged_module_whose_source_changed(tmp_path: Path) -> None:
    source = library()["largest_component"]
    store = CodeStore(tmp_path / "code")
    sha = store.put(source, name="lc", author="medloop-library").sha256
    (tmp_path / "in" / "code").mkdir(parents=True)
    (tmp_path / "in" / "code" / f"{sha}.py").write_text(source + "\nimport os\n")
    with pytest.raises(ExtensionError, match="does not match its hash"):
        load_extension(tmp_path / "in", "postprocess", sha)
    (tmp_path / "in" / "code" / f"{sha}.py").write_text(source)
    with pytest.raises(ExtensionError, match="declares EXTENSION_POINT='postprocess', not 'loss'"):
        load_extension(tmp_path / "in", "loss", sha)
    assert callable(load_extension(tmp_path / "in", "postprocess", sha))


@pytest.mark.slow
def test_a_shipped_postprocessing_move_runs_in_a_real_trial(workspace: Path) -> None:
    """A tiny real training through the local sandbox, with connected-component
    post-processing: every class has at most one component in every prediction."""
    from scipy import ndimage

    from medloop.core.settings import Settings
    from medloop.experiments.dataset.imageio import read_volume
    from medloop.sandbox.factory import make_executor

    trials, _ = _service(workspace)
    settings = Settings()
    trials.executor = make_executor(settings, trials.sandbox, CampaignSpec.model_fields["executor"].default)
    module = trials.code.put(
        library()["largest_component"], name="largest_component", author="medloop-library"
    )
    config = SegConfig(
        iterations=6,
        epoch_iterations=6,
        batch_size=2,
        base_features=4,
        depth=2,
        code_postprocess=module.sha256,
    )
    spec = trials.spec_for(config, seed=0)
    tid = trial_id_for("cmp_code", spec)
    [trial] = trials.run("cmp_code", [TrialRequest(tid, None, "control", spec)])
    assert trial.status == "succeeded", trial.result.error if trial.result else None
    assert trial.result is not None and trial.result.job is not None
    preds = sorted((trial.result.job.out_dir / "predictions" / "eval").iterdir())
    assert preds
    for path in preds:
        label = np.asarray(read_volume(path).array)
        for value in np.unique(label)[1:]:
            assert ndimage.label(label == value)[1] == 1, (path.name, int(value))
