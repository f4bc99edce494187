"""campaign_status says why a campaign failed or ended incomplete, and a campaign started
outside the tools (no launch record) is not an error (issue 14 item 24)."""

from __future__ import annotations

from pathlib import Path

from medloop import bootstrap
from medloop.core.settings import Settings
from medloop.core.specs import parse_campaign_spec
from medloop.tools.catalog import default_registry
from medloop.tools.context import Caller
from tests.integration.tools.test_campaign_tools import spec
from tests.unit.tools.helpers import replay_table


def test_campaign_status_surfaces_why_a_campaign_failed(settings: Settings, tmp_path: Path) -> None:
    table = replay_table(tmp_path / "replay")
    runner = bootstrap.campaign_runner(settings)
    campaign = runner.create(parse_campaign_spec(spec(table, max_trials=30), source="t"), owner="local")
    store = bootstrap.store(settings)
    ctx = bootstrap.tool_context(settings, Caller("planner-bot"))
    registry = default_registry()

    store.campaigns.update(campaign.id, status="failed", summary={"error": "RuntimeError: boom"})
    status = registry.call("campaign_status", ctx, {"campaign_id": campaign.id})
    assert status.error == "RuntimeError: boom"  # type: ignore[attr-defined]
    assert status.process_running is None and status.log is None  # type: ignore[attr-defined]

    why = (
        "2 of 6 final test-split runs have no test result: campaign budget: wall time of 480 s is spent (x2)"
    )
    store.campaigns.update(campaign.id, status="incomplete", summary={"incomplete": why})
    status = registry.call("campaign_status", ctx, {"campaign_id": campaign.id})
    assert status.incomplete == why and status.error is None  # type: ignore[attr-defined]
    assert status.next_step.startswith("done")  # type: ignore[attr-defined]
