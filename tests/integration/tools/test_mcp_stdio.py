"""Acceptance: `medloop mcp` as a subprocess, driven by the official MCP client over stdio:
list the tools, check a phantom dataset, run a short real trial to completion (with
progress notifications), read its result, record and search knowledge."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from medloop.core.store import open_store
from medloop.tools.catalog import default_registry
from tests.unit.tools.helpers import TINY

pytestmark = pytest.mark.slow


async def session(params: StdioServerParameters, phantom: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {"progress": []}

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen["progress"].append((progress, total, message))

    async with Client(params) as client:
        listed = await client.list_tools()
        seen["tools"] = {t.name: t for t in listed.tools}

        check = await client.call_tool("dataset_check", {"path": str(phantom)})
        assert not check.is_error, check.content
        seen["check"] = check.structured_content

        bad = await client.call_tool(
            "run_trial", {"dataset_path": str(phantom), "trial_config": {"loss": "focal"}}
        )
        seen["bad"] = bad

        run = await client.call_tool(
            "run_trial", {"dataset_path": str(phantom), "trial_config": TINY, "seeds": [0]}
        )
        assert not run.is_error, run.content
        assert run.structured_content is not None
        handle = run.structured_content["trials"][0]["handle"]
        for _ in range(8):
            status = await client.call_tool(
                "trial_status", {"handles": [handle], "wait_s": 60}, progress_callback=on_progress
            )
            assert not status.is_error and status.structured_content is not None, status.content
            if status.structured_content["all_done"]:
                break
        seen["status"] = status.structured_content
        result = await client.call_tool("trial_result", {"handle": handle})
        assert not result.is_error, result.content
        seen["result"] = result.structured_content

        claim = await client.call_tool(
            "propose_claim",
            {
                "statement": "A four-step UNet already separates liver from background on the phantom.",
                "changes": [{"factor": "iterations", "from_value": 1, "to_value": 4}],
                "dataset_path": str(phantom),
                "evidence_trials": [handle],
            },
        )
        assert not claim.is_error, claim.content
        seen["claim"] = claim.structured_content
        found = await client.call_tool(
            "search_knowledge", {"query": "UNet separates liver on the phantom", "k": 5}
        )
        assert not found.is_error, found.content
        seen["search"] = found.structured_content
    return seen


def test_mcp_over_stdio_runs_a_real_trial_and_searches_knowledge(
    phantom: Path, server_env: dict[str, str], workspace: Path
) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "medloop", "mcp", "--caller", "mcp-tester"], env=server_env
    )
    seen = asyncio.run(session(params, phantom))

    registry = default_registry()
    assert list(seen["tools"]) == registry.names()
    run_tool = seen["tools"]["run_trial"]
    assert run_tool.input_schema["properties"]["trial_config"]["properties"]["loss"]["enum"] == [
        "dice",
        "dicece",
        "dicefocal",
    ]
    assert run_tool.output_schema is not None and run_tool.annotations.read_only_hint is False
    assert seen["check"]["ok"] and seen["check"]["n_training"] == 8

    bad = seen["bad"]
    assert bad.is_error and "trial_config.loss" in bad.content[0].text and "'dicece'" in bad.content[0].text

    assert seen["status"]["all_done"], seen["status"]
    assert seen["progress"], "no MCP progress notification arrived while waiting"
    assert any(total == TINY["iterations"] for _, total, _ in seen["progress"])
    result = seen["result"]
    assert result["status"] == "succeeded", result
    assert 0.0 <= result["objective"] <= 1.0
    assert result["splits"][0]["split"] == "eval" and result["splits"][0]["n_cases"] >= 2
    assert result["provenance"]["runtime"] == "local" and result["provenance"]["dataset_checksum"]

    claim_id = seen["claim"]["claim_id"]
    assert seen["claim"]["tier"] == "proposed"
    assert claim_id in [hit["claim_id"] for hit in seen["search"]["results"]]

    store = open_store(workspace / "medloop.db")
    trial = store.trials.get(result["handle"])
    assert trial.status == "succeeded" and trial.result is not None and trial.result.job is not None
    assert store.campaigns.get(trial.campaign_id).owner == "mcp-tester"
    assert {e.actor for e in store.audit.list(object_id=claim_id)} == {"mcp-tester"}
    ok, bad_seq = store.audit.verify()
    assert ok, bad_seq
