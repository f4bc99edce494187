"""How a finished container is read: its outcome as a JobResult status, its start/end
times, and its output copied into the job's log file."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from medloop.core.records import JobSpec, JobStatus
from medloop.sandbox.jobdir import JobDir


def classify(jd: JobDir, job: JobSpec, state: dict[str, Any], vanished: bool) -> tuple[JobStatus, str | None]:
    if vanished:
        return "failed", "the job's container disappeared before its result was collected"
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        return "oom", f"killed by the kernel: memory limit of {job.limits.memory_mb} MB reached"
    if code == 128 + signal.SIGXFSZ:
        return "quota_exceeded", f"wrote more than the {job.limits.output_mb} MB output limit"
    breach = jd.quota_breach(job.limits)
    if breach is not None:
        return "quota_exceeded", breach
    if code == 0:
        return "succeeded", None
    if state.get("Error"):
        return "failed", f"Docker could not run the job: {state['Error']}"
    return "failed", f"exited with code {code}"


def parse_docker_time(stamp: str) -> float:
    from datetime import datetime

    # Docker prints nanoseconds; Python parses up to microseconds.
    head, _, frac = stamp.rstrip("Z").partition(".")
    micro = (frac + "000000")[:6] if frac else "000000"
    return datetime.fromisoformat(f"{head}.{micro}+00:00").timestamp()


def copy_logs(container: Any, log_path: Path, ended: threading.Event) -> None:
    """Copy the container's stdout+stderr into the job's log file, from the container's
    start (the daemon keeps it all), so a re-attached job's log is complete too."""
    try:
        with log_path.open("wb") as log:
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                log.write(chunk)
                log.flush()
    except Exception:  # noqa: BLE001 - a lost stream only costs log lines; the exit is polled
        return
    finally:
        ended.set()
