"""Code modules of code hypotheses in the knowledge base: every method, on every backend,
and a store left at revision 0003 gains the table."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from medloop.core.code import CodeModule, source_sha256
from medloop.core.errors import NotFoundError, StoreError
from medloop.core.store import SqlStore
from medloop.core.store.migrate import HEAD
from tests.contract.store.conftest import StoreCase

SOURCE = 'EXTENSION_POINT = "lr_schedule"\n\n\ndef lr_factor(step, total_steps):\n    return 1.0\n'


def module(source: str = SOURCE, *, name: str = "flat", campaign_id: str | None = None) -> CodeModule:
    return CodeModule(
        sha256=source_sha256(source),
        point="lr_schedule",
        name=name,
        author="alice",
        author_kind="human",
        trusted=False,
        size=len(source),
        campaign_id=campaign_id,
        diff="+x\n",
    )


def test_put_is_content_addressed_and_idempotent(store: SqlStore) -> None:
    m = module()
    assert store.code.put(m, SOURCE) is True
    assert store.code.put(m.model_copy(update={"name": "again"}), SOURCE) is False
    got, source = store.code.get(m.sha256)
    assert got == m and source == SOURCE
    with pytest.raises(StoreError, match="does not hash"):
        store.code.put(module(), SOURCE + "# changed\n")
    with pytest.raises(NotFoundError):
        store.code.get("0" * 64)


def test_list_by_point_and_campaign(store: SqlStore) -> None:
    other = SOURCE.replace("1.0", "0.5")
    store.code.put(module(), SOURCE)
    store.code.put(module(other, name="half", campaign_id="cmp_a"), other)
    assert [m.name for m in store.code.list()] == ["flat", "half"]
    assert [m.name for m in store.code.list(campaign_id="cmp_b")] == ["flat"]
    assert [m.name for m in store.code.list(campaign_id="cmp_a")] == ["flat", "half"]
    assert store.code.list(point="loss") == []


def test_smoke_state(store: SqlStore) -> None:
    m = module()
    store.code.put(m, SOURCE)
    assert store.code.state(m.sha256).smoke == "pending"
    store.code.set_smoke(m.sha256, "failed", "timed out")
    state = store.code.state(m.sha256)
    assert (state.smoke, state.smoke_reason) == ("failed", "timed out")
    with pytest.raises(NotFoundError):
        store.code.set_smoke("0" * 64, "passed")


def test_a_0003_store_gains_code_modules(case: StoreCase) -> None:
    store = case.open()
    with store.db.transaction():
        store.db.write(sa.text("DROP TABLE kb_code_modules"))
        store.db.write(sa.text("UPDATE alembic_version SET version_num = '0003_session_tokens'"))
    store.close()
    upgraded = case.open()
    upgraded.code.put(module(), SOURCE)
    assert upgraded.code.get(source_sha256(SOURCE))[1] == SOURCE
    assert upgraded.db.all(sa.text("SELECT version_num FROM alembic_version"))[0][0] == HEAD
    upgraded.close()
