"""`medloop vqa`: convert datasets to VQA items, run VLM benchmarks, score and compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medloop.cli.common import console, print_json, settings

if TYPE_CHECKING:
    from medloop.evaluation.vqa import Judge, VqaReport
    from medloop.evaluation.vqa_stats import VqaComparison
    from medloop.llm.base import LLMClient

app = typer.Typer(help="Vision-language benchmarks: convert, bench, score, compare.", no_args_is_help=True)

ApiBase = Annotated[
    str | None, typer.Option(help="API base URL for litellm models (else MEDLOOP_LLM_API_BASE)")
]
ApiKey = Annotated[str | None, typer.Option(help="API key for litellm models (else MEDLOOP_LLM_API_KEY)")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]


@app.command()
def convert(
    dataset: Annotated[Path, typer.Argument(help="nnU-Net v2 raw dataset folder")],
    out: Annotated[Path, typer.Argument(help="VQA folder to create")],
    seed: Annotated[int, typer.Option(help="Seed for questions, distractors and the case split")] = 0,
    test_fraction: Annotated[
        float, typer.Option(help="Share of cases for test when imagesTs has no labels")
    ] = 0.2,
    slices: Annotated[int, typer.Option(min=1, help="Axial slices per 3D case")] = 3,
    options: Annotated[int, typer.Option(min=2, max=10, help="Options per recognition question")] = 4,
    tasks: Annotated[str, typer.Option(help="Comma list of question tasks, or all")] = "all",
    image_size: Annotated[
        int | None, typer.Option(min=8, help="Resize images to this square size (px)")
    ] = None,
    json_out: JsonOut = False,
) -> None:
    """Make multiple-choice VQA items and caption pairs from a labelled dataset (GMAI-VL recipe)."""
    from medloop.experiments.vlm.convert import convert_dataset
    from medloop.experiments.vlm.questions import TASKS

    chosen = TASKS if tasks == "all" else tuple(t.strip() for t in tasks.split(",") if t.strip())
    path = convert_dataset(
        dataset,
        out,
        seed=seed,
        test_fraction=test_fraction,
        slices_per_case=slices,
        n_options=options,
        tasks=chosen,
        image_size=image_size,
    )
    meta = json.loads((path / "vqa.json").read_text())
    if json_out:
        print_json({"path": str(path), **meta["counts"], "splits": meta["splits"]})
        return
    counts = meta["counts"]
    console.print(
        f"[bold]{path}[/]: {counts['train']} train + {counts['test']} test items from "
        f"{len(meta['splits']['train'])} + {len(meta['splits']['test'])} cases, {counts['captions']} captions"
    )
    console.print("by task: " + ", ".join(f"{k} {v}" for k, v in counts["by_task"].items()))


def _judge(name: str | None, api_base: str | None, api_key: str | None) -> Judge | None:
    if not name:
        return None
    from medloop.engine.vqa_api import LLMJudge

    return LLMJudge(_llm(name, api_base, api_key), name=name)


def _llm(model: str, api_base: str | None, api_key: str | None) -> LLMClient:
    from medloop import bootstrap

    conf = settings()
    updates = {k: v for k, v in (("llm_api_base", api_base), ("llm_api_key", api_key)) if v}
    return bootstrap.llm(conf.model_copy(update=updates), model)


@app.command()
def score(
    benchmark: Annotated[Path, typer.Argument(help="VQA TSV with answers")],
    predictions: Annotated[
        Path, typer.Argument(help="Answers: JSON lines (index, response) or TSV/CSV (index, prediction)")
    ],
    model: Annotated[str | None, typer.Option(help="Model name for the report")] = None,
    judge: Annotated[str | None, typer.Option(help="litellm model that reads answers no rule can")] = None,
    api_base: ApiBase = None,
    api_key: ApiKey = None,
    out: Annotated[Path | None, typer.Option(help="Write the full report (every item) as JSON here")] = None,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples")] = 10_000,
    json_out: JsonOut = False,
) -> None:
    """Score a model's answers: accuracy overall and per category, random baseline, CIs."""
    from medloop.engine.vqa_bench import save_json
    from medloop.evaluation.vqa import score_files

    report = score_files(
        benchmark, predictions, model=model, judge=_judge(judge, api_base, api_key), resamples=resamples
    )
    if out is not None:
        save_json(out, report.model_dump(mode="json"))
    if json_out:
        print_json(report.model_dump(mode="json", exclude={"items"}))
        return
    _print_report(report)


