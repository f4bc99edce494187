"""Builds sandbox runtimes and executors from settings and a campaign's specs.

`bootstrap.py` calls these; nothing else imports a concrete backend.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

from medloop.core.errors import SpecError
from medloop.core.extras import installed, missing
from medloop.core.records import GpuId
from medloop.core.settings import Settings
from medloop.core.specs import Budget, ExecutorSpec, SandboxSpec
from medloop.sandbox.base import Executor, SandboxRuntime
from medloop.sandbox.scheduler import BudgetUsage


def make_runtime(settings: Settings, sandbox: SandboxSpec) -> SandboxRuntime:
    """The runtime named by `sandbox.runtime` (local process or Docker)."""
    return runtime_in(settings.jobs_dir, sandbox, docker_image=settings.docker_image)


def runtime_in(jobs_dir: Path, sandbox: SandboxSpec, *, docker_image: str) -> SandboxRuntime:
    """The runtime named by `sandbox.runtime` over `jobs_dir`, from what the caller passes
    only: a Ray node runs the driver's choice and never reads settings of its own."""
    if sandbox.runtime == "local":
        from medloop.sandbox.local import LocalRuntime

        if not installed("torch"):  # a job here would fail on its first import, every time
            raise missing(
                "torch", "sandbox.runtime: local (jobs run in this Python)", instead="sandbox.runtime: docker"
            )

        return LocalRuntime(jobs_dir)
    if sandbox.runtime == "docker":
        from medloop.sandbox.docker import DockerRuntime

        return DockerRuntime(jobs_dir, image=sandbox.image or docker_image)
    raise SpecError(f"sandbox.runtime: unknown runtime {sandbox.runtime!r}", hint="use local or docker")


def make_executor(
    settings: Settings,
    sandbox: SandboxSpec,
    executor: ExecutorSpec,
    budget: Budget | None = None,
    *,
    spent: BudgetUsage | None = None,
) -> Executor:
    """The executor named by `executor.kind`, running jobs in the `sandbox` runtime.
    `spent` is what the campaign already used (a resumed campaign keeps its budget)."""
    gpu_ids = gpu_pool(settings)
    if executor.kind == "local":
        from medloop.sandbox.scheduler import Scheduler

        return Scheduler(
            make_runtime(settings, sandbox),
            slots=executor.slots,
            gpu_ids=gpu_ids,
            gpus_per_job=sandbox.gpus,
            jobs_per_gpu=settings.jobs_per_gpu,
            budget=budget,
            spent=spent,
        )
    if executor.kind == "ray":
        from medloop.sandbox.ray_executor import RayExecutor

        return RayExecutor(settings, sandbox, executor, budget=budget, spent=spent)
    raise SpecError(
        f"executor.kind: {executor.kind!r} is not a sandbox executor",
        hint="use local or ray",
    )


def parse_gpu_id(text: str) -> GpuId:
    """A GPU as CUDA names it: an index (PCI bus order), GPU-<uuid> or MIG-<uuid>."""
    part = text.strip()
    if part.isdigit():
        return int(part)
    if re.fullmatch(r"(GPU|MIG)-[A-Za-z0-9/-]+", part):
        return part
    raise SpecError(
        f"GPU id {part!r} is neither an index nor a GPU-<uuid> / MIG-<uuid> id",
        hint="e.g. MEDLOOP_GPU_IDS=0,1 or MEDLOOP_GPU_IDS=GPU-5f3c...,MIG-9a1b... (nvidia-smi -L lists them)",
    )


def gpu_pool(settings: Settings) -> list[GpuId]:
    """GPU ids jobs may use: MEDLOOP_GPU_IDS, else every GPU nvidia-smi lists, else none."""
    if settings.gpu_ids.strip():
        try:
            return [parse_gpu_id(part) for part in settings.gpu_ids.split(",") if part.strip()]
        except SpecError as exc:
            raise SpecError(f"MEDLOOP_GPU_IDS={settings.gpu_ids!r}: {exc.message}", hint=exc.hint) from None
    return list(_detected_gpus())


@functools.cache
def _detected_gpus() -> tuple[GpuId, ...]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if out.returncode != 0:
        return ()
    return tuple(int(line) for line in out.stdout.split() if line.strip().isdigit())
