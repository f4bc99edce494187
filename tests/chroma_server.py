"""A throwaway Chroma server for tests: `chroma run` (the CLI that ships in the chromadb
wheel) on a free 127.0.0.1 port with its data in a temporary folder, stopped at the end.
Used by the vector conformance suite and the knowledge tests that run in server mode
(fixture `chroma_url` in tests/conftest.py)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def chroma_cli() -> Path | None:
    """The `chroma` executable beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "chroma"
    if beside.exists():
        return beside
    found = shutil.which("chroma")
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ChromaServer:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(timeout_s: float = 120.0) -> ChromaServer:
    """Start `chroma run` and wait for its heartbeat (generous: a loaded machine)."""
    cli = chroma_cli()
    if cli is None:
        raise RuntimeError("the `chroma` CLI is not installed (it ships with chromadb)")
    root = Path(tempfile.mkdtemp(prefix="medloop-chroma-"))
    port = _free_port()
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(cli), "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"},
    )
    server = ChromaServer(root, port, proc)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{server.url}/api/v2/heartbeat", timeout=2):
                return server
        except OSError:
            time.sleep(0.3)
    tail = (root / "server.log").read_text(errors="replace")[-2000:]
    server.stop()
    raise RuntimeError(f"chroma run did not answer on {server.url}:\n{tail}")
