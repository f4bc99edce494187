"""Knowledge tools (proposals only, never trust), dataset tools and host-side evaluation
on a real phantom dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medloop.core.errors import PermissionDenied, TrustError
from medloop.experiments.dataset import read_dataset, read_volume, write_like
from medloop.tools.context import Caller, ToolContext
from medloop.tools.registry import Registry, ToolInputError
from tests.unit.tools.helpers import store_of

STATEMENT = "Dice+CE loss raises mean foreground Dice over plain Dice loss on the phantom."


def propose(registry: Registry, ctx: ToolContext, phantom: Path, **extra: object) -> str:
    out = registry.call(
        "propose_claim",
        ctx,
        {
            "statement": STATEMENT,
            "changes": [{"factor": "loss", "from_value": "dice", "to_value": "dicece"}],
            "dataset_path": str(phantom),
            "sources": ["doi:10.1038/s41592-020-01008-z"],
            **extra,
        },
    )
    return out.claim_id  # type: ignore[attr-defined, no-any-return]


def test_a_proposed_claim_is_searchable_with_its_provenance_and_stays_proposed(
    registry: Registry, ctx: ToolContext, phantom: Path
) -> None:
    claim_id = propose(registry, ctx, phantom)
    again = registry.call(
        "propose_claim",
        ctx,
        {
            "statement": STATEMENT,
            "changes": [{"factor": "loss", "from_value": "dice", "to_value": "dicece"}],
            "dataset_path": str(phantom),
        },
    )
    assert again.claim_id == claim_id and again.created is False  # type: ignore[attr-defined]
    hits = registry.call("search_knowledge", ctx, {"query": "Dice CE loss on a phantom", "factors": ["loss"]})
    found = {h.claim_id: h for h in hits.results}  # type: ignore[attr-defined]
    assert claim_id in found
    hit = found[claim_id]
    assert hit.tier == "proposed" and hit.trust == "suggestion" and hit.dataset == "Dataset901_Phantom"
    assert "quoted data" in hits.note  # type: ignore[attr-defined]
    full = registry.call("get_claim", ctx, {"claim_id": claim_id})
    assert full.claim.author == "alice" and full.claim.context.dataset_checksum  # type: ignore[attr-defined]
    assert full.claim.context.fingerprint["n_cases"] == 8.0  # type: ignore[attr-defined]
    assert [(e.kind, e.ref_id) for e in full.evidence] == [("source", "doi:10.1038/s41592-020-01008-z")]  # type: ignore[attr-defined]
    assert [h.action for h in full.history] == ["claim.add"] and full.history[0].actor == "alice"  # type: ignore[attr-defined]
    # a filter that does not match leaves it out
    other = registry.call("search_knowledge", ctx, {"query": "learning rate", "factors": ["lr"]})
    assert claim_id not in {h.claim_id for h in other.results}  # type: ignore[attr-defined]


def test_no_tool_can_raise_trust(registry: Registry, ctx: ToolContext, phantom: Path) -> None:
    with pytest.raises(ToolInputError, match="tier: unknown field"):
        propose(registry, ctx, phantom, tier="validated")
    admin = ctx.as_caller(Caller("root", "admin"))
    claim_id = propose(registry, admin, phantom)
    assert store_of(ctx).claims.get(claim_id).tier == "proposed"
    writers = [s.name for s in registry if not s.read_only]
    assert set(writers) == {"run_trial", "propose_claim", "campaign_start"}
    # and the knowledge base itself refuses a claim entering above proposed
    claim = store_of(ctx).claims.get(claim_id).model_copy(update={"id": "clm_forged", "tier": "validated"})
    with pytest.raises(TrustError):
        ctx.knowledge.add_claim(claim, [], actor="root")


def test_proposals_are_checked_against_the_config_and_the_store(
    registry: Registry, ctx: ToolContext, phantom: Path
) -> None:
    with pytest.raises(ToolInputError) as err:
        registry.call(
            "propose_claim",
            ctx,
            {
                "statement": STATEMENT,
                "changes": [
                    {"factor": "loss_fn", "to_value": "dicece"},
                    {"factor": "loss", "from_value": "dice", "to_value": "focal"},
                ],
                "dataset_path": str(phantom),
            },
        )
    fields = {p.field: p.problem for p in err.value.problems}
    assert (
        "not a segmentation config field; allowed:" in fields["changes.0.factor"]
        and "loss" in fields["changes.0.factor"]
    )
    assert "'dice', 'dicece' or 'dicefocal'" in fields["changes.1.to_value"]
    with pytest.raises(Exception, match="no trial trl_missing"):
        propose(registry, ctx, phantom, evidence_trials=["trl_missing"])
    viewer = ctx.as_caller(Caller("v", "viewer"))
    with pytest.raises(PermissionDenied):
        propose(registry, viewer, phantom)


def test_dataset_check_and_fingerprint_on_a_phantom(
    registry: Registry, ctx: ToolContext, phantom: Path, tmp_path: Path
) -> None:
    out = registry.call("dataset_check", ctx, {"path": str(phantom)})
    assert out.ok and out.n_training == 8 and out.n_test == 2  # type: ignore[attr-defined]
    assert out.labels["liver"] == 1 and out.sites == ["site_a", "site_b"]  # type: ignore[attr-defined]
    fp = registry.call("dataset_fingerprint", ctx, {"path": str(phantom)})
    assert fp.fingerprint["n_cases"] == 8.0 and fp.fingerprint["is_3d"] == 0.0  # type: ignore[attr-defined]
    assert fp.checksum == out.checksum  # type: ignore[attr-defined]
    broken = tmp_path / "broken"
    shutil.copytree(phantom, broken, ignore=shutil.ignore_patterns("medloop_*"))
    labels = sorted((broken / "labelsTr").iterdir())
    labels[0].unlink()
    labels[1].write_bytes(b"not a nifti file")
    bad = registry.call("dataset_check", ctx, {"path": str(broken)})
    assert not bad.ok  # type: ignore[attr-defined]
    errors = {(p.case, p.code) for p in bad.problems if p.severity == "error"}  # type: ignore[attr-defined]
    first, second = labels[0].name.removesuffix(".nii.gz"), labels[1].name.removesuffix(".nii.gz")
    # every problem is reported, each with its case
    assert {c for c, _ in errors} >= {first, second}, bad.problems  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="does not exist"):
        registry.call("dataset_check", ctx, {"path": str(tmp_path / "nowhere")})


def test_evaluate_predictions_scores_on_the_host(
    registry: Registry, ctx: ToolContext, phantom: Path, tmp_path: Path
) -> None:
    ds = read_dataset(phantom)
    preds = tmp_path / "preds"
    preds.mkdir()
    perfect, empty = ds.training[0], ds.training[1]
    assert perfect.label is not None and empty.label is not None
    shutil.copy(perfect.label, preds / perfect.label.name)
    ref = read_volume(empty.label)
    write_like(np.zeros(ref.array.shape, dtype=np.uint8), ref, preds / empty.label.name)
    out = registry.call(
        "evaluate_predictions",
        ctx,
        {
            "predictions_dir": str(preds),
            "dataset_path": str(phantom),
            "metrics": ["dice"],
            "include_cases": True,
        },
    )
    assert out.n_cases == 2  # type: ignore[attr-defined]
    assert out.per_case[perfect.id]["dice"] == {"liver": 1.0, "spleen": 1.0, "kidney": 1.0}  # type: ignore[attr-defined]
    assert set(out.per_case[empty.id]["dice"].values()) == {0.0}  # type: ignore[attr-defined]
    assert out.summary["dice"] == pytest.approx(0.5)  # type: ignore[attr-defined]
    assert out.implementation.startswith("dice")  # type: ignore[attr-defined]
    # a case with no prediction, when asked for explicitly, scores worst and says why
    missing = ds.training[2].id
    out2 = registry.call(
        "evaluate_predictions",
        ctx,
        {"predictions_dir": str(preds), "dataset_path": str(phantom), "cases": [perfect.id, missing]},
    )
    assert missing in out2.case_errors  # type: ignore[attr-defined]
    with pytest.raises(PermissionDenied, match="test split needs role reviewer or admin"):
        registry.call(
            "evaluate_predictions",
            ctx,
            {"predictions_dir": str(preds), "dataset_path": str(phantom), "split": "test"},
        )
    with pytest.raises(ToolInputError, match="exactly one of"):
        registry.call("evaluate_predictions", ctx, {"dataset_path": str(phantom)})


def test_plan_baseline_gives_a_config_run_trial_accepts(
    registry: Registry, ctx: ToolContext, phantom: Path
) -> None:
    plan = registry.call("plan_baseline", ctx, {"path": str(phantom), "memory_mb": 2000})
    cfg = plan.baseline_config  # type: ignore[attr-defined]
    assert plan.configuration == "2d" and cfg.spatial_dims == 2  # type: ignore[attr-defined]
    assert cfg.model == "dynunet" and cfg.optimizer == "sgd" and cfg.loss == "dicece"
    patch = [int(v) for v in cfg.patch_size.split("x")]
    assert all(p % 8 == 0 or p <= 64 for p in patch) and max(patch) <= 64  # the phantom is 64x64
    assert plan.configurations["2d"]["estimated_memory_mb"] <= 2000  # type: ignore[attr-defined]
    assert plan.normalization == {"0": "ct"}  # type: ignore[attr-defined]
    registry.get("run_trial").parse({"dataset_path": str(phantom), "trial_config": cfg.model_dump()})
