"""The Docker runtime: each job is one locked-down container (docker SDK).

What a container gets: network "none"; a read-only root with a size-capped tmpfs at
/tmp; no capabilities; no-new-privileges; a pids limit; memory = memory + swap (no swap);
a CPU quota; a non-root user; every input bind-mounted read-only under /in; one writable
bind mount at /out whose size the host enforces; no Docker socket; labels with the job
key; GPUs only as explicit device ids (NVIDIA_VISIBLE_DEVICES is neutralised otherwise).
The image is resolved to its id once and containers are created from that id, so the
digest in provenance is exactly what ran.

Container name `medloop-<workspace hash>-<safe key>` is unique on the daemon, so a key can
never run twice in a workspace; `reconcile` finds containers again by the `medloop.job`
and `medloop.workspace` labels.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medloop.core.errors import ConflictError, ImageNotFound, SandboxUnavailable, SpecError
from medloop.core.records import JobResult, JobSpec, JobStatus, utcnow
from medloop.core.settings import OFFLINE_ENV
from medloop.sandbox.base import IN_DIR, OUT_DIR, JobHandle, LogSink
from medloop.sandbox.docker_outcome import classify, copy_logs, parse_docker_time
from medloop.sandbox.image import docker_client
from medloop.sandbox.jobdir import JobDir, LogFollower, RunInfo, remove_tree, safe_key, write_json_atomic
from medloop.sandbox.provenance import make_provenance
from medloop.sandbox.staging import readable_by_others, readable_copy, resolve_inputs

_MB = 1 << 20
JOB_LABEL = "medloop.job"
# Jobs of different workspaces on one daemon never see each other (same keys are fine).
WORKSPACE_LABEL = "medloop.workspace"
KEY_LABEL = "medloop.key"
JOB_UID = 10001
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
_LIVE = ("running", "created", "restarting", "paused")


class DockerRuntime:
    """`SandboxRuntime` backed by Docker containers (name "docker")."""

    name = "docker"

    def __init__(
        self,
        jobs_dir: Path,
        *,
        image: str,
        tmpfs_mb: int = 512,
        poll_s: float = 0.05,
        check_s: float = 0.25,
        client: Any = None,
    ) -> None:
        self.jobs_dir = jobs_dir.expanduser().resolve()
        self.image = image
        self.tmpfs_mb = tmpfs_mb  # scratch at /tmp; counts against the job's memory limit
        self.poll_s = poll_s
        self.check_s = check_s
        self._client = client
        self._images: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self.namespace = hashlib.sha256(str(self.jobs_dir).encode()).hexdigest()[:10]

    # ---------------------------------------------------------------- docker access

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
        return self._client

    def _api(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the daemon; a connection problem becomes SandboxUnavailable."""
        import docker
        import requests

        try:
            return call(*args, **kwargs)
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
            if isinstance(exc, docker.errors.NotFound):
                raise
            raise SandboxUnavailable(f"Docker daemon error while {what}: {exc}") from exc

    def resolve_image(self, ref: str) -> tuple[str, str]:
        """(image id, provenance string `ref@sha256:...`) for an image name or digest."""
        import docker

        with self._lock:
            if ref in self._images:
                return self._images[ref]
        try:
            image = self._api("looking up the image", self.client.images.get, ref)
        except docker.errors.NotFound:
            raise ImageNotFound(
                f"sandbox image {ref!r} is not on this Docker daemon",
                hint="build it with `medloop sandbox build-image` (add --base debootstrap --wheelhouse DIR offline)",
            ) from None
        digests = [d for d in image.attrs.get("RepoDigests") or [] if "@" in d]
        pinned = digests[0] if digests else f"{ref.split('@')[0]}@{image.id}"
        with self._lock:
            self._images[ref] = (image.id, pinned)
        return image.id, pinned

    # ---------------------------------------------------------------- protocol

    def submit(self, job: JobSpec) -> JobHandle:
        image_id, pinned = self.resolve_image(job.image or self.image)
        inputs = self._mounts_for_inputs(job)
        jd = JobDir(self.jobs_dir, job.key)
        self._claim(jd)
        jd.create()
        write_json_atomic(jd.path / "spec.json", job.model_dump(mode="json"))
        user = self._prepare_out(jd)
        kwargs = self._container_args(job, jd, image_id, pinned, inputs, user)
        container = self._api("creating the container", self.client.containers.create, **kwargs)
        started_at, started_unix, started_mono = utcnow(), time.time(), time.monotonic()
        jd.write_run(
            RunInfo(
                key=job.key,
                runtime=self.name,
                ref=container.id,
                started_at=started_at,
                started_unix=started_unix,
                token=pinned,
            )
        )
        try:
            self._api("starting the container", container.start)
        except SandboxUnavailable:
            with contextlib.suppress(Exception):
                container.remove(force=True)
            (jd.path / "run.json").unlink(missing_ok=True)
            raise
        # The wall-clock limit counts from the job's start: creating and starting a
        # container takes seconds on a loaded host, which must not eat a short limit.
        started_mono = time.monotonic()
        return JobHandle(
            key=job.key,
            runtime=self.name,
            ref=container.id,
            out_dir=jd.out_dir,
            started_at=started_at,
            started_monotonic=started_mono,
            gpu_ids=list(job.limits.gpu_ids),
        )

    def wait(self, handle: JobHandle, *, on_log: LogSink | None = None) -> JobResult:
        import docker

        jd = JobDir(self.jobs_dir, handle.key)
        done = jd.result()
        if done is not None:
            return done
        job = JobSpec.model_validate_json((jd.path / "spec.json").read_text())
        try:
            container = self._api("finding the container", self.client.containers.get, handle.ref)
        except docker.errors.NotFound:
            return self._finish(jd, job, None)
        stream_ended = threading.Event()
        reader = threading.Thread(
            target=copy_logs,
            args=(container, jd.log_path, stream_ended),
            name=f"medloop-logs-{job.key}",
            daemon=True,
        )
        reader.start()
        follower = LogFollower(jd.log_path)
        deadline = handle.started_monotonic + job.limits.timeout_s
        next_check = 0.0
        while True:
            self._emit(follower.poll(), on_log)
            now = time.monotonic()
            # The end of the log stream is the fast signal that the job ended.
            if stream_ended.is_set() or now >= next_check:
                next_check = now + self.check_s
                try:
                    self._api("checking the container", container.reload)
                except docker.errors.NotFound:
                    container = None
                    break
                if container.status not in _LIVE:
                    break
                breach = jd.quota_breach(job.limits)
                if breach is not None:
                    self._stop(jd, container, "quota_exceeded", breach)
            if now >= deadline:
                self._stop(
                    jd, container, "timed_out", f"wall-clock limit of {job.limits.timeout_s:g} s reached"
                )
            if stream_ended.is_set():
                time.sleep(self.poll_s)
            else:
                stream_ended.wait(self.poll_s)
        reader.join(timeout=10)
        self._emit(follower.poll(final=True), on_log)
        return self._finish(jd, job, container, logs_copied=True)

    def cancel(self, handle: JobHandle) -> None:
        import docker

        jd = JobDir(self.jobs_dir, handle.key)
        if jd.result() is not None:
            return
        try:
            container = self._api("finding the container", self.client.containers.get, handle.ref)
            container.reload()
        except docker.errors.NotFound:
            return
        if container.status in _LIVE:
            self._stop(jd, container, "cancelled", "cancelled by the host")

    def logs(self, handle: JobHandle, *, tail: int = 200) -> str:
        return JobDir(self.jobs_dir, handle.key).log_tail(tail)

    def reconcile(self, keys: Sequence[str]) -> dict[str, JobHandle | JobResult]:
        found: dict[str, JobHandle | JobResult] = {}
        for key in keys:
            jd = JobDir(self.jobs_dir, key)
            containers = self._containers(key)
            done = jd.result()
            if done is not None:
                for container in containers:  # leftovers of a job already collected
                    self._remove(container)
                found[key] = done
                continue
            info = jd.run_info()
            container = next((c for c in containers if info is not None and c.id == info.ref), None)
            for other in containers:
                if container is None or other.id != container.id:
                    self._remove(other)  # created but never recorded as started: an orphan
            if info is None:
                if jd.exists():
                    remove_tree(jd.path)
                continue
            job = JobSpec.model_validate_json((jd.path / "spec.json").read_text())
            if container is not None and container.status in ("running", "paused", "restarting"):
                found[key] = JobHandle(
                    key=key,
                    runtime=self.name,
                    ref=container.id,
                    out_dir=jd.out_dir,
                    started_at=info.started_at,
                    started_monotonic=time.monotonic() - (time.time() - info.started_unix),
                    gpu_ids=list(job.limits.gpu_ids),
                )
            elif container is not None and container.status == "created":
                self._remove(container)
                remove_tree(jd.path)
            else:
                found[key] = self._finish(jd, job, container)
        return found

    # ---------------------------------------------------------------- container set-up

    def _mounts_for_inputs(self, job: JobSpec) -> list[tuple[str, str]]:
        """(host path, container path) per input; refuses anything that exposes the daemon."""
        mounts = []
        for rel, path in resolve_inputs(job).items():
            for sock in DOCKER_SOCKETS:
                if Path(sock).exists() and (
                    path == Path(sock).resolve() or Path(sock).resolve().is_relative_to(path)
                ):
                    raise SpecError(
                        f"job {job.key}: input {rel.as_posix()!r} ({path}) would expose the Docker socket",
                        hint="mount only the data folders a job needs",
                    )
            # The container's user (uid 10001 when medloop runs as root) cannot read an
            # owner-only input: it gets a copy it owns, private to it (0400/0500).
            if os.geteuid() == 0 and not readable_by_others(path):
                path = readable_copy(path, self.jobs_dir.parent / "docker-inputs", owner=JOB_UID)
            mounts.append((str(path), f"{IN_DIR}/{rel.as_posix()}"))
        return mounts

    def _claim(self, jd: JobDir) -> None:
        if jd.result() is not None or jd.exit_info() is not None:
            raise ConflictError(
                f"job {jd.key} already ran (see {jd.path})",
                hint="call reconcile() to collect its result, or submit a new attempt key",
            )
        containers = self._containers(jd.key)
        if any(c.status != "created" for c in containers):
            raise ConflictError(f"job {jd.key} already has a container", hint="call reconcile() to re-attach")
        for container in containers:
            self._remove(container)
        if jd.exists():
            remove_tree(jd.path)

    @staticmethod
    def _prepare_out(jd: JobDir) -> str:
        """The user the container runs as, and an /out it can write to."""
        if os.geteuid() == 0:
            os.chown(jd.out_dir, JOB_UID, JOB_UID)
            return f"{JOB_UID}:{JOB_UID}"
        # Not root: run as the calling user (never root) so /out stays the caller's.
        return f"{os.getuid()}:{os.getgid()}"

    def _container_args(
        self,
        job: JobSpec,
        jd: JobDir,
        image_id: str,
        pinned: str,
        inputs: list[tuple[str, str]],
        user: str,
    ) -> dict[str, Any]:
        from docker.types import DeviceRequest, Mount, Ulimit

        limits = job.limits
        mounts = [Mount(target=target, source=src, type="bind", read_only=True) for src, target in inputs]
        mounts.append(Mount(target=OUT_DIR, source=str(jd.out_dir), type="bind", read_only=False))
        threads = str(max(1, int(limits.cpus)))
        env = {
            **OFFLINE_ENV,
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "NUMBA_CACHE_DIR": "/tmp/numba",  # as the local runtime: the job's own folder
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "MEDLOOP_IN": IN_DIR,
            "MEDLOOP_OUT": OUT_DIR,
            **job.env,
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # indexes as nvidia-smi and MEDLOOP_GPU_IDS count
        }
        device_requests = []
        if limits.gpu_ids:
            ids = [str(i) for i in limits.gpu_ids]
            device_requests = [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(ids)
        else:
            # An image may set NVIDIA_VISIBLE_DEVICES=all; "void" gives the job no GPU.
            env["NVIDIA_VISIBLE_DEVICES"] = "void"
            env["CUDA_VISIBLE_DEVICES"] = ""
        fsize = limits.output_mb * _MB
        return {
            "image": image_id,
            "command": list(job.command),
            "name": f"medloop-{self.namespace}-{safe_key(job.key)}",
            "labels": {
                **job.labels,
                JOB_LABEL: safe_key(job.key),
                WORKSPACE_LABEL: self.namespace,
                KEY_LABEL: job.key,
                "medloop.image": pinned,
            },
            "environment": env,
            "user": user,
            "working_dir": "/tmp",
            "network_mode": "none",
            "read_only": True,
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_mb}m,mode=1777"},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "pids_limit": limits.pids,
            "mem_limit": limits.memory_mb * _MB,
            "memswap_limit": limits.memory_mb * _MB,
            "nano_cpus": int(limits.cpus * 1e9),
            "ipc_mode": "private",
            "mounts": mounts,
            "device_requests": device_requests,
            # One file larger than the whole output quota is stopped by the kernel (SIGXFSZ).
            "ulimits": [Ulimit(name="fsize", soft=fsize, hard=fsize), Ulimit(name="core", soft=0, hard=0)],
            "log_config": {"Type": "json-file", "Config": {"max-size": f"{max(1, limits.output_mb)}m"}},
            "detach": True,
        }

    # ---------------------------------------------------------------- running

    @staticmethod
    def _emit(lines: list[str], on_log: LogSink | None) -> None:
        if on_log is not None:
            for line in lines:
                on_log(line)

    def _stop(self, jd: JobDir, container: Any, status: JobStatus, reason: str) -> None:
        import docker

        jd.write_kill(status, reason)
        with contextlib.suppress(docker.errors.APIError):
            container.kill(signal="SIGKILL")

    def _finish(
        self, jd: JobDir, job: JobSpec, container: Any | None, *, logs_copied: bool = False
    ) -> JobResult:
        import docker

        done = jd.result()
        if done is not None:
            return done
        info = jd.run_info()
        state: dict[str, Any] = {}
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                self._api("reading the container state", container.reload)
                state = container.attrs.get("State", {})
                if not logs_copied:
                    # Finished while nobody followed it: the daemon still has its output.
                    jd.log_path.write_bytes(
                        self._api("reading logs", container.logs, stdout=True, stderr=True)
                    )
        kill = jd.kill_reason()
        exit_code = state.get("ExitCode") if state else None
        status, reason = classify(jd, job, state, container is None)
        if kill is not None:
            status, reason = kill.status, kill.reason
        ended_unix = time.time()
        finished = state.get("FinishedAt", "")
        if finished and not finished.startswith("0001"):
            ended_at = finished
            with contextlib.suppress(ValueError):
                ended_unix = parse_docker_time(finished)
        else:
            ended_at = utcnow()
        started_unix = info.started_unix if info else ended_unix
        result = JobResult(
            key=job.key,
            status=status,
            exit_code=exit_code,
            wall_s=max(0.0, ended_unix - started_unix),
            out_dir=jd.out_dir,
            log_tail=jd.log_tail(50, 8192),
            reason=reason,
            lost=container is None and kill is None,
            provenance=make_provenance(
                job,
                runtime=self.name,
                image=info.token if info else None,
                started_at=info.started_at if info else ended_at,
                ended_at=ended_at,
                exit_code=exit_code,
                host=socket.gethostname(),
            ),
        )
        jd.write_result(result)
        if container is not None:
            self._remove(container)
        return result

    # ---------------------------------------------------------------- helpers

    def _containers(self, key: str) -> list[Any]:
        return list(
            self._api(
                "listing containers",
                self.client.containers.list,
                all=True,
                filters={"label": [f"{JOB_LABEL}={safe_key(key)}", f"{WORKSPACE_LABEL}={self.namespace}"]},
            )
        )

    @staticmethod
    def _remove(container: Any) -> None:
        import docker

        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
