"""The campaign's closing table names a code module that moved the incumbent (before, the
table showed only search-space factors, so an incumbent changed by a code hypothesis looked
identical to the baseline)."""

from __future__ import annotations

from rich.console import Console

from medloop.cli.progress import incumbent_table
from medloop.core.records import Campaign
from medloop.core.specs import parse_campaign_spec

SHA = "32b32ebd20126716875e20dce5f9c35352a77b10b7cb754f3eada1a63ef198d1"


def test_a_code_module_that_moved_the_incumbent_is_a_column() -> None:
    spec = parse_campaign_spec(
        {
            "name": "t",
            "goal": "g",
            "dataset": {"path": "/nonexistent"},
            "search_space": {"loss": ["dice"]},
            "code": {"points": ["loss", "postprocess"]},
        },
        source="t.yaml",
        check_dataset=False,
    )
    base = {"loss": "dice", "code_loss": "none", "code_postprocess": "none"}
    campaign = Campaign.model_construct(
        spec=spec,
        baseline=base,
        incumbent={**base, "code_loss": SHA},
        baseline_objective=0.50,
        incumbent_objective=0.68,
        summary={},
    )
    console = Console(width=200, record=True)
    console.print(incumbent_table(campaign))
    text = console.export_text()
    assert "code_loss" in text and SHA[:12] in text and SHA not in text
    assert "code_postprocess" not in text  # unchanged code points are not columns
