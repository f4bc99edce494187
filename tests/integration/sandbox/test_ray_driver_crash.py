"""A campaign process that drives Ray and then crashes in native code leaves Python's
traceback on stderr (its log). After `ray.shutdown()` the process's SIGSEGV handler was no
longer Python's and printed nothing: CI once lost a whole test run to a segfault that
named no test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.conftest import require

pytestmark = pytest.mark.ray

SCRIPT = textwrap.dedent(
    """
    import ctypes, faulthandler, sys
    from pathlib import Path

    faulthandler.enable()
    from medloop.core.specs import SandboxSpec
    from medloop.sandbox.ray_executor import RayRuntime

    tmp = Path(sys.argv[1])
    runtime = RayRuntime(tmp / "jobs", SandboxSpec(), node_root=tmp / "node")
    print("driver up", flush=True)
    if sys.argv[2] == "closed":
        runtime.close()  # ray.shutdown(): the campaign goes on (final runs, report)
    ctypes.string_at(0)  # a native crash
    """
)


@pytest.mark.parametrize("when", ["running", "closed"])
def test_a_crash_after_ray_init_still_prints_the_python_traceback(tmp_path: Path, when: str) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        require("ray", False, "the ray package is not installed")
    ray_tmp = Path(tempfile.mkdtemp(prefix="mlr", dir="/tmp"))  # Ray's socket paths are short
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(ray_tmp)}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tmp_path), when],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert "driver up" in proc.stdout, proc.stderr[-2000:]
    assert proc.returncode != 0
    assert "Fatal Python error: Segmentation fault" in proc.stderr, proc.stderr[-2000:]
    assert "string_at" in proc.stderr  # the Python frame that crashed