@app.command()
def compare(
    report_a: Annotated[Path, typer.Argument(help="Report JSON of the reference model (from score --out)")],
    report_b: Annotated[Path, typer.Argument(help="Report JSON of the model compared with it")],
    alpha: Annotated[float, typer.Option(help="Significance level")] = 0.05,
    json_out: JsonOut = False,
) -> None:
    """Paired comparison on the same items: McNemar exact test, paired bootstrap CI, per category."""
    from medloop.evaluation.vqa_stats import compare_reports

    comparison = compare_reports(_load_report(report_a), _load_report(report_b), alpha=alpha)
    if json_out:
        print_json(comparison.model_dump(mode="json"))
        return
    _print_comparison(comparison)


@app.command()
def bench(
    benchmark: Annotated[
        Path, typer.Argument(help="VQA TSV with answers (VLMEvalKit / GMAI-MMBench layout)")
    ],
    model: Annotated[
        list[str],
        typer.Option(
            help="A litellm model (runs on the host), or a local HF model folder / hf:PATH / tiny "
            "(runs in the sandbox); give two to compare them"
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder for answers, reports and the comparison")],
    judge: Annotated[str | None, typer.Option(help="litellm model that reads answers no rule can")] = None,
    api_base: ApiBase = None,
    api_key: ApiKey = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Items per batch (concurrent requests for APIs)")
    ] = 8,
    timeout: Annotated[float, typer.Option(help="Seconds one item may take")] = 60.0,
    image_size: Annotated[int, typer.Option(min=8, help="Image size for local models (px)")] = 336,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Answer length for local models")] = 16,
    json_out: JsonOut = False,
) -> None:
    """Answer a benchmark with one or two models, score each on the host and compare them."""
    from medloop.core.errors import SpecError
    from medloop.engine.vqa_bench import save_json
    from medloop.evaluation.vqa import score_files
    from medloop.evaluation.vqa_stats import compare_reports
    from medloop.experiments.vlm.tsv import read_tsv

    if not 1 <= len(model) <= 2:
        raise SpecError(
            "--model: give one model, or two to compare", hint="e.g. --model openai/gpt-4o --model ./llava"
        )
    read_tsv(benchmark)  # fail early on an unusable file
    the_judge = _judge(judge, api_base, api_key)
    reports = []
    for name in model:
        folder = out / _slug(name)
        predictions = _answer(
            benchmark, name, folder, api_base, api_key, batch_size, timeout, image_size, max_new_tokens
        )
        report = score_files(benchmark, predictions, model=name, judge=the_judge)
        save_json(folder / "report.json", report.model_dump(mode="json"))
        reports.append(report)
    comparison = compare_reports(reports[0], reports[1]) if len(reports) == 2 else None
    if comparison is not None:
        save_json(out / "comparison.json", comparison.model_dump(mode="json"))
    if json_out:
        print_json(
            {
                "reports": [r.model_dump(mode="json", exclude={"items"}) for r in reports],
                "comparison": comparison.model_dump(mode="json") if comparison else None,
            }
        )
        return
    for report in reports:
        _print_report(report)
    if comparison is not None:
        _print_comparison(comparison)


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.removeprefix("hf:")).strip("._") or "model"


