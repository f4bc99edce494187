"""The local-process runtime: each job is a process tree on this machine.

Each job runs under a small launcher (`_launch.py`) in a new session, with its own job
folder (see `jobdir.py`). The host enforces every limit from outside the job: wall-clock
time (the whole tree is killed at the limit), memory (sum of resident memory of the tree,
sampled), number of processes, and bytes written. The job's stdout goes to a log file the
host follows, so a job survives an orchestrator crash and `reconcile` re-attaches to it.

Not a security boundary: the job runs as the current user. Use the Docker runtime for
code you do not trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from medloop.core.errors import ConflictError, SandboxUnavailable
from medloop.core.records import JobResult, JobSpec, JobStatus, utcnow
from medloop.core.settings import OFFLINE_ENV
from medloop.sandbox.base import JobHandle, LogSink
from medloop.sandbox.jobdir import JobDir, LogFollower, RunInfo, remove_tree, write_json_atomic
from medloop.sandbox.procs import is_running, job_processes, kill_job, read_proc
from medloop.sandbox.provenance import local_environment_id, make_provenance, package_root
from medloop.sandbox.staging import rewrite_paths, stage_inputs

_MB = 1 << 20


class LocalRuntime:
    """`SandboxRuntime` backed by local processes (name "local")."""

    name = "local"

    def __init__(
        self,
        jobs_dir: Path,
        *,
        poll_s: float = 0.05,
        check_s: float = 0.25,
        copy_budget_mb: int = 256,
    ) -> None:
        self.jobs_dir = jobs_dir.expanduser().resolve()
        self.poll_s = poll_s  # how often stdout is read and the exit is checked
        self.check_s = check_s  # how often memory, process count and bytes written are sampled
        self.copy_budget_bytes = copy_budget_mb * _MB
        self._launchers: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- protocol

    def submit(self, job: JobSpec) -> JobHandle:
        jd = JobDir(self.jobs_dir, job.key)
        self._claim(jd)
        jd.create()
        write_json_atomic(jd.path / "spec.json", job.model_dump(mode="json"))
        for scratch in (jd.tmp_dir, jd.home_dir):
            scratch.mkdir(exist_ok=True)
        stage_inputs(job, jd.in_dir, copy_budget_bytes=self.copy_budget_bytes)
        token = secrets.token_hex(16)
        argv, env = self._command(job, jd, token)
        write_json_atomic(
            jd.path / "launch.json",
            {
                "argv": argv,
                "env": env,
                "cwd": str(jd.tmp_dir),
                "fsize_bytes": job.limits.output_mb * _MB,
                "token": token,
            },
        )
        started_at, started_unix, started_mono = utcnow(), time.time(), time.monotonic()
        try:
            with jd.log_path.open("ab") as log:
                launcher = subprocess.Popen(
                    [sys.executable, "-m", "medloop.sandbox._launch", str(jd.path)],
                    env=self._launcher_env(token),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
        except OSError as exc:
            raise SandboxUnavailable(f"cannot start a local job process: {exc}") from exc
        proc = read_proc(launcher.pid)
        jd.write_run(
            RunInfo(
                key=job.key,
                runtime=self.name,
                ref=str(launcher.pid),
                started_at=started_at,
                started_unix=started_unix,
                token=token,
                proc_start=proc.start_ticks if proc else None,
            )
        )
        with self._lock:
            self._launchers[job.key] = launcher
        return JobHandle(
            key=job.key,
            runtime=self.name,
            ref=str(launcher.pid),
            out_dir=jd.out_dir,
            started_at=started_at,
            started_monotonic=started_mono,
            gpu_ids=list(job.limits.gpu_ids),
        )

    def wait(self, handle: JobHandle, *, on_log: LogSink | None = None) -> JobResult:
        jd = JobDir(self.jobs_dir, handle.key)
        done = jd.result()
        if done is not None:
            return done
        job = JobSpec.model_validate_json((jd.path / "spec.json").read_text())
        info = self._run_info(jd)
        follower = LogFollower(jd.log_path)
        deadline = handle.started_monotonic + job.limits.timeout_s
        next_check = 0.0
        while True:
            self._emit(follower.poll(), on_log)
            if not self._alive(handle.key, info):
                break
            now = time.monotonic()
            if now >= deadline:
                self._stop(jd, info, "timed_out", f"wall-clock limit of {job.limits.timeout_s:g} s reached")
            elif now >= next_check:
                next_check = now + self.check_s
                self._check_limits(jd, info, job)
            time.sleep(self.poll_s)
        self._emit(follower.poll(final=True), on_log)
        return self._finish(jd, job, info)

    def cancel(self, handle: JobHandle) -> None:
        jd = JobDir(self.jobs_dir, handle.key)
        info = jd.run_info()
        if info is None or jd.result() is not None or jd.exit_info() is not None:
            return
        self._stop(jd, info, "cancelled", "cancelled by the host")

    def logs(self, handle: JobHandle, *, tail: int = 200) -> str:
        return JobDir(self.jobs_dir, handle.key).log_tail(tail)

    def reconcile(self, keys: Sequence[str]) -> dict[str, JobHandle | JobResult]:
        found: dict[str, JobHandle | JobResult] = {}
        for key in keys:
            jd = JobDir(self.jobs_dir, key)
            if not jd.exists():
                continue
            done = jd.result()
            if done is not None:
                found[key] = done
                continue
            info = jd.run_info()
            if info is None:
                # Crashed between creating the folder and recording the launch: stop
                # anything that did start (found by its token) and forget the attempt.
                launch = _read_launch(jd)
                if launch.get("token"):
                    kill_job(0, str(launch["token"]))
                remove_tree(jd.path)
                continue
            job = JobSpec.model_validate_json((jd.path / "spec.json").read_text())
            if is_running(int(info.ref), info.proc_start):
                found[key] = JobHandle(
                    key=key,
                    runtime=self.name,
                    ref=info.ref,
                    out_dir=jd.out_dir,
                    started_at=info.started_at,
                    started_monotonic=time.monotonic() - (time.time() - info.started_unix),
                    gpu_ids=list(job.limits.gpu_ids),
                )
                continue
            found[key] = self._finish(jd, job, info)
        return found

    # ---------------------------------------------------------------- internals

    def _claim(self, jd: JobDir) -> None:
        """Refuse to run a key twice; clear a folder left by a launch that never started."""
        if not jd.exists():
            return
        info = jd.run_info()
        if jd.result() is not None or jd.exit_info() is not None:
            raise ConflictError(
                f"job {jd.key} already ran (see {jd.path})",
                hint="call reconcile() to collect its result, or submit a new attempt key",
            )
        if info is not None and is_running(int(info.ref), info.proc_start):
            raise ConflictError(f"job {jd.key} is already running", hint="call reconcile() to re-attach")
        launch = _read_launch(jd)
        if launch.get("token"):
            kill_job(0, str(launch["token"]))
        remove_tree(jd.path)

    def _command(self, job: JobSpec, jd: JobDir, token: str) -> tuple[list[str], dict[str, str]]:
        def rw(text: str) -> str:
            return rewrite_paths(text, in_dir=jd.in_dir, out_dir=jd.out_dir)

        argv = [rw(arg) for arg in job.command]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        threads = str(max(1, int(job.limits.cpus)))
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(jd.home_dir),
            "TMPDIR": str(jd.tmp_dir),
            "PYTHONPATH": str(package_root()),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            # numba's cache=True kernels (librosa's) go into the job's own folder, not
            # next to their source in the host's site-packages, where jobs' caches made a
            # later process segfault in librosa.piptrack (most likely jobs side by side
            # rewriting one index; removing the files cured it).
            "NUMBA_CACHE_DIR": str(jd.tmp_dir / "numba"),
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            # No GPU unless the job was given explicit device ids.
            "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in job.limits.gpu_ids),
            # Indexes mean what nvidia-smi and MEDLOOP_GPU_IDS mean (CUDA's default order
            # is "fastest first", which can differ).
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "MEDLOOP_IN": str(jd.in_dir),
            "MEDLOOP_OUT": str(jd.out_dir),
            **OFFLINE_ENV,
        }
        env.update({name: rw(value) for name, value in job.env.items()})
        env["MEDLOOP_JOB_TOKEN"] = token
        return argv, env

    @staticmethod
    def _launcher_env(token: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "PYTHONPATH": str(package_root()),
            "LANG": "C.UTF-8",
            "MEDLOOP_JOB_TOKEN": token,
        }

    def _run_info(self, jd: JobDir) -> RunInfo:
        info = jd.run_info()
        if info is None:
            raise SandboxUnavailable(f"job {jd.key} has no launch record in {jd.path}")
        return info

    def _alive(self, key: str, info: RunInfo) -> bool:
        with self._lock:
            launcher = self._launchers.get(key)
        if launcher is not None:
            return launcher.poll() is None
        return is_running(int(info.ref), info.proc_start)

    def _stop(self, jd: JobDir, info: RunInfo, status: JobStatus, reason: str) -> None:
        jd.write_kill(status, reason)
        kill_job(int(info.ref), info.token, root_start=info.proc_start)

    def _check_limits(self, jd: JobDir, info: RunInfo, job: JobSpec) -> None:
        procs = job_processes(int(info.ref), root_start=info.proc_start)
        rss = sum(p.rss_bytes for p in procs)
        limits = job.limits
        if rss > limits.memory_mb * _MB:
            self._stop(
                jd,
                info,
                "oom",
                f"resident memory {rss / _MB:.0f} MB exceeded the {limits.memory_mb} MB limit",
            )
        elif len(procs) > limits.pids + 1:  # +1: the launcher
            self._stop(jd, info, "failed", f"more than {limits.pids} processes (limit pids={limits.pids})")
        elif (breach := jd.quota_breach(limits)) is not None:
            self._stop(jd, info, "quota_exceeded", breach)

    @staticmethod
    def _emit(lines: list[str], on_log: LogSink | None) -> None:
        if on_log is not None:
            for line in lines:
                on_log(line)

    def _finish(self, jd: JobDir, job: JobSpec, info: RunInfo) -> JobResult:
        with self._lock:
            launcher = self._launchers.pop(job.key, None)
        if launcher is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                launcher.wait(timeout=10)
        done = jd.result()
        if done is not None:
            return done
        # Nothing of the job may outlive its result (a daemonized child, a stuck launcher).
        kill_job(int(info.ref), info.token, root_start=info.proc_start)
        exit_info = jd.exit_info()
        kill = jd.kill_reason()
        exit_code: int | None = exit_info.get("exit_code") if exit_info else None
        ended_unix = (
            float(exit_info["ended_unix"]) if exit_info and "ended_unix" in exit_info else time.time()
        )
        ended_at = str(exit_info["ended_at"]) if exit_info else utcnow()
        status, reason = _classify(jd, job, exit_info, kill is not None)
        # No exit status and no kill of ours: the launcher and its job died together (host
        # crash, reboot, a kill of the whole process group). Nothing was measured.
        lost = exit_info is None and kill is None
        if kill is not None:
            status, reason = kill.status, kill.reason
            exit_code = exit_code if exit_code is not None else 128 + signal.SIGKILL
        result = JobResult(
            key=job.key,
            status=status,
            exit_code=exit_code,
            wall_s=max(0.0, ended_unix - info.started_unix),
            out_dir=jd.out_dir,
            log_tail=jd.log_tail(50, 8192),
            reason=reason,
            lost=lost,
            provenance=make_provenance(
                job,
                runtime=self.name,
                image=local_environment_id(),
                started_at=info.started_at,
                ended_at=ended_at,
                exit_code=exit_code,
            ),
        )
        jd.write_result(result)
        for scratch in (jd.in_dir, jd.tmp_dir, jd.home_dir):
            remove_tree(scratch)
        return result


def _classify(
    jd: JobDir, job: JobSpec, exit_info: dict[str, object] | None, killed: bool
) -> tuple[JobStatus, str | None]:
    if killed:
        return "failed", None
    if exit_info is None:
        return "failed", "the job's launcher ended without recording an exit status"
    code = exit_info.get("exit_code")
    sig = exit_info.get("signal")
    if exit_info.get("error"):
        return "failed", f"could not start the job: {exit_info['error']}"
    if sig == signal.SIGXFSZ:
        return "quota_exceeded", f"wrote more than the {job.limits.output_mb} MB output limit"
    breach = jd.quota_breach(job.limits)
    if breach is not None:
        return "quota_exceeded", breach
    if code == 0:
        return "succeeded", None
    if sig == signal.SIGKILL:
        return "failed", (
            "killed by SIGKILL from outside medloop (the kernel's OOM killer does this "
            "when the machine runs out of memory)"
        )
    if isinstance(sig, int):
        return "failed", f"killed by signal {_signal_name(sig)}"
    return "failed", f"exited with code {code}"


def _read_launch(jd: JobDir) -> dict[str, object]:
    try:
        data = json.loads((jd.path / "launch.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)
