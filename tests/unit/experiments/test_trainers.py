"""The trainer's parts on tiny inputs: networks x dims, losses, schedules, early stopping,
sliding-window inference with TTA, resampling and transfer (finetune/freeze/adapter)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from medloop.core.records import DatasetManifest, TrialSpec
from medloop.core.specs import SegConfig
from medloop.experiments.dataset.imageio import Volume
from medloop.experiments.segmentation.data import CaseData, fit_patch, make_loader
from medloop.experiments.segmentation.inference import predict_case, predict_probabilities
from medloop.experiments.segmentation.job import predict_on_grid, to_grid
from medloop.experiments.segmentation.networks import build_network, patch_divisor
from medloop.experiments.segmentation.training import build_loss, lr_factor, save_checkpoint, train
from medloop.experiments.segmentation.transfer import ConvAdapter, encoder_modules, initialise

LABELS = {"background": 0, "a": 1, "b": 2}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Like a trial: one torch thread; the process-wide setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _case(shape: tuple[int, int, int], seed: int, spacing=(1.0, 1.0, 1.0)) -> CaseData:
    """Two bright boxes (classes 1, 2) on noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.uint8)
    x, y = shape[0] // 4, shape[1] // 4
    label[x : 2 * x, y : 2 * y] = 1
    label[2 * x : 3 * x, 2 * y : 3 * y] = 2
    image = (label * 1.5 + rng.normal(0, 0.3, shape)).astype(np.float32)[None]
    ref = Volume(image[0], spacing, np.diag([*spacing, 1.0]), Path(f"c{seed}.nii.gz"))
    return CaseData(f"c{seed}", image, label[None], ref)


def _items(cases: list[CaseData], dims: int) -> list[dict]:
    if dims == 3:
        return [{"image": c.image, "label": c.label} for c in cases]
    return [{"image": c.image[..., z], "label": c.label[..., z]} for c in cases for z in range(c.spatial[2])]


