"""Host-side VQA scoring: a model's raw answers (the runner's JSON lines, or a VLMEvalKit
style table with a `prediction` column) against the answers of a VQA TSV.

Rows that cannot be scored (missing image, answer not among the options, fewer than two
options, broken TSV rows) are reported as malformed and left out of every accuracy, so two
models are always scored on the same items. An item the model failed on (no line, a
timeout, an error, no extractable choice) counts as wrong. Accuracy is reported overall and
per category (field=value over task, modality, department, granularity) beside the random
baseline (mean of 1/options) with percentile bootstrap CIs over items.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from medloop.core.errors import DatasetError
from medloop.core.records import CaseEvaluation, SplitEvaluation
from medloop.evaluation.vqa_extract import Method, extract_choice
from medloop.experiments.vlm.tsv import CATEGORY_FIELDS, VqaItem, VqaTable, item_problem

IMPLEMENTATION = "medloop.evaluation.vqa/1 (letter > option text > judge)"


class Judge(Protocol):
    """Reads a free-text answer and says which option it chose (None: none of them)."""

    name: str

    def choose(self, item: VqaItem, response: str) -> tuple[str | None, str]:
        """(letter or None, the judge's raw reply, kept for the log)."""
        ...


class Prediction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    index: str
    response: str | None = None
    error: str | None = None
    seconds: float | None = None


class ItemScore(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    index: str
    answer: str
    choice: str | None
    correct: bool
    method: Method
    n_options: int
    categories: dict[str, str]
    case: str | None = None
    site: str | None = None
    response: str | None = None
    error: str | None = None
    judge_reply: str | None = Field(default=None, description="Logged whenever the judge was asked")


class GroupScore(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str  # "overall" or "field=value"
    n: int
    correct: int
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    random_baseline: float | None


class Malformed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    row: int
    index: str | None
    problem: str


class VqaReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    benchmark: str
    model: str
    n_rows: int = Field(description="Rows in the TSV, malformed ones included")
    overall: GroupScore
    groups: list[GroupScore]
    items: list[ItemScore]
    malformed: list[Malformed]
    prediction_problems: list[str] = Field(default_factory=list)
    extraction: dict[str, int] = Field(description="method -> items")
    judge: str | None = None
    ci_level: float = 0.95
    resamples: int = 10_000
    implementation: str = IMPLEMENTATION

    def group(self, key: str) -> GroupScore:
        if key == "overall":
            return self.overall
        for g in self.groups:
            if g.key == key:
                return g
        raise KeyError(key)


# ---------------------------------------------------------------- predictions


def read_predictions(path: Path) -> tuple[dict[str, Prediction], list[str]]:
    """Answers by index from JSON lines (`index`, `response`/`prediction`, `error`) or from a
    TSV/CSV with `index` and `prediction` columns. Bad lines are reported, not fatal."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: predictions file not found")
    out: dict[str, Prediction] = {}
    problems: list[str] = []
    if path.suffix in (".tsv", ".csv"):
        csv.field_size_limit(2**31 - 1)
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ",")
            fields = {f.lower(): f for f in reader.fieldnames or []}
            if "index" not in fields or "prediction" not in fields:
                raise DatasetError(f"{path}: needs 'index' and 'prediction' columns")
            for row in reader:
                index = str(row[fields["index"]]).strip()
                out[index] = Prediction(index=index, response=row[fields["prediction"]])
        return out, problems
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or "index" not in data:
                raise ValueError("not an object with an index")
            response = data.get("response", data.get("prediction"))
            pred = Prediction(
                index=str(data["index"]),
                response=None if response is None else str(response),
                error=None if data.get("error") is None else str(data["error"]),
                seconds=data.get("seconds") if isinstance(data.get("seconds"), int | float) else None,
            )
        except (json.JSONDecodeError, ValueError) as exc:
            problems.append(f"{path.name}:{lineno}: {exc}")
            continue
        if pred.index in out:
            problems.append(f"{path.name}:{lineno}: index {pred.index} answered twice (first kept)")
            continue
        out[pred.index] = pred
    return out, problems


# ---------------------------------------------------------------- scoring


def bootstrap_accuracy(
    correct: int, n: int, *, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of an accuracy. Resampling n items with replacement makes the
    number correct Binomial(n, correct/n), so it is drawn directly (same distribution)."""
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = rng.binomial(n, correct / n, size=resamples) / n
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)


def _score_item(item: VqaItem, pred: Prediction | None, judge: Judge | None) -> ItemScore:
    choice: str | None = None
    judge_reply: str | None = None
    method: Method
    if pred is None:
        method = "missing"
    elif pred.error is not None or pred.response is None:
        method = "error"
    else:
        choice, method = extract_choice(pred.response, item.options)
        if choice is None and judge is not None and pred.response.strip():
            choice, judge_reply = judge.choose(item, pred.response)
            choice = choice if choice in item.options else None
            method = "judge" if choice is not None else "none"
    assert item.answer is not None  # checked by item_problem
    return ItemScore(
        index=item.index,
        answer=item.answer,
        choice=choice,
        correct=choice == item.answer,
        method=method,
        n_options=len(item.options),
        categories={k: v for k, v in item.categories.items() if v},
        case=item.extra.get("case") or None,
        site=item.extra.get("site") or None,
        response=pred.response if pred else None,
        error=(pred.error if pred else "no prediction for this item"),
        judge_reply=judge_reply,
    )


def group_keys(score: ItemScore) -> list[str]:
    return [f"{name}={score.categories[name]}" for name in CATEGORY_FIELDS if score.categories.get(name)]


def _group(key: str, scores: Sequence[ItemScore], *, resamples: int, level: float, seed: int) -> GroupScore:
    n = len(scores)
    correct = sum(s.correct for s in scores)
    low, high = bootstrap_accuracy(correct, n, resamples=resamples, level=level, seed=seed)
    return GroupScore(
        key=key,
        n=n,
        correct=correct,
        accuracy=correct / n if n else None,
        ci_low=low if n else None,
        ci_high=high if n else None,
        random_baseline=float(np.mean([1 / s.n_options for s in scores])) if n else None,
    )


def score(
    table: VqaTable,
    predictions: dict[str, Prediction],
    *,
    model: str = "model",
    judge: Judge | None = None,
    prediction_problems: Sequence[str] = (),
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> VqaReport:
    """Score answers against a TSV that has an answer column."""
    if not table.has_answers:
        raise DatasetError(f"{table.path}: no 'answer' column; scoring needs the answers")
    malformed = [Malformed(row=p.row, index=p.index, problem=p.problem) for p in table.problems]
    scores: list[ItemScore] = []
    for item in table.items:
        problem = item_problem(item, need_answer=True)
        if problem is not None:
            malformed.append(Malformed(row=item.row, index=item.index, problem=problem))
            continue
        scores.append(_score_item(item, predictions.get(item.index), judge))
    known = {item.index for item in table.items}
    extra = sorted(set(predictions) - known)
    problems = list(prediction_problems)
    if extra:
        problems.append(f"{len(extra)} prediction(s) for unknown indices: {', '.join(extra[:5])}")
    by_key: dict[str, list[ItemScore]] = defaultdict(list)
    for s in scores:
        for key in group_keys(s):
            by_key[key].append(s)
    return VqaReport(
        benchmark=table.path.name,
        model=model,
        n_rows=len(table.items) + len(table.problems),
        overall=_group("overall", scores, resamples=resamples, level=level, seed=seed),
        groups=[_group(k, by_key[k], resamples=resamples, level=level, seed=seed) for k in sorted(by_key)],
        items=scores,
        malformed=sorted(malformed, key=lambda m: m.row),
        prediction_problems=problems,
        extraction=dict(sorted(Counter(s.method for s in scores).items())),
        judge=judge.name if judge is not None else None,
        ci_level=level,
        resamples=resamples,
    )


def score_files(
    tsv: Path,
    predictions: Path,
    *,
    model: str | None = None,
    judge: Judge | None = None,
    resamples: int = 10_000,
    seed: int = 0,
) -> VqaReport:
    from medloop.experiments.vlm.tsv import read_tsv

    preds, problems = read_predictions(predictions)
    return score(
        read_tsv(tsv),
        preds,
        model=model or predictions.stem,
        judge=judge,
        prediction_problems=problems,
        resamples=resamples,
        seed=seed,
    )


# ---------------------------------------------------------------- into trial records


def metric_name(key: str) -> str:
    """The objective metric of a report group: `accuracy` or `accuracy:field=value`."""
    return "accuracy" if key == "overall" else f"accuracy:{key}"


def to_split_evaluation(report: VqaReport, split: str, *, report_path: Path | None = None) -> SplitEvaluation:
    """A report as the host's trial record: each item is a "case" whose metrics are its
    correctness (0/1) under `accuracy` and under every category metric it belongs to, so the
    campaign's paired tests run over items, overall or within a category."""
    cases = []
    for s in report.items:
        value = 1.0 if s.correct else 0.0
        metrics: dict[str, dict[str, float | None]] = {"accuracy": {"item": value}}
        metrics.update({metric_name(k): {"item": value} for k in group_keys(s)})
        error = None if s.method not in ("missing", "error") else s.error
        cases.append(CaseEvaluation(case=s.index, site=s.site, metrics=metrics, error=error))
    groups = [report.overall, *report.groups]
    by_site: dict[str, dict[str, float | None]] = {}
    for site in sorted({s.site for s in report.items if s.site}):
        members = [s for s in report.items if s.site == site]
        by_site[site] = {"accuracy": sum(s.correct for s in members) / len(members)}
    settings: dict[str, Any] = {
        "random_baseline": {metric_name(g.key): g.random_baseline for g in groups},
        "ci": {metric_name(g.key): [g.ci_low, g.ci_high] for g in groups},
        "n": {metric_name(g.key): g.n for g in groups},
        "ci_level": report.ci_level,
        "extraction": report.extraction,
        "judge": report.judge,
        "judged_items": [s.index for s in report.items if s.judge_reply is not None],
        "malformed": [m.model_dump() for m in report.malformed],
        "prediction_problems": report.prediction_problems,
    }
    if report_path is not None:
        settings["report"] = str(report_path)
    return SplitEvaluation(
        split=split,
        cases=cases,
        summary={metric_name(g.key): g.accuracy for g in groups},
        implementation=IMPLEMENTATION,
        empty_rule="not_applicable",
        by_site=by_site,
        settings=settings,
    )


def evaluate_split(
    table: VqaTable, predictions: Path, *, split: str, model: str, report_path: Path | None = None
) -> SplitEvaluation:
    """Score a job's predictions file for one split; the full report (every item, how its
    answer was extracted) is written to `report_path` when given. DatasetError when the
    predictions file is missing."""
    preds, problems = read_predictions(predictions)
    report = score(table, preds, model=model, prediction_problems=problems)
    if report_path is not None:
        import os
        import tempfile

        report_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=report_path.parent, prefix=f".{report_path.name}.")
        with os.fdopen(fd, "w") as fh:
            fh.write(report.model_dump_json(indent=1))
        Path(tmp).replace(report_path)
    return to_split_evaluation(report, split, report_path=report_path)
