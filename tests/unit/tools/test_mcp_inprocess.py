"""Every tool over MCP, in process, with the official client: the client checks each
structured result against the tool's published output schema, so this proves that what
the tools return is what their schemas promise."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from mcp import Client

from medloop.core.ids import new_id
from medloop.core.records import Campaign
from medloop.core.specs import CampaignSpec
from medloop.experiments.dataset import read_dataset
from medloop.tools.context import Caller, CampaignLaunch, ToolContext
from medloop.tools.mcp_server import build_server, fixed_caller
from medloop.tools.registry import Registry
from tests.unit.tools.helpers import store_of


class RecordOnlyLauncher:
    """Creates the campaign record, runs nothing (the process launcher has its own test)."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def start(self, spec: CampaignSpec, *, owner: str) -> CampaignLaunch:
        campaign = Campaign(id=new_id("cmp"), name=spec.name, spec=spec, owner=owner)
        store_of(self.ctx).campaigns.add(campaign)
        return CampaignLaunch(campaign_id=campaign.id)

    def running(self, launch: CampaignLaunch) -> bool | None:
        return None


async def drive(client: Client, phantom: Path, table: Path, preds: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def call(name: str, arguments: dict[str, Any], **kw: Any) -> Any:
        result = await client.call_tool(name, arguments, **kw)
        assert not result.is_error, (name, result.content)
        assert json.loads(result.content[0].text) == result.structured_content
        out.setdefault(name, result.structured_content)
        return result.structured_content

    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    await call("dataset_check", {"path": str(phantom)})
    await call("dataset_fingerprint", {"path": str(phantom)})
    await call("plan_baseline", {"path": str(phantom), "memory_mb": 2000})
    arms = {}
    for loss in ("dice", "dicece"):
        run = await call(
            "run_trial",
            {"dataset_path": str(table.parent), "trial_config": {"loss": loss}, "seeds": [0, 1, 2]},
        )
        arms[loss] = [t["handle"] for t in run["trials"]]
    await call(
        "trial_status",
        {"handles": arms["dice"] + arms["dicece"], "wait_s": 30},
        progress_callback=on_progress,
    )
    await call("trial_result", {"handle": arms["dicece"][0], "include_cases": True})
    await call("compare_trials", {"control": arms["dice"], "treatment": arms["dicece"]})
    await call("evaluate_predictions", {"predictions_dir": str(preds), "dataset_path": str(phantom)})
    claim = await call(
        "propose_claim",
        {
            "statement": "Dice+CE beats Dice on the replayed benchmark.",
            "changes": [{"factor": "loss", "from_value": "dice", "to_value": "dicece"}],
            "dataset_name": "Dataset999_Replay",
            "evidence_trials": arms["dicece"],
        },
    )
    await call("search_knowledge", {"query": "Dice+CE", "k": 5})
    await call("get_claim", {"claim_id": claim["claim_id"]})
    started = await call(
        "campaign_start",
        {
            "spec": {
                "name": "s",
                "goal": "g",
                "dataset": {"path": str(table.parent)},
                "baseline": {"loss": "dice"},
                "search_space": {"loss": ["dice", "dicece"]},
                "budget": {"max_trials": 12},
                "executor": {"kind": "table", "table": str(table)},
            }
        },
    )
    await call("campaign_status", {"campaign_id": started["campaign_id"]})
    out["progress"] = progress
    return out


def test_every_tool_answers_within_its_output_schema_over_mcp(
    registry: Registry, ctx: ToolContext, phantom: Path, table: Path, tmp_path: Path
) -> None:
    preds = tmp_path / "preds"
    preds.mkdir()
    case = read_dataset(phantom).training[0]
    assert case.label is not None
    shutil.copy(case.label, preds / case.label.name)
    tctx = dataclasses.replace(ctx, launcher=RecordOnlyLauncher(ctx))
    server = build_server(registry, tctx, fixed_caller(Caller("inproc")))

    async def main() -> dict[str, Any]:
        async with Client(server) as client:
            listed = await client.list_tools()
            assert [t.name for t in listed.tools] == registry.names()
            return await drive(client, phantom, table, preds)

    out = asyncio.run(main())
    assert set(out) - {"progress"} == set(registry.names()), "a tool was not exercised over MCP"
    assert out["compare_trials"]["verdict"] == "supported"
    assert out["evaluate_predictions"]["summary"]["dice"] == 1.0
    assert out["get_claim"]["claim"]["author"] == "inproc"
    assert out["campaign_status"]["owner"] == "inproc"
