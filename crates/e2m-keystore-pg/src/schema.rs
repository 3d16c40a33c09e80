//! The schema (created at start-up if missing) and every statement the stores run, with
//! the schema name filled in once.

/// The schema format this build writes and reads. 2: every time column (`created`,
/// `expires` of keys and sessions) holds Unix milliseconds, keys are sealed in e2m-seal
/// format 2, and a UE's keys are ordered by (created, key id), so `int_keys` has no
/// `arrival` column (issue 9 item 15). A schema of format 1 (seconds, ties by arrival) is
/// refused at connect, before any DDL touches it.
pub(crate) const FORMAT: i32 = 2;

/// Advisory lock keys (one `bigint` key space per database). Pushes lock the UE's IMSI read
/// as a decimal number (0 to 10^15 - 1); the constant locks are negative so that they never
/// meet one.
pub(crate) mod lock {
    /// Serialises schema creation between instances starting at once.
    pub(crate) const SCHEMA: i64 = -0x6532_6d00;
    /// Serialises session creation (the per-EMSE and total limits are counted under it).
    pub(crate) const SESSIONS: i64 = -0x6532_6d01;
    /// Serialises subscription creation (its limits likewise).
    pub(crate) const SUBSCRIPTIONS: i64 = -0x6532_6d02;
}

/// The push, as one server-side function so that a push is one statement and one round
/// trip (its implicit transaction commits before the answer is sent).
///
/// Under the UE's advisory lock (`p_lock`) it reads the UE's rows oldest first in retention
/// order (created, then key id; never arrival) and decides as the in-memory store does:
/// expired rows go; a live row with the pushed id created later wins (`stale`, nothing
/// written); one created earlier is replaced; one with the same creation time makes the
/// function answer `compare` with that row's expiry and sealed bytes and change nothing
/// (sealed bytes differ at every seal, so only the caller, holding the KEK, can tell an
/// identical key; it calls again with `p_same_id_differs` if the keys differ); then the
/// oldest live keys are evicted down to `p_keep`, unless the new key would be among them
/// (`stale`, nothing written). Times are Unix milliseconds.
/// VOLATILE, and called at READ COMMITTED, so each statement in it takes a fresh snapshot:
/// the SELECT, run after the lock was granted, sees what the previous holder committed.
fn push_function(s: &str) -> String {
    format!(
        "
CREATE OR REPLACE FUNCTION {s}.push_key(
    p_imsi text, p_lock bigint, p_key_id bigint, p_created bigint, p_expires bigint,
    p_kek_version bigint, p_sealed bytea, p_now bigint, p_keep integer,
    p_same_id_differs boolean)
RETURNS TABLE (outcome text, evicted bigint, held_expires bigint, held_sealed bytea,
    noted integer)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    r record;
    live_ids bigint[] := '{{}}';
    gone bigint[] := '{{}}';
    replaced boolean := false;
    n integer := 0;
    pos integer := 0;
    excess integer;
    noted integer := 0;
    inserted integer;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    FOR r IN SELECT k.key_id, k.created, k.expires, k.sealed FROM {s}.int_keys k
             WHERE k.imsi = p_imsi ORDER BY k.created, k.key_id LOOP
        IF p_now >= r.expires THEN
            gone := gone || r.key_id;
        ELSIF r.key_id = p_key_id THEN
            IF r.created > p_created THEN
                RETURN QUERY SELECT 'stale'::text, NULL::bigint, NULL::bigint, NULL::bytea, 0;
                RETURN;
            END IF;
            IF r.created = p_created AND NOT p_same_id_differs THEN
                RETURN QUERY SELECT 'compare'::text, NULL::bigint, r.expires, r.sealed, 0;
                RETURN;
            END IF;
            replaced := true;
            gone := gone || r.key_id;
        ELSE
            n := n + 1;
            live_ids := live_ids || r.key_id;
            IF (r.created, r.key_id) < (p_created, p_key_id) THEN
                pos := pos + 1;
            END IF;
        END IF;
    END LOOP;
    excess := greatest(n + 1 - p_keep, 0);
    IF excess > pos THEN
        RETURN QUERY SELECT 'stale'::text, NULL::bigint, NULL::bigint, NULL::bytea, 0;
        RETURN;
    END IF;
    gone := gone || live_ids[1:excess];
    IF cardinality(gone) > 0 THEN
        DELETE FROM {s}.int_keys k WHERE k.imsi = p_imsi AND k.key_id = ANY(gone);
    END IF;
    INSERT INTO {s}.int_keys (imsi, key_id, created, expires, kek_version, sealed)
        VALUES (p_imsi, p_key_id, p_created, p_expires, p_kek_version, p_sealed);
    -- The notifications this push causes, in its own transaction (the outbox): key-retired
    -- (event bit 2) for the key evicted or replaced, then key-available (bit 1) for the new
    -- one, one row per matching subscription (e2m_keystore::events_of_push).
    IF replaced OR excess > 0 THEN
        INSERT INTO {s}.outbox (subscription_id, emse, event, imsi, key_id, time, due)
            SELECT sub.id, sub.emse, 2, p_imsi,
                   CASE WHEN replaced THEN p_key_id ELSE live_ids[1] END, p_now, p_now
            FROM {s}.subscriptions sub
            WHERE (sub.imsi = p_imsi OR sub.imsi IS NULL) AND (sub.events & 2) <> 0
            ORDER BY sub.id;
        GET DIAGNOSTICS noted = ROW_COUNT;
    END IF;
    INSERT INTO {s}.outbox (subscription_id, emse, event, imsi, key_id, time, due)
        SELECT sub.id, sub.emse, 1, p_imsi, p_key_id, p_now, p_now
        FROM {s}.subscriptions sub
        WHERE (sub.imsi = p_imsi OR sub.imsi IS NULL) AND (sub.events & 1) <> 0
        ORDER BY sub.id;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    noted := noted + inserted;
    RETURN QUERY SELECT CASE WHEN replaced THEN 'replaced' ELSE 'stored' END,
        CASE WHEN excess > 0 AND NOT replaced THEN live_ids[1] END, NULL::bigint, NULL::bytea,
        noted;
END
$fn$;
"
    )
}

