"""`medloop dataset ...` commands, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def medloop(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medloop", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_synth_writes_a_dataset_and_reports_it_as_json(tmp_path: Path) -> None:
    proc = medloop("dataset", "synth", str(tmp_path / "ds"), "--cases", "4", "--seed", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["training_cases"] == 4 and info["test_cases"] == 1
    assert info["sites"] == ["site_a", "site_b"] and len(info["checksum"]) == 64
    assert (tmp_path / "ds" / "dataset.json").is_file()
    # same arguments again: reused, same checksum
    again = medloop("dataset", "synth", str(tmp_path / "ds"), "--cases", "4", "--seed", "2", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["checksum"] == info["checksum"]


def test_synth_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    proc = medloop("dataset", "synth", str(tmp_path / "taken"))
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    bad = medloop("dataset", "synth", str(tmp_path / "x"), "--kind", "cat")
    assert bad.returncode == 2 and "--kind 'cat'" in bad.stderr and not (tmp_path / "x").exists()