def _answer(
    benchmark: Path,
    name: str,
    folder: Path,
    api_base: str | None,
    api_key: str | None,
    batch_size: int,
    timeout: float,
    image_size: int,
    max_new_tokens: int,
) -> Path:
    """Raw answers of one model: in a sandbox job for local models, on the host for APIs."""
    local = name == "tiny" or name.startswith("hf:") or Path(name).expanduser().is_dir()
    if not local:
        from medloop.engine.vqa_api import ChatAnswerModel
        from medloop.engine.vqa_bench import run_api_model

        answers = folder / "predictions.jsonl"
        run_api_model(
            benchmark,
            ChatAnswerModel(_llm(name, api_base, api_key), name=name),
            answers,
            batch_size=batch_size,
            timeout_s=timeout,
        )
        return answers
    from medloop import bootstrap
    from medloop.core.specs import SandboxSpec, VqaConfig
    from medloop.engine.vqa_bench import run_local_model

    conf = settings()
    config = VqaConfig(
        model_path=str(Path(name.removeprefix("hf:")).expanduser().resolve()) if name != "tiny" else "tiny",
        method="none",
        eval_batch_size=batch_size,
        item_timeout=timeout,
        image_size=image_size,
        max_new_tokens=max_new_tokens,
    )
    sandbox = SandboxSpec(timeout=max(600.0, timeout * 50))
    executor = bootstrap.executor(conf, sandbox)
    try:
        return run_local_model(benchmark, config, executor, conf.workspace_dir / "vqa_bench", sandbox=sandbox)
    finally:
        executor.close()


def _load_report(path: Path) -> VqaReport:
    from pydantic import ValidationError

    from medloop.core.errors import SpecError
    from medloop.evaluation.vqa import VqaReport

    try:
        return VqaReport.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise SpecError(
            f"{path}: report not found", hint="write one with `medloop vqa score ... --out`"
        ) from None
    except (ValidationError, ValueError) as exc:
        raise SpecError(f"{path}: not a VQA report ({str(exc).splitlines()[0]})") from None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _print_report(report: VqaReport) -> None:
    from rich.table import Table

    o = report.overall
    console.print(
        f"[bold]{report.model}[/] on {report.benchmark}: accuracy {_pct(o.accuracy)}% "
        f"(95% CI {_pct(o.ci_low)}-{_pct(o.ci_high)}), random {_pct(o.random_baseline)}%, "
        f"{o.n} items scored of {report.n_rows} rows"
    )
    table = Table("category", "n", "accuracy %", "95% CI", "random %")
    for g in [o, *report.groups]:
        table.add_row(
            g.key, str(g.n), _pct(g.accuracy), f"{_pct(g.ci_low)}-{_pct(g.ci_high)}", _pct(g.random_baseline)
        )
    console.print(table)
    console.print("answers read by: " + ", ".join(f"{k} {v}" for k, v in report.extraction.items()))
    for m in report.malformed:
        console.print(f"[yellow]malformed[/] row {m.row} (index {m.index}): {m.problem}", markup=True)
    for problem in report.prediction_problems:
        console.print(f"[yellow]predictions[/]: {problem}")


def _print_comparison(comparison: VqaComparison) -> None:
    from rich.table import Table

    o = comparison.overall
    console.print(
        f"[bold]{comparison.model_b}[/] vs {comparison.model_a} on {o.n} common items: "
        f"{100 * o.difference:+.1f} points (95% CI {100 * o.ci_low:+.1f} to {100 * o.ci_high:+.1f}), "
        f"McNemar p={o.p_value:.3g}: {o.verdict}"
    )
    table = Table("category", "n", "A %", "B %", "B-A", "95% CI", "p", "Holm p", "verdict")
    for g in [o, *comparison.groups]:
        table.add_row(
            g.key,
            str(g.n),
            _pct(g.accuracy_a),
            _pct(g.accuracy_b),
            f"{100 * g.difference:+.1f}",
            f"{100 * g.ci_low:+.1f} to {100 * g.ci_high:+.1f}",
            f"{g.p_value:.3g}",
            f"{g.p_adjusted:.3g}",
            g.verdict,
        )
    console.print(table)