/// The schema's DDL, idempotent, for schema `s`.
pub(crate) fn ddl(s: &str) -> String {
    let push_fn = push_function(s);
    format!(
        "
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.meta (
    name  text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.kek_checks (
    kek_version bigint PRIMARY KEY CHECK (kek_version BETWEEN 1 AND 4294967295),
    record      bytea  NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.int_keys (
    imsi        text   NOT NULL,
    key_id      bigint NOT NULL CHECK (key_id BETWEEN 0 AND 4294967295),
    created     bigint NOT NULL,
    expires     bigint NOT NULL,
    kek_version bigint NOT NULL,
    sealed      bytea  NOT NULL,
    PRIMARY KEY (imsi, key_id)
);
CREATE INDEX IF NOT EXISTS int_keys_expires ON {s}.int_keys (expires);
-- The result gained `noted` (outbox rows written): a changed result type needs a new
-- function, not a replaced one. Under the schema lock, like all of this.
DO $do$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = '{s}' AND p.proname = 'push_key'
               AND NOT 'noted' = ANY(coalesce(p.proargnames, '{{}}'))) THEN
        DROP FUNCTION {s}.push_key(text, bigint, bigint, bigint, bigint, bigint, bytea, bigint,
                                   integer, boolean);
    END IF;
END $do$;
{push_fn}
CREATE TABLE IF NOT EXISTS {s}.identities (
    emse text NOT NULL,
    app  text NOT NULL,
    imsi text NOT NULL,
    PRIMARY KEY (emse, app)
);
CREATE SEQUENCE IF NOT EXISTS {s}.session_refs;
CREATE TABLE IF NOT EXISTS {s}.sessions (
    digest      bytea  PRIMARY KEY CHECK (length(digest) = 32),
    session_ref bigint NOT NULL UNIQUE,
    emse        text   NOT NULL,
    created     bigint NOT NULL,
    expires     bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_emse ON {s}.sessions (emse, expires);
CREATE INDEX IF NOT EXISTS sessions_expires ON {s}.sessions (expires);
CREATE SEQUENCE IF NOT EXISTS {s}.subscription_ids;
CREATE TABLE IF NOT EXISTS {s}.subscriptions (
    id          bigint   PRIMARY KEY,
    session_ref bigint   NOT NULL,
    emse        text     NOT NULL,
    events      smallint NOT NULL,
    imsi        text,
    ue_kind     smallint,
    ue_name     text,
    callback    text     NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_imsi ON {s}.subscriptions (imsi);
CREATE INDEX IF NOT EXISTS subscriptions_session ON {s}.subscriptions (session_ref);
CREATE SEQUENCE IF NOT EXISTS {s}.outbox_ids;
CREATE TABLE IF NOT EXISTS {s}.outbox (
    id              bigint   PRIMARY KEY DEFAULT nextval('{s}.outbox_ids'),
    subscription_id bigint   NOT NULL REFERENCES {s}.subscriptions (id) ON DELETE CASCADE,
    emse            text     NOT NULL,
    event           smallint NOT NULL,
    imsi            text     NOT NULL,
    key_id          bigint   NOT NULL,
    time            bigint   NOT NULL,
    due             bigint   NOT NULL,
    attempts        integer  NOT NULL DEFAULT 0,
    owner           bigint
);
CREATE INDEX IF NOT EXISTS outbox_due ON {s}.outbox (due, id);
CREATE INDEX IF NOT EXISTS outbox_subscription ON {s}.outbox (subscription_id);
-- No NOTIFY in the transactions that write the outbox: PostgreSQL serialises the commits
-- of notifying transactions on one global lock (held across the WAL flush), which took
-- pushes with a subscriber from about 3,400/s to 440/s here. The instance that recorded
-- entries announces them afterwards, outside the push (`PgBackend`'s announcer).
DROP TRIGGER IF EXISTS outbox_wake ON {s}.outbox;
DROP FUNCTION IF EXISTS {s}.outbox_wake();
"
    )
}

/// The `LISTEN`/`NOTIFY` channel on which an instance announces that it recorded outbox
/// entries (after their commit, in a statement of its own).
pub(crate) fn outbox_channel(s: &str) -> String {
    format!("{s}.outbox")
}

/// Every statement, with the schema name filled in.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) ddl: String,
    pub(crate) format_get: String,
    pub(crate) format_exists: String,
    pub(crate) format_set: String,
    /// The readiness test write ([`crate::PgBackend::check_writable`]): one row of `meta`,
    /// `write_probe`, set to the time of the test (read by nothing).
    pub(crate) write_probe: String,
    pub(crate) checks_get: String,
    pub(crate) checks_add: String,

    pub(crate) key_push: String,
    pub(crate) key_get: String,
    pub(crate) key_latest: String,
    pub(crate) key_held: String,
    pub(crate) key_remove_ue: String,
    pub(crate) key_sweep: String,

    pub(crate) id_provision: String,
    pub(crate) id_resolve: String,
    pub(crate) id_key_get: String,
    pub(crate) id_remove: String,
    pub(crate) id_remove_emse: String,
    pub(crate) id_import_lock: String,
    pub(crate) id_import_conflict: String,
    pub(crate) id_import_insert: String,

    pub(crate) session_counts: String,
    pub(crate) session_insert: String,
    pub(crate) session_get: String,
    pub(crate) session_remove: String,
    pub(crate) session_of_emse: String,
    pub(crate) session_sweep: String,
    pub(crate) session_evict_oldest: String,

    pub(crate) sub_counts: String,
    pub(crate) sub_insert: String,
    pub(crate) sub_get: String,
    pub(crate) sub_remove: String,
    pub(crate) sub_remove_session: String,
    pub(crate) sub_matching: String,
    pub(crate) sub_of_emse_for_ue: String,

    pub(crate) outbox_claim: String,
    pub(crate) outbox_delivered: String,
    pub(crate) outbox_retry: String,
    pub(crate) outbox_next_due: String,
    pub(crate) outbox_pending: String,
    pub(crate) outbox_listen: String,
    pub(crate) outbox_announce: String,
}

/// The staging table of an import: private to the connection, gone at the transaction's end.
pub(crate) const IMPORT_STAGING: &str = "CREATE TEMP TABLE e2m_import \
     (line bigint NOT NULL, emse text NOT NULL, app text NOT NULL, imsi text NOT NULL) \
     ON COMMIT DROP";
pub(crate) const IMPORT_COPY: &str =
    "COPY pg_temp.e2m_import (line, emse, app, imsi) FROM STDIN (FORMAT binary)";

/// `SELECT pg_advisory_xact_lock($1)`: held until the transaction ends.
pub(crate) const ADVISORY_XACT_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

const SESSION_COLUMNS: &str = "session_ref, emse, created, expires";
const SUB_COLUMNS: &str = "id, session_ref, emse, events, imsi, ue_kind, ue_name, callback";

impl Sql {
    pub(crate) fn new(s: &str) -> Sql {
        Sql {
            ddl: ddl(s),
            format_get: format!("SELECT value FROM {s}.meta WHERE name = 'format'"),
            format_exists: format!("SELECT to_regclass('{s}.meta') IS NOT NULL"),
            format_set: format!(
                "INSERT INTO {s}.meta (name, value) VALUES ('format', $1) ON CONFLICT DO NOTHING"
            ),
            write_probe: format!(
                "INSERT INTO {s}.meta (name, value) VALUES ('write_probe', now()::text) \
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
            ),
            checks_get: format!("SELECT record FROM {s}.kek_checks ORDER BY kek_version"),
            checks_add: format!(
                "INSERT INTO {s}.kek_checks (kek_version, record) VALUES ($1, $2) \
                 ON CONFLICT (kek_version) DO NOTHING"
            ),

            key_push: format!(
                "SELECT outcome, evicted, held_expires, held_sealed, noted \
                 FROM {s}.push_key($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            key_get: format!(
                "SELECT created, expires, sealed FROM {s}.int_keys \
                 WHERE imsi = $1 AND key_id = $2 AND expires > $3"
            ),
            key_latest: format!(
                "SELECT key_id, created, expires, sealed FROM {s}.int_keys \
                 WHERE imsi = $1 AND expires > $2 ORDER BY created DESC, key_id DESC LIMIT 1"
            ),
            key_held: format!(
                "SELECT key_id, created, expires FROM {s}.int_keys \
                 WHERE imsi = $1 AND expires > $2 ORDER BY created, key_id"
            ),
            key_remove_ue: format!("DELETE FROM {s}.int_keys WHERE imsi = $1"),
            // One statement: the keys it removes and their key-retired notifications
            // (outbox) commit together.
            key_sweep: format!(
                "WITH gone AS (DELETE FROM {s}.int_keys WHERE expires <= $1 \
                               RETURNING imsi, key_id, created, expires), \
                 noted AS (INSERT INTO {s}.outbox (subscription_id, emse, event, imsi, key_id, time, due) \
                           SELECT sub.id, sub.emse, 2, g.imsi, g.key_id, $1, $1 \
                           FROM gone g JOIN {s}.subscriptions sub \
                             ON (sub.imsi = g.imsi OR sub.imsi IS NULL) AND (sub.events & 2) <> 0 \
                           ORDER BY g.imsi, g.key_id, sub.id RETURNING 1) \
                 SELECT imsi, key_id, created, expires, (SELECT count(*) FROM noted) FROM gone"
            ),

            // The previous IMSI is read under the row lock the upsert takes: `old` sees the
            // row as it was before this statement, and a concurrent provisioning of the same
            // pair waits for this one (latest wins).
            id_provision: format!(
                "WITH old AS (SELECT imsi FROM {s}.identities WHERE emse = $1 AND app = $2 FOR UPDATE), \
                 up AS (INSERT INTO {s}.identities (emse, app, imsi) VALUES ($1, $2, $3) \
                        ON CONFLICT (emse, app) DO UPDATE SET imsi = EXCLUDED.imsi) \
                 SELECT imsi FROM old"
            ),
            id_resolve: format!("SELECT imsi FROM {s}.identities WHERE emse = $1 AND app = $2"),
            // A key fetch by application identity: the mapping and the key in one statement,
            // so one snapshot and one round trip. No row: the identity is unknown; a row
            // with NULL key columns: resolved, key not held. The key's conditions are
            // `key_get`'s exactly (live while `expires > now`).
            id_key_get: format!(
                "SELECT i.imsi, k.created, k.expires, k.sealed FROM {s}.identities i \
                 LEFT JOIN {s}.int_keys k \
                 ON k.imsi = i.imsi AND k.key_id = $3 AND k.expires > $4 \
                 WHERE i.emse = $1 AND i.app = $2"
            ),
            id_remove: format!(
                "DELETE FROM {s}.identities WHERE emse = $1 AND app = $2 RETURNING imsi"
            ),
            id_remove_emse: format!("DELETE FROM {s}.identities WHERE emse = $1"),
            // Blocks other writers of the map (single provisionings, other imports) for the
            // import's transaction, not readers: they see the map before or after it.
            id_import_lock: format!("LOCK TABLE {s}.identities IN SHARE ROW EXCLUSIVE MODE"),
            id_import_conflict: format!(
                "SELECT min(n.line) FROM pg_temp.e2m_import n JOIN {s}.identities i \
                 ON i.emse = n.emse AND i.app = n.app WHERE i.imsi <> n.imsi"
            ),
            id_import_insert: format!(
                "INSERT INTO {s}.identities (emse, app, imsi) \
                 SELECT emse, app, imsi FROM pg_temp.e2m_import \
                 ON CONFLICT (emse, app) DO NOTHING"
            ),

            session_counts: format!(
                "SELECT count(*), count(*) FILTER (WHERE emse = $1) FROM {s}.sessions \
                 WHERE expires > $2"
            ),
            session_insert: format!(
                "INSERT INTO {s}.sessions (digest, session_ref, emse, created, expires) \
                 VALUES ($1, nextval('{s}.session_refs'), $2, $3, $4) \
                 ON CONFLICT (digest) DO NOTHING RETURNING session_ref"
            ),
            session_get: format!(
                "SELECT {SESSION_COLUMNS} FROM {s}.sessions WHERE digest = $1 AND expires > $2"
            ),
            session_remove: format!(
                "DELETE FROM {s}.sessions WHERE digest = $1 RETURNING {SESSION_COLUMNS}"
            ),
            session_of_emse: format!(
                "SELECT {SESSION_COLUMNS} FROM {s}.sessions WHERE emse = $1 AND expires > $2 \
                 ORDER BY session_ref"
            ),
            session_sweep: format!(
                "DELETE FROM {s}.sessions WHERE expires <= $1 RETURNING {SESSION_COLUMNS}"
            ),
            session_evict_oldest: format!(
                "DELETE FROM {s}.sessions WHERE session_ref = \
                 (SELECT min(session_ref) FROM {s}.sessions WHERE emse = $1) \
                 RETURNING {SESSION_COLUMNS}"
            ),

            sub_counts: format!(
                "SELECT count(*), count(*) FILTER (WHERE session_ref = $1), \
                 count(*) FILTER (WHERE emse = $2 AND imsi IS NOT DISTINCT FROM $3) \
                 FROM {s}.subscriptions"
            ),
            sub_insert: format!(
                "INSERT INTO {s}.subscriptions \
                 (id, session_ref, emse, events, imsi, ue_kind, ue_name, callback) \
                 VALUES (nextval('{s}.subscription_ids'), $1, $2, $3, $4, $5, $6, $7) RETURNING id"
            ),
            sub_get: format!(
                "SELECT {SUB_COLUMNS} FROM {s}.subscriptions WHERE id = $1 AND session_ref = $2"
            ),
            sub_remove: format!(
                "DELETE FROM {s}.subscriptions WHERE id = $1 AND session_ref = $2 \
                 RETURNING {SUB_COLUMNS}"
            ),
            sub_remove_session: format!("DELETE FROM {s}.subscriptions WHERE session_ref = $1"),
            // The claim, one statement: lock up to $3 due entries oldest first, skipping
            // those another claimer holds locked (SKIP LOCKED) and the EMSEs in $2; keep at
            // most $4 per EMSE and $5 in all; move each to the end of its lease ($6) under
            // owner $7; return it with its subscription. A row another claimer has just
            // leased is re-checked against `due <= $1` when its lock is released, and fails.
            outbox_claim: format!(
                "WITH cand AS (SELECT o.id, o.emse, o.due FROM {s}.outbox o \
                               WHERE o.due <= $1 AND NOT (o.emse = ANY($2::text[])) \
                               ORDER BY o.due, o.id LIMIT $3 FOR UPDATE SKIP LOCKED), \
                 pick AS (SELECT id FROM (SELECT id, due, row_number() OVER \
                                          (PARTITION BY emse ORDER BY due, id) AS rn FROM cand) r \
                          WHERE rn <= $4 ORDER BY due, id LIMIT $5) \
                 UPDATE {s}.outbox o SET due = $6, owner = $7 \
                 FROM pick, {s}.subscriptions sub \
                 WHERE o.id = pick.id AND sub.id = o.subscription_id \
                 RETURNING o.id, o.event, o.imsi, o.key_id, o.time, o.attempts, \
                           sub.id, sub.session_ref, sub.emse, sub.events, sub.imsi, \
                           sub.ue_kind, sub.ue_name, sub.callback"
            ),
            outbox_delivered: format!("DELETE FROM {s}.outbox WHERE id = $1"),
            outbox_retry: format!(
                "UPDATE {s}.outbox SET due = $2, owner = NULL, attempts = attempts + 1 \
                 WHERE id = $1 AND owner = $3"
            ),
            outbox_next_due: format!("SELECT min(due) FROM {s}.outbox"),
            outbox_pending: format!("SELECT count(*) FROM {s}.outbox"),
            outbox_listen: format!("LISTEN \"{}\"", outbox_channel(s)),
            outbox_announce: format!("SELECT pg_notify('{}', '')", outbox_channel(s)),
            sub_matching: format!(
                "SELECT {SUB_COLUMNS} FROM {s}.subscriptions \
                 WHERE (imsi = $1 OR imsi IS NULL) AND (events & $2) <> 0 ORDER BY id"
            ),
            sub_of_emse_for_ue: format!(
                "SELECT {SUB_COLUMNS} FROM {s}.subscriptions \
                 WHERE emse = $1 AND imsi IS NOT DISTINCT FROM $2 ORDER BY id"
            ),
        }
    }
}
