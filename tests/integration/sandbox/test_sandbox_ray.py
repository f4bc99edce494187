"""The Ray executor on a real local Ray head (RAY_AUTH_MODE=disabled, RAY_TMPDIR in the
test's workspace). The head declares 2 GPUs as Ray resources (no hardware is touched)
so GPU placement can be checked here; a real-GPU check runs on the device machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medloop.core.errors import SandboxUnavailable, SpecError
from medloop.core.records import JobLimits, JobSpec
from medloop.core.settings import Settings
from medloop.core.specs import Budget, ExecutorSpec, SandboxSpec
from medloop.sandbox.base import JobEvent, JobHandle
from medloop.sandbox.factory import make_executor
from medloop.sandbox.ray_executor import RayExecutor, RayRuntime
from tests.conftest import require
from tests.contract.sandbox.conftest import docker_available
from tests.ray_head import ray_head as start_ray_head

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with start_ray_head(tmp_path_factory.mktemp("ray")):
        yield


def pyjob(key: str, code: str, inputs: dict[str, Path] | None = None, **limits: float) -> JobSpec:
    return JobSpec(
        key=key,
        command=["python", "-c", code],
        inputs=inputs or {},
        limits=JobLimits(**{"timeout_s": 60.0, "memory_mb": 512, **limits}),
    )


def test_trials_run_on_ray_and_artifacts_come_back(
    ray_head: None, settings: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.txt").write_text("21")
    code = (
        "import os\n"
        "n = int(open('/in/data/x.txt').read())\n"
        "os.makedirs('/out/predictions')\n"
        "open('/out/predictions/answer.txt', 'w').write(str(2 * n))\n"
        "print('progress', n, flush=True)\n"
    )
    events: list[JobEvent] = []
    executor = make_executor(settings, SandboxSpec(), ExecutorSpec(kind="ray", slots=2))
    try:
        results = executor.run(
            [pyjob("r1", code, {"data": data}), pyjob("r2", code, {"data": data})], on_event=events.append
        )
    finally:
        executor.close()
    for result in results:
        assert result.status == "succeeded", result.log_tail
        assert result.out_dir.is_relative_to(settings.jobs_dir)
        assert (result.out_dir / "predictions" / "answer.txt").read_text() == "42"
        assert result.provenance.runtime == "ray+local"
        assert result.provenance.code_version
    logs = [e.line for e in events if e.kind == "log"]
    assert logs.count("progress 21") == 2


def test_ray_places_gpus_and_the_job_sees_only_its_own(ray_head: None, settings: Settings) -> None:
    code = "import os, time; print('gpu=' + os.environ['CUDA_VISIBLE_DEVICES'], flush=True); time.sleep(1.5)"
    executor = RayExecutor(settings, SandboxSpec(gpus=1), ExecutorSpec(kind="ray", slots=2))
    try:
        results = executor.run([pyjob("g1", code), pyjob("g2", code)])
        usage = executor.usage()
    finally:
        executor.close()
    assert sorted(r.log_tail for r in results) == ["gpu=0", "gpu=1"]
    assert sorted(r.provenance.gpu_ids for r in results) == [[0], [1]]
    assert usage.gpu_hours > 2.5 / 3600


def test_more_gpus_than_the_cluster_has_is_a_clear_error(ray_head: None, settings: Settings) -> None:
    with pytest.raises(SpecError, match="cluster has 2 GPU"):
        RayExecutor(settings, SandboxSpec(gpus=3), ExecutorSpec(kind="ray"))


def test_failures_timeouts_and_cancel_on_ray(ray_head: None, settings: Settings) -> None:
    executor = RayExecutor(
        settings, SandboxSpec(), ExecutorSpec(kind="ray", slots=2), budget=Budget(max_trials=10)
    )
    jobs = [
        pyjob("fails", "import sys; sys.exit(4)"),
        pyjob("slow", "import time; time.sleep(120)", timeout_s=2.0),
    ]
    try:
        results = executor.run(jobs)
        threading.Timer(2.5, executor.cancel, args=("cancelme",)).start()
        start = time.monotonic()
        cancelled = executor.run(
            [pyjob("cancelme", "import time; print('up', flush=True); time.sleep(120)")]
        )[0]
        cancel_s = time.monotonic() - start
    finally:
        executor.close()
    assert (results[0].status, results[0].exit_code) == ("failed", 4)
    assert results[1].status == "timed_out"
    assert cancelled.status == "cancelled"
    assert cancel_s < 20


@pytest.mark.docker
def test_a_restarted_driver_reattaches_to_a_docker_job_on_its_node(
    ray_head: None, settings: Settings
) -> None:
    import ray

    ok, why = docker_available(settings.docker_image)
    require("docker", ok, why)
    sandbox = SandboxSpec(runtime="docker")
    node_root = settings.workspace_dir / "ray-node"
    code = (
        "import os, time; open('/out/ran-' + os.urandom(4).hex(), 'w').close(); time.sleep(4); print('done')"
    )
    first = RayRuntime(settings.jobs_dir, sandbox, docker_image=settings.docker_image, node_root=node_root)
    handle = first.submit(pyjob("attach", code))
    lost: list[BaseException] = []

    def driver() -> None:
        try:
            first.wait(handle)
        except SandboxUnavailable as exc:
            lost.append(exc)

    waiter = threading.Thread(target=driver)
    waiter.start()
    # Once the job runs on a node (and the driver recorded which), lose the driver's task;
    # the job's container keeps running.
    node_out = node_root / "workspace" / "jobs" / "attach" / "out"
    deadline = time.monotonic() + 60
    while not (list(node_out.glob("ran-*")) and (settings.jobs_dir / "attach" / "node.json").is_file()):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    ray.cancel(first._refs["attach"], force=True)
    waiter.join(timeout=30)
    assert lost, "the first driver should have lost its task"
    second = RayRuntime(settings.jobs_dir, sandbox, docker_image=settings.docker_image, node_root=node_root)
    found = second.reconcile(["attach"])["attach"]
    assert isinstance(found, JobHandle)
    result = second.wait(found)
    assert result.status == "succeeded", result.log_tail
    assert "done" in result.log_tail
    assert len(list(result.out_dir.glob("ran-*"))) == 1


def test_a_driver_restarted_before_it_learnt_the_node_reattaches_not_reruns(
    ray_head: None, settings: Settings
) -> None:
    # Issue 15 (Ray defect): the driver stopped after submitting but before it recorded
    # which node runs the job; the restarted driver's reconcile() deleted the job's folder
    # and the caller submitted it again while the first attempt still ran (a double run).
    sandbox = SandboxSpec(runtime="local")
    node_root = settings.workspace_dir / "ray-node-unrecorded"
    code = (
        "import os, time; open(os.environ['MEDLOOP_OUT'] + '/ran-' + os.urandom(4).hex(), 'w').close(); "
        "time.sleep(4); print('done')"
    )
    first = RayRuntime(settings.jobs_dir, sandbox, docker_image=settings.docker_image, node_root=node_root)
    first.submit(pyjob("unrecorded", code))  # nobody waits: the node is never recorded
    node_out = node_root / "workspace" / "jobs" / "unrecorded" / "out"
    deadline = time.monotonic() + 60
    while not list(node_out.glob("ran-*")):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    assert not (settings.jobs_dir / "unrecorded" / "node.json").exists()
    # The restarted driver (a second runtime over the same jobs folder; the first one's
    # task is left alone so the job is certainly still running when it asks).
    second = RayRuntime(settings.jobs_dir, sandbox, docker_image=settings.docker_image, node_root=node_root)
    found = second.reconcile(["unrecorded"]).get("unrecorded")
    assert isinstance(found, JobHandle), "the running job was forgotten: the caller would run it again"
    result = second.wait(found)
    assert result.status == "succeeded" and "done" in result.log_tail, result
    assert len(list(node_out.glob("ran-*"))) == 1  # one attempt ran, not two
    # a job that never reached a node is still forgotten, so the caller submits it
    from medloop.sandbox.jobdir import JobDir

    never = JobDir(settings.jobs_dir, "never")
    never.create()  # the folder of a submit that stopped before launching (no run.json)
    (never.path / "spec.json").write_text(pyjob("never", "pass").model_dump_json())
    assert second.reconcile(["never"]) == {} and not (settings.jobs_dir / "never").exists()
    first.close()
    second.close()


def test_a_link_in_one_jobs_output_fails_that_job_only(ray_head: None, settings: Settings) -> None:
    # Item 3 of issue 14: an absolute symlink in /out used to raise AbsoluteLinkError while
    # the driver unpacked it, ending the whole run (and every resume).
    executor = RayExecutor(settings, SandboxSpec(), ExecutorSpec(kind="ray", slots=2))
    hostile = (
        "import os; out = os.environ['MEDLOOP_OUT']; open(out + '/ok.txt', 'w').write('x'); "
        "os.symlink('/etc/shadow', out + '/labels.nii.gz')"
    )
    honest = "import os; open(os.environ['MEDLOOP_OUT'] + '/ok.txt', 'w').write('fine')"
    try:
        bad, good = executor.run([pyjob("linker", hostile), pyjob("honest", honest)])
    finally:
        executor.close()
    assert bad.status == "failed" and "symbolic link" in (bad.reason or "")
    assert not (bad.out_dir / "labels.nii.gz").is_symlink()
    assert good.status == "succeeded" and (good.out_dir / "ok.txt").read_text() == "fine"


@pytest.mark.parametrize("sandbox", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_lost_tasks_job_is_stopped_before_its_retry(
    ray_head: None, settings: Settings, sandbox: str
) -> None:
    # Issue 14 item 6: when Ray loses the task (worker killed), the job it started kept
    # running beside the scheduler's retry (a Docker container stayed behind, Exited).
    # cancel() - which the scheduler calls before a retry - must stop it on its node.
    import ray

    from medloop.sandbox.procs import is_running

    if sandbox == "docker":
        ok, why = docker_available(settings.docker_image)
        require("docker", ok, why)
    node_root = settings.workspace_dir / "ray-node"
    spec = SandboxSpec(runtime=sandbox)  # type: ignore[arg-type]
    runtime = RayRuntime(settings.jobs_dir, spec, docker_image=settings.docker_image, node_root=node_root)
    code = (
        "import os, time; open(os.environ['MEDLOOP_OUT'] + '/pid', 'w').write(str(os.getpid())); "
        "time.sleep(60); open(os.environ['MEDLOOP_OUT'] + '/done', 'w')"
    )
    handle = runtime.submit(pyjob("lost", code))
    lost: list[BaseException] = []

    def driver() -> None:
        try:
            runtime.wait(handle)
        except SandboxUnavailable as exc:
            lost.append(exc)

    waiter = threading.Thread(target=driver)
    waiter.start()
    node_out = node_root / "workspace" / "jobs" / "lost" / "out"
    deadline = time.monotonic() + 60
    while not ((node_out / "pid").is_file() and (settings.jobs_dir / "lost" / "node.json").is_file()):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    pid = int((node_out / "pid").read_text())
    ray.cancel(runtime._refs["lost"], force=True)
    waiter.join(timeout=60)
    assert lost, "the driver should have lost its task"
    runtime.cancel(handle)
    if sandbox == "local":
        deadline = time.monotonic() + 60
        while is_running(pid):
            assert time.monotonic() < deadline, "the lost attempt's job is still running"
            time.sleep(0.2)
    else:
        from medloop.sandbox.docker import JOB_LABEL, WORKSPACE_LABEL, DockerRuntime
        from medloop.sandbox.image import docker_client

        node_jobs = Settings(workspace=node_root / "workspace").jobs_dir
        namespace = DockerRuntime(node_jobs, image=settings.docker_image).namespace
        labels = [f"{JOB_LABEL}=lost", f"{WORKSPACE_LABEL}={namespace}"]
        left = docker_client().containers.list(all=True, filters={"label": labels})
        assert not left, "the lost attempt's container was not removed"
    assert not (node_out / "done").exists()
    runtime.close()


def test_inputs_on_a_shared_filesystem_go_by_path_not_through_the_object_store(
    ray_head: None, settings: Settings, tmp_path: Path
) -> None:
    # Issue 15 item 5: a 3D dataset of tens of GB must not be packed into one archive in
    # the driver's memory. Inputs under executor.shared reach the node by path.
    shared = tmp_path / "nfs"
    (shared / "Dataset001" / "imagesTr").mkdir(parents=True)
    (shared / "Dataset001" / "imagesTr" / "case_000.txt").write_text("21")
    private = tmp_path / "private.txt"
    private.write_text("2")
    code = (
        "n = int(open('/in/data/imagesTr/case_000.txt').read()) * int(open('/in/factor.txt').read())\n"
        "open('/out/answer.txt', 'w').write(str(n))\n"
    )
    node_root = settings.workspace_dir / "ray-node"
    executor = make_executor(settings, SandboxSpec(), ExecutorSpec(kind="ray", shared=[shared]))
    try:
        [result] = executor.run(
            [pyjob("byref", code, {"data": shared / "Dataset001", "factor.txt": private})]
        )
    finally:
        executor.close()
    assert result.status == "succeeded", result.log_tail
    assert (result.out_dir / "answer.txt").read_text() == "42"
    cached = [p.name for p in (node_root / "inputs").rglob("*") if p.is_file()]
    assert cached == ["private.txt"]  # only the input outside the shared folder was shipped


def test_a_node_with_the_input_cached_fetches_nothing(
    ray_head: None, settings: Settings, tmp_path: Path
) -> None:
    # Issue 15 item 5: a node's cache is filled once per content fingerprint; a later job
    # with the same input moves no bytes. The driver's pieces for that input are replaced
    # by garbage after the first job: a node that fetched them again could not unpack.
    import ray

    data = tmp_path / "data"
    data.mkdir()
    (data / "x.txt").write_text("21")
    code = "open('/out/answer.txt', 'w').write(str(2 * int(open('/in/data/x.txt').read())))\n"
    executor = make_executor(settings, SandboxSpec(), ExecutorSpec(kind="ray"))
    assert isinstance(executor, RayExecutor)
    try:
        [first] = executor.run([pyjob("cached-1", code, {"data": data})])
        assert first.status == "succeeded", first.log_tail
        [(digest, pieces)] = executor.runtime._inputs.items()
        assert isinstance(pieces, list) and pieces, "inputs travel as a list of pieces"
        executor.runtime._inputs[digest] = [ray.put(b"not a tar archive")]
        [second] = executor.run([pyjob("cached-2", code, {"data": data})])
    finally:
        executor.close()
    assert second.status == "succeeded", second.log_tail
    assert (second.out_dir / "answer.txt").read_text() == "42"
