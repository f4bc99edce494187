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


def test_fingerprint_and_split_commands(tmp_path: Path) -> None:
    ds = tmp_path / "Dataset900_Cli"
    assert medloop("dataset", "synth", str(ds), "--cases", "6", "--seed", "1").returncode == 0
    proc = medloop("dataset", "fingerprint", str(ds), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["plans_file"].endswith("medloop_plans.json") and out["default"] == "2d"
    assert out["summary"]["n_cases"] == 6 and out["baseline"]["model"] == "dynunet"
    assert "shapes" not in out["fingerprint"]  # per-case lists stay in the plans file
    split = medloop("dataset", "split", str(ds), "--method", "kfold", "--k", "3", "--json")
    assert split.returncode == 0, split.stderr
    folds = json.loads(split.stdout)
    assert folds["file"] == "medloop_splits_kfold3_s12345.json" and len(folds["splits"]) == 3
    bad = medloop("dataset", "split", str(ds), "--method", "random")
    assert bad.returncode == 2 and "unknown split method" in bad.stderr


def test_check_messages_are_plain_and_errors_follow_json(tmp_path: Path) -> None:
    """Spacing mismatches print plain numbers, `--json` errors are JSON, a file path is named
    as a file, a stray file's problem carries its name as the case, long lines stay whole."""
    import numpy as np

    from medloop.experiments.dataset.imageio import read_volume, save_nifti

    ds = tmp_path / "Dataset901_Msg"
    assert medloop("dataset", "synth", str(ds), "--cases", "4", "--seed", "1").returncode == 0
    label = ds / "labelsTr" / "phantom_001.nii.gz"
    vol = read_volume(label)
    save_nifti(vol.array.astype(np.uint8), label, spacing=(2.5, 2.5, 5.0))
    (ds / "imagesTr" / "notes_from_a_very_long_named_stray_file_that_should_not_wrap.txt").write_text("x")
    proc = medloop("dataset", "check", str(ds))
    assert proc.returncode == 1
    assert "np.float64" not in proc.stdout and "spacing (2.5, 2.5, 5.0)" in proc.stdout, proc.stdout
    stray = next(line for line in proc.stdout.splitlines() if "does not end in" in line)
    assert "notes_from_a_very_long_named_stray_file_that_should_not_wrap.txt" in stray  # not wrapped
    as_json = medloop("dataset", "check", str(ds), "--json")
    assert as_json.returncode == 1
    problems = json.loads(as_json.stdout)["problems"]  # one JSON document, nothing after it
    ending = next(p for p in problems if p["code"] == "file_ending")
    assert ending["case"] == "notes_from_a_very_long_named_stray_file_that_should_not_wrap.txt"

    missing = medloop("dataset", "check", str(tmp_path / "nope"), "--json")
    assert missing.returncode == 2
    err = json.loads(missing.stdout)["error"]
    assert err["type"] == "DatasetError" and "does not exist" in err["message"]
    a_file = medloop("dataset", "check", str(ds / "dataset.json"))
    assert a_file.returncode == 2 and "is a file, not a dataset folder" in a_file.stderr
    assert "Traceback" not in a_file.stderr
