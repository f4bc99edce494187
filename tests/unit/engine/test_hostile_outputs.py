"""Hostile jobs against the host's reading of their outputs (issue 14, items 1, 2, 5).

Each test runs a real job in the local runtime whose script is the attack: it writes its
"predictions" as links to the host's held-out label files, hides a host secret behind a
checkpoint name, or floods /out with folders. The host must score nothing it did not get
from the job's own regular files.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest

from medloop.core.errors import MedloopError
from medloop.core.records import Campaign, JobResult, JobSpec
from medloop.core.specs import CampaignSpec, SegConfig
from medloop.core.store import open_store
from medloop.engine.base import TrialRequest, trial_id_for
from medloop.engine.trials import SandboxTrials
from medloop.experiments.dataset import held_out_labels, synth_phantom
from medloop.sandbox.base import EventSink
from medloop.sandbox.local import LocalRuntime
from medloop.sandbox.scheduler import Scheduler


class HostileExecutor:
    """The real scheduler and local runtime, running `script` instead of the trainer."""

    def __init__(self, jobs_dir: Path, script: str) -> None:
        self.inner = Scheduler(LocalRuntime(jobs_dir))
        self.script = script

    def run(self, jobs: Sequence[JobSpec], *, on_event: EventSink | None = None) -> list[JobResult]:
        hostile = [j.model_copy(update={"command": ["python", "-c", self.script]}) for j in jobs]
        return self.inner.run(hostile, on_event=on_event)

    def cancel(self, key: str) -> None:
        self.inner.cancel(key)

    def close(self) -> None:
        self.inner.close()


PRELUDE = """
import json, os
out = os.environ["MEDLOOP_OUT"]
os.makedirs(out + "/predictions/eval", exist_ok=True)
json.dump({"status": "completed", "predictions": {"eval": "predictions/eval"}},
          open(out + "/result.json", "w"))