@pytest.mark.parametrize(
    ("model", "dims", "patch"),
    [
        ("unet", 2, [32, 32]),
        ("unet", 3, [16, 16, 16]),
        ("segresnet", 2, [32, 32]),
        ("segresnet", 3, [16, 16, 16]),
        ("dynunet", 2, [32, 32]),
        ("dynunet", 3, [16, 16, 16]),
        ("swinunetr", 2, [64, 64]),
    ],
)
def test_every_network_trains_and_predicts(tmp_path: Path, model: str, dims: int, patch: list[int]) -> None:
    config = SegConfig(
        model=model,
        spatial_dims=dims,
        base_features=8,
        depth=3,
        iterations=2,
        batch_size=2,
        epoch_iterations=2,
        loss="dicece",
        patch_size="x".join(map(str, patch)),
    )
    shape = (patch[0] + 4, patch[1] + 4, patch[2] + 4 if dims == 3 else 2)
    cases = [_case(shape, s) for s in range(2)]
    patch = fit_patch(patch, patch_divisor(config, patch, [1.0] * dims))
    net = build_network(config, 1, 3, patch, [1.0] * dims)
    loader = make_loader(config, _items(cases, dims), patch, 0, torch.device("cpu"))
    events: list[dict] = []
    out = train(
        config,
        net,
        loader,
        val_cases=cases[:1],
        labels=LABELS,
        patch=patch,
        device=torch.device("cpu"),
        checkpoint_dir=tmp_path,
        emit=events.append,
        deep_supervision=bool(getattr(net, "deep_supervision", False)),
        params=list(net.parameters()),
    )
    assert out.iterations == 2 and np.isfinite(out.history[-1]["loss"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors", "last.safetensors"]
    pred = predict_case(net, cases[1].image, patch, torch.device("cpu"))
    assert pred.shape == shape and pred.dtype == np.uint8 and set(np.unique(pred)) <= {0, 1, 2}


def test_swinunetr_3d_predicts_a_64_cube() -> None:
    config = SegConfig(model="swinunetr", spatial_dims=3, base_features=12)
    net = build_network(config, 1, 3, [64, 64, 64], [1.0] * 3)
    probs = predict_probabilities(
        net, np.zeros((1, 64, 64, 64), np.float32), [64, 64, 64], torch.device("cpu")
    )
    assert probs.shape == (3, 64, 64, 64)


@pytest.mark.parametrize("loss", ["dice", "dicece", "dicefocal"])
@pytest.mark.parametrize("deep", [False, True])
def test_losses_with_and_without_deep_supervision(loss: str, deep: bool) -> None:
    fn = build_loss(SegConfig(loss=loss), deep_supervision=deep)
    target = torch.randint(0, 3, (2, 1, 16, 16))
    logits = (
        torch.randn(2, 3, 3, 16, 16, requires_grad=True)
        if deep
        else torch.randn(2, 3, 16, 16, requires_grad=True)
    )
    value = fn(list(torch.unbind(logits, 1)) if deep else logits, target)
    value.backward()
    assert torch.isfinite(value) and value > 0 and logits.grad is not None


def test_schedules() -> None:
    poly = lr_factor(SegConfig(optimizer="sgd", iterations=100))
    assert poly(0) == 1.0 and poly(50) == pytest.approx(0.5**0.9) and poly(100) == 0.0
    cos = lr_factor(SegConfig(schedule="cosine", iterations=100))
    assert cos(50) == pytest.approx(0.5)
    assert lr_factor(SegConfig(optimizer="adamw"))(70) == 1.0


def test_early_stopping_stops_when_val_stalls(tmp_path: Path) -> None:
    # lr 0: the weights never change, so internal validation never improves after epoch 1
    config = SegConfig(
        iterations=40, epoch_iterations=5, early_stopping=2, lr=1e-12, base_features=4, depth=2, batch_size=2
    )
    cases = [_case((16, 16, 1), s) for s in range(3)]
    net = build_network(config, 1, 3, [16, 16], [1.0, 1.0])
    loader = make_loader(config, _items(cases, 2), [16, 16], 0, torch.device("cpu"))
    events: list[dict] = []
    out = train(
        config,
        net,
        loader,
        val_cases=cases[:1],
        labels=LABELS,
        patch=[16, 16],
        device=torch.device("cpu"),
        checkpoint_dir=tmp_path,
        emit=events.append,
        deep_supervision=False,
        params=list(net.parameters()),
    )
    assert out.stopped_early and out.iterations == 15 and out.best_epoch == 1
    # every iteration's batch loss is kept (15 values), not only the 3 epoch means
    assert len(out.iteration_loss) == 15 and all(np.isfinite(out.iteration_loss))
    assert np.mean(out.iteration_loss[:5]) == pytest.approx(out.history[0]["loss"], rel=1e-5)
    assert events[-1] == {"event": "early_stop", "epoch": 3, "best_epoch": 1}


def test_sliding_window_tta_and_resampling_keep_geometry() -> None:
    config = SegConfig(spatial_dims=3, base_features=4, depth=2, target_spacing="2.0x2.0x2.0", tta=True)
    net = build_network(config, 1, 3, [8, 8, 8], [2.0] * 3)
    case = _case((20, 14, 11), 0, spacing=(1.0, 1.5, 3.0))  # larger than the patch, anisotropic
    probs = predict_probabilities(net, case.image, [8, 8, 8], torch.device("cpu"), tta=True)
    assert probs.shape == (3, 20, 14, 11)
    torch.testing.assert_close(probs.sum(0), torch.ones(20, 14, 11))
    # TTA is the mean over the 8 mirrorings
    plain = predict_probabilities(net, case.image, [8, 8, 8], torch.device("cpu"))
    flipped = predict_probabilities(net, case.image[:, ::-1].copy(), [8, 8, 8], torch.device("cpu")).flip(1)
    assert not torch.allclose(probs, plain) and not torch.allclose(plain, flipped)
    grid = to_grid(case, [2.0, 2.0, 2.0])
    assert grid.spatial == (10, 10, 16)
    label = predict_on_grid(net, case, [2.0, 2.0, 2.0], [8, 8, 8], torch.device("cpu"), config)
    assert label.shape == (20, 14, 11) and label.dtype == np.uint8


def _spec(tmp_path: Path, config: SegConfig, checkpoint: str | None) -> TrialSpec:
    manifest = DatasetManifest(
        name="x",
        checksum="0" * 64,
        channel_names={"0": "CT"},
        labels=LABELS,
        train_cases=["a"],
        eval_cases=["b"],
    )
    return TrialSpec(
        dataset=manifest,
        config=config,
        seed=0,
        init_checkpoint=checkpoint,
        provenance={"init_parent": "trl_parent"},
    )


@pytest.mark.parametrize("mode", ["finetune", "freeze_encoder", "adapter"])
@pytest.mark.parametrize("model", ["unet", "dynunet", "segresnet"])
def test_transfer_modes(tmp_path: Path, mode: str, model: str) -> None:
    base = SegConfig(model=model, base_features=8, depth=3)
    parent = build_network(base, 1, 3, [32, 32], [1.0, 1.0])
    save_checkpoint(parent, tmp_path / "init" / "best.safetensors", {"epoch": 1})
    config = base.model_copy(update={"init": "trial:trl_parent", "init_mode": mode})
    child = build_network(config, 1, 4, [32, 32], [1.0, 1.0])  # one more class: a new head
    spec = _spec(tmp_path, config, "init/best.safetensors")
    child, params, info = initialise(child, spec, tmp_path, config)
    assert info["mode"] == mode and info["parent"] == "trl_parent" and info["loaded_tensors"] > 0
    assert info["fresh_tensors"], "the 4-class head cannot come from the 3-class parent"
    shared = [k for k, v in parent.state_dict().items() if child.state_dict()[k].shape == v.shape]
    for key in shared[:5]:
        torch.testing.assert_close(child.state_dict()[key], parent.state_dict()[key])
    trainable = {id(p) for p in params}
    encoder = [p for m in encoder_modules(child, config) for p in m.parameters()]
    if mode == "finetune":
        assert len(params) == len(list(child.parameters()))
    elif mode == "freeze_encoder":
        assert encoder and not any(id(p) in trainable for p in encoder)
        assert len(params) < len(list(child.parameters()))
    else:
        adapters = [m for m in child.modules() if isinstance(m, ConvAdapter)]
        assert adapters and all(id(p) in trainable for a in adapters for p in a.parameters())
        frozen = [p for p in child.parameters() if id(p) not in trainable]
        assert frozen and all(p.ndim > 1 for p in frozen)
        # zero-initialised adapters leave the network's output unchanged at the start
        x = torch.randn(1, 1, 32, 32)
        child.eval()
        with torch.no_grad():
            before = child(x)
            for adapter in adapters:
                adapter.up.weight.add_(1.0)
            after = child(x)
        assert not torch.allclose(before, after)


def test_transfer_errors_are_clear(tmp_path: Path) -> None:
    config = SegConfig(init="file:/x.safetensors")
    net = build_network(config, 1, 3, [32, 32], [1.0, 1.0])
    with pytest.raises(ValueError, match="no init_checkpoint"):
        initialise(net, _spec(tmp_path, config, None), tmp_path, config)
    with pytest.raises(FileNotFoundError, match="missing"):
        initialise(net, _spec(tmp_path, config, "nope.safetensors"), tmp_path, config)
    other = build_network(SegConfig(model="segresnet", base_features=8), 1, 3, [32, 32], [1.0, 1.0])
    save_checkpoint(other, tmp_path / "other.safetensors", {})
    with pytest.raises(ValueError, match="no weights match"):
        initialise(net, _spec(tmp_path, config, "other.safetensors"), tmp_path, config)
