"""Finding and stopping every process of a local job through /proc (Linux).

A job may `setsid` or double-fork to leave its process group, so a job's processes are
the union of: descendants of its launcher (the launcher is a child subreaper, so orphans
re-parent to it rather than to init), members of its session, and any process whose
environment carries the job's token.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")
_PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    sid: int
    state: str
    start_ticks: int
    rss_bytes: int


def read_proc(pid: int) -> Proc | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split at the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    return Proc(
        pid=pid,
        state=fields[0],
        ppid=int(fields[1]),
        sid=int(fields[3]),
        start_ticks=int(fields[19]),
        rss_bytes=int(fields[21]) * _PAGE,
    )


def process_table() -> dict[int, Proc]:
    table: dict[int, Proc] = {}
    for entry in os.scandir(_PROC):
        if entry.name.isdigit():
            proc = read_proc(int(entry.name))
            if proc is not None:
                table[proc.pid] = proc
    return table


def is_running(pid: int, start_ticks: int | None = None) -> bool:
    """True if `pid` exists, is not a zombie, and (if given) started at `start_ticks`."""
    proc = read_proc(pid)
    if proc is None or proc.state in ("Z", "X"):
        return False
    return start_ticks is None or proc.start_ticks == start_ticks


def _has_token(pid: int, token: bytes) -> bool:
    try:
        return token in (_PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


def job_processes(
    root_pid: int, token: str = "", *, root_start: int | None = None, table: dict[int, Proc] | None = None
) -> list[Proc]:
    """Live processes of the job started by `root_pid` (itself included).

    `root_start` guards against pid reuse: if a process now holds `root_pid` but started
    at another time, the job is found by its token only.
    """
    table = table if table is not None else process_table()
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found: set[int] = set()
    stack: list[int] = []
    root = table.get(root_pid)
    if root_pid > 1 and (root is None or root_start is None or root.start_ticks == root_start):
        stack += [root_pid] if root is not None else []
        stack += [p.pid for p in table.values() if p.sid == root_pid]
    if token:
        needle = f"MEDLOOP_JOB_TOKEN={token}".encode()
        stack += [pid for pid in table if pid not in found and _has_token(pid, needle)]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, []))
    me = os.getpid()
    return [table[pid] for pid in found if pid not in (me, 1) and table[pid].state not in ("Z", "X")]


def kill_job(root_pid: int, token: str = "", *, root_start: int | None = None, settle_s: float = 5.0) -> int:
    """Stop every process of the job: freeze them all (SIGSTOP) so none can fork while
    they are being found, then SIGKILL, and repeat until none is left or `settle_s` passes.

    Returns how many distinct processes were signalled.
    """
    deadline = time.monotonic() + settle_s
    seen: set[tuple[int, int]] = set()
    while True:
        frozen: dict[int, Proc] = {}
        # Freeze until a scan finds nothing new: then no member can start another.
        while time.monotonic() <= deadline:
            fresh = [p for p in job_processes(root_pid, token, root_start=root_start) if p.pid not in frozen]
            if not fresh:
                break
            for proc in fresh:
                _signal(proc.pid, signal.SIGSTOP)
                frozen[proc.pid] = proc
        for proc in frozen.values():
            _signal(proc.pid, signal.SIGKILL)
            seen.add((proc.pid, proc.start_ticks))
        if not frozen or time.monotonic() > deadline:
            return len(seen)
        time.sleep(0.01)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return
