"""The Ray executor: the same scheduler, with each job a Ray task on some node of a cluster.

`RayRuntime` is a `SandboxRuntime` whose jobs are Ray tasks (`ray_node.node_job`) that
ask Ray for the job's CPUs and GPUs (`num_cpus`, `num_gpus`); on the node, the task runs
the job in the configured sandbox runtime (local process or Docker) with the GPU ids
Ray assigned. Inputs under a folder the campaign declares shared (`executor.shared`, a
filesystem mounted at the same path on every node) go by path; others travel through
Ray's object store in pieces of `ray_node.CHUNK_BYTES` (packed once per content
fingerprint through a spool file, fetched only by a node whose cache lacks that
fingerprint); the job's `/out` comes back as an archive and is unpacked into the host's
workspace. `RayExecutor` is the `Scheduler` over a `RayRuntime`, so slots, budgets, cancel and infrastructure retries behave as with local execution.

Crash recovery: the driver records the node each job started on; `reconcile` sends a
task pinned to that node, which re-attaches to the job by key through the node's runtime.
That needs jobs that outlive a Ray worker: Docker containers do; local-process jobs are
stopped with their worker by Ray's child-process cleanup.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medloop.core.errors import ConflictError, MedloopError, SandboxUnavailable, SpecError
from medloop.core.records import JobResult, JobSpec, JobStatus, utcnow
from medloop.core.settings import Settings
from medloop.core.specs import Budget, ExecutorSpec, SandboxSpec
from medloop.sandbox.base import EventSink, JobHandle, LogSink
from medloop.sandbox.jobdir import JobDir, RunInfo, read_json, remove_tree, write_json_atomic
from medloop.sandbox.provenance import package_root
from medloop.sandbox.ray_node import LogHub, fingerprint, node_find, node_job, node_reap, pack_chunks, unpack
from medloop.sandbox.scheduler import BudgetUsage, Scheduler
from medloop.sandbox.staging import resolve_inputs

# How long past its own limit the driver waits before it stops a job a node lost track of.
_GRACE_S = 60.0


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise SandboxUnavailable("Ray is not installed", hint="pip install 'medloop[ray]'") from exc
    return ray


class RayRuntime:
    """`SandboxRuntime` whose jobs are Ray tasks running the `sandbox` runtime on a node."""

    name = "ray"

    def __init__(
        self,
        jobs_dir: Path,
        sandbox: SandboxSpec,
        *,
        address: str | None = None,
        docker_image: str = "medloop-runtime:latest",
        node_root: Path | None = None,
        shared: Sequence[Path] = (),
    ) -> None:
        ray = _ray()
        # Inputs under these folders go to nodes by path (a shared filesystem).
        self.shared = [Path(p).expanduser().resolve() for p in shared]
        self.jobs_dir = jobs_dir.expanduser().resolve()
        self.sandbox = sandbox
        self.docker_image = docker_image
        # Where nodes keep inputs and job folders (node-local; same path on every node).
        self.node_root = str(node_root or Path(tempfile.gettempdir()) / f"medloop-ray-node-{os.getuid()}")
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            had_fault_handler = faulthandler.is_enabled()
            try:
                ray.init(
                    address=address,
                    namespace="medloop",
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                    # A head started here gets medloop's code the way this process has it.
                    runtime_env=None if address else {"env_vars": {"PYTHONPATH": str(package_root())}},
                    object_store_memory=None if address else 512 * (1 << 20),
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise SandboxUnavailable(
                    f"cannot reach the Ray cluster at {address or 'a new local head'}: {exc}",
                    hint="start it with `ray start --head` and set executor.address",
                ) from exc
            if had_fault_handler:
                _restore_fault_handler()
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if sandbox.gpus > gpus:
            raise SpecError(
                f"sandbox.gpus={sandbox.gpus} but the Ray cluster has {gpus:g} GPU(s)",
                hint="add GPU nodes to the cluster or lower sandbox.gpus",
            )
        self._hub = ray.remote(num_cpus=0)(LogHub).remote()
        self._task = ray.remote(node_job)
        self._reaper = ray.remote(node_reap)
        self._finder = ray.remote(node_find)
        self._refs: dict[str, Any] = {}
        self._cancelled: set[str] = set()  # keys this driver asked to cancel
        self._inputs: dict[str, Any] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- protocol

    def submit(self, job: JobSpec) -> JobHandle:
        jd = JobDir(self.jobs_dir, job.key)
        if jd.result() is not None:
            raise ConflictError(f"job {job.key} already ran (see {jd.path})", hint="call reconcile()")
        if jd.exists():
            remove_tree(jd.path)
        jd.create()
        write_json_atomic(jd.path / "spec.json", job.model_dump(mode="json"))
        ref = self._launch(job, node_id=None)
        started_at, started_unix = utcnow(), time.time()
        jd.write_run(
            RunInfo(
                key=job.key,
                runtime=self.name,
                ref=ref.hex(),
                started_at=started_at,
                started_unix=started_unix,
            )
        )
        return JobHandle(
            key=job.key,
            runtime=self.name,
            ref=ref.hex(),
            out_dir=jd.out_dir,
            started_at=started_at,
            started_monotonic=time.monotonic(),
        )

    def wait(self, handle: JobHandle, *, on_log: LogSink | None = None) -> JobResult:
        ray = _ray()
        jd = JobDir(self.jobs_dir, handle.key)
        done = jd.result()
        if done is not None:
            return done
        job = JobSpec.model_validate_json((jd.path / "spec.json").read_text())
        with self._lock:
            ref = self._refs.get(handle.key)
        if ref is None:
            raise SandboxUnavailable(
                f"job {handle.key} is not known to this driver", hint="call reconcile() first"
            )
        deadline = handle.started_monotonic + job.limits.timeout_s + _GRACE_S
        node_known = (jd.path / "node.json").is_file()
        with jd.log_path.open("a") as log:
            while True:
                ready, _ = ray.wait([ref], timeout=0.1)
                self._relay(handle.key, log, on_log)
                if not node_known:
                    node_known = self._record_node(jd)
                if ready:
                    break
                if time.monotonic() > deadline:
                    # The node runtime enforces the limit; this only stops a lost job.
                    self._hub.cancel.remote(handle.key)
                    if time.monotonic() > deadline + 30:
                        ray.cancel(ref, force=True)
            try:
                result_json, out_tar, _node = ray.get(ref)
            except (ray.exceptions.TaskCancelledError, ray.exceptions.RayTaskError) as exc:
                if handle.key in self._cancelled and _was_cancelled(exc):
                    # This driver cancelled the task before it learnt the node: the node
                    # stopped the job (ray_node.node_job) or it never started.
                    return self._cancelled_result(jd, job, handle)
                cause = exc.cause if isinstance(getattr(exc, "cause", None), MedloopError) else None
                if cause is not None:
                    raise cause from None
                raise SandboxUnavailable(f"Ray task of job {handle.key} failed: {exc}") from exc
            except ray.exceptions.RayError as exc:
                raise SandboxUnavailable(f"Ray lost job {handle.key}: {type(exc).__name__}: {exc}") from exc
            finally:
                with self._lock:
                    self._refs.pop(handle.key, None)
            self._relay(handle.key, log, on_log)
        node_result = JobResult.model_validate_json(result_json)
        prov = node_result.provenance
        update: dict[str, Any] = {
            "key": job.key,
            "out_dir": jd.out_dir,
            "provenance": prov.model_copy(update={"runtime": f"ray+{prov.runtime}"}),
        }
        try:
            unpack(out_tar, jd.out_dir)
        except (tarfile.TarError, OSError) as exc:
            # A node running older code may still ship links: this job fails, not the run.
            remove_tree(jd.out_dir)
            jd.out_dir.mkdir()
            update |= {"status": "failed", "reason": f"unsafe job output: {type(exc).__name__}: {exc}"}
        result = node_result.model_copy(update=update)
        jd.write_result(result)
        return result

    def cancel(self, handle: JobHandle) -> None:
        ray = _ray()
        self._hub.cancel.remote(handle.key)
        with self._lock:
            self._cancelled.add(handle.key)
        jd = JobDir(self.jobs_dir, handle.key)
        with self._lock:
            ref = self._refs.get(handle.key)
        if ref is not None and not self._record_node(jd):
            # Still queued in Ray: nothing runs on a node yet, so dropping the task is safe.
            ray.cancel(ref)
        elif ref is None and jd.result() is None and self._record_node(jd):
            # The task that watched the job is gone (worker lost): nobody on the node reads
            # the cancel request, so stop the job there before any retry runs beside it.
            self._reap(jd)

    def _reap(self, jd: JobDir) -> None:
        ray = _ray()
        node = read_json(jd.path / "node.json") or {}
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        if node.get("node_id") not in alive:
            return  # a dead node's processes and containers died with it
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        job = JobSpec.model_validate_json((jd.path / "spec.json").read_text())
        reaper = self._reaper.options(
            num_cpus=0,
            max_retries=2,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node["node_id"], soft=False),
        )
        ref = reaper.remote(
            jd.key,
            self.sandbox.model_dump_json(),
            self.node_root,
            job.image or self.sandbox.image or self.docker_image,
        )
        try:
            ray.get(ref, timeout=job.limits.timeout_s + _GRACE_S)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            raise SandboxUnavailable(f"could not stop the lost job {jd.key} on its node: {exc}") from exc

    def _locate(self, jd: JobDir, node_ids: list[str]) -> dict[str, str] | None:
        """The node that has job `jd` (running or finished), recorded in node.json; None
        when no node has it."""
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        job = JobSpec.model_validate_json((jd.path / "spec.json").read_text())
        image = job.image or self.sandbox.image or self.docker_image
        refs = [
            self._finder.options(
                num_cpus=0,
                max_retries=2,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            ).remote(jd.key, self.sandbox.model_dump_json(), self.node_root, image)
            for node_id in node_ids
        ]
        try:
            answers = ray.get(refs, timeout=_GRACE_S + 60)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            raise SandboxUnavailable(f"could not ask the nodes about job {jd.key}: {exc}") from exc
        for node_id, state in answers:
            if state != "absent":
                node = {"node_id": node_id}
                write_json_atomic(jd.path / "node.json", node)
                return node
        return None

    def logs(self, handle: JobHandle, *, tail: int = 200) -> str:
        return JobDir(self.jobs_dir, handle.key).log_tail(tail)

    def reconcile(self, keys: Sequence[str]) -> dict[str, JobHandle | JobResult]:
        ray = _ray()
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
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
            node = read_json(jd.path / "node.json")
            if not node and info is not None:
                # Submitted, but the driver stopped before it learnt the node: ask every
                # node, so a job already running is re-attached rather than started twice.
                node = self._locate(jd, sorted(alive))
            if not node or info is None:
                remove_tree(jd.path)  # never reached a node: the caller submits it again
                continue
            job = JobSpec.model_validate_json((jd.path / "spec.json").read_text())
            if node["node_id"] not in alive:
                found[key] = self._lost(jd, job, info, f"Ray node {node['node_id'][:12]} died")
                continue
            self._launch(job, node_id=node["node_id"])
            found[key] = JobHandle(
                key=key,
                runtime=self.name,
                ref=self._refs[key].hex(),
                out_dir=jd.out_dir,
                started_at=info.started_at,
                started_monotonic=time.monotonic() - (time.time() - info.started_unix),
            )
        return found

    def close(self) -> None:
        ray = _ray()
        with contextlib.suppress(Exception):
            ray.kill(self._hub)
        if self._owns_ray and ray.is_initialized():
            had_fault_handler = faulthandler.is_enabled()
            ray.shutdown()
            if had_fault_handler:
                _restore_fault_handler()

    # ---------------------------------------------------------------- internals

    def _launch(self, job: JobSpec, *, node_id: str | None) -> Any:
        options: dict[str, Any] = {
            "num_cpus": job.limits.cpus,
            "num_gpus": self.sandbox.gpus,
            "max_retries": 0,  # a retry is a new attempt key, decided by the scheduler
            "name": f"medloop:{job.key}",
        }
        if node_id is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
        ref = self._task.options(**options).remote(
            job.model_dump_json(),
            self._ship_inputs(job),
            self.sandbox.model_dump_json(),
            self.node_root,
            job.image or self.sandbox.image or self.docker_image,
            self._hub,
        )
        with self._lock:
            self._refs[job.key] = ref
        return ref

    def _ship_inputs(self, job: JobSpec) -> dict[str, tuple[str, bool, str, Any]]:
        """Put each input in the object store once per content fingerprint."""
        ray = _ray()
        shipped: dict[str, tuple[str, bool, str, Any]] = {}
        for rel, path in resolve_inputs(job).items():
            if any(path.is_relative_to(root) for root in self.shared):
                # By reference: the node reads it where it is (tens of GB never pass
                # through the driver's memory or the object store).
                shipped[rel.as_posix()] = ("", path.is_dir(), path.name, str(path))
                continue
            digest = fingerprint(path)
            with self._lock:
                ref = self._inputs.get(digest)
            if ref is None:
                # Pieces, never one archive in memory; a node that has the fingerprint
                # cached does not fetch them.
                ref = pack_chunks(path, ray.put)
                with self._lock:
                    self._inputs[digest] = ref
            shipped[rel.as_posix()] = (digest, path.is_dir(), path.name, ref)
        return shipped

    def _relay(self, key: str, log: Any, on_log: LogSink | None) -> None:
        ray = _ray()
        lines: list[str] = ray.get(self._hub.pull.remote(key))
        for line in lines:
            log.write(line + "\n")
            if on_log is not None:
                on_log(line)
        if lines:
            log.flush()

    def _record_node(self, jd: JobDir) -> bool:
        if (jd.path / "node.json").is_file():
            return True
        ray = _ray()
        node_id = ray.get(self._hub.node_of.remote(jd.key))
        if node_id is None:
            return False
        write_json_atomic(jd.path / "node.json", {"node_id": node_id})
        return True

    def _cancelled_result(self, jd: JobDir, job: JobSpec, handle: JobHandle) -> JobResult:
        wall = max(0.0, time.monotonic() - handle.started_monotonic)
        return self._ended(jd, job, "cancelled", "cancelled", handle.started_at, wall)

    def _lost(self, jd: JobDir, job: JobSpec, info: RunInfo, reason: str) -> JobResult:
        wall = max(0.0, time.time() - info.started_unix)
        return self._ended(jd, job, "failed", reason, info.started_at, wall, lost=True)

    def _ended(
        self,
        jd: JobDir,
        job: JobSpec,
        status: JobStatus,
        reason: str,
        started_at: str,
        wall_s: float,
        *,
        lost: bool = False,
    ) -> JobResult:
        """Record the outcome of a job whose node result never came back (no exit code)."""
        from medloop.sandbox.provenance import make_provenance

        result = JobResult(
            key=job.key,
            status=status,
            exit_code=None,
            wall_s=wall_s,
            out_dir=jd.out_dir,
            log_tail=jd.log_tail(50, 8192),
            reason=reason,
            lost=lost,
            provenance=make_provenance(
                job, runtime=self.name, image=None, started_at=started_at, ended_at=utcnow(), exit_code=None
            ),
        )
        jd.write_result(result)
        return result


def _was_cancelled(exc: BaseException) -> bool:
    """Whether a Ray error is the cancellation of the task (directly or as its cause)."""
    ray = _ray()
    cancelled = ray.exceptions.TaskCancelledError
    return isinstance(exc, cancelled) or isinstance(getattr(exc, "cause", None), cancelled)


def _restore_fault_handler() -> None:
    """Put Python's fault handler back after Ray took the signals: `ray.shutdown()` (and
    `ray.init` on some versions) leaves handlers that print nothing where this process
    logs, so a later native crash in a campaign process named no Python frame."""
    faulthandler.disable()
    faulthandler.enable(all_threads=True)


class RayExecutor:
    """`Executor` on a Ray cluster: the scheduler's slots and budget over `RayRuntime`."""

    def __init__(
        self,
        settings: Settings,
        sandbox: SandboxSpec,
        executor: ExecutorSpec,
        *,
        budget: Budget | None = None,
        spent: BudgetUsage | None = None,
        node_root: Path | None = None,
    ) -> None:
        self.runtime = RayRuntime(
            settings.jobs_dir,
            sandbox,
            address=executor.address,
            docker_image=settings.docker_image,
            node_root=node_root or settings.workspace_dir / "ray-node",
            shared=executor.shared,
        )
        # Ray places GPUs itself; the scheduler only charges them to the budget.
        self.scheduler = Scheduler(
            self.runtime, slots=executor.slots, budget=budget, spent=spent, external_gpus=sandbox.gpus
        )

    def run(self, jobs: Sequence[JobSpec], *, on_event: EventSink | None = None) -> list[JobResult]:
        return self.scheduler.run(jobs, on_event=on_event)

    def cancel(self, key: str) -> None:
        self.scheduler.cancel(key)

    def usage(self) -> BudgetUsage:
        return self.scheduler.usage()

    def close(self) -> None:
        self.scheduler.close()
        self.runtime.close()
