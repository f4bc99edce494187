"""Run a long host command (debootstrap) with its output shown as it comes."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable

Log = Callable[[str], None]


def run_logged(cmd: list[str], log: Log, *, what: str, heartbeat_s: float = 30.0) -> tuple[int, str]:
    """Run `cmd`, passing each output line to `log` as it comes, and a "still running"
    line whenever it has been quiet for `heartbeat_s` (debootstrap can take minutes).
    Returns the exit code and the last lines of output."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip())
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    tail: list[str] = []
    while True:
        try:
            line = lines.get(timeout=heartbeat_s)
        except queue.Empty:
            log(f"{what}: still running ({time.monotonic() - started:.0f} s)")
            continue
        if line is None:
            break
        if line:
            log(line)
            tail = [*tail[-30:], line]
    reader.join()
    return proc.wait(), "\n".join(tail)
