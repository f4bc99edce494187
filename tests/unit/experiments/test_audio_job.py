"""The audio job (features, models, spiking neurons, augmentation) and the host's scoring
of its outputs: per-subject metrics per noise condition, no eval label in the sandbox,
job outputs read without following links."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medloop.core.errors import DatasetError
from medloop.core.records import TrialSpec
from medloop.core.specs import AudioConfig, DatasetRef, Objective
from medloop.engine.outputs import OutputTree, UnsafeOutput
from medloop.engine.tasks import ScoringContext, family
from medloop.experiments.audio.features import FAMILIES, extract, n_features
from medloop.experiments.audio.spiking import SpikingSequence
from medloop.experiments.audio.train import run_audio
from medloop.experiments.dataset.audio_synth import synth_speech

# Features and the in-process job call librosa, whose numba JIT runs in this process.
pytestmark = pytest.mark.numba

CONDS = ("clean", "white_20db", "pink_5db", "babble_0db")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import medloop.engine.tasks.audio as audio_family

    monkeypatch_module.setattr(audio_family, "CONDITIONS", CONDS)
    root = tmp_path_factory.mktemp("audio")
    ds = synth_speech(root / "ds", subjects=10, sessions=1, seconds=1.2, test_subjects=2, seed=1)
    prep = family("audio").prepare(DatasetRef(path=ds, eval_fraction=0.4), root / "stage")
    return prep, root


@pytest.fixture(scope="module")
def monkeypatch_module():  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _in_dir(prep, tmp: Path) -> Path:  # type: ignore[no-untyped-def]
    in_dir = tmp / "in"
    in_dir.mkdir()
    for name, path in prep.staged.items():
        (in_dir / name).symlink_to(path)
    return in_dir


def _job(out: Path) -> OutputTree:
    """The job's output as the engine hands it to a task family (no-follow reader)."""
    return OutputTree(out, out.parent / f"{out.name}.scratch")


def test_feature_families_shapes() -> None:
    y = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    for fam in (*FAMILIES, "all"):
        feats = extract(y, 16000, fam, n_mels=32)
        assert feats.shape[0] == n_features(fam, 32) and 95 <= feats.shape[1] <= 102, fam
        assert np.isfinite(feats).all(), fam


@pytest.mark.parametrize("kind", ["lif", "arslif"])
def test_spiking_neurons_spike_and_pass_gradients(kind: str) -> None:
    layer = SpikingSequence(4, kind)
    x = (torch.rand(2, 4, 30) * 2).requires_grad_()
    spikes = layer(x)
    assert spikes.shape == x.shape and set(spikes.unique().tolist()) <= {0.0, 1.0} and spikes.sum() > 0
    spikes.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_arslif_threshold_adapts_to_rate() -> None:
    """A constant strong input: the adaptive neuron fires less than a plain one would."""
    layer = SpikingSequence(1, "arslif")
    spikes = layer(torch.full((1, 1, 200), 1.5))
    first, last = spikes[..., :20].mean(), spikes[..., -50:].mean()
    assert last < first


@pytest.mark.parametrize(
    ("model", "neuron", "augmentation", "features"),
    [("cnn", "none", "none", "logmel"), ("crnn", "lif", "gain", "mfcc"), ("hstn", "arslif", "all", "zcr")],
)
def test_job_writes_segment_probabilities_scored_per_subject(
    prepared, tmp_path: Path, model, neuron, augmentation, features
) -> None:  # type: ignore[no-untyped-def]
    prep, _root = prepared
    config = AudioConfig(
        model=model, neuron=neuron, augmentation=augmentation, features=features, epochs=1, hidden=8
    )
    spec = TrialSpec(task="audio", dataset=prep.manifest, config=config, seed=0)
    in_dir, out = _in_dir(prep, tmp_path), tmp_path / "out"
    outcome = run_audio(spec, in_dir, out, lambda e: None)
    assert outcome.status == "completed" and set(outcome.predictions) == {"eval", "test"}
    assert sorted(p.stem for p in (out / "predictions/eval").iterdir()) == sorted(CONDS)
    ctx = ScoringContext(dataset=prep, objective=Objective(metric="f1@5db"), workspace=tmp_path)
    ev = family("audio").score(ctx, "t1", spec, _job(out), "eval")
    assert ev is not None and {c.case for c in ev.cases} == set(prep.manifest.eval_cases)
    assert ev.summary["f1@5db"] is not None and "f1_auc" in ev.summary and "f1@5db" in ev.settings["ci95"]
    test = family("audio").score(ctx, "t1", spec, _job(out), "test")
    assert test is not None and {c.case for c in test.cases} == set(prep.manifest.test_cases)


def test_no_eval_label_is_staged(prepared) -> None:  # type: ignore[no-untyped-def]
    prep, _ = prepared
    for split in ("eval", "test"):
        header = (prep.staged[split] / f"{split}.csv").read_text().splitlines()[0]
        assert header == "path,subject,session"


def test_job_output_links_and_bad_rows_are_refused(prepared, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prep, _ = prepared
    secret = tmp_path / "secret.csv"
    secret.write_text("path,segment,prob\n")
    out = tmp_path / "out"
    (out / "predictions").mkdir(parents=True)
    (out / "predictions" / "eval").symlink_to(tmp_path)  # a linked folder
    with pytest.raises(UnsafeOutput), OutputTree(out, tmp_path / "scratch") as tree:
        tree.read_text("predictions/eval/secret.csv")
    (out / "predictions" / "eval").unlink()
    (out / "predictions" / "eval").mkdir()
    (out / "predictions" / "eval" / "clean.csv").symlink_to(secret)  # a linked file
    spec0 = TrialSpec(task="audio", dataset=prep.manifest, config=AudioConfig(), seed=0)
    ctx0 = ScoringContext(dataset=prep, objective=Objective(metric="f1@5db"), workspace=tmp_path)
    with pytest.raises(UnsafeOutput), OutputTree(out, tmp_path / "scratch") as tree:
        family("audio").score(ctx0, "t", spec0, tree, "eval")
    (out / "predictions" / "eval" / "clean.csv").unlink()
    (out / "predictions" / "eval" / "clean.csv").write_text("path,segment,prob\naudio/../x.wav,0,0.5\n")
    spec = TrialSpec(task="audio", dataset=prep.manifest, config=AudioConfig(), seed=0)
    ctx = ScoringContext(dataset=prep, objective=Objective(metric="f1@5db"), workspace=tmp_path)
    with pytest.raises(DatasetError, match="is not a recording of this split"):
        family("audio").score(ctx, "t", spec, _job(out), "eval")
    rel = (prep.staged["eval"] / "eval.csv").read_text().splitlines()[1].split(",")[0]
    (out / "predictions" / "eval" / "clean.csv").write_text(f"path,segment,prob\n{rel},0,1.5\n")
    with pytest.raises(DatasetError, match="outside"):
        family("audio").score(ctx, "t", spec, _job(out), "eval")
    (out / "predictions" / "eval" / "clean.csv").write_text(f"path,segment,prob\n{rel},0,0.5\n")
    with pytest.raises(DatasetError, match=r"wrote no predictions/eval/white_20db\.csv"):
        family("audio").score(ctx, "t", spec, _job(out), "eval")
