"""Host-side scoring of a hand-made VLMEvalKit-style TSV with planted malformed rows."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from medloop.core.errors import DatasetError
from medloop.engine.base import case_objective
from medloop.engine.vqa_api import LLMJudge
from medloop.evaluation.vqa import read_predictions, score, score_files, to_split_evaluation
from medloop.experiments.vlm.tsv import read_tsv
from medloop.llm.scripted import ScriptedLLM
from tests.unit.vlm.builders import colour_row, write_rows


@pytest.fixture
def bench(tmp_path: Path) -> tuple[Path, Path]:
    rows = [
        colour_row("1", "red", "red"),  # row 2
        colour_row("2", "green", "green"),  # row 3
        colour_row("3", "blue", "blue", category="shade"),  # row 4
        colour_row("4", "yellow", "yellow", category="shade"),  # row 5
        colour_row("5", "red", "red"),  # row 6: image removed below
        colour_row("6", "red", "E", options=("red", "green", "blue")),  # row 7: answer not an option
        colour_row("7", "green", "green"),  # row 8: never answered
        colour_row("8", "blue", "blue", category="shade"),  # row 9: timed out
        ["9", "x", "broken row", "a", "b"],  # row 10: too few fields
        colour_row("10", "red", "red"),  # row 11: image given as the index of row 1
        colour_row("3", "red", "red"),  # row 12: repeats index 3
        colour_row("12", "red", "red"),  # row 13: image is not base64
    ]
    rows[4][1] = ""
    rows[9][1] = "1"
    rows[11][1] = "not-base64!!"
    tsv = write_rows(tmp_path / "bench.tsv", rows)
    preds = [
        {"index": "1", "response": "A"},
        {"index": "2", "response": "The answer is (C)."},
        {"index": "3", "response": "It is blue."},
        {"index": "4", "response": "I cannot tell for sure"},
        {"index": "8", "response": None, "error": "timeout after 5s"},
        {"index": "10", "response": "A."},
        {"index": "99", "response": "B"},
    ]
    lines = [json.dumps(p) for p in preds] + ["{not json"]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("\n".join(lines) + "\n")
    return tsv, answers


def test_scores_exactly_and_reports_malformed_rows(bench: tuple[Path, Path]) -> None:
    tsv, answers = bench
    report = score_files(tsv, answers, model="m", resamples=2000)
    assert report.n_rows == 12
    assert [(m.row, m.index, m.problem) for m in report.malformed] == [
        (6, "5", "missing image"),
        (7, "6", "answer 'E' is not among the options A, B, C"),
        (10, "9", "has 5 fields, the header has 11"),
        (12, "3", "index 3 repeats an earlier row"),
        (13, "12", "image is not valid base64"),
    ]
    by_index = {s.index: s for s in report.items}
    assert sorted(by_index, key=int) == ["1", "2", "3", "4", "7", "8", "10"]
    assert {i: (s.choice, s.method, s.correct) for i, s in by_index.items()} == {
        "1": ("A", "letter", True),
        "2": ("C", "letter", False),
        "3": ("C", "text", True),
        "4": (None, "none", False),
        "7": (None, "missing", False),
        "8": (None, "error", False),
        "10": ("A", "letter", True),
    }
    assert report.overall.n == 7 and report.overall.correct == 3
    assert report.overall.accuracy == pytest.approx(3 / 7)
    assert report.overall.random_baseline == pytest.approx(0.25)
    assert report.overall.ci_low is not None and report.overall.ci_high is not None
    assert report.overall.ci_low <= 3 / 7 <= report.overall.ci_high
    groups = {g.key: (g.n, g.correct) for g in report.groups}
    # the `category` column is the task field (VLMEvalKit's name for it)
    assert groups == {
        "task=colour": (4, 2),
        "task=shade": (3, 1),
        "modality=photo": (7, 3),
        "department=optics": (7, 3),
    }
    assert report.extraction == {"error": 1, "letter": 3, "missing": 1, "none": 1, "text": 1}
    assert report.judge is None
    assert any("unknown indices: 99" in p for p in report.prediction_problems)
    assert any("answers.jsonl:8" in p for p in report.prediction_problems)


def test_judge_reads_what_no_rule_can_and_is_logged(bench: tuple[Path, Path]) -> None:
    tsv, answers = bench
    llm = ScriptedLLM(["D"])
    preds, _problems = read_predictions(answers)
    report = score(read_tsv(tsv), preds, judge=LLMJudge(llm, name="scripted-judge"), resamples=500)
    judged = [s for s in report.items if s.judge_reply is not None]
    assert [(s.index, s.choice, s.method, s.judge_reply) for s in judged] == [("4", "D", "judge", "D")]
    assert report.overall.correct == 4 and report.judge == "scripted-judge"
    # the judge saw the question, the options and the free-text answer (no image)
    prompt = llm.calls[0][0].content
    assert isinstance(prompt, str)
    assert "I cannot tell for sure" in prompt and "D. yellow" in prompt
    evaluation = to_split_evaluation(report, "eval")
    assert evaluation.settings["judged_items"] == ["4"]


def test_split_evaluation_items_are_cases_per_category(bench: tuple[Path, Path]) -> None:
    tsv, answers = bench
    evaluation = to_split_evaluation(score_files(tsv, answers, resamples=500), "eval")
    overall = case_objective(evaluation, "accuracy")
    assert overall == {"1": 1.0, "2": 0.0, "3": 1.0, "4": 0.0, "7": 0.0, "8": 0.0, "10": 1.0}
    assert case_objective(evaluation, "accuracy:task=shade") == {"3": 1.0, "4": 0.0, "8": 0.0}
    assert evaluation.summary["accuracy"] == pytest.approx(3 / 7)
    assert evaluation.summary["accuracy:task=colour"] == pytest.approx(0.5)
    assert evaluation.settings["random_baseline"]["accuracy"] == pytest.approx(0.25)
    assert len(evaluation.settings["malformed"]) == 5
    missing = next(c for c in evaluation.cases if c.case == "7")
    assert missing.error == "no prediction for this item"


def test_vlmevalkit_prediction_table_is_read(tmp_path: Path, bench: tuple[Path, Path]) -> None:
    tsv, _ = bench
    table = tmp_path / "preds.tsv"
    table.write_text("index\tprediction\n1\tB\n2\tB\n")
    report = score_files(tsv, table, resamples=200)
    assert {s.index: s.correct for s in report.items if s.method == "letter"} == {"1": False, "2": True}


def test_unusable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no 'image' column"):
        read_tsv(write_rows(tmp_path / "x.tsv", [["1", "q"]], header=["index", "question"]))
    with pytest.raises(DatasetError, match="VQA file not found"):
        read_tsv(tmp_path / "missing.tsv")
    no_answers = write_rows(
        tmp_path / "noans.tsv", [["1", "", "q", "a", "b"]], header=["index", "image", "question", "A", "B"]
    )
    (tmp_path / "p.jsonl").write_text("")
    with pytest.raises(DatasetError, match="no 'answer' column"):
        score_files(no_answers, tmp_path / "p.jsonl")


def test_cli_score_prints_report_and_exits_zero(bench: tuple[Path, Path], tmp_path: Path) -> None:
    tsv, answers = bench
    out = tmp_path / "report.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "medloop",
            "vqa",
            "score",
            str(tsv),
            str(answers),
            "--out",
            str(out),
            "--json",
            "--resamples",
            "500",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["overall"]["correct"] == 3 and len(summary["malformed"]) == 5
    assert "items" not in summary
    saved = json.loads(out.read_text())
    assert len(saved["items"]) == 7
    human = subprocess.run(
        [sys.executable, "-m", "medloop", "vqa", "score", str(tsv), str(answers), "--resamples", "500"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert human.returncode == 0
    assert "malformed row 6 (index 5): missing image" in human.stdout
    assert "task=shade" in human.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "medloop", "vqa", "score", str(tsv), str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "predictions file not found" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert math.isfinite(summary["overall"]["ci_low"])
