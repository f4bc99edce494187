"""Launcher of one local job: `python -m medloop.sandbox._launch JOB_DIR`.

The host starts this in a new session; it becomes a child subreaper (so processes the
job daemonizes re-parent to it, not to init), applies resource limits to the job, sends
the job's stdout and stderr to `JOB_DIR/log.txt`, waits, kills whatever the job left
behind, and records the exit status in `JOB_DIR/exit.json`. Output goes to a file rather
than a pipe so the job survives an orchestrator crash and can be re-attached.

Standard library only: it starts once per job and must start fast.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from medloop.sandbox.procs import job_processes

_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _kill_descendants() -> None:
    me = os.getpid()
    for _ in range(100):
        procs = [p for p in job_processes(me) if p.pid != me]
        if not procs:
            return
        for proc in procs:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        _reap()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(job_dir: Path) -> int:
    spec = json.loads((job_dir / "launch.json").read_text())
    _become_subreaper()
    fsize = int(spec.get("fsize_bytes") or resource.RLIM_INFINITY)

    def limits() -> None:
        # One file larger than the whole output quota is stopped by the kernel (SIGXFSZ).
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        _kill_descendants()

    signal.signal(signal.SIGTERM, on_term)
    with (job_dir / "log.txt").open("ab", buffering=0) as log:
        try:
            child = subprocess.Popen(
                spec["argv"],
                env=spec["env"],
                cwd=spec["cwd"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limits,
            )
        except OSError as exc:
            log.write(f"medloop: cannot start {spec['argv'][0]!r}: {exc}\n".encode())
            _write_exit(job_dir, 127, error=str(exc))
            return 0
        returncode = child.wait()
    _kill_descendants()
    _reap()
    _write_exit(job_dir, returncode)
    return 0


def _write_exit(job_dir: Path, returncode: int, error: str | None = None) -> None:
    # A signal death (-N) is reported the shell's way (128 + N), as Docker does.
    code = 128 - returncode if returncode < 0 else returncode
    data = {
        "exit_code": code,
        "signal": -returncode if returncode < 0 else None,
        "ended_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "ended_unix": time.time(),
        "error": error,
    }
    tmp = job_dir / ".exit.json.tmp"
    tmp.write_text(json.dumps(data))
    tmp.replace(job_dir / "exit.json")


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
