"""Pre-training objectives, checkpoint provenance and nested label fractions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from medloop.core.errors import DatasetError
from medloop.core.specs import PretrainConfig
from medloop.engine.tasks.pretrain import check_registered, verify_init
from medloop.experiments.dataset.label_fraction import labelled_subset
from medloop.experiments.dataset.pretrained import KIND, file_sha256, provenance, weights_digest
from medloop.experiments.pretrain.methods import (
    MaskedImageModelling,
    S2UniSeg,
    ema_update,
    transferable_state,
)
from medloop.experiments.pretrain.train import save_pretrained, seg_config
from medloop.experiments.segmentation.networks import build_network


def _volumes(n: int = 4) -> torch.Tensor:
    """(n, 1, 16, 16, 8): bright blobs on a dark background, some noise."""
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, 16, 16, 8)
    x[:, :, 3:9, 4:11, 2:6] = 2.0
    x[:, :, 10:14, 2:6, 1:7] = -1.5
    return x + 0.2 * torch.randn(x.shape, generator=gen)


def _net(out: int, bf: int = 4) -> nn.Module:
    config = seg_config(PretrainConfig(base_features=bf, depth=2, patch_size="16x16x8"), init="scratch")
    return build_network(config, 1, out, [16, 16, 8], [1.0, 1.0, 1.0])


def test_ema_teacher_update() -> None:
    torch.manual_seed(0)
    student, teacher = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.9)
    for t, t0, s in zip(teacher.parameters(), before, student.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * t0 + 0.1 * s)
    ema_update(teacher, student, 0.0)
    assert all(torch.equal(t, s) for t, s in zip(teacher.parameters(), student.parameters(), strict=True))


def test_s2uniseg_teacher_follows_student_and_loss_decreases() -> None:
    torch.manual_seed(1)
    method = S2UniSeg(
        _net(8), 8, 8, thresholds=(0.9, 0.7), mask_stride=2, max_queries=8, momentum=0.9, seed=1
    )
    assert not any(p.requires_grad for p in method.teacher.parameters())
    opt = torch.optim.AdamW(method.trainable(), lr=3e-3)
    x = _volumes(2)
    losses, mask_s = [], []
    teacher0 = [p.detach().clone() for p in method.teacher.parameters()]
    for _ in range(50):
        loss, info = method.loss(x)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        method.after_step()
        losses.append(info.loss)
        mask_s.append(info.mask_seconds)
        assert info.masks >= 1
    # KL(teacher || student) starts near 0 (the teacher is a copy of the student), rises
    # while the EMA teacher lags the student, then falls as the student matches it
    windows = [sum(losses[i : i + 5]) for i in range(0, len(losses), 5)]
    assert windows[-1] < 0.7 * max(windows), [round(w, 3) for w in windows]
    assert all(s > 0 for s in mask_s)  # pseudo-mask time is measured every step
    moved = [not torch.equal(a, b) for a, b in zip(teacher0, method.teacher.parameters(), strict=True)]
    assert any(moved)


def test_mim_loss_decreases_and_masks_blocks() -> None:
    torch.manual_seed(2)
    method = MaskedImageModelling(_net(1), ratio=0.5, block=4, seed=2)
    x = _volumes()
    mask = method.block_mask(x)
    assert mask.shape == (4, 1, 16, 16, 8) and 0.2 < float(mask.mean()) < 0.8
    assert torch.equal(mask[:, :, :4, :4, :4].amin((2, 3, 4)), mask[:, :, :4, :4, :4].amax((2, 3, 4)))
    opt = torch.optim.AdamW(method.trainable(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, info = method.loss(x)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(info.loss)
    assert sum(losses[-5:]) < sum(losses[:5])


def _checkpoint(tmp_path: Path, bf: int = 4) -> Path:
    net = _net(8, bf)
    state = transferable_state(net, _net(9, bf))
    assert set(state) < set(net.state_dict())  # the output head is dropped
    network = {
        "model": "unet",
        "spatial_dims": 3,
        "in_channels": 1,
        "base_features": bf,
        "depth": 2,
        "res_units": 0,
    }
    path = tmp_path / "pretrained.safetensors"
    save_pretrained(
        path,
        state,
        {
            "medloop.kind": KIND,
            "medloop.method": "s2uniseg",
            "medloop.seed": "7",
            "medloop.data_checksum": "abc",
            "medloop.network": json.dumps(network),
        },
    )
    return path


def test_checkpoint_provenance_recorded_and_tampering_refused(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    prov = provenance(path)
    assert prov is not None
    assert (prov["method"], prov["seed"], prov["data_checksum"]) == ("s2uniseg", 7, "abc")
    assert prov["weights_sha256"] == weights_digest(path)
    config = seg_config(PretrainConfig(base_features=4, depth=2), init="file:x")
    verify_init(path, config, in_channels=1)  # matching network: accepted
    with pytest.raises(
        DatasetError, match=r"pre-trained with base_features=4, this trial builds base_features=8"
    ):
        verify_init(path, config.model_copy(update={"base_features": 8}), in_channels=1)
    with pytest.raises(DatasetError, match=r"in_channels=1"):
        verify_init(path, config, in_channels=2)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x55  # one weight byte changed after the run
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="tampered or corrupted"):
        verify_init(path, config, in_channels=1)


def test_registered_sha_must_match(tmp_path: Path) -> None:
    from medloop.core.records import SplitEvaluation
    from medloop.engine.tasks.pretrain import SETTINGS_KEY

    path = _checkpoint(tmp_path)
    evaluation = SplitEvaluation(
        split="eval",
        cases=[],
        summary={},
        implementation="t",
        settings={SETTINGS_KEY: {"sha256": file_sha256(path)}},
    )
    check_registered(evaluation, path, "trl_1")
    (tmp_path / "b").mkdir()
    other = _checkpoint(tmp_path / "b", bf=8)  # another run's checkpoint in its place
    with pytest.raises(DatasetError, match="changed after the host registered"):
        check_registered(evaluation, other, "trl_1")


def test_plain_checkpoint_passes_unchecked(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    assert provenance(path) is None
    verify_init(path, seg_config(PretrainConfig(), init="file:x"), in_channels=1)


def test_label_fractions_are_nested_per_seed() -> None:
    cases = [f"c{i:02d}" for i in range(40)]
    for seed in range(5):
        five, ten, full = (labelled_subset(cases, f, seed) for f in (0.05, 0.1, 1.0))
        assert (len(five), len(ten), len(full)) == (2, 4, 40)
        assert set(five) <= set(ten) <= set(full)
        assert labelled_subset(list(reversed(cases)), 0.1, seed) == list(reversed(ten))  # order-free
    assert labelled_subset(cases, 0.1, 0) != labelled_subset(cases, 0.1, 1)  # seeds differ
    assert labelled_subset(cases[:3], 0.05, 0) != []  # at least one labelled case
    with pytest.raises(ValueError, match="label_fraction"):
        labelled_subset(cases, 0.0, 0)


def test_a_torch_checkpoint_for_init_is_a_plain_checkpoint(tmp_path: Path) -> None:
    # A SAM-Med3D .pth (torch pickle) carries no safetensors header: init: must pass it on
    # to the job as a plain checkpoint, not refuse it as "not a safetensors file".
    path = tmp_path / "sam_med3d_turbo.pth"
    torch.save({"model_state_dict": {"w": torch.zeros(2)}}, path)
    assert provenance(path) is None
    verify_init(path, PretrainConfig(), in_channels=1)  # no error
