"""Provenance every runtime attaches to a JobResult: code, environment, trial identity."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from pydantic import ValidationError

import medloop
from medloop.core.records import JobSpec, Provenance, TrialSpec

# JobSpec.labels that carry trial identity into provenance (set by whoever builds jobs).
LABEL_SPEC_HASH = "medloop.spec_hash"
LABEL_DATASET_CHECKSUM = "medloop.dataset_checksum"
LABEL_SEED = "medloop.seed"


def package_root() -> Path:
    """The folder that holds the `medloop` package (what PYTHONPATH needs to import it)."""
    return Path(medloop.__file__).resolve().parent.parent


@functools.cache
def code_commit() -> str | None:
    """The git commit of the medloop source, if it runs from a checkout (or MEDLOOP_COMMIT)."""
    if os.environ.get("MEDLOOP_COMMIT"):
        return os.environ["MEDLOOP_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "-C", str(package_root()), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


@functools.cache
def lock_hash() -> str:
    """sha256 over the sorted `name==version` of every installed distribution."""
    from importlib import metadata

    pins = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in metadata.distributions()})
    return hashlib.sha256("\n".join(pins).encode()).hexdigest()


@functools.cache
def interpreter() -> str:
    return f"{platform.python_implementation().lower()}{platform.python_version()}:{sys.executable}"


def local_environment_id() -> str:
    """What identifies the local runtime's environment: interpreter and lock hash."""
    return f"{interpreter()} lock=sha256:{lock_hash()[:16]}"


def trial_identity(job: JobSpec) -> tuple[str | None, str | None, int | None]:
    """(spec hash, dataset checksum, seed) from the job's labels, else from its spec.json."""
    spec_hash = job.labels.get(LABEL_SPEC_HASH)
    checksum = job.labels.get(LABEL_DATASET_CHECKSUM)
    seed_label = job.labels.get(LABEL_SEED)
    seed = int(seed_label) if seed_label and seed_label.lstrip("-").isdigit() else None
    spec_path = job.inputs.get("spec.json")
    if (spec_hash is None or checksum is None or seed is None) and spec_path is not None:
        try:
            trial = TrialSpec.model_validate_json(Path(spec_path).read_text())
        except (OSError, ValidationError, ValueError):
            trial = None
        if trial is not None:
            spec_hash = spec_hash or trial.spec_hash()
            checksum = checksum or trial.dataset.checksum
            seed = trial.seed if seed is None else seed
    return spec_hash, checksum, seed


def make_provenance(
    job: JobSpec,
    *,
    runtime: str,
    image: str | None,
    started_at: str,
    ended_at: str,
    exit_code: int | None,
    host: str | None = None,
) -> Provenance:
    spec_hash, checksum, seed = trial_identity(job)
    return Provenance(
        code_version=medloop.__version__,
        code_commit=code_commit(),
        spec_hash=spec_hash,
        dataset_checksum=checksum,
        seed=seed,
        runtime=runtime,
        image=image,
        host=host or socket.gethostname(),
        gpu_ids=list(job.limits.gpu_ids),
        started_at=started_at,
        ended_at=ended_at,
        exit_code=exit_code,
    )
