"""The SQLite schema as numbered steps: a file at version N gets steps N+1.. at startup.

Every table keeps its documents as JSON in `doc` beside the key columns its queries filter and
sort on, and every hot query is answered from an index declared here
(tests/app/test_store_sqlite.py checks the plans with EXPLAIN QUERY PLAN).
"""

from __future__ import annotations

import sqlite3

from .db import Migration


def run_script(connection: sqlite3.Connection, script: str) -> None:
    """Run `;`-separated statements inside the current transaction (executescript would commit)."""
    for statement in script.split(";"):
        if statement.strip():
            connection.execute(statement)


def _step_1(connection: sqlite3.Connection) -> None:
    """The first schema: accounts, content, jobs, exports, imports and operations."""
    run_script(connection, """
        CREATE TABLE users (_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
        CREATE TABLE tokens (hash TEXT PRIMARY KEY, username TEXT NOT NULL,
                             created_on TEXT NOT NULL);
        CREATE INDEX tokens_user ON tokens (username);

        CREATE TABLE orgs (_id TEXT PRIMARY KEY, doc TEXT NOT NULL, public_access TEXT);
        CREATE TABLE org_members (org TEXT NOT NULL, username TEXT NOT NULL,
                                  PRIMARY KEY (org, username)) WITHOUT ROWID;
        CREATE INDEX org_members_user ON org_members (username, org);

        CREATE TABLE sources (
            _id TEXT PRIMARY KEY, doc TEXT NOT NULL, owner_url TEXT NOT NULL, owner TEXT,
            owner_type TEXT, public_access TEXT,
            seq INTEGER NOT NULL DEFAULT 0, mapping_counter INTEGER NOT NULL DEFAULT 0,
            last_updated TEXT NOT NULL DEFAULT '',
            content_checksum TEXT NOT NULL DEFAULT
                '0000000000000000000000000000000000000000000000000000000000000000',
            counts TEXT NOT NULL DEFAULT '{"Concept": [0, 0, 0], "Mapping": [0, 0, 0]}');
        CREATE INDEX sources_owner ON sources (owner_url, _id);

        CREATE TABLE versions (_id TEXT PRIMARY KEY, doc TEXT NOT NULL, source TEXT NOT NULL,
                               created_on TEXT NOT NULL, released INTEGER NOT NULL,
                               seq INTEGER NOT NULL, checksum TEXT, counts TEXT);
        CREATE INDEX versions_source ON versions (source, created_on, _id);
        CREATE INDEX versions_released ON versions (source, released, created_on, _id);

        CREATE TABLE items (
            doc TEXT NOT NULL, source TEXT NOT NULL, type TEXT NOT NULL,
            id TEXT NOT NULL, url TEXT NOT NULL, seq INTEGER NOT NULL, sup INTEGER NOT NULL,
            deleted INTEGER NOT NULL, retired INTEGER NOT NULL, updated_on TEXT NOT NULL,
            from_concept_url TEXT GENERATED ALWAYS AS
                (json_extract(doc, '$.data.from_concept_url')) VIRTUAL,
            to_concept_url TEXT GENERATED ALWAYS AS
                (json_extract(doc, '$.data.to_concept_url')) VIRTUAL);
        CREATE UNIQUE INDEX items_url ON items (url, seq);
        CREATE INDEX items_head ON items (source, type, sup, deleted, retired, id);
        CREATE INDEX items_at ON items (source, type, id, sup, seq);
        CREATE INDEX items_diff ON items (source, updated_on, type, id, sup, seq, deleted,
                                          retired);
        CREATE INDEX items_from ON items (from_concept_url, source, id, sup, seq, deleted)
            WHERE from_concept_url IS NOT NULL;
        CREATE INDEX items_to ON items (to_concept_url, source, id, sup, seq, deleted)
            WHERE to_concept_url IS NOT NULL;
        CREATE TABLE mapping_keys (_id TEXT PRIMARY KEY, doc TEXT NOT NULL, source TEXT NOT NULL,
                                   mapping_id TEXT NOT NULL);
        CREATE INDEX mapping_keys_source ON mapping_keys (source);

        CREATE TABLE jobs (
            _id TEXT PRIMARY KEY, doc TEXT NOT NULL, kind TEXT NOT NULL, key TEXT,
            generation INTEGER, owner TEXT, queue TEXT, state TEXT NOT NULL, worker TEXT, lease_until TEXT,
            attempts INTEGER NOT NULL DEFAULT 0, created_on TEXT NOT NULL, updated_on TEXT,
            started_on TEXT, finished_on TEXT, progress TEXT, result TEXT, error TEXT);
        CREATE INDEX jobs_active ON jobs (created_on) WHERE state IN ('PENDING', 'RUNNING');
        CREATE INDEX jobs_queue ON jobs (queue, created_on, _id)
            WHERE state IN ('PENDING', 'RUNNING');
        CREATE INDEX jobs_key ON jobs (kind, key, generation);
        CREATE INDEX jobs_owner ON jobs (kind, owner, created_on, _id);
        CREATE INDEX jobs_of_queue ON jobs (kind, queue, created_on, _id);
        CREATE INDEX jobs_created ON jobs (created_on);

        CREATE TABLE exports (
            _id TEXT PRIMARY KEY, doc TEXT NOT NULL, source TEXT, job_id TEXT, file TEXT,
            sha256 TEXT GENERATED ALWAYS AS (json_extract(file, '$.sha256')) VIRTUAL);
        CREATE INDEX exports_source ON exports (source, _id);
        CREATE INDEX exports_sha256 ON exports (sha256, source, _id);

        CREATE TABLE import_results (_id TEXT PRIMARY KEY, doc TEXT NOT NULL, job TEXT NOT NULL,
                                     action TEXT, line INTEGER, part INTEGER);
        CREATE INDEX import_results_action ON import_results (job, action, _id);
        CREATE TABLE import_keys (_id TEXT PRIMARY KEY, job TEXT);

        CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT, until TEXT NOT NULL,
                             acquired_on TEXT, runs INTEGER NOT NULL DEFAULT 0, error TEXT,
                             finished_on TEXT);
        CREATE TABLE heartbeats (_id TEXT PRIMARY KEY, doc TEXT NOT NULL, seen_on TEXT NOT NULL,
                                 started_on TEXT, expires_at TEXT NOT NULL);
        CREATE INDEX heartbeats_seen ON heartbeats (seen_on);
        CREATE TABLE rate_counters (key TEXT PRIMARY KEY, count INTEGER NOT NULL,
                                    expires_at TEXT NOT NULL);
        CREATE INDEX rate_counters_expiry ON rate_counters (expires_at);
    """)


