"""API vision models through litellm, against a local OpenAI-compatible server that looks
at the base64 images it is sent and answers from them."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from medloop.cli import app
from medloop.engine.vqa_api import ChatAnswerModel
from medloop.engine.vqa_bench import run_api_model
from medloop.evaluation.vqa import score_files
from medloop.llm.litellm_client import LiteLLMClient
from tests.openai_server import FakeOpenAI
from tests.unit.vlm.builders import COLOURS, colour_row, dominant_colour, write_rows

# How the "vague" model describes a colour: no option letter or text, so only a judge can tell.
DESCRIPTIONS = {
    "red": "like a ripe tomato",
    "green": "like fresh grass",
    "blue": "like a clear summer sky",
    "yellow": "like a lemon",
}


def _options(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-J])\. (.+)$", text, re.MULTILINE))


def respond(body: dict[str, Any]) -> str:
    model = body["model"]
    content = body["messages"][-1]["content"]
    if model == "judge":  # text only: the judge prompt quotes the answer and the options
        assert isinstance(content, str)
        said = re.search(r"^Answer: (.+)$", content, re.MULTILINE)
        colour = next((c for c, d in DESCRIPTIONS.items() if said and d in said.group(1)), None)
        letters = {v: k for k, v in _options(content).items()}
        return letters.get(colour or "", "NONE")
    images = [p for p in content if p["type"] == "image_url"]
    text = next(p["text"] for p in content if p["type"] == "text")
    assert len(images) == 1
    url = images[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    colour = dominant_colour(url.split(",", 1)[1])
    letter = {v: k for k, v in _options(text).items()}[colour]
    if model == "good":
        return f"The image is {colour}, so the answer is ({letter})."
    if model == "lazy":
        return "A"
    if model == "vague":
        return f"It looks {DESCRIPTIONS[colour]}."
    if model == "slow":
        time.sleep(3)
        return letter
    raise AssertionError(f"unexpected model {model}")


@pytest.fixture
def benchmark(tmp_path: Path) -> Path:
    colours = list(COLOURS)
    rows = [
        colour_row(str(i), colours[i % 4], colours[i % 4], category="warm" if i % 4 in (0, 3) else "cool")
        for i in range(12)
    ]
    missing = colour_row("12", "red", "red")
    missing[1] = ""
    return write_rows(tmp_path / "colours.tsv", [*rows, missing])


def test_bench_two_api_models_with_judge(benchmark: Path, tmp_path: Path, workspace: Path) -> None:
    out = tmp_path / "bench"
    with FakeOpenAI(respond) as server:
        result = CliRunner().invoke(
            app,
            [
                "vqa",
                "bench",
                str(benchmark),
                "--model",
                "openai/lazy",
                "--model",
                "openai/good",
                "--judge",
                "openai/judge",
                "--api-base",
                server.api_base,
                "--api-key",
                "test",
                "--out",
                str(out),
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        vision = [r for r in server.requests if r["model"] in ("lazy", "good")]
        assert len(vision) == 24  # 12 postable items x 2 models; the imageless row is never sent
    data = json.loads(result.stdout)
    lazy, good = data["reports"]
    assert good["overall"]["correct"] == 12 and good["overall"]["n"] == 12
    assert lazy["overall"]["correct"] == 3  # "A" is right for the red items only
    assert [m["problem"] for m in good["malformed"]] == ["missing image"]
    comparison = data["comparison"]
    assert comparison["overall"]["only_b"] == 9 and comparison["overall"]["only_a"] == 0
    assert comparison["overall"]["verdict"] == "supported"
    assert {g["key"] for g in comparison["groups"]} >= {"task=warm", "task=cool"}
    assert (out / "openai_good" / "report.json").is_file() and (out / "comparison.json").is_file()


def test_judge_use_is_logged_per_item(benchmark: Path, tmp_path: Path) -> None:
    with FakeOpenAI(respond) as server:
        client = LiteLLMClient("openai/vague", api_base=server.api_base, api_key="test", retries=0)
        answers = tmp_path / "vague.jsonl"
        summary = run_api_model(benchmark, ChatAnswerModel(client, name="vague"), answers, batch_size=4)
        assert summary.answered == 12 and summary.skipped == 1
        from medloop.engine.vqa_api import LLMJudge

        judge = LLMJudge(
            LiteLLMClient("openai/judge", api_base=server.api_base, api_key="test"), name="judge"
        )
        with_judge = score_files(benchmark, answers, judge=judge, resamples=500)
    without = score_files(benchmark, answers, resamples=500)
    assert without.overall.correct == 0 and without.extraction == {"none": 12}
    assert with_judge.overall.correct == 12 and with_judge.extraction == {"judge": 12}
    assert all(s.judge_reply and s.response and "like" in s.response for s in with_judge.items)


def test_per_item_timeout_is_an_error_not_a_crash(benchmark: Path, tmp_path: Path) -> None:
    with FakeOpenAI(respond) as server:
        client = LiteLLMClient("openai/slow", api_base=server.api_base, api_key="test", retries=0)
        answers = tmp_path / "slow.jsonl"
        start = time.monotonic()
        summary = run_api_model(
            benchmark, ChatAnswerModel(client, name="slow"), answers, batch_size=12, timeout_s=0.5
        )
        assert time.monotonic() - start < 2.5  # did not wait for the 3 s answers
    assert summary.errors == 12 and summary.answered == 0
    lines = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(lines) == 13
    assert {line["error"] for line in lines} == {"timeout after 0.5s", "missing image"}
    report = score_files(benchmark, answers, resamples=200)
    assert report.extraction == {"error": 12} and report.overall.correct == 0
