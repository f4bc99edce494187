"""Model-size presets (STU-Net spirit): each step up is wider and deeper, and its cost in
parameters and FLOPs (torch's counter) grows with it."""

from __future__ import annotations

import torch

from medloop.core.specs import SegConfig
from medloop.core.trial_configs import MODEL_SIZES
from medloop.experiments.segmentation.networks import build_network, count_flops, sized


def test_presets_scale_width_and_blocks_and_cost() -> None:
    params, flops = [], []
    for size in ("S", "B", "L", "H"):
        config = sized(SegConfig(model="unet", spatial_dims=2, depth=3, model_size=size))
        assert config.base_features == MODEL_SIZES[size]["base_features"]
        assert config.res_units == MODEL_SIZES[size]["res_units"]
        net = build_network(config, 1, 3, [32, 32], [1.0, 1.0])
        params.append(sum(p.numel() for p in net.parameters()))
        flops.append(count_flops(net, 1, [32, 32], torch.device("cpu")))
    assert params == sorted(params) and len(set(params)) == 4
    assert flops == sorted(flops) and len(set(flops)) == 4


def test_no_preset_keeps_the_config_and_its_hash() -> None:
    plain = SegConfig(base_features=8)
    assert sized(plain) is plain
    assert "model_size" not in plain.hash_dump()  # configs recorded before presets keep their hash


def test_flop_count_of_one_convolution_by_hand() -> None:
    conv = torch.nn.Conv2d(2, 4, kernel_size=3, padding=1, bias=False)
    # 4 x 8 x 8 outputs, each 2 x 3 x 3 multiply-adds (2 FLOPs each)
    assert count_flops(conv, 2, [8, 8], torch.device("cpu")) == 4 * 8 * 8 * 2 * 9 * 2
