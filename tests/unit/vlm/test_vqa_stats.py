"""Answer extraction rules and the paired statistics for comparing two VLMs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medloop.core.errors import SpecError
from medloop.evaluation import stats
from medloop.evaluation.vqa import ItemScore, Prediction, VqaReport, bootstrap_accuracy, score
from medloop.evaluation.vqa_extract import extract_choice
from medloop.evaluation.vqa_stats import compare_reports, paired_bootstrap
from medloop.experiments.vlm.tsv import read_tsv
from tests.unit.vlm.builders import colour_row, write_rows

OPTIONS = {"A": "liver", "B": "spleen", "C": "left kidney", "D": "kidney"}


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("B", ("B", "letter")),
        ("(C)", ("C", "letter")),
        ("**D**", ("D", "letter")),
        ("B. spleen", ("B", "letter")),
        ("C: left kidney", ("C", "letter")),
        ("The answer is C.", ("C", "letter")),
        ("Answer: (A)", ("A", "letter")),
        ("Option D", ("D", "letter")),
        ("A large organ, so I pick B", ("B", "letter")),
        ("The outlined organ is the spleen", ("B", "text")),
        ("It is the left kidney", ("C", "text")),
        ("kidney or liver, hard to say", (None, "none")),
        ("B or C", (None, "none")),
        ("", (None, "none")),
        ("E", (None, "none")),
    ],
)
def test_extraction(response: str, expected: tuple[str | None, str]) -> None:
    assert extract_choice(response, OPTIONS) == expected


def test_mcnemar_exact_known_values() -> None:
    # 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024
    assert stats.mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert stats.mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(5, 5) == 1.0
    assert stats.mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert stats.sign_test_p(np.array([1.0, 1, 1, 1, 1, 1, 0, 0])) == pytest.approx(2 / 64)


def test_campaign_test_option_mcnemar_on_items() -> None:
    control = {str(i): float(i % 2) for i in range(40)}
    treatment = {k: 1.0 for k in control}  # fixes every wrong item: 20 discordant pairs, all one way
    comp = stats.compare_paired(control, treatment, test="mcnemar", resamples=2000)
    assert comp.p_case == pytest.approx(stats.mcnemar_exact(0, 20))
    assert comp.estimate == pytest.approx(0.5)
    assert comp.ci_low > 0


def test_bootstrap_shortcuts_match_resampling_items() -> None:
    rng = np.random.default_rng(3)
    correct = rng.random(60) < 0.6
    low, high = bootstrap_accuracy(int(correct.sum()), correct.size, resamples=20_000, seed=1)
    idx = rng.integers(0, correct.size, size=(20_000, correct.size))
    direct = np.quantile(correct[idx].mean(axis=1), [0.025, 0.975])
    assert low == pytest.approx(direct[0], abs=0.02) and high == pytest.approx(direct[1], abs=0.02)
    other = correct ^ (rng.random(60) < 0.3)
    p_low, p_high = paired_bootstrap(correct, other, resamples=20_000, seed=1)
    e_low, e_high = stats.bootstrap_ci(other.astype(float) - correct.astype(float), resamples=20_000, seed=2)
    assert p_low == pytest.approx(e_low, abs=0.02) and p_high == pytest.approx(e_high, abs=0.02)


def _reports(tmp_path: Path, answers_a: list[str], answers_b: list[str]) -> tuple[VqaReport, VqaReport]:
    colours = ["red", "green", "blue", "yellow"]
    rows = [
        colour_row(str(i), colours[i % 4], colours[i % 4], category="warm" if i % 4 in (0, 3) else "cool")
        for i in range(len(answers_a))
    ]
    table = read_tsv(write_rows(tmp_path / "b.tsv", rows))
    a = score(
        table, {str(i): Prediction(index=str(i), response=r) for i, r in enumerate(answers_a)}, model="a"
    )
    b = score(
        table, {str(i): Prediction(index=str(i), response=r) for i, r in enumerate(answers_b)}, model="b"
    )
    return a, b


def test_compare_reports_counts_discordant_items(tmp_path: Path) -> None:
    letters = "ABCD"
    truth = [letters[i % 4] for i in range(40)]
    a_answers = [
        t if i < 20 else "A" if t != "A" else "B" for i, t in enumerate(truth)
    ]  # right on the first 20
    b_answers = list(truth)  # right everywhere
    a, b = _reports(tmp_path, a_answers, b_answers)
    comp = compare_reports(a, b, resamples=4000)
    assert comp.n_common == 40
    assert (comp.overall.only_a, comp.overall.only_b) == (0, 20)
    assert comp.overall.p_value == pytest.approx(stats.mcnemar_exact(0, 20))
    assert comp.overall.difference == pytest.approx(0.5)
    assert comp.overall.ci_low > 0 and comp.overall.verdict == "supported"
    keys = {g.key for g in comp.groups}
    assert {"task=warm", "task=cool", "modality=photo"} <= keys
    warm = next(g for g in comp.groups if g.key == "task=warm")
    assert warm.n == 20 and warm.p_adjusted >= warm.p_value
    same = compare_reports(a, a, resamples=1000)
    assert same.overall.p_value == 1.0 and same.overall.verdict == "inconclusive"


def test_compare_refuses_different_benchmarks(tmp_path: Path) -> None:
    a, b = _reports(tmp_path, ["A"] * 8, ["A"] * 8)
    moved = [s.model_copy(update={"answer": "D"}) if isinstance(s, ItemScore) else s for s in b.items]
    with pytest.raises(SpecError, match="disagree on the answers"):
        compare_reports(a, b.model_copy(update={"items": moved}))
