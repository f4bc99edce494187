"""Conformance suite of `SandboxRuntime`: each backend (local, docker) must pass all of it.

Jobs are small `python -c` programs that use `/in` and `/out` exactly as a trial does.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from medloop.core.errors import ConflictError, SpecError
from medloop.core.records import JobLimits, JobSpec, TrialSpec
from medloop.sandbox.base import JobHandle
from tests.contract.sandbox.conftest import RuntimeCase


def job(key: str, code: str, *, inputs: dict[str, Path] | None = None, **limits: float) -> JobSpec:
    return JobSpec(
        key=key,
        command=["python", "-c", code],
        inputs=inputs or {},
        limits=JobLimits(**{"timeout_s": 60.0, "memory_mb": 512, **limits}),
    )


def test_success_reads_inputs_writes_outputs_and_records_provenance(
    case: RuntimeCase, tmp_path: Path
) -> None:
    data = tmp_path / "data.txt"
    data.write_text("41")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    code = (
        "import json, os\n"
        "n = int(open('/in/data.txt').read())\n"
        "sub = open('/in/folder/sub/a.txt').read()\n"
        "json.dump({'n': n + 1, 'sub': sub}, open('/out/answer.json', 'w'))\n"
        "print('done', n + 1)\n"
    )
    rt = case.runtime
    handle = rt.submit(job("ok", code, inputs={"data.txt": data, "folder": folder}))
    result = rt.wait(handle)
    assert result.status == "succeeded", result.log_tail
    assert result.exit_code == 0
    assert (result.out_dir / "answer.json").read_text() == '{"n": 42, "sub": "a"}'
    assert "done 42" in result.log_tail
    assert "done 42" in rt.logs(handle)
    prov = result.provenance
    assert prov.runtime == case.name
    assert prov.exit_code == 0
    assert prov.code_version
    assert prov.image
    assert prov.host
    assert prov.started_at <= prov.ended_at
    assert 0 < result.wall_s < 60


def test_trial_identity_is_recorded_from_the_spec(case: RuntimeCase, tmp_path: Path) -> None:
    from medloop.core.records import DatasetManifest
    from medloop.core.specs import SegConfig

    trial = TrialSpec(
        dataset=DatasetManifest(
            name="ds",
            checksum="c" * 64,
            channel_names={"0": "CT"},
            labels={"background": 0, "a": 1},
            train_cases=["x"],
            eval_cases=["y"],
        ),
        config=SegConfig(),
        seed=7,
    )
    spec = tmp_path / "spec.json"
    spec.write_text(trial.model_dump_json())
    result = case.runtime.wait(case.runtime.submit(job("ident", "print(1)", inputs={"spec.json": spec})))
    assert result.provenance.spec_hash == trial.spec_hash()
    assert result.provenance.dataset_checksum == "c" * 64
    assert result.provenance.seed == 7


def test_failure_is_a_result_with_the_exit_code(case: RuntimeCase) -> None:
    result = case.runtime.wait(case.runtime.submit(job("fail", "import sys; print('bye'); sys.exit(3)")))
    assert result.status == "failed"
    assert result.exit_code == 3
    assert result.provenance.exit_code == 3
    assert "bye" in result.log_tail


def test_timeout_kills_a_daemonized_grandchild(case: RuntimeCase) -> None:
    # Double fork + setsid: the grandchild leaves the job's process group and session.
    code = (
        "import os, subprocess, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        open('/out/daemon.pid', 'w').write(str(os.getpid()))\n"
        "        time.sleep(300)\n"
        "    os._exit(0)\n"
        "p = subprocess.Popen(['nohup', 'sleep', '300'], start_new_session=True)\n"
        "open('/out/nohup.pid', 'w').write(str(p.pid))\n"
        "print('spawned', flush=True)\n"
        "time.sleep(300)\n"
    )
    # The limit counts from the job's start (not from container creation), so 2 s are
    # enough for the job to spawn both processes even when a container takes seconds
    # to start on a loaded machine.
    limit = 2.0
    handle = case.runtime.submit(job("slow", code, timeout_s=limit))
    result = case.runtime.wait(handle)
    assert result.status == "timed_out", result.log_tail
    assert result.wall_s >= limit - 0.5
    assert "spawned" in result.log_tail  # both processes existed before the limit hit
    pids = [int((result.out_dir / name).read_text()) for name in ("daemon.pid", "nohup.pid")]
    assert case.nothing_left(handle, pids)


def test_output_quota_breach_is_stopped(case: RuntimeCase) -> None:
    # Many small files: no single file trips a per-file limit, the total does.
    code = (
        "import time\n"
        "for i in range(400):\n"
        "    open(f'/out/ckpt_{i}.bin', 'wb').write(b'x' * (256 << 10))\n"
        "    time.sleep(0.01)\n"
    )
    result = case.runtime.wait(case.runtime.submit(job("quota", code, output_mb=2)))
    assert result.status == "quota_exceeded", result.log_tail
    written = sum(p.stat().st_size for p in result.out_dir.glob("ckpt_*"))
    assert written < 100 << 20  # stopped long before writing 100 MB


def test_empty_folders_count_against_the_quota(case: RuntimeCase) -> None:
    # Issue 14 item 5: 30,000 empty folders (118 MB on disk) went past a 50 MB quota as
    # `succeeded`. Here the byte quota is out of reach: the entry limit must stop it.
    code = "import os\nfor i in range(30000):\n    os.mkdir(f'/out/d{i}')\n"
    result = case.runtime.wait(case.runtime.submit(job("dirs", code, output_mb=500, output_entries=10_000)))
    assert result.status == "quota_exceeded", result.log_tail
    assert "output entries" in (result.reason or "")


def test_one_huge_file_is_a_quota_breach(case: RuntimeCase) -> None:
    code = "open('/out/big.bin', 'wb').write(b'x' * (8 << 20))\nimport time; time.sleep(2)\n"
    result = case.runtime.wait(case.runtime.submit(job("bigfile", code, output_mb=2)))
    assert result.status == "quota_exceeded", result.log_tail


def test_memory_bomb_is_oom(case: RuntimeCase) -> None:
    code = "import time\nblocks = []\nfor _ in range(40):\n    blocks.append(b'x' * (32 << 20))\ntime.sleep(20)\n"
    start = time.monotonic()
    result = case.runtime.wait(case.runtime.submit(job("oom", code, memory_mb=128)))
    assert result.status == "oom", result.log_tail
    assert time.monotonic() - start < 30


def test_stdout_is_streamed_while_the_job_runs(case: RuntimeCase) -> None:
    code = "import time\nprint('tick', flush=True)\ntime.sleep(2)\nprint('tock')\n"
    seen: list[tuple[float, str]] = []
    handle = case.runtime.submit(job("stream", code))
    result = case.runtime.wait(handle, on_log=lambda line: seen.append((time.monotonic(), line)))
    ended = time.monotonic()
    assert result.status == "succeeded"
    assert [line for _, line in seen] == ["tick", "tock"]
    assert ended - seen[0][0] > 1.0  # 'tick' arrived while the job was still sleeping


def test_cancel_stops_the_job(case: RuntimeCase) -> None:
    handle = case.runtime.submit(job("cancel", "import time; print('up', flush=True); time.sleep(120)"))
    timer = threading.Timer(1.0, case.runtime.cancel, args=(handle,))
    timer.start()
    start = time.monotonic()
    result = case.runtime.wait(handle)
    assert result.status == "cancelled"
    assert time.monotonic() - start < 15
    case.runtime.cancel(handle)  # idempotent
    assert case.runtime.wait(handle).status == "cancelled"


def test_inputs_cannot_be_changed_through_the_sandbox(case: RuntimeCase, tmp_path: Path) -> None:
    data = tmp_path / "labels.txt"
    data.write_text("original")
    code = (
        "import os\n"
        "for path in ('/in/labels.txt',):\n"
        "    try:\n"
        "        open(path, 'w').write('tampered')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.errno)\n"
        "try:\n"
        "    os.remove('/in/labels.txt')\n"
        "except OSError as exc:\n"
        "    print('remove refused', exc.errno)\n"
    )
    result = case.runtime.wait(case.runtime.submit(job("ro", code, inputs={"labels.txt": data})))
    assert result.status == "succeeded", result.log_tail
    # The host's file is untouched (the local runtime hands out copies; Docker mounts read-only).
    assert data.read_text() == "original"
    assert data.exists()


def test_reconcile_reattaches_and_never_runs_twice(case: RuntimeCase) -> None:
    code = (
        "import os, time\n"
        "open('/out/ran-' + os.urandom(4).hex(), 'w').write('x')\n"
        "time.sleep(2)\n"
        "print('finished')\n"
    )
    spec = job("reattach", code)
    handle = case.runtime.submit(spec)
    time.sleep(0.5)
    # The orchestrator "crashes": a new runtime over the same jobs folder picks up.
    fresh = case.restart()
    found = fresh.reconcile(["reattach", "never-submitted"])
    assert set(found) == {"reattach"}
    attached = found["reattach"]
    assert isinstance(attached, JobHandle)
    result = fresh.wait(attached)
    assert result.status == "succeeded"
    assert "finished" in result.log_tail
    again = case.restart().reconcile(["reattach"])["reattach"]
    assert again == result
    with pytest.raises(ConflictError):
        fresh.submit(spec)
    assert len(list(result.out_dir.glob("ran-*"))) == 1
    del handle


def test_reconcile_collects_a_job_that_finished_while_nobody_watched(case: RuntimeCase) -> None:
    spec = job("unwatched", "print('alone')")
    case.runtime.submit(spec)
    time.sleep(3)
    found = case.restart().reconcile(["unwatched"])["unwatched"]
    result = found if not isinstance(found, JobHandle) else case.runtime.wait(found)
    assert result.status == "succeeded"
    assert "alone" in result.log_tail


def test_missing_input_is_a_clear_error(case: RuntimeCase, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        case.runtime.submit(job("badinput", "print(1)", inputs={"train": tmp_path / "nope"}))


def test_paths_in_arguments_and_env_are_the_job_folders(case: RuntimeCase) -> None:
    spec = JobSpec(
        key="paths",
        command=[
            "python",
            "-c",
            "import os, sys; open(sys.argv[1].split('=')[1] + '/x', 'w').write(os.environ['WHERE'])",
            "--out=/out",
        ],
        inputs={},
        env={"WHERE": "/out/x"},
    )
    result = case.runtime.wait(case.runtime.submit(spec))
    assert result.status == "succeeded", result.log_tail
    assert (result.out_dir / "x").read_text().endswith("/out/x")
