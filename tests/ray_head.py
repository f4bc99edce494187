"""A real local Ray head for tests (RAY_AUTH_MODE=disabled, RAY_TMPDIR in a test folder).

The head declares GPUs as Ray resources only (no hardware is touched), so placement can
be checked anywhere; `require("ray", ...)` skips (or fails, under MEDLOOP_REQUIRE=ray)
when the ray package is missing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import require


@contextlib.contextmanager
def ray_head(
    tmp: Path, *, cpus: int = 2, gpus: int = 2, worker_env: dict[str, str] | None = None
) -> Iterator[None]:
    """`worker_env`: environment variables every Ray worker gets (and the driver does not)."""
    try:
        import ray
    except ImportError:
        require("ray", False, "the ray package is not installed")
        return
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_TMPDIR")}
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_TMPDIR"] = str(tmp)
    ray.init(
        num_cpus=cpus,
        num_gpus=gpus,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
        namespace="medloop-test",
        object_store_memory=256 << 20,
        _temp_dir=str(tmp),
        runtime_env={"env_vars": worker_env} if worker_env else None,
    )
    try:
        yield
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
