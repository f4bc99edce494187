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
    (
        "0200_knowledge_model",
        """
        -- Graph nodes other than claims: datasets, factor values, metrics, sites, sources,
        -- campaigns, hypotheses and trials (trials may come from another lab's export).
        CREATE TABLE kb_entities (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            json TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX kb_entities_kind ON kb_entities(kind, name);

        -- Typed edges `src kind dst`; seq is the order the graph index follows.
        CREATE TABLE kb_edges (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            src TEXT NOT NULL,
            dst TEXT NOT NULL,
            kind TEXT NOT NULL,
            src_kind TEXT NOT NULL,
            dst_kind TEXT NOT NULL,
            json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (src, dst, kind)
        );
        CREATE INDEX kb_edges_dst ON kb_edges(dst, kind);

        -- Queryable facts per claim, in ingest order (seq): what the vector index follows.
        CREATE TABLE kb_claim_facts (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            claim_id TEXT NOT NULL UNIQUE REFERENCES claims(id) ON DELETE CASCADE,
            task TEXT NOT NULL,
            outcome TEXT NOT NULL,
            dataset TEXT NOT NULL,
            dataset_checksum TEXT NOT NULL,
            intervention TEXT NOT NULL,
            orientation INTEGER NOT NULL,
            sign INTEGER NOT NULL,  -- canonical direction of a significant effect, 0 if none
            factors_json TEXT NOT NULL
        );
        CREATE INDEX kb_claim_facts_intervention ON kb_claim_facts(intervention, outcome, sign);
        CREATE TABLE kb_claim_factors (
            claim_id TEXT NOT NULL REFERENCES claims(id) ON DELETE CASCADE,
            factor TEXT NOT NULL,
            PRIMARY KEY (factor, claim_id)
        );

        -- Statement embeddings, written with the claim: indexes are rebuilt from these
        -- without re-embedding, and reader processes load them instead of opening Chroma.
        CREATE TABLE kb_vectors (
            claim_id TEXT PRIMARY KEY REFERENCES claims(id) ON DELETE CASCADE,
            embedder TEXT NOT NULL,
            dim INTEGER NOT NULL,
            text_hash TEXT NOT NULL,
            vector BLOB NOT NULL
        );

        CREATE TABLE kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        CREATE TABLE kb_quarantines (
            id TEXT PRIMARY KEY,
            target_type TEXT NOT NULL,
            target_id TEXT NOT NULL,
            why TEXT NOT NULL,
            actor TEXT NOT NULL,
            created_at TEXT NOT NULL,
            lifted_at TEXT,
            lifted_by TEXT,
            lift_reason TEXT
        );
        CREATE INDEX kb_quarantines_target ON kb_quarantines(target_id, lifted_at);
        CREATE TABLE kb_quarantine_members (
            quarantine_id TEXT NOT NULL REFERENCES kb_quarantines(id),
            claim_id TEXT NOT NULL REFERENCES claims(id) ON DELETE CASCADE,
            prev_tier TEXT NOT NULL,
            PRIMARY KEY (quarantine_id, claim_id)
        );
        CREATE INDEX kb_quarantine_members_claim ON kb_quarantine_members(claim_id);
        """,
    ),
    (
        "0201_knowledge_fingerprints",
        """
        -- Relation checks compare contexts from these columns instead of parsing claims.
        ALTER TABLE kb_claim_facts ADD COLUMN fingerprint_json TEXT NOT NULL DEFAULT '{}';
        UPDATE kb_claim_facts SET fingerprint_json = COALESCE(
            (SELECT json_extract(c.json, '$.context.fingerprint') FROM claims c WHERE c.id = kb_claim_facts.claim_id),
            '{}'
        );
        """,
    ),
    (
        "0202_knowledge_claim_filter",
        """
        -- One row per (claim, factor), plus a '*' row per claim, carrying the claim's
        -- current tier: the structured filter of planning retrieval reads one index.
        -- Triggers keep it current, also for writes that bypass the knowledge layer.
        CREATE TABLE kb_claim_filter (
            claim_id TEXT NOT NULL REFERENCES claims(id) ON DELETE CASCADE,
            factor TEXT NOT NULL,
            task TEXT NOT NULL,
            outcome TEXT NOT NULL,
            tier TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (claim_id, factor)
        );
        CREATE INDEX kb_claim_filter_lookup ON kb_claim_filter(factor, tier, outcome, seq);
        INSERT INTO kb_claim_filter
            SELECT f.claim_id, '*', f.task, f.outcome, c.tier, f.seq
            FROM kb_claim_facts f JOIN claims c ON c.id = f.claim_id;
        INSERT INTO kb_claim_filter
            SELECT x.claim_id, x.factor, f.task, f.outcome, c.tier, f.seq
            FROM kb_claim_factors x JOIN kb_claim_facts f ON f.claim_id = x.claim_id JOIN claims c ON c.id = x.claim_id;
        CREATE TRIGGER kb_claim_filter_facts AFTER INSERT ON kb_claim_facts BEGIN
            INSERT OR IGNORE INTO kb_claim_filter
                SELECT NEW.claim_id, '*', NEW.task, NEW.outcome, c.tier, NEW.seq FROM claims c WHERE c.id = NEW.claim_id;
        END;
        CREATE TRIGGER kb_claim_filter_factor AFTER INSERT ON kb_claim_factors BEGIN
            INSERT OR IGNORE INTO kb_claim_filter
                SELECT NEW.claim_id, NEW.factor, f.task, f.outcome, c.tier, f.seq
                FROM kb_claim_facts f JOIN claims c ON c.id = f.claim_id WHERE f.claim_id = NEW.claim_id;
        END;
        CREATE TRIGGER kb_claim_filter_tier AFTER UPDATE OF tier ON claims BEGIN
            UPDATE kb_claim_filter SET tier = NEW.tier WHERE claim_id = NEW.id;
        END;
        """,
    ),
    (
        "0203_knowledge_relation_indexes",
        """
        -- Relation lookups read the newest rows of one (intervention, outcome, sign)
        -- group, same dataset first: two index-ordered scans instead of sorting the group.
        DROP INDEX kb_claim_facts_intervention;
        CREATE INDEX kb_claim_facts_group ON kb_claim_facts(intervention, outcome, sign, seq);
        CREATE INDEX kb_claim_facts_group_dataset
            ON kb_claim_facts(intervention, outcome, sign, dataset_checksum, seq);
        """,
    ),
]
