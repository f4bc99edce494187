"""The runtime fixture of the sandbox conformance suite: every backend runs the same tests.

Each param builds a runtime on a fresh jobs folder, plus `proc_gone(pid_text)`, which
says whether a process the job reported (by its pid inside the sandbox) has ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from medloop.core.settings import Settings
from medloop.core.specs import SandboxSpec
from medloop.sandbox.base import JobHandle, SandboxRuntime
from medloop.sandbox.factory import make_runtime
from medloop.sandbox.procs import is_running


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


BUILDERS: dict[str, Callable[[Settings], RuntimeCase]] = {"local": _local}


@pytest.fixture(params=sorted(BUILDERS))
def case(request: pytest.FixtureRequest, settings: Settings) -> Iterator[RuntimeCase]:
    yield BUILDERS[request.param](settings)
