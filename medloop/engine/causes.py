"""Why a job failed, in one line, from what it printed.

The runtime knows how a job ended (`exited with code 1`, `killed by signal`); the job's
own log knows why (a traceback's last line, ENOSPC, CUDA out of memory, a bad checkpoint).
A trial records both, so `campaign show` and the dashboard say what to fix.
"""

from __future__ import annotations

import json
import re

from medloop.core.records import JobResult

# Lines that name the cause outright, strongest first: they win over a later traceback.
_DISK_FULL = re.compile(r"no space left on device|ENOSPC|disk quota exceeded|database or disk is full", re.I)
_KNOWN = (_DISK_FULL, re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED", re.I))
# The last line of a Python traceback: `SomeError: message` (optionally dotted), or `error: ...`.
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Interrupt)|error)\b:?\s*\S")
_MAX_CHARS = 300


def _lines(log_tail: str) -> list[str]:
    """Log lines, with a JSON progress line reduced to its `error` field (others dropped)."""
    out = []
    for raw in log_tail.splitlines():
        line = raw.strip()
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            error = event.get("error") if isinstance(event, dict) else None
            if isinstance(error, str) and error.strip():
                out.append(error.strip())
        elif line:
            out.append(line)
    return out


def log_cause(log_tail: str) -> str | None:
    """The last meaningful error line of a job's log, or None."""
    lines = _lines(log_tail)
    for pattern in _KNOWN:
        for line in reversed(lines):
            if pattern.search(line):
                return _clip(line)
    for line in reversed(lines):
        if _EXCEPTION.match(line):
            return _clip(line)
    return None


def job_failure(job: JobResult) -> str:
    """How the job ended and, when its log says, why: one line for the trial record."""
    how = job.reason or f"exit code {job.exit_code}"
    why = log_cause(job.log_tail)
    return f"{how}: {why}" if why and why not in how else how


def is_disk_full(text: str | None) -> bool:
    """True when a recorded error says the disk (or a quota) was full: an infrastructure
    fault to fix and resume from, never a property of the hypothesis."""
    return bool(text) and _DISK_FULL.search(text or "") is not None


def _clip(line: str) -> str:
    return line if len(line) <= _MAX_CHARS else line[: _MAX_CHARS - 3] + "..."
