"""`medloop hypotheses add --code` and `medloop hypotheses code`: a person's module is
checked, stored and queued; bad files are one clear line, non-zero exit, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medloop.core.records import Campaign
from medloop.core.settings import Settings
from medloop.core.specs import parse_campaign_spec
from medloop.core.store import open_store
from medloop.experiments.dataset import synth_phantom
from tests.e2e.test_cli_campaign import medloop

MODULE = '''"""Warm up for a tenth of the run, then stay flat."""
EXTENSION_POINT = "lr_schedule"


def lr_factor(step, total_steps):
    return min(1.0, (step + 1) / max(1, total_steps // 10))
'''


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    data = synth_phantom(tmp_path / "data", cases=8, seed=5, test_cases=2, size=32)
    spec = parse_campaign_spec(
        {
            "name": "c",
            "goal": "g",
            "dataset": {"path": str(data)},
            "search_space": {"lr": [0.001, 0.01]},
            "code": {"points": ["lr_schedule"]},
        },
        source="test",
    )
    store = open_store(Settings(workspace=tmp_path / ".medloop").store_url)
    store.campaigns.add(Campaign(id="cmp_code", name="c", owner="tester", spec=spec))
    store.close()
    (tmp_path / "warmup.py").write_text(MODULE)
    return tmp_path


def test_add_then_list(ws: Path) -> None:
    args = [
        "--campaign",
        "cmp_code",
        "--code",
        "warmup.py",
        "--point",
        "lr_schedule",
        "--rationale",
        "warm up",
    ]
    out = json.loads(medloop(ws, "hypotheses", "add", *args, "--json").stdout)
    assert (
        out["point"] == "lr_schedule" and out["campaign_id"] == "cmp_code" and out["author_kind"] == "human"
    )
    listed = json.loads(medloop(ws, "hypotheses", "code", "--campaign", "cmp_code", "--json").stdout)
    assert [m["sha256"] for m in listed["modules"]] == [out["sha256"]]
    assert listed["modules"][0]["smoke"] == "pending"


@pytest.mark.parametrize(
    ("content", "point", "needle"),
    [
        (MODULE.replace("return min", "return (min"), "lr_schedule", "syntax error at line"),
        ("import subprocess\n" + MODULE, "lr_schedule", "imports 'subprocess'"),
        (MODULE, "loss", "does not open extension point 'loss'"),
        (MODULE, "optimizer", "is not an extension point"),
        (b"\xff\xfe" + MODULE.encode(), "lr_schedule", "not UTF-8"),
        ("#" * 70_000, "lr_schedule", "byte limit"),
        (None, "lr_schedule", "not a readable regular file"),
    ],
)
def test_bad_modules_are_one_clear_line(
    ws: Path, content: str | bytes | None, point: str, needle: str
) -> None:
    path = ws / "bad.py"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    else:
        path.mkdir()
    out = medloop(
        ws, "hypotheses", "add", "--campaign", "cmp_code", "--code", "bad.py", "--point", point, check=False
    )
    assert out.returncode != 0 and needle in out.stderr and "Traceback" not in out.stderr, out.stderr
