"""CLI misuse (issue 14, item 17): usage errors print the usage and exit 2, `--json`
commands fail with a JSON object, and a read-only workspace still answers reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.test_cli_campaign import medloop

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("campaign", "list", "extra"), "unexpected extra argument"),
        (("campaign", "show"), "Missing argument"),
        (("campaign", "list", "--bogus"), "No such option: --bogus"),
        (("users", "token", "--expires-days", "0.00001", "bob"), "Invalid value for '--expires-days'"),
        (("no-such-command",), "No such command"),
    ],
    ids=["extra-argument", "missing-id", "unknown-option", "tiny-expiry", "unknown-command"],
)
def test_usage_errors_print_usage_and_exit_2(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    out = medloop(tmp_path, *args, check=False)
    assert out.returncode == 2, out.stderr
    assert "Usage:" in out.stderr and needle in out.stderr, out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_json_commands_fail_with_a_json_object(tmp_path: Path) -> None:
    missing = medloop(tmp_path, "campaign", "show", "cmp_nope", "--json", check=False)
    assert missing.returncode == 3
    error = json.loads(missing.stdout)["error"]
    assert error["type"] == "NotFoundError" and "cmp_nope" in error["message"] and error["exit_code"] == 3
    usage = medloop(tmp_path, "campaign", "show", "--json", check=False)
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"]["type"] == "UsageError"


def _run_read_only(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`medloop ARGS` with the workspace not writable: a read-only bind mount when root (root
    ignores file modes), file modes otherwise."""
    env = {**os.environ, "MEDLOOP_WORKSPACE": str(ws / ".medloop"), "MEDLOOP_EMBEDDER": "hash",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    command = [sys.executable, "-m", "medloop", *args]
    store = ws / ".medloop"
    if os.geteuid() != 0:
        for path in (store, *store.iterdir()):
            path.chmod(0o555 if path.is_dir() else 0o444)
        return subprocess.run(command, cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    unshare = shutil.which("unshare")
    require("readonly_workspace", unshare is not None, "root needs unshare(1) for a read-only mount")
    script = f'mount --bind "{store}" "{store}" && mount -o remount,ro,bind "{store}" && exec "$@"'
    probe = subprocess.run(
        [str(unshare), "-m", "sh", "-c", script, "sh", "true"], capture_output=True, text=True
    )
    require("readonly_workspace", probe.returncode == 0, f"no mount namespace: {probe.stderr.strip()}")
    return subprocess.run(
        [str(unshare), "-m", "sh", "-c", script, "sh", *command],
        cwd=ws, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_read_only_workspace_answers_reads_and_says_why_writes_fail(tmp_path: Path) -> None:
    assert json.loads(medloop(tmp_path, "campaign", "list", "--json").stdout) == []  # creates the store
    listed = _run_read_only(tmp_path, "campaign", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    write = _run_read_only(tmp_path, "users", "add", "bob", "--role", "viewer")
    assert write.returncode != 0 and "Traceback" not in write.stderr
    said = " ".join(write.stderr.split())  # (rich may wrap a long line)
    assert (
        said.startswith("error: the store")
        and "is read-only for this user; this command needs to write" in said
    )
    assert sorted(p.name for p in (tmp_path / ".medloop").iterdir()) == ["medloop.db"]  # nothing written


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path under a click group, groups included."""
    found = [path]
    for name, sub in getattr(group, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_no_help_page_shows_a_value_type_for_a_flag() -> None:
    """A flag takes no value, so no help page may print `--json <bool>` (typer 0.2x did, on
    every flag and on --help itself)."""
    import typer
    from typer.testing import CliRunner

    from medloop.cli import app

    runner = CliRunner()
    paths = _commands(typer.main.get_command(app))
    assert len(paths) > 40
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert "--help" in result.output, path
        assert "<bool>" not in result.output, (
            path,
            [line for line in result.output.splitlines() if "<bool>" in line],
        )
