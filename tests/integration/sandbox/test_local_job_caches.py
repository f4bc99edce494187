"""A local-process job runs the host's interpreter and site-packages: what it compiles must
stay in its own folder. numba's `cache=True` kernels (librosa's pitch, chroma, ...) wrote
their cache next to their source, in the shared site-packages; jobs running side by side
rewrote the same index, and a later process loaded machine code compiled for another
signature: CI's pytest segfaulted in librosa.piptrack. The job is a real subprocess; the
test process itself never imports numba (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from medloop.core.records import JobLimits, JobSpec
from medloop.core.settings import Settings
from medloop.core.specs import SandboxSpec
from medloop.sandbox.factory import make_runtime

KERNEL = """
import numba

@numba.njit(cache=True)
def twice(x):
    return 2 * x
"""


def test_a_jobs_numba_cache_stays_out_of_the_hosts_packages(settings: Settings, tmp_path: Path) -> None:
    site = tmp_path / "site-packages"  # stands for the host's, where librosa lives
    site.mkdir()
    (site / "kernels.py").write_text(KERNEL)
    code = (
        f"import os, sys; sys.path.insert(0, {str(site)!r})\n"
        "import kernels\n"
        "assert kernels.twice(21) == 42\n"
        "print('cache', os.environ.get('NUMBA_CACHE_DIR'))\n"
    )
    runtime = make_runtime(settings, SandboxSpec(runtime="local"))
    for key in ("first", "second"):
        job = JobSpec(key=key, command=["python", "-c", code], inputs={}, limits=JobLimits(timeout_s=300.0))
        result = runtime.wait(runtime.submit(job))
        assert result.status == "succeeded", result.log_tail
    written = sorted(p.name for p in site.rglob("*") if p.suffix in (".nbi", ".nbc"))
    assert not written, f"a job wrote numba's cache into the host's packages: {written}"
    assert str(settings.jobs_dir) in result.log_tail
