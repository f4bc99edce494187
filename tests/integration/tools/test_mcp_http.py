"""`medloop mcp --http`: streamable HTTP where every request needs a bearer token, and
the token decides who the caller is and what its role allows."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from medloop.core.store import open_store
from medloop.tools.mcp_server import sha256_token

pytestmark = pytest.mark.slow

VIEWER_TOKEN = "viewer-token-0123456789abcdef"
AGENT_TOKEN = "agent-token-fedcba9876543210"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path, phantom: Path) -> Iterator[str]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {"tokens": [{"caller": "lab-agent", "role": "agent", "token_sha256": sha256_token(AGENT_TOKEN)}]}
        )
    )
    port = free_port()
    roots = f"{phantom.parent},{tmp_path}"
    env = {**server_env, "MEDLOOP_MCP_TOKEN": VIEWER_TOKEN, "MEDLOOP_TOOLS_DATA_ROOTS": roots}
    cmd = [sys.executable, "-m", "medloop", "mcp", "--http", "--port", str(port), "--caller", "dashboard"]
    proc = subprocess.Popen(
        [*cmd, "--role", "viewer", "--token-file", str(tokens)], env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"server did not start: {proc.stderr.read() if proc.stderr else ''}"
                    ) from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def as_caller(url: str, token: str, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    async with Client(streamable_http_client(url, http_client=client)) as mcp:
        out: list[Any] = [await mcp.list_tools()]
        for name, arguments in calls:
            out.append(await mcp.call_tool(name, arguments))
        return out


def test_requests_without_a_valid_token_are_refused(server: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    assert httpx2.post(server, json=body, headers=headers).status_code == 401
    wrong = httpx2.post(server, json=body, headers={**headers, "Authorization": "Bearer not-a-token"})
    assert wrong.status_code == 401 and "Bearer" in wrong.headers.get("www-authenticate", "")


def test_the_token_names_the_caller_and_its_role(server: str, phantom: Path, workspace: Path) -> None:
    listed, check, refused = asyncio.run(
        as_caller(
            server,
            VIEWER_TOKEN,
            [("dataset_check", {"path": str(phantom)}), ("run_trial", {"dataset_path": str(phantom)})],
        )
    )
    assert len(listed.tools) >= 12
    assert not check.is_error and check.structured_content["ok"]
    assert refused.is_error
    assert json.loads(refused.content[0].text)["message"] == (
        "run_trial needs role agent or reviewer or admin; dashboard acts as viewer"
    )
    statement = "Dice+CE beats Dice on the phantom at equal iterations (to be tested)."
    _, proposed = asyncio.run(
        as_caller(
            server,
            AGENT_TOKEN,
            [
                (
                    "propose_claim",
                    {
                        "statement": statement,
                        "changes": [{"factor": "loss", "from_value": "dice", "to_value": "dicece"}],
                        "dataset_path": str(phantom),
                    },
                )
            ],
        )
    )
    assert not proposed.is_error, proposed.content
    claim = open_store(workspace / "medloop.db").claims.get(proposed.structured_content["claim_id"])
    assert claim.author == "lab-agent" and claim.tier == "proposed"


def test_the_http_server_refuses_to_start_without_data_roots(server_env: dict[str, str]) -> None:
    # Issue 14 item 4: with no roots a client could make the server open any path
    # (campaign_start {"spec_path": "/etc/passwd"}).
    env = {**server_env, "MEDLOOP_MCP_TOKEN": VIEWER_TOKEN}
    env.pop("MEDLOOP_TOOLS_DATA_ROOTS", None)
    cmd = [sys.executable, "-m", "medloop", "mcp", "--http", "--port", str(free_port())]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError("the server started without data roots") from None
    assert done.returncode != 0
    assert "MEDLOOP_TOOLS_DATA_ROOTS" in done.stderr and "Traceback" not in done.stderr
