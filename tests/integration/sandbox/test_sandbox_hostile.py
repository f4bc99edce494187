"""Hostile jobs against the real Docker runtime (issue 4). The conformance suite's docker
params cover the memory bomb (oom), output quota, daemonized children and timeouts.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medloop.core.errors import SpecError
from medloop.core.records import JobLimits, JobResult, JobSpec
from medloop.core.settings import Settings
from medloop.sandbox.docker import DOCKER_SOCKETS, DockerRuntime
from tests.conftest import require
from tests.contract.sandbox.conftest import docker_available

pytestmark = pytest.mark.docker


@pytest.fixture
def docker_rt(settings: Settings) -> Iterator[DockerRuntime]:
    ok, why = docker_available(settings.docker_image)
    require("docker", ok, why)
    yield DockerRuntime(settings.jobs_dir, image=settings.docker_image, tmpfs_mb=16)


def run(
    rt: DockerRuntime, key: str, code: str, inputs: dict[str, Path] | None = None, **limits: float
) -> JobResult:
    spec = JobSpec(
        key=key,
        command=["python", "-c", code],
        inputs=inputs or {},
        limits=JobLimits(**{"timeout_s": 60.0, "memory_mb": 256, **limits}),
    )
    return rt.wait(rt.submit(spec))


def _host_ip() -> str:
    # The address of the default route (no packet is sent by a UDP connect).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def test_network_egress_fails_everywhere(docker_rt: DockerRuntime) -> None:
    # A service on the host's loopback must not be reachable either.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    targets = [
        ("1.1.1.1", 53),
        ("8.8.8.8", 443),
        ("169.254.169.254", 80),
        (_host_ip(), port),
        ("127.0.0.1", port),
    ]
    code = (
        "import socket\n"
        f"for host, port in {targets!r}:\n"
        "    s = socket.socket(); s.settimeout(3)\n"
        "    try:\n"
        "        s.connect((host, port)); print('CONNECTED', host, port)\n"
        "    except OSError as exc:\n"
        "        print('blocked', host, port, exc.errno)\n"
        "try:\n"
        "    socket.getaddrinfo('pypi.org', 443); print('RESOLVED')\n"
        "except OSError:\n"
        "    print('no dns')\n"
        "print('ifaces', sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))\n"
    )
    try:
        result = run(docker_rt, "net", code)
    finally:
        server.close()
    assert result.status == "succeeded", result.log_tail
    assert "CONNECTED" not in result.log_tail and "RESOLVED" not in result.log_tail
    assert result.log_tail.count("blocked") == len(targets)
    assert "ifaces ['lo']" in result.log_tail


def test_fork_bomb_stays_under_the_pids_limit_and_the_host_stays_responsive(docker_rt: DockerRuntime) -> None:
    code = (
        "import os, time\n"
        "print('bombing', flush=True)\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        time.sleep(0.05)\n"
    )
    peak = [0]
    host_latency: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        # Count the container's processes from the host; time a host process start.
        while not stop.is_set():
            for line in subprocess.run(
                ["docker", "ps", "-q", "--filter", "label=medloop.job=forkbomb"],
                capture_output=True,
                text=True,
            ).stdout.split():
                top = subprocess.run(["docker", "top", line], capture_output=True, text=True).stdout
                peak[0] = max(peak[0], len(top.strip().splitlines()) - 1)
            start = time.monotonic()
            subprocess.run(["true"], check=True)
            host_latency.append(time.monotonic() - start)
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = run(docker_rt, "forkbomb", code, pids=64, timeout_s=8.0, cpus=1.0)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert result.status == "timed_out"
    assert 1 <= peak[0] <= 64
    assert max(host_latency) < 2.0


def test_job_cannot_see_host_paths_outside_its_inputs(docker_rt: DockerRuntime, workspace: Path) -> None:
    train = workspace / "data" / "train"
    train.mkdir(parents=True)
    (train / "case_0.txt").write_text("image")
    heldout = workspace / "data" / "heldout_labels"
    heldout.mkdir()
    (heldout / "case_9.txt").write_text("SECRET-LABEL")
    db = workspace / "medloop.db"
    db.write_text("SECRET-DB")
    probes = [
        str(heldout / "case_9.txt"),
        str(db),
        str(workspace),
        "/var/run/docker.sock",
        "/run/docker.sock",
    ]
    code = (
        "import os\n"
        f"for path in {probes!r}:\n"
        "    print('EXISTS' if os.path.exists(path) else 'absent', path)\n"
        "print('train', sorted(os.listdir('/in/train')))\n"
        "mounts = [l.split()[4] for l in open('/proc/self/mountinfo')]\n"
        "print('mounts', sorted(m for m in mounts if m.startswith(('/in', '/out', '/tmp', '/home', '/var', '/root'))))\n"
    )
    result = run(docker_rt, "peek", code, inputs={"train": train})
    assert result.status == "succeeded", result.log_tail
    assert "EXISTS" not in result.log_tail
    assert "SECRET" not in result.log_tail
    assert "train ['case_0.txt']" in result.log_tail
    assert "mounts ['/in/train', '/out', '/tmp']" in result.log_tail


def test_inputs_that_would_expose_the_docker_socket_are_refused(docker_rt: DockerRuntime) -> None:
    socks = [Path(s) for s in DOCKER_SOCKETS if Path(s).exists()]
    require("docker", bool(socks), f"the daemon listens on none of {', '.join(DOCKER_SOCKETS)}")
    spec = JobSpec(key="sock", command=["true"], inputs={"run": socks[0].parent})
    with pytest.raises(SpecError, match="Docker socket"):
        docker_rt.submit(spec)


def test_privileges_are_dropped_and_the_root_is_read_only(docker_rt: DockerRuntime) -> None:
    code = (
        "import os\n"
        "status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
        "print('uid', os.getuid(), 'gid', os.getgid())\n"
        "print('CapEff', status['CapEff'].strip(), 'CapBnd', status['CapBnd'].strip())\n"
        "print('NoNewPrivs', status['NoNewPrivs'].strip())\n"
        "for path in ('/etc/evil', '/opt/medloop/evil', '/in/evil'):\n"
        "    try:\n"
        "        open(path, 'w'); print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('readonly', path, exc.errno)\n"
        "try:\n"
        "    open('/tmp/fill', 'wb').write(b'x' * (64 << 20)); print('FILLED tmp')\n"
        "except OSError as exc:\n"
        "    print('tmp capped', exc.errno)\n"
    )
    result = run(docker_rt, "privs", code)
    log = result.log_tail
    assert result.status == "succeeded", log
    assert "uid 0" not in log and "gid 0 " not in log
    assert "CapEff 0000000000000000" in log
    assert "CapBnd 0000000000000000" in log
    assert "NoNewPrivs 1" in log
    assert "WROTE" not in log and log.count("readonly") == 3
    assert "tmp capped 28" in log  # ENOSPC: the 16 MB scratch tmpfs is full


def test_no_gpu_is_visible_unless_asked_even_if_the_image_says_all(
    docker_rt: DockerRuntime, settings: Settings, tmp_path: Path
) -> None:
    import docker

    client = docker.from_env()
    (tmp_path / "Dockerfile").write_text(f"FROM {settings.docker_image}\nENV NVIDIA_VISIBLE_DEVICES=all\n")
    tag = "medloop-runtime-test:nvidia-all"
    client.images.build(path=str(tmp_path), tag=tag, network_mode="none", rm=True)
    rt = DockerRuntime(docker_rt.jobs_dir, image=tag)
    code = (
        "import glob, os\n"
        "print('NVIDIA', os.environ.get('NVIDIA_VISIBLE_DEVICES'))\n"
        "print('CUDA', repr(os.environ.get('CUDA_VISIBLE_DEVICES')))\n"
        "print('devices', glob.glob('/dev/nvidia*'))\n"
    )
    try:
        result = run(rt, "gpu-none", code)
    finally:
        client.images.remove(tag, force=True)
    assert result.status == "succeeded", result.log_tail
    assert "NVIDIA void" in result.log_tail
    assert "CUDA ''" in result.log_tail
    assert "devices []" in result.log_tail
    assert result.provenance.gpu_ids == []
    assert result.provenance.image is not None and "@sha256:" in result.provenance.image


@pytest.mark.parametrize(
    ("plant", "refused"),
    [
        ("os.symlink(LABEL, EVAL + '/case_9.txt')", "symbolic link"),
        ("os.rmdir(EVAL); os.symlink('/in/train', EVAL)", "symbolic link"),
        ("os.link('/in/train/case_0.txt', EVAL + '/case_0.txt')", "hard link"),
        ("os.mkfifo(EVAL + '/case_9.txt')", "FIFO"),
    ],
    ids=["symlink-to-label", "symlinked-folder", "hard-link", "fifo"],
)
def test_links_and_fifos_in_out_never_reach_a_host_reader(
    docker_rt: DockerRuntime, workspace: Path, plant: str, refused: str, request: pytest.FixtureRequest
) -> None:
    # Issue 14 item 1, in the real sandbox: the job knows a host label path (as
    # /proc/self/mountinfo told it before) and plants a link or FIFO under /out.
    from medloop.engine.outputs import OutputTree, UnsafeOutput

    train = workspace / "data" / "train"
    train.mkdir(parents=True)
    (train / "case_0.txt").write_text("image")
    label = workspace / "data" / "heldout" / "case_9.txt"
    label.parent.mkdir()
    label.write_text("SECRET-LABEL")
    code = (
        f"import os\nLABEL, EVAL = {str(label)!r}, '/out/predictions/eval'\n"
        "os.makedirs(EVAL)\n"
        "try:\n"
        f"    {plant}\n"
        "    print('planted')\n"
        "except OSError as exc:\n"
        "    print('refused in the sandbox:', exc)\n"
    )
    key = "plant-" + request.node.callspec.id
    result = run(docker_rt, key, code, inputs={"train": train})
    assert result.status == "succeeded", result.log_tail
    with OutputTree(result.out_dir, workspace / "scratch") as out:
        if "planted" in result.log_tail:
            with pytest.raises(UnsafeOutput, match=refused):
                out.check()
            with pytest.raises(UnsafeOutput):
                out.folder("predictions/eval")
        else:  # the kernel refused it already (a hard link across the read-only bind mount)
            out.check()
            copy = out.folder("predictions/eval")
            assert copy is not None and not any(p.is_file() for p in copy.rglob("*"))


def test_an_owner_only_input_reaches_the_job_as_its_private_copy(
    docker_rt: DockerRuntime, workspace: Path
) -> None:
    # Issue 14 item 2: staged copies of owner-only inputs were world-readable (0444).
    import os

    from medloop.sandbox.docker import JOB_UID

    require("docker", os.geteuid() == 0, "private copies are made when medloop runs as root")
    ckpt = workspace / "init" / "parent.safetensors"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    ckpt.chmod(0o600)
    code = (
        "import os; st = os.stat('/in/init/parent.safetensors'); "
        "print(oct(st.st_mode & 0o777), st.st_uid, open('/in/init/parent.safetensors', 'rb').read())"
    )
    result = run(docker_rt, "private-copy", code, inputs={"init": ckpt.parent})
    assert result.status == "succeeded", result.log_tail
    assert f"0o400 {JOB_UID} b'weights'" in result.log_tail
    copies = [p for p in (docker_rt.jobs_dir.parent / "docker-inputs").rglob("*") if p.is_file()]
    assert copies and all(p.stat().st_mode & 0o077 == 0 for p in copies)
