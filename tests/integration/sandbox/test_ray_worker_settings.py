"""A Ray worker runs the runtime the driver chose and never builds settings of its own.

The workers of this Ray head carry a MEDLOOP_ environment the driver does not have, one
that medloop's settings refuse (MEDLOOP_JOBS_PER_GPU=0) and one that would point a
settings-reading worker elsewhere (MEDLOOP_WORKSPACE). A node that read its own settings
failed every job here ("Ray task of job ... failed: ValidationError").
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from medloop.core.records import JobLimits, JobSpec
from medloop.core.settings import Settings
from medloop.core.specs import ExecutorSpec, SandboxSpec
from medloop.sandbox.factory import make_executor
from tests.ray_head import ray_head

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def odd_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    elsewhere = tmp_path_factory.mktemp("worker-ws")
    env = {"MEDLOOP_JOBS_PER_GPU": "0", "MEDLOOP_WORKSPACE": str(elsewhere)}
    with ray_head(tmp_path_factory.mktemp("ray"), cpus=2, gpus=0, worker_env=env):
        yield


def test_the_node_runs_the_drivers_runtime_whatever_its_own_environment(
    odd_workers: None, settings: Settings
) -> None:
    code = "import os; open(os.environ['MEDLOOP_OUT'] + '/ok', 'w').write('yes'); print('ran')"
    job = JobSpec(key="odd", command=["python", "-c", code], inputs={}, limits=JobLimits(timeout_s=60))
    executor = make_executor(settings, SandboxSpec(runtime="local"), ExecutorSpec(kind="ray", slots=1))
    try:
        [result] = executor.run([job])
    finally:
        executor.close()
    assert result.status == "succeeded", result.log_tail or result.reason
    assert result.provenance.runtime == "ray+local"
    assert (result.out_dir / "ok").read_text() == "yes"
    # The node kept the job under the driver's node root, not the worker's MEDLOOP_WORKSPACE.
    assert (settings.workspace_dir / "ray-node" / "workspace" / "jobs" / "odd").is_dir()
