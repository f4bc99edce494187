"""The classification job: HyDA's shapes, gradients and per-patient kernels; trainable
parameters of every adapter mode; encoder init from a segmentation checkpoint; and the
host's scoring of the job's per-case probabilities (bad rows refused)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from medloop.core.errors import DatasetError
from medloop.core.records import TrialSpec
from medloop.core.specs import ClassifyConfig, DatasetRef, Objective, SegConfig
from medloop.engine.outputs import OutputTree
from medloop.engine.tasks import ScoringContext, family
from medloop.experiments.classification.adapters import configure, count_parameters, load_encoder
from medloop.experiments.classification.hyda import DILATIONS, KERNEL, HyDA
from medloop.experiments.classification.networks import VolumeClassifier
from medloop.experiments.classification.train import run_classification
from medloop.experiments.dataset.brain_cls import synth_brain_cls


def test_hyda_shapes_gradients_and_patient_specific_kernels() -> None:
    torch.manual_seed(0)
    hyda = HyDA(channels=6, modalities=3, hidden=8, edges=3, patches=2)
    feats = torch.randn(4, 3, 6, 4, 4, 4, requires_grad=True)  # (B, M, C, d, h, w)
    out, z = hyda(feats)
    assert out.shape == feats.shape and z.shape == (4, 8)
    assert hyda.nodes(feats).shape == (4, 3 * (1 + 2**3), 8)
    assert hyda.incidence(hyda.nodes(feats)).shape == (4, 27, 3 + 3 + 9)
    kernels = hyda.kernels(z)
    assert kernels.shape == (4, len(DILATIONS), 6, 1, KERNEL, KERNEL, KERNEL)
    for i in range(4):  # every patient gets its own kernels
        for j in range(i + 1, 4):
            assert not torch.allclose(kernels[i], kernels[j])
    (out.square().mean() + z.square().mean()).backward()
    for name, p in hyda.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    # each patient's output depends only on its own features (no mixing across the batch)
    out2, _ = hyda(torch.cat([feats[:1].detach(), torch.randn(3, 3, 6, 4, 4, 4)]))
    assert torch.allclose(out2[0], out[0].detach(), atol=1e-5)


def _convs(module: nn.Module) -> list[nn.Conv3d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv3d) and m.groups == 1]


@pytest.mark.parametrize("model", ["unet_encoder", "resnet10"])
def test_trainable_parameters_of_each_adapter_mode(model: str) -> None:
    counts: dict[str, int] = {}
    for adapter in ("full", "linear", "conv_adapter", "lora", "hyda"):
        config = ClassifyConfig(model=model, adapter=adapter, adapter_rank=2, base_features=8, depth=3)  # type: ignore[arg-type]
        net = VolumeClassifier(config, n_modalities=3)
        convs = _convs(net.encoder)
        encoder = sum(p.numel() for p in net.encoder.parameters())
        head = sum(p.numel() for p in net.head.parameters())
        hyda = sum(p.numel() for p in net.hyda.parameters()) if net.hyda is not None else 0
        parts = configure(net, config)
        total, trainable = count_parameters(net)
        counts[adapter] = trainable
        assert sum(parts.values()) == trainable
        if adapter == "full":
            assert trainable == total == encoder + head
        elif adapter == "linear":
            assert trainable == head and parts == {"head": head}
        elif adapter == "conv_adapter":  # 1x1 down (in -> r) and up (r -> out) per conv
            assert parts["encoder.side"] == sum(2 * (c.in_channels + c.out_channels) for c in convs)
        elif adapter == "lora":  # k^3 down (in -> r) and 1x1 up (r -> out) per conv
            k3 = [c.kernel_size[0] * c.kernel_size[1] * c.kernel_size[2] for c in convs]  # type: ignore[index]
            want = sum(2 * (c.in_channels * k + c.out_channels) for c, k in zip(convs, k3, strict=True))
            assert parts["encoder.side"] == want
        else:
            assert parts == {"hyda": hyda, "head": head}
        if adapter != "full":
            assert all(
                not p.requires_grad for n, p in net.encoder.named_parameters() if not n.startswith("side.")
            )
    assert counts["linear"] < counts["conv_adapter"] < counts["lora"] < counts["full"]


def test_adapters_start_as_the_frozen_network_and_train() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 2, 16, 16, 16)
    base = VolumeClassifier(ClassifyConfig(adapter="linear"), n_modalities=2)
    for adapter in ("lora", "conv_adapter"):
        config = ClassifyConfig(adapter=adapter)  # type: ignore[arg-type]
        net = VolumeClassifier(config, n_modalities=2)
        net.load_state_dict(base.state_dict())
        configure(net, config)
        net.eval(), base.eval()
        assert torch.allclose(net(x), base(x), atol=1e-6)  # zero-initialised up-projections
        net.train()
        net(x).sum().backward()
        side = [
            p for n, p in net.named_parameters() if n.startswith("encoder.side.") and n.endswith("up.weight")
        ]
        assert side and all(p.grad is not None and p.grad.abs().sum() > 0 for p in side)


def test_encoder_loads_from_a_segmentation_unet_checkpoint(tmp_path: Path) -> None:
    from monai.networks.nets.unet import UNet
    from safetensors.torch import save_file

    seg = SegConfig(spatial_dims=3, base_features=8, depth=3)
    unet = UNet(3, 3, 2, channels=[8, 16, 32], strides=[2, 2], num_res_units=seg.res_units, norm="instance")
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(tmp_path / "seg.safetensors"))
    from medloop.experiments.segmentation.transfer import load_weights

    net = VolumeClassifier(ClassifyConfig(base_features=8, depth=3), n_modalities=3)
    info = load_encoder(net, load_weights(tmp_path / "seg.safetensors"))
    own = net.state_dict()
    assert info["encoder_tensors"] == len([k for k in own if k.startswith("encoder.")])
    first = unet.state_dict()["model.0.conv.weight"]  # (8, 3, 3, 3, 3): 3 input channels
    assert torch.equal(own["encoder.levels.0.conv.weight"], first.sum(dim=1, keepdim=True))
    bottom = unet.state_dict()["model.1.submodule.1.submodule.conv.weight"]
    assert torch.equal(own["encoder.levels.2.conv.weight"], bottom)
    with pytest.raises(ValueError, match="no encoder weights"):
        load_encoder(net, {"something.else": torch.zeros(3)})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("clsjob")
    ds = synth_brain_cls(root / "ds", patients=8, test_patients=2, size=8, seed=3)
    return family("classification").prepare(DatasetRef(path=ds, eval_fraction=0.4), root / "stage"), root


def _in_dir(prep, tmp: Path) -> Path:  # type: ignore[no-untyped-def]
    in_dir = tmp / "in"
    in_dir.mkdir()
    for name, path in prep.staged.items():
        (in_dir / name).symlink_to(path)
    return in_dir


def test_job_probabilities_are_scored_per_patient_and_bad_rows_refused(prepared, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prep, _ = prepared
    config = ClassifyConfig(adapter="hyda", size=8, epochs=1, base_features=4, depth=2)
    spec = TrialSpec(task="classification", dataset=prep.manifest, config=config, seed=0)
    out = tmp_path / "out"
    outcome = run_classification(spec, _in_dir(prep, tmp_path), out, lambda e: None)
    assert outcome.status == "completed" and set(outcome.predictions) == {"eval", "test"}
    assert 0 < outcome.efficiency["trainable_parameters"] < outcome.efficiency["parameters"]
    ctx = ScoringContext(dataset=prep, objective=Objective(metric="auroc"), workspace=tmp_path)
    fam = family("classification")
    with OutputTree(out, tmp_path / "scratch") as tree:
        ev = fam.score(ctx, "t", spec, tree, "eval")
        test = fam.score(ctx, "t", spec, tree, "test")
    assert ev is not None and set(ev.settings["case_probs"]) == set(prep.manifest.eval_cases)
    assert test is not None and test.split == "test"
    case = prep.manifest.eval_cases[0]
    for body, why in (
        ("case,prob\nnot_a_case,0.5\n", "is not a case of this split"),
        (f"case,prob\n{case},1.5\n", "outside"),
        (f"case,prob\n{case},nan\n", "outside"),
        (f"case,prob\n{case},0.5\n{case},0.4\n", "listed twice"),
        ("case,score\n", "expected columns case,prob"),
    ):
        (out / "predictions" / "eval.csv").write_text(body)
        with pytest.raises(DatasetError, match=why), OutputTree(out, tmp_path / f"s{len(why)}") as tree:
            fam.score(ctx, "t", spec, tree, "eval")