def _step_2(connection: sqlite3.Connection) -> None:
    """The console's reads: concepts by class or datatype, changes between two seqs, and
    console sessions.

    The fields these read live in `doc`; virtual generated columns name them (computed on read,
    nothing stored) so that partial indexes hold only the items that have them.
    """
    run_script(connection, """
        ALTER TABLE items ADD COLUMN concept_class TEXT
            GENERATED ALWAYS AS (json_extract(doc, '$.data.concept_class')) VIRTUAL;
        ALTER TABLE items ADD COLUMN datatype TEXT
            GENERATED ALWAYS AS (json_extract(doc, '$.data.datatype')) VIRTUAL;
        CREATE INDEX items_class ON items (source, type, concept_class, id, sup, seq, deleted,
                                           retired) WHERE concept_class IS NOT NULL;
        CREATE INDEX items_datatype ON items (source, type, datatype, id, sup, seq, deleted,
                                              retired) WHERE datatype IS NOT NULL;
        CREATE INDEX items_seq ON items (source, seq);

        CREATE TABLE console_sessions (_id TEXT PRIMARY KEY, doc TEXT NOT NULL,
                                       expires_at TEXT NOT NULL);
        CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
    """)


def _step_3(connection: sqlite3.Connection) -> None:
    """Collections: a repository's kind, the references of collections and their entries (which
    item version each item url of a collection resolves to), versioned by the collection's seq.

    Entries keep no document: their reads join `items` on (url, item_seq) for the data, through
    `items_url`. `entries_followers` (only the entries that follow their item) finds what an item
    write must bring up to date.
    """
    run_script(connection, """
        ALTER TABLE sources ADD COLUMN repo_type TEXT NOT NULL DEFAULT 'Source';
        CREATE INDEX sources_kind ON sources (repo_type, owner_url, _id);

        CREATE TABLE collection_references (
            doc TEXT NOT NULL, collection TEXT NOT NULL, expression TEXT NOT NULL,
            url TEXT NOT NULL, seq INTEGER NOT NULL, sup INTEGER NOT NULL);
        CREATE UNIQUE INDEX references_expression ON collection_references
            (collection, expression, seq);
        CREATE INDEX references_head ON collection_references (collection, sup, expression);
        CREATE INDEX references_url ON collection_references (collection, url, sup);

        CREATE TABLE collection_entries (
            collection TEXT NOT NULL, url TEXT NOT NULL, seq INTEGER NOT NULL,
            sup INTEGER NOT NULL, type TEXT NOT NULL, item_id TEXT NOT NULL,
            source TEXT NOT NULL, item_seq INTEGER NOT NULL, deleted INTEGER NOT NULL,
            retired INTEGER NOT NULL, follow INTEGER NOT NULL, updated_on TEXT NOT NULL);
        CREATE UNIQUE INDEX entries_url ON collection_entries (collection, url, seq);
        CREATE INDEX entries_head ON collection_entries (collection, type, sup, deleted, retired,
                                                         url);
        CREATE INDEX entries_at ON collection_entries (collection, type, url, sup, seq);
        CREATE INDEX entries_diff ON collection_entries (collection, updated_on, type, url, sup,
                                                         seq, deleted, retired);
        CREATE INDEX entries_id ON collection_entries (collection, type, item_id, sup, seq);
        CREATE INDEX entries_followers ON collection_entries (url, sup) WHERE follow = 1;
        CREATE INDEX entries_source ON collection_entries (source, collection, seq, sup);
    """)


