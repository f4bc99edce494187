"""A campaign on a Postgres store: the agent's checkpoints and its one-driver lock live in
the same database (no workspace file for either), and the run ends with a verified audit
chain. The store's own conformance suite is tests/contract/store."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from medloop import bootstrap
from medloop.core.errors import ConflictError
from medloop.core.settings import Settings
from tests.web.builders import replay_spec, replay_table


def test_a_campaign_runs_with_its_checkpoints_and_lock_in_postgres(tmp_path: Path, postgres_url: str) -> None:
    settings = Settings(
        workspace=tmp_path / "ws", db_url=postgres_url, embedder="hash", vector_index="memory"
    )
    spec = replay_spec(replay_table(tmp_path / "data" / "table.json"), max_cycles=1)
    runner = bootstrap.campaign_runner(settings)
    campaign = runner.create(spec, owner="alice")
    with (
        bootstrap.checkpoints(settings).lock(campaign.id),
        pytest.raises(ConflictError, match="advisory lock"),
    ):
        runner.run(campaign.id)  # another connection holds the campaign's lock
    done = runner.run(campaign.id)
    assert done.status == "completed" and done.summary["cycles"] == 1
    assert not (settings.workspace_dir / "checkpoints.sqlite").exists()
    assert not (settings.workspace_dir / "locks").exists()
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (campaign.id,)).fetchone()
    assert row is not None and row[0] > 0
    store = bootstrap.store(settings)
    assert store.audit.verify() == (True, None) and store.claims.tiers()
    with pytest.raises(ConflictError, match="completed"):
        runner.resume(campaign.id)  # the checkpointer knows it finished