"""


def _trials(ws: Path, script: str, **sandbox: object) -> SandboxTrials:
    """A campaign on a small phantom dataset whose jobs run `script` (set it later with
    `_attack`: the script may need the host paths of the prepared dataset)."""
    ds = synth_phantom(ws / "data" / "Dataset991_Hostile", cases=6, seed=2, test_cases=2, size=24)
    spec = CampaignSpec.model_validate(
        {
            "name": "hostile",
            "goal": "hostile outputs",
            "dataset": {"path": ds},
            "search_space": {"lr": [1e-3]},
            "sandbox": {"runtime": "local", "timeout": 60, **sandbox},
        }
    )
    store = open_store(ws / "medloop.db")
    store.campaigns.add(Campaign(id="cmp_h", name="hostile", owner="t", spec=spec))
    executor = HostileExecutor(ws / "jobs", script)
    return SandboxTrials(store, spec, executor=executor, workspace=ws, staging_dir=ws / "staging")


def _attack(trials: SandboxTrials, script: str) -> SandboxTrials:
    assert isinstance(trials.executor, HostileExecutor)
    trials.executor.script = script
    return trials


def _run(trials: SandboxTrials, config: SegConfig | None = None) -> tuple[str, str]:
    spec = trials.spec_for(config or SegConfig(iterations=1), seed=0)
    tid = trial_id_for("cmp_h", spec)
    [trial] = trials.run("cmp_h", [TrialRequest(tid, None, "control", spec)])
    return trial.status, (trial.result.error or "") if trial.result else ""


def _eval_labels(trials: SandboxTrials) -> dict[str, str]:
    ds = trials.dataset
    return {case: str(p) for case, p in held_out_labels(ds.path, ds.manifest, "eval").items()}


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("os.symlink(src, dst)", "symbolic link"),
        ("os.link(src, dst)", "hard link"),
    ],
)
def test_predictions_linked_to_host_labels_fail_the_trial(workspace: Path, how: str, reason: str) -> None:
    # The attack of item 1: never train; make each prediction a link to its host label.
    trials = _trials(workspace, "")
    labels = _eval_labels(trials)
    script = PRELUDE + (
        f"for case, src in {labels!r}.items():\n"
        "    dst = out + '/predictions/eval/' + os.path.basename(src)\n"
        f"    {how}\n"
    )
    _attack(trials, script)
    status, error = _run(trials)
    assert status == "failed", error
    assert "unsafe job output" in error and reason in error


def test_a_symlinked_predictions_folder_is_refused(workspace: Path) -> None:
    trials = _trials(workspace, "")
    label_dir = str(Path(next(iter(_eval_labels(trials).values()))).parent)
    script = (
        PRELUDE
        + f"os.rmdir(out + '/predictions/eval')\nos.symlink({label_dir!r}, out + '/predictions/eval')\n"
    )
    status, error = _run(_attack(trials, script))
    assert status == "failed" and "symbolic link" in error


def test_a_symlinked_checkpoint_never_becomes_a_later_jobs_input(workspace: Path) -> None:
    # Item 2: a checkpoint that is a link to a host secret, reused as `init: trial:<id>`.
    secret = workspace / "secret.txt"
    secret.write_text("TOP-SECRET-HOST-FILE")
    secret.chmod(0o600)
    script = PRELUDE + (
        "os.makedirs(out + '/checkpoints')\n"
        f"os.symlink({str(secret)!r}, out + '/checkpoints/best.safetensors')\n"
    )
    trials = _trials(workspace, script)
    spec = trials.spec_for(SegConfig(iterations=1), seed=0)
    parent = trial_id_for("cmp_h", spec)
    [trial] = trials.run("cmp_h", [TrialRequest(parent, None, "control", spec)])
    assert trial.status == "failed" and "symbolic link" in (trial.result.error or "")  # type: ignore[union-attr]
    with pytest.raises(MedloopError):
        trials.spec_for(SegConfig(iterations=1, init=f"trial:{parent}"), seed=0)
    staged = [p for p in (workspace / "staging").rglob("*") if p.is_file() and not p.is_symlink()]
    assert not any(b"TOP-SECRET" in p.read_bytes() for p in staged)


def test_many_empty_folders_break_the_entry_limit(workspace: Path) -> None:
    # Item 5: folders cost inodes and disk although they hold no bytes.
    script = PRELUDE + "for i in range(3000):\n    os.mkdir(out + f'/d{i}')\n"
    status, error = _run(_trials(workspace, script, output_entries=500))
    assert status == "quota_exceeded", error
    assert "500" in error and "entries" in error


def test_an_honest_output_is_still_scored(workspace: Path) -> None:
    # The same reader accepts plain files: an empty prediction folder scores the worst values.
    status, error = _run(_trials(workspace, PRELUDE))
    assert status == "succeeded", error


def test_result_json_behind_a_symlink_is_not_read(workspace: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.json"
    fake.write_text(json.dumps({"status": "completed", "predictions": {"eval": "predictions/eval"}}))
    script = f"import os\nout = os.environ['MEDLOOP_OUT']\nos.symlink({str(fake)!r}, out + '/result.json')\n"
    status, error = _run(_trials(workspace, script))
    assert status == "failed" and "symbolic link" in error


def test_an_honest_checkpoint_is_staged_privately_for_a_child_trial(workspace: Path) -> None:
    # The reader that refuses links still stages a real checkpoint (a private 0600 copy).
    # A real (empty) safetensors file: init: checks read its header for provenance.
    weights = struct.pack("<Q", 8) + b"{}      "
    script = PRELUDE + (
        f"os.makedirs(out + '/checkpoints')\nopen(out + '/checkpoints/best.safetensors', 'wb').write({weights!r})\n"
    )
    trials = _trials(workspace, script)
    spec = trials.spec_for(SegConfig(iterations=1), seed=0)
    parent = trial_id_for("cmp_h", spec)
    [trial] = trials.run("cmp_h", [TrialRequest(parent, None, "control", spec)])
    assert trial.status == "succeeded", trial.result.error if trial.result else ""
    child = trials.spec_for(SegConfig(iterations=1, init=f"trial:{parent}"), seed=0)
    assert child.init_checkpoint and child.provenance["init_parent"] == f"trial:{parent}"
    staged = next((workspace / "staging").glob("init-*/*.safetensors"))
    assert staged.read_bytes() == weights and staged.stat().st_mode & 0o077 == 0
