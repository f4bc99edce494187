"""`medloop tools ...` as a user runs it: list, docs check, and calls with errors that
are one line and a non-zero exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.tools.helpers import TINY

DOCS = Path(__file__).resolve().parents[3] / "docs" / "tools.md"


def medloop(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medloop", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_list_docs_and_calls(server_env: dict[str, str], phantom: Path, workspace: Path) -> None:
    listed = medloop(server_env, "tools", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "run_trial" in [t["name"] for t in json.loads(listed.stdout)]
    assert medloop(server_env, "tools", "docs", "--check", str(DOCS)).returncode == 0

    ok = medloop(server_env, "tools", "call", "dataset_check", "--args", json.dumps({"path": str(phantom)}))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True

    bad = medloop(server_env, "tools", "call", "dataset_check", "--args", '{"paths": "x"}')
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "paths: unknown field; allowed fields: path" in bad.stderr

    denied = medloop(
        server_env,
        "tools",
        "call",
        "run_trial",
        "--role",
        "viewer",
        "--args",
        json.dumps({"dataset_path": "/x"}),
    )
    assert denied.returncode == 5 and "needs role agent" in denied.stderr

    stale = workspace / "stale.md"
    stale.write_text("# old\n")
    drift = medloop(server_env, "tools", "docs", "--check", str(stale))
    assert drift.returncode == 1 and "out of date" in drift.stderr


@pytest.mark.slow
def test_a_trial_submitted_from_the_cli_is_waited_for(server_env: dict[str, str], phantom: Path) -> None:
    args = {"dataset_path": str(phantom), "trial_config": TINY, "seeds": [5]}
    run = medloop(
        server_env, "tools", "call", "run_trial", "--caller", "cli-user", "--args", json.dumps(args)
    )
    assert run.returncode == 0, run.stderr
    handle = json.loads(run.stdout)["trials"][0]["handle"]
    assert "waiting for 1 trial(s)" in run.stderr
    result = medloop(server_env, "tools", "call", "trial_result", "--args", json.dumps({"handle": handle}))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "succeeded"
