"""The runtime fixture of the sandbox conformance suite: every backend runs the same tests.

Each param builds a runtime on a fresh jobs folder, plus `proc_gone(pid_text)`, which
says whether a process the job reported (by its pid inside the sandbox) has ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from medloop.core.errors import MedloopError
from medloop.core.settings import Settings
from medloop.core.specs import SandboxSpec
from medloop.sandbox.base import JobHandle, SandboxRuntime
from medloop.sandbox.factory import make_runtime
from medloop.sandbox.procs import is_running
from tests.conftest import require


@dataclass
class RuntimeCase:
    name: str
    runtime: SandboxRuntime
    jobs_dir: Path
    # Called after a job ended: True if nothing the job started is still running.
    nothing_left: Callable[[JobHandle, list[int]], bool]
    # A fresh runtime over the same jobs folder (what an orchestrator restart builds).
    restart: Callable[[], SandboxRuntime]


def _local(settings: Settings) -> RuntimeCase:
    spec = SandboxSpec(runtime="local")

    def nothing_left(_handle: JobHandle, pids: list[int]) -> bool:
        return not any(is_running(pid) for pid in pids)

    return RuntimeCase(
        name="local",
        runtime=make_runtime(settings, spec),
        jobs_dir=settings.jobs_dir,
        nothing_left=nothing_left,
        restart=lambda: make_runtime(settings, spec),
    )


def docker_available(image: str) -> tuple[bool, str]:
    """Whether the Docker daemon answers and has the runtime image."""
    try:
        from medloop.sandbox.image import docker_client

        client = docker_client()
    except MedloopError as exc:
        return False, exc.message
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return (
            False,
            f"image {image} missing: run `medloop sandbox build-image --base debootstrap --wheelhouse DIR`",
        )
    return True, ""


def _docker(settings: Settings) -> RuntimeCase:
    ok, why = docker_available(settings.docker_image)
    require("docker", ok, why)
    spec = SandboxSpec(runtime="docker")
    runtime = make_runtime(settings, spec)

    def nothing_left(handle: JobHandle, _pids: list[int]) -> bool:
        # Every process of a job lives in its container's PID namespace: gone with it.
        from medloop.sandbox.image import docker_client

        return not docker_client().containers.list(all=True, filters={"id": handle.ref})

    return RuntimeCase(
        name="docker",
        runtime=runtime,
        jobs_dir=settings.jobs_dir,
        nothing_left=nothing_left,
        restart=lambda: make_runtime(settings, spec),
    )


BUILDERS: dict[str, Callable[[Settings], RuntimeCase]] = {"local": _local, "docker": _docker}


@pytest.fixture(params=[pytest.param("local"), pytest.param("docker", marks=pytest.mark.docker)])
def case(request: pytest.FixtureRequest, settings: Settings) -> Iterator[RuntimeCase]:
    yield BUILDERS[request.param](settings)
