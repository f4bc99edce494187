"""Dataset-to-VQA conversion: deterministic, split by case, answers computed from labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medloop.core.errors import DatasetError
from medloop.experiments.dataset import synth_phantom
from medloop.experiments.dataset.imageio import read_volume, save_nifti
from medloop.experiments.vlm.convert import convert_dataset
from medloop.experiments.vlm.manifest import (
    build_vqa_manifest,
    case_of,
    held_out_items,
    stage_vqa_inputs,
    vqa_fingerprint,
)
from medloop.experiments.vlm.questions import TASKS
from medloop.experiments.vlm.render import display_slice, reorient
from medloop.experiments.vlm.tsv import CATEGORY_FIELDS, read_tsv


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_phantom(
        tmp_path_factory.mktemp("vqa") / "Dataset950_Phantom", cases=10, seed=5, test_cases=4
    )


@pytest.fixture(scope="module")
def converted(phantom: Path) -> Path:
    return convert_dataset(phantom, phantom.parent / "vqa", seed=3)


def test_same_seed_same_bytes_other_seed_differs(phantom: Path, converted: Path, tmp_path: Path) -> None:
    again = convert_dataset(phantom, tmp_path / "again", seed=3)
    other = convert_dataset(phantom, tmp_path / "other", seed=4)
    for name in ("train.tsv", "test.tsv", "captions.tsv"):
        assert (again / name).read_bytes() == (converted / name).read_bytes()
    assert (other / "train.tsv").read_bytes() != (converted / "train.tsv").read_bytes()
    # an existing identical conversion is reused; another recipe at the same place is refused
    assert convert_dataset(phantom, converted, seed=3) == converted
    with pytest.raises(DatasetError, match="is not this conversion"):
        convert_dataset(phantom, converted, seed=9)


def test_items_are_complete_and_split_by_case(converted: Path) -> None:
    meta = json.loads((converted / "vqa.json").read_text())
    train, test = read_tsv(converted / "train.tsv"), read_tsv(converted / "test.tsv")
    assert not train.problems and not test.problems
    assert {case_of(i) for i in train.items} == set(meta["splits"]["train"])
    assert {case_of(i) for i in test.items} == set(meta["splits"]["test"])
    assert not set(meta["splits"]["train"]) & set(meta["splits"]["test"])
    assert len(meta["splits"]["test"]) == 4  # the labelled imagesTs cases
    indices = [i.index for i in train.items + test.items]
    assert len(set(indices)) == len(indices)
    for item in train.items + test.items:
        assert item.answer in item.options
        assert len(set(item.options.values())) == len(item.options) >= 2
        assert all(item.category(f) for f in CATEGORY_FIELDS)
        assert item.category("task") in TASKS and item.category("modality") == "CT"
    tasks = {i.category("task") for i in train.items}
    assert tasks == set(TASKS)
    assert meta["counts"]["captions"] == 14
    captions = (converted / "captions.tsv").read_text().splitlines()
    assert len(captions) == 15 and "Axial CT image showing the" in captions[1]


def test_answers_follow_the_label_maps(phantom: Path, converted: Path) -> None:
    items = read_tsv(converted / "train.tsv").items
    names = {"liver": 1, "spleen": 2, "kidney": 3}
    checked = 0
    for item in items:
        if item.category("task") != "size_comparison":
            continue
        label = read_volume(phantom / "labelsTr" / f"{case_of(item)}.nii.gz")
        lab = display_slice(reorient(label.array, label.affine), int(item.extra["slice"]))
        a, b = item.options["A"], item.options["B"]
        larger = a if np.sum(lab == names[a]) > np.sum(lab == names[b]) else b
        assert item.options[item.answer or ""] == larger
        checked += 1
    assert checked >= 5


def test_campaign_split_staging_hides_held_out_answers(converted: Path, tmp_path: Path) -> None:
    manifest = build_vqa_manifest(converted, eval_fraction=0.3, split_seed=1)
    assert manifest.eval_cases and not set(manifest.eval_cases) & set(manifest.train_cases)
    staged = stage_vqa_inputs(converted, manifest, tmp_path / "staging")
    train = read_tsv(staged["train"] / "train.tsv")
    evaluation = read_tsv(staged["eval"] / "eval.tsv")
    test = read_tsv(staged["test"] / "test.tsv")
    assert train.has_answers and not evaluation.has_answers and not test.has_answers
    assert {case_of(i) for i in train.items} == set(manifest.train_cases)
    assert {case_of(i) for i in evaluation.items} == set(manifest.eval_cases)
    assert len(evaluation.items) == len(held_out_items(converted, manifest, "eval").items)
    captions = (staged["train"] / "captions.tsv").read_text()
    assert all(case not in captions for case in manifest.eval_cases + manifest.test_cases)
    fp = vqa_fingerprint(converted, manifest)
    assert fp["n_eval_items"] == len(evaluation.items) and 0 < fp["random_baseline"] < 1
    # the same split is staged once and reused
    assert stage_vqa_inputs(converted, manifest, tmp_path / "staging") == staged


def test_without_test_labels_cases_are_split_by_seed(phantom: Path, tmp_path: Path) -> None:
    copy = tmp_path / "nolabels"
    shutil.copytree(phantom, copy)
    shutil.rmtree(copy / "labelsTs")
    out = convert_dataset(copy, tmp_path / "vqa", seed=1, test_fraction=0.3, tasks=("modality_recognition",))
    meta = json.loads((out / "vqa.json").read_text())
    # stratified by site: 2 sites x 5 cases, round(0.3 * 5) = 2 test cases each
    assert len(meta["splits"]["test"]) == 4 and len(meta["splits"]["train"]) == 6
    assert set(meta["counts"]["by_task"]) == {"modality_recognition"}


def test_3d_volumes_give_axial_slices_with_foreground(tmp_path: Path) -> None:
    root = tmp_path / "Dataset951_Cube"
    for i in range(3):
        image = np.full((20, 20, 8), -100, dtype=np.int16)
        label = np.zeros((20, 20, 8), dtype=np.uint8)
        label[3:9, 4:12, 2:6] = 1  # off the midline
        image[label == 1] = 60
        save_nifti(image, root / "imagesTr" / f"cube_{i}_0000.nii.gz", spacing=(1.0, 1.0, 2.0))
        save_nifti(label, root / "labelsTr" / f"cube_{i}.nii.gz", spacing=(1.0, 1.0, 2.0))
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "T2"},
                "labels": {"background": 0, "tumor": 1},
                "numTraining": 3,
                "file_ending": ".nii.gz",
            }
        )
    )
    out = convert_dataset(root, tmp_path / "vqa", seed=0, slices_per_case=2, test_fraction=0.34)
    items = read_tsv(out / "train.tsv").items + read_tsv(out / "test.tsv").items
    assert {i.extra["slice"] for i in items} == {"2", "5"}
    assert {i.category("modality") for i in items} == {"MRI"}
    assert {i.category("department") for i in items if i.category("task") == "organ_recognition"} == {
        "neurology"
    }
    side = {i.options[i.answer or ""] for i in items if i.category("task") == "laterality"}
    assert side == {"left"}  # low x voxels lie toward the patient's left (RAS+: +x is right)


def test_bad_arguments_are_clear(phantom: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown VQA task"):
        convert_dataset(phantom, tmp_path / "x", tasks=("colour",))
    with pytest.raises(DatasetError, match="n_options"):
        convert_dataset(phantom, tmp_path / "x", n_options=1)
    with pytest.raises(DatasetError, match="dataset folder does not exist"):
        convert_dataset(tmp_path / "none", tmp_path / "x")


def test_answer_letters_are_balanced_per_split(converted: Path) -> None:
    """Each letter answers about 1/n of the items with n options, in every split (a model
    that always says "B" must not beat chance)."""
    from collections import Counter

    for split in ("train", "test"):
        items = read_tsv(converted / f"{split}.tsv").items
        for n in sorted({len(i.options) for i in items}):
            group = [i for i in items if len(i.options) == n]
            counts = Counter(i.answer for i in group)
            assert set(counts) <= set("ABCDEFGH"[:n])
            if len(group) >= n:
                assert max(counts.values()) - min(counts.get(c, 0) for c in "ABCDEFGH"[:n]) <= 1, (
                    split,
                    n,
                    counts,
                )
            for i in group:  # the answer still names the right text
                assert i.answer in i.options
