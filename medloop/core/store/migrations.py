"""Ordered, named schema migrations. Append only: never edit one that has shipped.

Each entry is (name, SQL script). Names sort in application order.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE campaigns (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            owner TEXT NOT NULL,
            spec_json TEXT NOT NULL,
            state_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX campaigns_status ON campaigns(status);

        CREATE TABLE cycles (
            campaign_id TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            summary_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (campaign_id, idx)
        );

        CREATE TABLE hypotheses (
            id TEXT PRIMARY KEY,
            campaign_id TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            cycle INTEGER NOT NULL,
            verdict TEXT NOT NULL,
            json TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX hypotheses_campaign ON hypotheses(campaign_id, cycle);

        CREATE TABLE trials (
            id TEXT PRIMARY KEY,
            campaign_id TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            hypothesis_id TEXT REFERENCES hypotheses(id),
            arm TEXT NOT NULL,
            spec_hash TEXT NOT NULL,
            seed INTEGER NOT NULL,
            status TEXT NOT NULL,
            objective REAL,
            spec_json TEXT NOT NULL,
            result_json TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX trials_campaign ON trials(campaign_id, created_at);
        CREATE INDEX trials_spec_hash ON trials(spec_hash, status);

        CREATE TABLE claims (
            id TEXT PRIMARY KEY,
            campaign_id TEXT REFERENCES campaigns(id) ON DELETE SET NULL,
            hypothesis_id TEXT,
            tier TEXT NOT NULL,
            outcome TEXT NOT NULL,
            dataset TEXT NOT NULL,
            statement TEXT NOT NULL,
            json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX claims_tier ON claims(tier);
        CREATE INDEX claims_dataset ON claims(dataset, outcome);

        CREATE TABLE evidence (
            claim_id TEXT NOT NULL REFERENCES claims(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            ref_id TEXT NOT NULL,
            role TEXT NOT NULL,
            json TEXT NOT NULL,
            PRIMARY KEY (claim_id, kind, ref_id, role)
        );
        CREATE INDEX evidence_ref ON evidence(ref_id);

        -- Append-only, hash-chained: hash = sha256(prev_hash + canonical entry).
        CREATE TABLE audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            object_type TEXT NOT NULL,
            object_id TEXT NOT NULL,
            detail_json TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE INDEX audit_object ON audit(object_type, object_id);
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
        """,
    ),
]
