"""The one campaign process launcher. Campaigns run as `python -m medloop campaign resume
ID` subprocesses, so a request or a tool call never waits for training and a server
restart does not kill a campaign (LangGraph checkpoints let the process pick up where it
stopped). The dashboard, the MCP/tool server and the CLI share this class; bootstrap
builds it.

Each launch writes `<workspace>/runs/<campaign>.json` (pid, start time, command), so a
second launch of a running campaign is refused even from another server process, and
liveness is read from /proc (a recycled pid or a zombie is not the campaign). The check,
the start and that write happen under an exclusive lock on `runs/<campaign>.lock`, so two
server workers launching the same campaign at once start one process, not two.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from medloop.core.errors import ConflictError, NotFoundError, SandboxUnavailable
from medloop.core.records import utcnow
from medloop.core.settings import Settings


class CampaignProcesses:
    """Starts campaign processes and answers whether one is alive on this host."""

    def __init__(self, settings: Settings, *, cwd: Path | None = None) -> None:
        self.settings = settings
        self.cwd = (cwd or Path.cwd()).resolve()
        self.runs_dir = settings.workspace_dir / "runs"
        self._lock = threading.Lock()

    def _pid_file(self, campaign_id: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_]+", campaign_id):
            raise NotFoundError(f"campaign {campaign_id} not found")
        return self.runs_dir / f"{campaign_id}.json"

    def running_pid(self, campaign_id: str) -> int | None:
        """The pid of this campaign's live process on this host, or None."""
        path = self._pid_file(campaign_id)
        try:
            info = json.loads(path.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None
        # A recycled pid runs something else; a zombie has finished.
        if campaign_id.encode() not in cmdline or state == "Z":
            return None
        return pid

    def log_path(self, campaign_id: str) -> Path:
        return self.runs_dir / f"{self._pid_file(campaign_id).stem}.log"

    def _env(self) -> dict[str, str]:
        """The process must see this process's settings, however they were given."""
        env = dict(os.environ)
        for name, value in self.settings.model_dump().items():
            if value is not None:
                env[f"MEDLOOP_{name.upper()}"] = str(value)
        env["MEDLOOP_WORKSPACE"] = str(self.settings.workspace_dir)
        return env

    @contextlib.contextmanager
    def _launch_lock(self, campaign_id: str) -> Iterator[None]:
        """This host's processes launch one campaign one at a time (threads of this process
        too: the flock is per open file, so each launch opens its own)."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        path = self._pid_file(campaign_id).with_suffix(".lock")
        with self._lock, path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start(self, campaign_id: str) -> int:
        """Run (or continue) the campaign in a new process; returns its pid at once."""
        with self._launch_lock(campaign_id):
            pid = self.running_pid(campaign_id)
            if pid is not None:
                raise ConflictError(
                    f"campaign {campaign_id} is already running (pid {pid})",
                    hint="pause or stop it first",
                )
            command = [sys.executable, "-m", "medloop", "campaign", "resume", campaign_id]
            try:
                with self.log_path(campaign_id).open("ab") as log:
                    log.write(f"--- {utcnow()} {' '.join(command[1:])}\n".encode())
                    log.flush()
                    proc = subprocess.Popen(
                        command,
                        cwd=self.cwd,
                        env=self._env(),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # survives the server; not hit by its Ctrl-C
                    )
            except OSError as exc:
                raise SandboxUnavailable(
                    f"could not start the process of campaign {campaign_id}: {exc}",
                    hint=f"run `medloop campaign resume {campaign_id}`",
                ) from None
            tmp = self._pid_file(campaign_id).with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"pid": proc.pid, "started_at": utcnow(), "command": command}))
            tmp.replace(self._pid_file(campaign_id))
            # Reap the child when it ends so it does not linger as a zombie.
            threading.Thread(target=proc.wait, name=f"reap-{campaign_id}", daemon=True).start()
            return proc.pid
