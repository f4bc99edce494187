"""Inputs are checked in full before any record (issue 14, item 16): an unreadable case or
an unknown held-out site is one line, exit 2, no campaign row, no workspace files."""

from __future__ import annotations

from pathlib import Path

import pytest

from medloop.experiments.dataset import synth_phantom
from tests.e2e.test_cli_campaign import TINY, medloop


def _dataset(tmp_path: Path) -> Path:
    return synth_phantom(tmp_path / "data", cases=6, seed=1, test_cases=0)


def _refused(tmp_path: Path, text: str) -> str:
    (tmp_path / "c.yaml").write_text(text)
    out = medloop(tmp_path, "campaign", "run", "c.yaml", check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / ".medloop").exists(), "nothing may be written for refused inputs"
    return " ".join(out.stderr.split())


def test_unreadable_case_is_refused_before_any_record(tmp_path: Path) -> None:
    data = _dataset(tmp_path)
    victim = sorted((data / "imagesTr").iterdir())[2]
    victim.write_bytes(b"not an image at all")
    said = _refused(tmp_path, TINY.replace("DATA", str(data)))
    assert said.startswith("error: ") and victim.name in said, said


def test_unknown_held_out_site_is_refused_before_any_record(tmp_path: Path) -> None:
    data = _dataset(tmp_path)
    text = TINY.replace(
        "dataset: {path: DATA, eval_fraction: 0.4}",
        "dataset: {path: DATA, split: leave_site_out, held_out_site: mars}",
    )
    said = _refused(tmp_path, text.replace("DATA", str(data)))
    assert "dataset.held_out_site: no site 'mars'" in said and "sites are" in said, said
    assert not list(data.glob("splits*")), "no split file may be written for a refused campaign"


@pytest.mark.parametrize(
    "content",
    ['{"numTraining": ' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000, '{"name": "\udcff"}'],
    ids=["5000-digit-number", "deep-nesting", "bad-text"],
)
def test_hostile_dataset_json_is_one_line(tmp_path: Path, content: str) -> None:
    data = _dataset(tmp_path)
    (data / "dataset.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    said = _refused(tmp_path, TINY.replace("DATA", str(data)))
    assert said.startswith("error: ") and "dataset.json" in said, said
