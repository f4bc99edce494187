"""What runs on a Ray node for one job: the configured sandbox runtime, on the node.

A Ray task (`node_job`) fetches the job's inputs into a node-local cache (once per
content fingerprint, piece by piece), runs the job in
the node's own runtime (local process or Docker, with every limit that runtime enforces),
streams log lines to the driver through the `LogHub` actor, obeys cancel requests posted
there, and returns the JobResult with the job's `/out` folder as a tar archive, which
the driver unpacks into the host workspace. Re-running the task for the same key on the
same node re-attaches to the job instead of starting it again (the runtime reconciles
by key first), which is how a restarted driver picks up running jobs.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medloop.core import safe_tree
from medloop.core.errors import SandboxUnavailable
from medloop.core.records import JobResult, JobSpec, utcnow
from medloop.core.safe_tree import UnsafeOutput
from medloop.core.specs import SandboxSpec
from medloop.sandbox.base import SandboxRuntime


class LogHub:
    """A Ray actor: log lines from nodes to the driver, cancel requests the other way."""

    def __init__(self) -> None:
        self._lines: dict[str, list[str]] = {}
        self._cancelled: set[str] = set()
        self._nodes: dict[str, str] = {}

    def push(self, key: str, lines: list[str]) -> bool:
        """Append lines; returns whether the driver asked to cancel this job."""
        self._lines.setdefault(key, []).extend(lines)
        return key in self._cancelled

    def pull(self, key: str) -> list[str]:
        return self._lines.pop(key, [])

    def cancel(self, key: str) -> None:
        self._cancelled.add(key)

    def started(self, key: str, node_id: str) -> None:
        self._nodes[key] = node_id

    def node_of(self, key: str) -> str | None:
        return self._nodes.get(key)


# Inputs travel in pieces of this size: neither the driver nor a node ever holds more
# than one piece of an input archive in memory (a 3D dataset can be tens of GB).
CHUNK_BYTES = 32 << 20


def _add_tree(tar: tarfile.TarFile, path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.iterdir()):
            tar.add(child, arcname=child.name)
    else:
        tar.add(path, arcname=path.name)


def pack_dir(path: Path) -> bytes:
    """A folder as an uncompressed tar archive (paths relative to it); for small trees
    (a job's `/out`, bounded by its output quota)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add_tree(tar, path)
    return buffer.getvalue()


def pack_chunks(path: Path, put: Callable[[bytes], Any], chunk_bytes: int = CHUNK_BYTES) -> list[Any]:
    """An input as a tar archive spooled to a temporary file, handed to `put` (e.g.
    `ray.put`) one piece of at most `chunk_bytes` at a time; returns what `put` returned,
    in order. Peak memory is one piece, whatever the size of the input."""
    with tempfile.TemporaryFile(prefix="medloop-input-") as spool:
        with tarfile.open(fileobj=spool, mode="w") as tar:
            _add_tree(tar, path)
        spool.seek(0)
        pieces: list[Any] = []
        while piece := spool.read(chunk_bytes):
            pieces.append(put(piece))
    return pieces


def unpack(data: bytes, dest: Path) -> None:
    """Extract an archive made by `pack_dir` (the `data` filter refuses links out of dest)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(dest, filter="data")


def materialize(
    cache: Path,
    fingerprint: str,
    filename: str,
    pieces: list[Any],
    is_dir: bool,
    fetch: Callable[[Any], bytes],
) -> Path:
    """An input in this node's cache, by content fingerprint; returns its node path.

    Only a node that lacks the fingerprint fetches the pieces (with `fetch`, e.g.
    `ray.get`), one at a time into a spool file on disk, and unpacks from there: every
    later job on the node with the same input reads the cache and moves no bytes.
    """
    target = cache / fingerprint
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".{fingerprint}.{os.getpid()}.{threading.get_ident()}"
        try:
            with tempfile.TemporaryFile(dir=cache, prefix=".spool-") as spool:
                for piece in pieces:
                    spool.write(fetch(piece))
                spool.seek(0)
                tmp.mkdir(parents=True)
                with tarfile.open(fileobj=spool, mode="r") as tar:
                    tar.extractall(tmp, filter="data")
            tmp.rename(target)
        except OSError:
            if not target.exists():  # not "another task unpacked it first"
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target if is_dir else target / filename


def _shared_input(path_text: str, is_dir: bool, key: str) -> Path:
    """An input the driver passed by path: it must be here, the same kind as there."""
    path = Path(path_text)
    if not (path.is_dir() if is_dir else path.is_file()):
        import socket

        raise SandboxUnavailable(
            f"job {key}: shared input {path} is not mounted on Ray node {socket.gethostname()}",
            hint="mount the shared filesystem at the same path on every node, or drop it from executor.shared",
        )
    return path


def node_job(
    job_json: str,
    inputs: dict[str, tuple[str, bool, str, Any]],
    sandbox_json: str,
    node_root: str,
    docker_image: str,
    hub: Any,
) -> tuple[str, bytes, str]:
    """Run (or re-attach to) one job on this node. Returns (JobResult JSON, /out tar, node)."""
    import ray

    job = JobSpec.model_validate_json(job_json)
    sandbox = SandboxSpec.model_validate_json(sandbox_json)
    root = Path(node_root)
    node_inputs: dict[str, Path] = {}
    for name, (digest, is_dir, filename, ref) in inputs.items():
        if isinstance(ref, str):  # by reference, on a filesystem the driver says is shared
            node_inputs[name] = _shared_input(ref, is_dir, job.key)
            continue
        node_inputs[name] = materialize(root / "inputs", digest, filename, ref, is_dir, ray.get)
    # Ray names GPUs by index, or by UUID / MIG id where the node was started that way.
    gpu_ids = [int(g) if str(g).isdigit() else str(g) for g in ray.get_gpu_ids()]
    job = job.model_copy(
        update={"inputs": node_inputs, "limits": job.limits.model_copy(update={"gpu_ids": gpu_ids})}
    )
    node_id = ray.get_runtime_context().get_node_id()
    hub.started.remote(job.key, node_id)

    runtime = _node_runtime(root, sandbox, docker_image)
    found = runtime.reconcile([job.key]).get(job.key)
    if isinstance(found, JobResult):
        result = found
    elif found is None and ray.get(hub.push.remote(job.key, [])):
        # The driver cancelled it while the task waited in Ray's queue: nothing runs.
        result = _not_started(job, root, sandbox.runtime)
    else:
        handle = found if found is not None else runtime.submit(job)
        pending: list[str] = []
        lock = threading.Lock()
        finished = threading.Event()

        def flush() -> None:
            # Every 0.2 s: ship new lines to the driver and check for a cancel request.
            while not finished.wait(0.2):
                with lock:
                    batch, pending[:] = list(pending), []
                if ray.get(hub.push.remote(job.key, batch)):
                    runtime.cancel(handle)

        def on_log(line: str) -> None:
            with lock:
                pending.append(line)

        flusher = threading.Thread(target=flush, daemon=True)
        flusher.start()
        try:
            result = runtime.wait(handle, on_log=on_log)
        except KeyboardInterrupt:  # ray.cancel() of this task: stop the job, not only its watcher
            runtime.cancel(handle)
            runtime.wait(handle)
            raise
        finally:
            finished.set()
            flusher.join(timeout=5)
            with lock, contextlib.suppress(Exception):
                ray.get(hub.push.remote(job.key, list(pending)))
    result, out_tar = pack_output(result, job)
    return result.model_dump_json(), out_tar, node_id


def _not_started(job: JobSpec, root: Path, runtime: str) -> JobResult:
    from medloop.sandbox.provenance import make_provenance

    out = root / "not-started" / job.key
    out.mkdir(parents=True, exist_ok=True)
    now = utcnow()
    return JobResult(
        key=job.key,
        status="cancelled",
        exit_code=None,
        wall_s=0.0,
        out_dir=out,
        reason="cancelled before it started",
        provenance=make_provenance(
            job, runtime=runtime, image=None, started_at=now, ended_at=now, exit_code=None
        ),
    )


def pack_output(result: JobResult, job: JobSpec) -> tuple[JobResult, bytes]:
    """The job's /out as a tar of regular files and folders only. A link, device, FIFO or
    too many entries fail this job (the result says why) and ship nothing: one bad output
    must never break the driver's unpacking, the run, or a resume."""
    try:
        return result, safe_tree.tar_tree(
            result.out_dir, max_entries=job.limits.output_entries, max_bytes=job.limits.output_mb << 20
        )
    except UnsafeOutput as exc:
        reason = f"unsafe job output: {exc.message}"
        if result.status != "succeeded" and result.reason:  # keep why the job failed first
            reason = f"{result.reason}; {reason}"
        failed = result.model_copy(
            update={"status": "failed" if result.status == "succeeded" else result.status, "reason": reason}
        )
        buffer = io.BytesIO()
        tarfile.open(fileobj=buffer, mode="w").close()
        return failed, buffer.getvalue()


def _node_runtime(root: Path, sandbox: SandboxSpec, docker_image: str) -> SandboxRuntime:
    """The driver's runtime choice on this node, over the node's own jobs folder. Nothing
    here reads the node's settings or environment: the driver decides."""
    from medloop.sandbox.factory import runtime_in

    return runtime_in(root / "workspace" / "jobs", sandbox, docker_image=docker_image)


def node_reap(key: str, sandbox_json: str, node_root: str, docker_image: str) -> str:
    """Stop and collect what a lost task left of job `key` on this node (a Ray task pinned
    here). The node runtime re-attaches by key, kills the job's process tree or container
    and records its result; a finished container is removed. Returns what it found."""
    from medloop.sandbox.base import JobHandle

    runtime = _node_runtime(Path(node_root), SandboxSpec.model_validate_json(sandbox_json), docker_image)
    found = runtime.reconcile([key]).get(key)
    if isinstance(found, JobHandle):
        runtime.cancel(found)
        runtime.wait(found)
        return "stopped"
    return "absent" if found is None else "finished"


def node_find(key: str, sandbox_json: str, node_root: str, docker_image: str) -> tuple[str, str]:
    """Whether job `key` is on this node (a Ray task pinned here), touching nothing:
    (node id, "running" | "finished" | "absent")."""
    import ray

    from medloop.sandbox.base import JobHandle

    runtime = _node_runtime(Path(node_root), SandboxSpec.model_validate_json(sandbox_json), docker_image)
    found = runtime.reconcile([key]).get(key)
    state = "running" if isinstance(found, JobHandle) else "absent" if found is None else "finished"
    return ray.get_runtime_context().get_node_id(), state


def fingerprint(path: Path) -> str:
    """Cheap content fingerprint of an input: names, sizes and mtimes of its files."""
    import hashlib

    digest = hashlib.sha256(str(path).encode())
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        stat = file.stat()
        digest.update(
            f"{file.relative_to(path) if path.is_dir() else file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()
        )
    return digest.hexdigest()[:24]
