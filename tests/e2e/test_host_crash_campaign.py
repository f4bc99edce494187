"""A host crash during a real campaign (issue 14 item 9): `medloop campaign run` and the
job it is running are SIGKILLed together in the final, test-split phase (as power loss or
the OOM killer would). `campaign resume` runs the lost trial again and the campaign ends
`completed` with test results for both arms, none of its trials counted as failed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medloop.experiments.dataset import synth_phantom
from medloop.sandbox.jobdir import JobDir
from tests.e2e.test_cli_campaign import medloop

SPEC = """\
name: crash
goal: Survive a host crash in the final phase.
dataset: {path: DATA, eval_fraction: 0.4}
baseline: {loss: dice, lr: 0.001, iterations: 8, batch_size: 2, base_features: 4, depth: 2}
search_space:
  loss: [dice, dicece]
validation: {seeds_per_arm: 2, reproduction_seeds: 0, min_effect: 0.0}
budget: {max_cycles: 1}
executor: {kind: local, slots: 1}
sandbox: {timeout: 5m}
planner: {hypotheses_per_cycle: 1}
"""


def _running_final_job(db: Path) -> tuple[str, str] | None:
    """(campaign id, trial id) of a final-phase trial that is running, if any."""
    if not db.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            row = con.execute(
                "SELECT campaign_id, id FROM trials WHERE arm = 'final' AND status = 'running' LIMIT 1"
            ).fetchone()
    except sqlite3.Error:
        return None
    return (str(row[0]), str(row[1])) if row else None


@pytest.mark.slow
def test_a_host_crash_in_the_final_phase_loses_no_trial(tmp_path: Path) -> None:
    synth_phantom(tmp_path / "data", cases=12, seed=5, test_cases=4, size=32)
    (tmp_path / "crash.yaml").write_text(SPEC.replace("DATA", str(tmp_path / "data")))
    ws = tmp_path / ".medloop"
    env = {
        **os.environ,
        "MEDLOOP_WORKSPACE": str(ws),
        "MEDLOOP_EMBEDDER": "hash",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "medloop", "campaign", "run", "crash.yaml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 900
    found = None
    while found is None and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.5)
        found = _running_final_job(ws / "medloop.db")
    assert found is not None, "the campaign never reached its final phase"
    campaign_id, trial_id = found
    # Wait for the final job's process, then kill the campaign and the job's process group.
    jobs = ws / "jobs"
    launched: list[JobDir] = []
    while not launched and time.monotonic() < deadline:
        launched = (
            [
                JobDir(jobs, p.name)
                for p in jobs.iterdir()
                if (p / "run.json").is_file() and JobDir(jobs, p.name).result() is None
            ]
            if jobs.is_dir()
            else []
        )
        time.sleep(0.2)
    assert launched, "no running job found"
    run.send_signal(signal.SIGKILL)
    run.wait(60)
    for jd in launched:
        info = jd.run_info()
        if info is not None:
            with contextlib.suppress(ProcessLookupError):  # it may have finished meanwhile
                os.killpg(int(info.ref), signal.SIGKILL)

    medloop(tmp_path, "campaign", "resume", campaign_id)
    shown = json.loads(medloop(tmp_path, "campaign", "show", campaign_id, "--json").stdout)
    campaign = shown["campaign"]
    assert campaign["status"] == "completed", campaign["summary"].get("incomplete")
    test = campaign["summary"]["test"]
    assert test["baseline"]["objective"] is not None and test["incumbent"]["objective"] is not None
    trials = {t["id"]: t for t in shown["trials"]}
    assert trials[trial_id]["status"] == "succeeded"
    assert all(t["status"] == "succeeded" for t in trials.values()), [
        t for t in trials.values() if t["cause"]
    ]
