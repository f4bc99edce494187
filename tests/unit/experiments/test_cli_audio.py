"""`medloop dataset synth --kind speech`, `dataset check` on audio, and `campaign run` on a
broken audio manifest, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.experiments.test_cli_dataset import medloop

EXAMPLE = Path(__file__).parents[3] / "examples" / "audio_quickstart.yaml"


def test_speech_synth_check_and_bad_manifest(tmp_path: Path) -> None:
    ds = tmp_path / "speech"
    proc = medloop("dataset", "synth", str(ds), "--kind", "speech", "--cases", "6", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["subjects"] == 6 and info["recordings"] == 18 and info["condition_subjects"] == 3
    ok = medloop("dataset", "check", str(ds))
    assert ok.returncode == 0 and "0 error(s)" in ok.stdout
    (ds / "audio" / "spk000" / "spk000_s0.wav").write_bytes(b"junk")
    bad = medloop("dataset", "check", str(ds))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "spk000_s0.wav" in bad.stdout and "unreadable audio (Format not recognised" in bad.stdout

    (ds / "manifest.csv").write_text("path,label,subject\naudio/spk001/spk001_s0.wav,yes,spk001\n")
    spec = EXAMPLE.read_text().replace("path: .medloop/data/speech", f"path: {ds}")
    (tmp_path / "c.yaml").write_text(spec)
    run = medloop("campaign", "run", str(tmp_path / "c.yaml"), cwd=tmp_path)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "line 2: label 'yes' must be 0 (control) or 1 (condition)" in " ".join(run.stderr.split())
    assert not (tmp_path / ".medloop").exists() or not any((tmp_path / ".medloop").rglob("*.db"))
