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
        "0300_web_auth",
        """
        -- Web layer: users, API tokens and dashboard sessions (secrets kept as sha256),
        -- rate-limit events, reproduction requests from reviewers.
        CREATE TABLE web_users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            created_at TEXT NOT NULL,
            disabled_at TEXT
        );
        CREATE TABLE web_tokens (
            id TEXT PRIMARY KEY,
            user_name TEXT NOT NULL REFERENCES web_users(name),
            hash TEXT NOT NULL,          -- sha256 of the secret; the secret is shown once
            label TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            revoked_at TEXT
        );
        CREATE INDEX web_tokens_user ON web_tokens(user_name);
        CREATE TABLE web_sessions (
            id_hash TEXT PRIMARY KEY,    -- sha256 of the cookie value
            user_name TEXT NOT NULL REFERENCES web_users(name),
            csrf TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE TABLE web_rate_events (
            user_name TEXT NOT NULL,
            action TEXT NOT NULL,
            at REAL NOT NULL             -- unix seconds
        );
        CREATE INDEX web_rate_events_key ON web_rate_events(user_name, action, at);
        CREATE INDEX web_rate_events_at ON web_rate_events(at);
        CREATE TABLE web_reproduction_requests (
            id TEXT PRIMARY KEY,
            claim_id TEXT NOT NULL REFERENCES claims(id) ON DELETE CASCADE,
            actor TEXT NOT NULL,
            rationale TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX web_reproduction_requests_claim ON web_reproduction_requests(claim_id);
        -- Cursor pages (ORDER BY id) filtered by one column, without sorting the whole table.
        -- The trial indexes cover the listing columns: created_at/updated_at sit after the
        -- large JSON columns in the row, which would otherwise be read for every listed trial.
        CREATE INDEX trials_list ON trials(id, campaign_id, hypothesis_id, arm, seed, status, objective, created_at, updated_at);
        CREATE INDEX trials_campaign_id ON trials(campaign_id, id, hypothesis_id, arm, seed, status, objective, created_at, updated_at);
        CREATE INDEX trials_status_id ON trials(status, id, campaign_id, hypothesis_id, arm, seed, objective, created_at, updated_at);
        -- Claim listings read this copy of each claim's listing columns, kept by triggers
        -- (whoever writes claims), so a page neither parses claim JSON nor reads the JSON's
        -- overflow pages for the columns stored after it.
        CREATE TABLE web_claim_list (
            claim_id TEXT PRIMARY KEY REFERENCES claims(id) ON DELETE CASCADE,
            campaign_id TEXT,
            hypothesis_id TEXT,
            tier TEXT NOT NULL,
            outcome TEXT NOT NULL,
            dataset TEXT NOT NULL,
            statement TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            estimate REAL,
            ci_low REAL,
            ci_high REAL,
            p_adjusted REAL,
            author TEXT
        );
        CREATE INDEX web_claim_list_tier ON web_claim_list(tier, claim_id);
        CREATE INDEX web_claim_list_campaign ON web_claim_list(campaign_id, claim_id);
        CREATE INDEX web_claim_list_dataset ON web_claim_list(dataset, outcome, claim_id);
        CREATE INDEX web_claim_list_outcome ON web_claim_list(outcome, claim_id);
        INSERT INTO web_claim_list
            SELECT id, campaign_id, hypothesis_id, tier, outcome, dataset, statement, created_at, updated_at,
                   json_extract(json, '$.effect.estimate'), json_extract(json, '$.effect.ci_low'),
                   json_extract(json, '$.effect.ci_high'), json_extract(json, '$.effect.p_adjusted'),
                   json_extract(json, '$.author')
            FROM claims;
        CREATE TRIGGER web_claim_list_insert AFTER INSERT ON claims BEGIN
            INSERT OR REPLACE INTO web_claim_list VALUES (
                NEW.id, NEW.campaign_id, NEW.hypothesis_id, NEW.tier, NEW.outcome, NEW.dataset, NEW.statement,
                NEW.created_at, NEW.updated_at,
                json_extract(NEW.json, '$.effect.estimate'), json_extract(NEW.json, '$.effect.ci_low'),
                json_extract(NEW.json, '$.effect.ci_high'), json_extract(NEW.json, '$.effect.p_adjusted'),
                json_extract(NEW.json, '$.author'));
        END;
        CREATE TRIGGER web_claim_list_update AFTER UPDATE ON claims BEGIN
            INSERT OR REPLACE INTO web_claim_list VALUES (
                NEW.id, NEW.campaign_id, NEW.hypothesis_id, NEW.tier, NEW.outcome, NEW.dataset, NEW.statement,
                NEW.created_at, NEW.updated_at,
                json_extract(NEW.json, '$.effect.estimate'), json_extract(NEW.json, '$.effect.ci_low'),
                json_extract(NEW.json, '$.effect.ci_high'), json_extract(NEW.json, '$.effect.p_adjusted'),
                json_extract(NEW.json, '$.author'));
        END;
        """,
    ),
    (
        "0400_tools",
        """
        -- What each tool caller has used (trials, GPU-hours, campaigns), for per-caller
        -- budgets. One row per (caller, resource, ref_id): charging is idempotent, and a
        -- GPU-hour reservation is settled to the measured value when its trial ends.
        CREATE TABLE tool_charges (
            caller TEXT NOT NULL,
            resource TEXT NOT NULL,
            ref_id TEXT NOT NULL,
            amount REAL NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (caller, resource, ref_id)
        );
        CREATE INDEX tool_charges_window ON tool_charges(caller, resource, created_at);

        -- Handles that long-running tools return (a trial, a campaign process).
        CREATE TABLE tool_jobs (
            handle TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            caller TEXT NOT NULL,
            ref_id TEXT NOT NULL,
            json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX tool_jobs_caller ON tool_jobs(caller, kind, created_at);
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
    (
        "0301_web_listings",
        """
        -- Workspaces that applied the first 0300 script lack what listings now read: the
        -- trial indexes that cover the listing columns and the web_claim_list table with
        -- its triggers. Idempotent: a no-op in effect where 0300 already made them.
        DROP INDEX IF EXISTS claims_campaign_id;
        DROP INDEX IF EXISTS claims_tier_id;
        CREATE INDEX IF NOT EXISTS trials_list ON trials(id, campaign_id, hypothesis_id, arm, seed, status, objective, created_at, updated_at);
        DROP INDEX IF EXISTS trials_campaign_id;
        CREATE INDEX trials_campaign_id ON trials(campaign_id, id, hypothesis_id, arm, seed, status, objective, created_at, updated_at);
        DROP INDEX IF EXISTS trials_status_id;
        CREATE INDEX trials_status_id ON trials(status, id, campaign_id, hypothesis_id, arm, seed, objective, created_at, updated_at);
        CREATE TABLE IF NOT EXISTS web_claim_list (
            claim_id TEXT PRIMARY KEY REFERENCES claims(id) ON DELETE CASCADE,
            campaign_id TEXT,
            hypothesis_id TEXT,
            tier TEXT NOT NULL,
            outcome TEXT NOT NULL,
            dataset TEXT NOT NULL,
            statement TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            estimate REAL,
            ci_low REAL,
            ci_high REAL,
            p_adjusted REAL,
            author TEXT
        );
        CREATE INDEX IF NOT EXISTS web_claim_list_tier ON web_claim_list(tier, claim_id);
        CREATE INDEX IF NOT EXISTS web_claim_list_campaign ON web_claim_list(campaign_id, claim_id);
        CREATE INDEX IF NOT EXISTS web_claim_list_dataset ON web_claim_list(dataset, outcome, claim_id);
        CREATE INDEX IF NOT EXISTS web_claim_list_outcome ON web_claim_list(outcome, claim_id);
        INSERT OR REPLACE INTO web_claim_list
            SELECT id, campaign_id, hypothesis_id, tier, outcome, dataset, statement, created_at, updated_at,
                   json_extract(json, '$.effect.estimate'), json_extract(json, '$.effect.ci_low'),
                   json_extract(json, '$.effect.ci_high'), json_extract(json, '$.effect.p_adjusted'),
                   json_extract(json, '$.author')
            FROM claims;
        CREATE TRIGGER IF NOT EXISTS web_claim_list_insert AFTER INSERT ON claims BEGIN
            INSERT OR REPLACE INTO web_claim_list VALUES (
                NEW.id, NEW.campaign_id, NEW.hypothesis_id, NEW.tier, NEW.outcome, NEW.dataset, NEW.statement,
                NEW.created_at, NEW.updated_at,
                json_extract(NEW.json, '$.effect.estimate'), json_extract(NEW.json, '$.effect.ci_low'),
                json_extract(NEW.json, '$.effect.ci_high'), json_extract(NEW.json, '$.effect.p_adjusted'),
                json_extract(NEW.json, '$.author'));
        END;
        CREATE TRIGGER IF NOT EXISTS web_claim_list_update AFTER UPDATE ON claims BEGIN
            INSERT OR REPLACE INTO web_claim_list VALUES (
                NEW.id, NEW.campaign_id, NEW.hypothesis_id, NEW.tier, NEW.outcome, NEW.dataset, NEW.statement,
                NEW.created_at, NEW.updated_at,
                json_extract(NEW.json, '$.effect.estimate'), json_extract(NEW.json, '$.effect.ci_low'),
                json_extract(NEW.json, '$.effect.ci_high'), json_extract(NEW.json, '$.effect.p_adjusted'),
                json_extract(NEW.json, '$.author'));
        END;
        """,
    ),
]
