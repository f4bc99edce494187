"""One campaign launcher: the dashboard and the tool server share CampaignProcesses, so a
campaign launched by one is seen running by the other and is not launched twice."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medloop.core.errors import SandboxUnavailable
from medloop.core.records import Campaign
from medloop.core.settings import Settings
from medloop.core.specs import CampaignSpec
from medloop.engine.launcher import CampaignProcesses
from medloop.tools.campaigns import ProcessLauncher
from medloop.tools.context import CampaignLaunch


@pytest.fixture
def fake_campaign_process(settings: Settings) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A live process whose command line names the campaign, as `campaign resume` does."""
    cid = "cmp_shared1"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "resume", cid])
    # Until the child has exec'd, /proc shows the parent's command line (a loaded machine
    # made the first check race with the exec): wait for the campaign's own.
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    deadline = time.monotonic() + 60
    while cid.encode() not in cmdline.read_bytes():
        assert time.monotonic() < deadline, "the fake campaign process never started"
        time.sleep(0.01)
    runs = settings.workspace_dir / "runs"
    runs.mkdir(parents=True)
    (runs / f"{cid}.json").write_text(json.dumps({"pid": proc.pid}))
    yield cid, proc
    proc.kill()
    proc.wait()


def test_web_and_tools_see_one_process_and_refuse_a_second(
    settings: Settings, fake_campaign_process: tuple[str, subprocess.Popen[bytes]]
) -> None:
    cid, proc = fake_campaign_process
    web_side = CampaignProcesses(settings)
    assert web_side.running_pid(cid) == proc.pid

    created: list[str] = []

    def create(spec: CampaignSpec, owner: str) -> Campaign:
        created.append(owner)
        return Campaign.model_construct(id=cid)

    tools_side = ProcessLauncher(create, CampaignProcesses(settings))
    assert tools_side.running(CampaignLaunch(campaign_id=cid)) is True
    with pytest.raises(SandboxUnavailable, match=f"campaign {cid} was created but .*already running"):
        tools_side.start(CampaignSpec.model_construct(), owner="alice")
    proc.kill()
    proc.wait()
    assert web_side.running_pid(cid) is None
    assert tools_side.running(CampaignLaunch(campaign_id=cid)) is False


def test_a_recycled_pid_is_not_the_campaign(settings: Settings) -> None:
    runs = settings.workspace_dir / "runs"
    runs.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (runs / "cmp_gone.json").write_text(json.dumps({"pid": other.pid}))
        assert CampaignProcesses(settings).running_pid("cmp_gone") is None
    finally:
        other.kill()
        other.wait()


def test_an_id_that_is_not_a_campaign_id_never_becomes_a_path(settings: Settings) -> None:
    from medloop.core.errors import NotFoundError

    with pytest.raises(NotFoundError):
        CampaignProcesses(settings).log_path("../../etc/passwd")
    assert not Path(settings.workspace_dir / "runs").exists()


def _launch_from_another_process(settings: Settings, cid: str, barrier: Any, results: Any) -> None:
    """One server worker: launch `cid` once, with a slow process start (a loaded host)."""
    import medloop.engine.launcher as launcher_module
    from medloop.core.errors import ConflictError

    real_popen = subprocess.Popen

    def slow_popen(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        # A stand-in for `campaign resume ID` that stays alive and names the campaign.
        proc = real_popen([sys.executable, "-c", "import time; time.sleep(60)", "resume", cid], **kwargs)
        time.sleep(1.0)  # the window between the liveness check and the pid file
        return proc

    launcher_module.subprocess.Popen = slow_popen  # type: ignore[assignment,misc]
    barrier.wait()
    try:
        pid = CampaignProcesses(settings).start(cid)
        results.put(("started", pid))
    except ConflictError as exc:
        results.put(("refused", str(exc)))


def test_two_server_workers_launching_one_campaign_at_once_start_one_process(settings: Settings) -> None:
    # `medloop serve --workers N`: the launch lock was a thread lock, so two workers could
    # both find no live process and both start one (issue 15's lab test noticed it).
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    cid = "cmp_race1"
    workers = [
        ctx.Process(target=_launch_from_another_process, args=(settings, cid, barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    started = [value for kind, value in outcomes if kind == "started"]
    try:
        assert sorted(kind for kind, _ in outcomes) == ["refused", "started"], outcomes
        assert CampaignProcesses(settings).running_pid(cid) == started[0]
    finally:
        import os
        import signal

        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
