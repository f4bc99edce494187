"""A failed trial records why: the last meaningful error line of its job's log."""

from __future__ import annotations

from pathlib import Path

from medloop.core.records import JobResult, Provenance
from medloop.engine.causes import is_disk_full, job_failure, log_cause

ENOSPC_LOG = """\
{"event": "start", "task": "segmentation"}
{"event": "epoch", "loss": 0.7}
Traceback (most recent call last):
  File "/app/medloop/experiments/segmentation/job.py", line 210, in save
    torch.save(state, path)
OSError: [Errno 28] No space left on device
Exception ignored in: <_io.BufferedWriter name='/out/last.pt'>
ValueError: I/O operation on closed file
"""

OOM_LOG = """\
{"event": "failed", "error": "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"}
"""

CHECKPOINT_LOG = """\
Traceback (most recent call last):
  File "/app/medloop/experiments/dataset/checkpoints.py", line 40, in load
medloop.core.errors.DatasetError: init checkpoint /in/init/best.safetensors is not a safetensors file
"""


def _job(log: str, reason: str | None = "exited with code 1") -> JobResult:
    prov = Provenance(code_version="t", runtime="local", host="h", started_at="", ended_at="")
    return JobResult(
        key="k",
        status="failed",
        exit_code=1,
        wall_s=1.0,
        out_dir=Path("/x"),
        log_tail=log,
        reason=reason,
        provenance=prov,
    )


def test_disk_full_wins_over_a_later_traceback() -> None:
    assert log_cause(ENOSPC_LOG) == "OSError: [Errno 28] No space left on device"
    assert job_failure(_job(ENOSPC_LOG)) == "exited with code 1: OSError: [Errno 28] No space left on device"
    assert is_disk_full(job_failure(_job(ENOSPC_LOG)))


def test_cuda_oom_from_a_json_progress_line() -> None:
    assert log_cause(OOM_LOG) == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert not is_disk_full(log_cause(OOM_LOG))


def test_a_bad_checkpoint_is_the_tracebacks_last_line() -> None:
    assert log_cause(CHECKPOINT_LOG) == (
        "medloop.core.errors.DatasetError: init checkpoint /in/init/best.safetensors is not a safetensors file"
    )


def test_no_error_line_keeps_the_runtime_reason() -> None:
    assert log_cause('{"event": "epoch"}\ntraining...\n') is None
    assert job_failure(_job("training...\n")) == "exited with code 1"
    assert job_failure(_job("", reason=None)) == "exit code 1"
    assert log_cause("x" * 10 + "\nRuntimeError: " + "y" * 1000).endswith("...")  # type: ignore[union-attr]
