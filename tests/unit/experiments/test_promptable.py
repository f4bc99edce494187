"""Promptable 3D segmentation (issue 16, item 2): SAM-Med3D checkpoint layout, the
interactive protocol's label isolation against a hostile job, and a tiny end-to-end run
of examples/promptable.yaml."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from medloop.core.records import Campaign, JobResult, JobSpec
from medloop.core.specs import CampaignSpec, PromptableConfig, load_campaign_spec
from medloop.core.store import open_store
from medloop.engine.base import TrialRequest, trial_id_for
from medloop.engine.trials import SandboxTrials
from medloop.experiments.dataset.phantom3d import synth_phantom3d
from medloop.sandbox.base import EventSink
from medloop.sandbox.local import LocalRuntime
from medloop.sandbox.scheduler import Scheduler

EXAMPLE = Path(__file__).parents[3] / "examples" / "promptable.yaml"

# Shapes of SAM-Med3D-turbo's state dict (build_sam3D_vit_b_ori: ViT-B 768-d, 12 heads,
# 128^3 input, 16^3 patches, window 14 with global blocks 2/5/8/11, 384-d prompts),
# written out here from its published architecture, independently of medloop's model.
SAM_MED3D_SHAPES = {
    "image_encoder.pos_embed": (1, 8, 8, 8, 768),
    "image_encoder.patch_embed.proj.weight": (768, 1, 16, 16, 16),
    "image_encoder.blocks.0.attn.qkv.weight": (2304, 768),
    "image_encoder.blocks.0.attn.rel_pos_d": (27, 64),  # windowed block: 2 * 14 - 1
    "image_encoder.blocks.2.attn.rel_pos_w": (15, 64),  # global block: 2 * 8 - 1
    "image_encoder.blocks.11.mlp.lin2.weight": (768, 3072),
    "image_encoder.neck.0.weight": (384, 768, 1, 1, 1),
    "image_encoder.neck.2.weight": (384, 384, 3, 3, 3),
    "image_encoder.neck.3.bias": (384,),
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (3, 128),
    "prompt_encoder.point_embeddings.1.weight": (1, 384),
    "prompt_encoder.not_a_point_embed.weight": (1, 384),
    "prompt_encoder.mask_downscaling.0.weight": (4, 1, 2, 2, 2),
    "prompt_encoder.mask_downscaling.6.weight": (384, 16, 1, 1, 1),
    "prompt_encoder.no_mask_embed.weight": (1, 384),
    "mask_decoder.iou_token.weight": (1, 384),
    "mask_decoder.mask_tokens.weight": (4, 384),
    "mask_decoder.transformer.layers.0.self_attn.q_proj.weight": (384, 384),
    "mask_decoder.transformer.layers.1.cross_attn_token_to_image.k_proj.weight": (192, 384),
    "mask_decoder.transformer.layers.1.mlp.lin1.weight": (2048, 384),
    "mask_decoder.transformer.layers.1.norm4.weight": (384,),
    "mask_decoder.transformer.final_attn_token_to_image.out_proj.weight": (384, 192),
    "mask_decoder.transformer.norm_final_attn.weight": (384,),
    "mask_decoder.output_upscaling.0.weight": (384, 96, 2, 2, 2),
    "mask_decoder.output_upscaling.1.weight": (96,),
    "mask_decoder.output_upscaling.3.weight": (96, 48, 2, 2, 2),
    "mask_decoder.output_hypernetworks_mlps.3.layers.2.weight": (48, 384),
    "mask_decoder.iou_prediction_head.layers.2.weight": (4, 256),
}


def test_sam_med3d_preset_has_the_sam_med3d_state_dict_layout() -> None:
    import torch

    from medloop.experiments.promptable.model import build_model

    with torch.device("meta"):  # shapes only: no 400 MB of weights
        model = build_model("sam_med3d", 1, boxes=False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in SAM_MED3D_SHAPES.items():
        assert shapes.get(key) == shape, key
    assert not any(k.startswith(("pixel_", "module.")) for k in shapes)
    assert (
        sum(1 for k in shapes if k.startswith("image_encoder.blocks.") and k.endswith(".norm1.weight")) == 12
    )


def _sam_med3d_file(path: Path, state: dict[str, object]) -> Path:
    """A checkpoint as SAM-Med3D's train.py writes it: a torch file with model_state_dict,
    keys prefixed `module.` (DistributedDataParallel)."""
    import torch

    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    return path


def test_sam_med3d_checkpoint_loads_and_a_wrong_shape_is_a_clear_error(tmp_path: Path) -> None:
    import torch

    from medloop.experiments.promptable.checkpoints import CheckpointError, load_into
    from medloop.experiments.promptable.model import build_model

    torch.manual_seed(0)
    source = build_model("tiny", 1, boxes=False)
    for p in source.parameters():
        torch.nn.init.normal_(p)
    ckpt = _sam_med3d_file(tmp_path / "sam_med3d_turbo.pth", source.state_dict())
    target = build_model("tiny", 1, boxes=True)  # box corners: not in SAM-Med3D, kept fresh
    info = load_into(target, ckpt, preset="tiny")
    assert info["kept_fresh"] == [
        "prompt_encoder.point_embeddings.2.weight",
        "prompt_encoder.point_embeddings.3.weight",
    ]
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key

    bad = dict(source.state_dict())
    bad["image_encoder.pos_embed"] = torch.zeros(1, 8, 8, 8, 48)
    wrong = _sam_med3d_file(tmp_path / "wrong.pth", bad)
    with pytest.raises(
        CheckpointError, match=r"wrong\.pth: image_encoder\.pos_embed has shape \(1, 8, 8, 8, 48\)"
    ):
        load_into(build_model("tiny", 1, boxes=False), wrong, preset="tiny")
    missing = dict(source.state_dict())
    del missing["mask_decoder.iou_token.weight"]
    with pytest.raises(CheckpointError, match=r"lacks mask_decoder\.iou_token\.weight"):
        load_into(
            build_model("tiny", 1, boxes=False), _sam_med3d_file(tmp_path / "m.pth", missing), preset="tiny"
        )


# ---------------------------------------------------------------- the interactive protocol


class RecordingExecutor:
    """The real scheduler and local runtime; round jobs run `script` (the attack) instead."""

    def __init__(self, jobs_dir: Path, script: str) -> None:
        self.inner = Scheduler(LocalRuntime(jobs_dir))
        self.script = script
        self.jobs: list[JobSpec] = []
        self.results: list[JobResult] = []

    def run(self, jobs: Sequence[JobSpec], *, on_event: EventSink | None = None) -> list[JobResult]:
        self.jobs += jobs
        swapped = [
            j.model_copy(update={"command": ["python", "-c", self.script]}) if ".round" in j.key else j
            for j in jobs
        ]
        results = self.inner.run(swapped, on_event=on_event)
        self.results += results
        return results

    def cancel(self, key: str) -> None:
        self.inner.cancel(key)

    def close(self) -> None:
        self.inner.close()


# A round job that hunts for labels: it lists every file it can reach under its inputs
# (and the dataset folder named in the spec), then predicts nothing.
HUNTER = """
import json, os, pathlib
inp, out = pathlib.Path(os.environ["MEDLOOP_IN"]), pathlib.Path(os.environ["MEDLOOP_OUT"])
seen = sorted(str(p.relative_to(inp)) for p in inp.rglob("*") if p.is_file())
prompts = json.loads((inp / "prompts" / "prompts.json").read_text())
(out / "seen.json").write_text(json.dumps({"files": seen, "prompts": prompts}))
(out / "result.json").write_text(json.dumps({"status": "completed", "predictions": {}}))
"""


def _trials(
    ws: Path, executor: object, iterations: int = 2, **config: object
) -> tuple[SandboxTrials, TrialRequest]:
    ds = synth_phantom3d(ws / "data" / "Dataset989_Prompt3D", cases=5, seed=3, test_cases=0)
    spec = CampaignSpec.model_validate(
        {
            "name": "promptable",
            "goal": "clicks",
            "task": "promptable",
            "dataset": {"path": ds, "eval_fraction": 0.4},
            "objective": {"metric": "dice@5"},
            "search_space": {"lr": [1e-3]},
            "sandbox": {"runtime": "local", "timeout": 300},
        }
    )
    store = open_store(ws / "medloop.db")
    store.campaigns.add(Campaign(id="cmp_p", name="promptable", owner="t", spec=spec))
    trials = SandboxTrials(store, spec, executor=executor, workspace=ws, staging_dir=ws / "staging")  # type: ignore[arg-type]
    cfg = PromptableConfig(iterations=iterations, eval_clicks=10, **config)  # type: ignore[arg-type]
    ts = trials.spec_for(cfg, seed=0)
    return trials, TrialRequest(trial_id_for("cmp_p", ts), None, "baseline", ts)


def test_round_jobs_never_see_labels_and_get_only_clicks(tmp_path: Path) -> None:
    executor = RecordingExecutor(tmp_path / "jobs", HUNTER)
    trials, req = _trials(tmp_path, executor, prompt="box")
    (trial,) = trials.run("cmp_p", [req])
    rounds = [r for r in executor.results if ".round" in r.key]
    assert rounds, "the host ran no interactive round"
    eval_cases = set(req.spec.dataset.eval_cases)
    for result in rounds:
        seen = json.loads((result.out_dir / "seen.json").read_text())
        files = seen["files"]
        assert not any("labels" in f for f in files), files
        assert not any(f.startswith("train/") for f in files), files
        assert {f.split("/")[0] for f in files} <= {"spec.json", "eval", "model", "prompts"}
        for target in seen["prompts"]["targets"]:
            assert target["case"] in eval_cases
            assert set(target) == {"case", "label", "clicks", "box"}
            assert all(len(c) == 4 and c[3] in (0, 1) for c in target["clicks"])
    for job in executor.jobs:
        if ".round" in job.key:  # no host path of a label among the inputs of any round
            assert not any("labels" in str(p) for p in job.inputs.values())
    # predicting nothing scores Dice 0 and the NoC cap, with the reason on each case
    assert trial.status == "succeeded", trial.result.error if trial.result else None
    ev = trial.result.evaluations["eval"]  # type: ignore[union-attr]
    assert ev.summary["dice@1"] == 0.0 and ev.summary["noc@90"] == 10.0
    assert all(c.error and "wrote no" in c.error for c in ev.cases)
    assert ev.settings["rounds"] == 10 and len(ev.settings["click_curve"]) == 10


@pytest.mark.slow
def test_example_runs_end_to_end_tiny(tmp_path: Path) -> None:
    """examples/promptable.yaml's baseline, shrunk to a few iterations: a real training job,
    ten real round jobs, metrics recomputed by the host."""
    example = load_campaign_spec(EXAMPLE, check_dataset=False).baseline_config()
    assert isinstance(example, PromptableConfig)
    overrides = example.model_dump(exclude={"task", "iterations", "eval_clicks"})
    executor = Scheduler(LocalRuntime(tmp_path / "jobs"))
    trials, req = _trials(tmp_path, executor, iterations=20, **overrides)
    (trial,) = trials.run("cmp_p", [req])
    assert trial.status == "succeeded", trial.result.error if trial.result else None
    result = trial.result
    assert result is not None and result.objective is not None
    ev = result.evaluations["eval"]
    assert {f"dice@{k}" for k in (1, 3, 5, 10)} <= set(ev.summary)
    assert all(1 <= ev.summary[f"noc@{t}"] <= 10 for t in (80, 85, 90))  # type: ignore[operator]
    assert result.objective == pytest.approx(ev.summary["dice@5"])
    assert result.efficiency["parameters"] > 0 and result.efficiency["peak_memory_mb"] > 0