def _step_4(connection: sqlite3.Connection) -> None:
    """One index of a source's items by id instead of two: `items_id` (source, type, id, sup,
    seq, deleted, retired) lists HEAD (sup = LIVE, live and not retired, filtered in the index)
    as `items_head` did and a version's content as `items_at` did. Each item write maintains
    one index fewer, the one that costs most when ids arrive in no order (docs/performance.md,
    Imports)."""
    run_script(connection, """
        CREATE INDEX items_id ON items (source, type, id, sup, seq, deleted, retired);
        DROP INDEX items_head;
        DROP INDEX items_at;
    """)


def _step_5(connection: sqlite3.Connection) -> None:
    """Webhooks and their delivery log (app/webhooks), and released versions of every
    repository newest first (the server's Atom feed)."""
    run_script(connection, """
        CREATE TABLE webhooks (_id TEXT PRIMARY KEY, doc TEXT NOT NULL,
                               repository TEXT NOT NULL, created_on TEXT NOT NULL,
                               failures INTEGER NOT NULL DEFAULT 0, disabled_on TEXT,
                               active INTEGER NOT NULL);
        CREATE INDEX webhooks_repository ON webhooks (repository, created_on, _id);
        CREATE INDEX webhooks_disabled ON webhooks (disabled_on, _id) WHERE active = 0;
        CREATE TABLE webhook_deliveries (_id TEXT PRIMARY KEY, doc TEXT NOT NULL,
                                         hook TEXT NOT NULL, created_on TEXT NOT NULL,
                                         state TEXT NOT NULL);
        CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (hook, created_on, _id);
        CREATE INDEX versions_newest_released ON versions (created_on, _id) WHERE released = 1;
    """)


def _step_6(connection: sqlite3.Connection) -> None:
    """Global lists of repositories count what the caller may see: `sources_visibility` holds
    every column the visibility rule reads (kind, access, owner), so a count reads this small
    index instead of every repository's document, and a page of anonymous callers' reads only
    the public ones."""
    run_script(connection, """
        CREATE INDEX sources_visibility ON sources (repo_type, public_access, owner_type, owner);
    """)


STEPS: list[Migration] = [_step_1, _step_2, _step_3, _step_4, _step_5, _step_6]
