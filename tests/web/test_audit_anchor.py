"""Issue 14 item 20: the audit chain cannot be rewritten unseen. Someone with write access
to the database file drops the append-only triggers and (1) edits an entry and recomputes
every later hash, (2) removes the last entries, (3) removes a middle entry and recomputes
the rest. (3) breaks the sequence; (1) and (2) are caught by an anchor kept outside."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from medloop.core.ids import canonical_json, sha256_hex
from medloop.web import anchors
from tests.web.conftest import Web
from tests.web.test_pages_cli import _cli

GENESIS = "0" * 64


def _tamper(db: Path, *statements: str) -> None:
    """Run `statements` on the audit table, then recompute every hash in seq order."""
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER IF EXISTS audit_no_update")
    con.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    for sql in statements:
        con.execute(sql)
    prev = GENESIS
    rows = con.execute(
        "SELECT seq, ts, actor, action, object_type, object_id, detail_json FROM audit ORDER BY seq"
    ).fetchall()
    for seq, ts, actor, action, object_type, object_id, detail in rows:
        body = {"seq": seq, "ts": ts, "actor": actor, "action": action, "object_type": object_type,
                "object_id": object_id, "detail": json.loads(detail)}  # fmt: skip
        digest = sha256_hex(prev + canonical_json(body))
        con.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
        prev = digest
    con.commit()
    con.close()


def _anchor(web: Web, tmp_path: Path) -> tuple[Path, str]:
    file = tmp_path / "anchors" / "audit.anchors"
    made = _cli(web, "audit", "anchor", "--file", str(file))
    assert made.returncode == 0, made.stderr
    value = made.stdout.strip()
    count = web.store.audit.head()[0]
    assert value == f"{web.store.audit.head()[1]}:{count}" and count > 5
    assert file.read_text().strip().endswith(value)
    return file, value


def test_an_edit_with_recomputed_hashes_is_caught_by_the_anchor(web: Web, tmp_path: Path) -> None:
    file, value = _anchor(web, tmp_path)
    assert _cli(web, "audit", "verify", "--anchor", str(file)).returncode == 0
    _tamper(web.settings.db_path, "UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    assert web.store.audit.verify() == (True, None)  # the chain alone cannot tell
    for given in (str(file), value):
        out = _cli(web, "audit", "verify", "--anchor", given)
        assert out.returncode == 1 and "rewritten" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_removing_the_last_entries_is_caught_by_the_anchor(web: Web, tmp_path: Path) -> None:
    file, _ = _anchor(web, tmp_path)
    count = web.store.audit.head()[0]
    _tamper(web.settings.db_path, f"DELETE FROM audit WHERE seq > {count - 2}")
    assert web.store.audit.verify() == (True, None)
    out = _cli(web, "audit", "verify", "--anchor", str(file), "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and not report["ok"] and "truncated" in report["anchor_error"]


def test_removing_a_middle_entry_breaks_the_sequence(web: Web) -> None:
    _tamper(web.settings.db_path, "DELETE FROM audit WHERE seq = 4")
    assert web.store.audit.verify() == (False, 5)
    out = _cli(web, "audit", "verify")
    assert out.returncode == 1 and "broken at entry 5" in out.stderr


def test_anchors_keep_holding_while_the_log_grows(web: Web, tmp_path: Path) -> None:
    file, _ = _anchor(web, tmp_path)
    web.store.audit.append("ada", "user.add", "user", "zed", {})
    anchors.append(file, anchors.head(web.store))
    assert len(anchors.load(str(file))) == 2
    ok = _cli(web, "audit", "verify", "--anchor", str(file))
    assert ok.returncode == 0 and "holds 2 anchor(s)" in ok.stdout
    bad = _cli(web, "audit", "verify", "--anchor", "not-an-anchor")
    assert bad.returncode != 0 and "not an anchor" in bad.stderr and "Traceback" not in bad.stderr


def test_the_server_appends_anchors_to_the_configured_file(web: Web, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from medloop.web.app import create_app

    file = tmp_path / "server.anchors"
    settings = web.settings.model_copy(update={"audit_anchor_file": file, "audit_anchor_interval": 3600.0})
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/me", headers=web.auth("ada")).status_code == 200
        started = anchors.load(str(file))
        assert started == [anchors.head(web.store)]
        web.store.audit.append("ada", "user.add", "user", "zed", {})
    stopped = anchors.load(str(file))  # one more at shutdown, since the log moved
    assert len(stopped) == 2 and stopped[-1] == anchors.head(web.store)
    anchors.check(web.store, stopped)


def test_the_api_checks_the_servers_anchor_file(web: Web, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from medloop.web.app import create_app

    file = tmp_path / "server.anchors"
    settings = web.settings.model_copy(update={"audit_anchor_file": file})
    client = TestClient(create_app(settings))
    fresh = client.get("/api/v1/audit/verify", headers=web.auth("vic")).json()
    assert fresh["ok"] and fresh["anchors"] == 0  # no anchor written yet
    anchors.append(file, anchors.head(web.store))
    count = web.store.audit.head()[0]
    held = client.get("/api/v1/audit/verify", headers=web.auth("vic")).json()
    assert held["ok"] and held["anchors"] == 1 and held["entries"] == count
    _tamper(web.settings.db_path, f"DELETE FROM audit WHERE seq = {count}")
    cut = client.get("/api/v1/audit/verify", headers=web.auth("vic")).json()
    assert not cut["ok"] and "truncated" in cut["anchor_error"] and cut["first_bad_seq"] is None


def test_the_server_sends_anchors_to_a_syslog_sink(web: Web) -> None:
    import socket

    from fastapi.testclient import TestClient

    from medloop.web.app import create_app

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(30)
        target = f"udp://127.0.0.1:{sink.getsockname()[1]}"
        settings = web.settings.model_copy(update={"audit_anchor_syslog": target})
        with TestClient(create_app(settings)):
            message = sink.recv(4096).decode().rstrip("\x00")
    assert "medloop-audit-anchor:" in message and message.strip().endswith(str(anchors.head(web.store)))


def test_the_dashboards_incremental_check_also_sees_a_removed_middle_entry(web: Web) -> None:
    """The audit page verifies only new entries; it must apply the same rule as `audit
    verify` (numbering, link, hash), or a removed entry with recomputed hashes passes."""
    from medloop.web.audit_page import IncrementalVerifier

    fresh = IncrementalVerifier()
    assert fresh.check(web.store).ok
    _tamper(web.settings.db_path, "DELETE FROM audit WHERE seq = 4")
    status = IncrementalVerifier().check(web.store)
    assert not status.ok and status.bad_seq == 5
