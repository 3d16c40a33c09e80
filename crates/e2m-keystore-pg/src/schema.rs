//! The schema (created at start-up if missing) and every statement the stores run, with
//! the schema name filled in once.

/// The schema format this build writes and reads.
pub(crate) const FORMAT: i32 = 1;

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

/// The schema's DDL, idempotent, for schema `s`.
pub(crate) fn ddl(s: &str) -> String {
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
CREATE SEQUENCE IF NOT EXISTS {s}.arrivals;
CREATE TABLE IF NOT EXISTS {s}.int_keys (
    imsi        text   NOT NULL,
    key_id      bigint NOT NULL CHECK (key_id BETWEEN 0 AND 4294967295),
    created     bigint NOT NULL,
    expires     bigint NOT NULL,
    arrival     bigint NOT NULL DEFAULT nextval('{s}.arrivals'),
    kek_version bigint NOT NULL,
    sealed      bytea  NOT NULL,
    PRIMARY KEY (imsi, key_id)
);
CREATE INDEX IF NOT EXISTS int_keys_expires ON {s}.int_keys (expires);
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
"
    )
}

/// Every statement, with the schema name filled in.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) ddl: String,
    pub(crate) format_get: String,
    pub(crate) format_set: String,
    pub(crate) checks_get: String,
    pub(crate) checks_add: String,

    pub(crate) key_rows_of_ue: String,
    pub(crate) key_delete_ids: String,
    pub(crate) key_insert: String,
    pub(crate) key_get: String,
    pub(crate) key_latest: String,
    pub(crate) key_held: String,
    pub(crate) key_remove_ue: String,
    pub(crate) key_sweep: String,

    pub(crate) id_provision: String,
    pub(crate) id_resolve: String,
    pub(crate) id_remove: String,
    pub(crate) id_remove_emse: String,

    pub(crate) session_counts: String,
    pub(crate) session_insert: String,
    pub(crate) session_get: String,
    pub(crate) session_remove: String,
    pub(crate) session_of_emse: String,
    pub(crate) session_sweep: String,

    pub(crate) sub_counts: String,
    pub(crate) sub_insert: String,
    pub(crate) sub_get: String,
    pub(crate) sub_remove: String,
    pub(crate) sub_remove_session: String,
    pub(crate) sub_matching: String,
}

/// Transaction control as prepared statements, so that they can be pipelined.
pub(crate) const BEGIN_READ_COMMITTED: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";
pub(crate) const COMMIT: &str = "COMMIT";
pub(crate) const ROLLBACK: &str = "ROLLBACK";

/// `SELECT pg_advisory_xact_lock($1)`: held until the transaction ends.
pub(crate) const ADVISORY_XACT_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

const SESSION_COLUMNS: &str = "session_ref, emse, created, expires";
const SUB_COLUMNS: &str = "id, session_ref, emse, events, imsi, ue_kind, ue_name, callback";

impl Sql {
    pub(crate) fn new(s: &str) -> Sql {
        Sql {
            ddl: ddl(s),
            format_get: format!("SELECT value FROM {s}.meta WHERE name = 'format'"),
            format_set: format!(
                "INSERT INTO {s}.meta (name, value) VALUES ('format', $1) ON CONFLICT DO NOTHING"
            ),
            checks_get: format!("SELECT record FROM {s}.kek_checks ORDER BY kek_version"),
            checks_add: format!(
                "INSERT INTO {s}.kek_checks (kek_version, record) VALUES ($1, $2) \
                 ON CONFLICT (kek_version) DO NOTHING"
            ),

            key_rows_of_ue: format!(
                "SELECT key_id, created, expires, sealed FROM {s}.int_keys \
                 WHERE imsi = $1 ORDER BY created, arrival"
            ),
            key_delete_ids: format!(
                "DELETE FROM {s}.int_keys WHERE imsi = $1 AND key_id = ANY($2)"
            ),
            key_insert: format!(
                "INSERT INTO {s}.int_keys (imsi, key_id, created, expires, kek_version, sealed) \
                 VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            key_get: format!(
                "SELECT created, expires, sealed FROM {s}.int_keys \
                 WHERE imsi = $1 AND key_id = $2 AND expires > $3"
            ),
            key_latest: format!(
                "SELECT key_id, created, expires, sealed FROM {s}.int_keys \
                 WHERE imsi = $1 AND expires > $2 ORDER BY created DESC, arrival DESC LIMIT 1"
            ),
            key_held: format!(
                "SELECT key_id, created, expires FROM {s}.int_keys \
                 WHERE imsi = $1 AND expires > $2 ORDER BY created, arrival"
            ),
            key_remove_ue: format!("DELETE FROM {s}.int_keys WHERE imsi = $1"),
            key_sweep: format!(
                "DELETE FROM {s}.int_keys WHERE expires <= $1 \
                 RETURNING imsi, key_id, created, expires"
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
            id_remove: format!(
                "DELETE FROM {s}.identities WHERE emse = $1 AND app = $2 RETURNING imsi"
            ),
            id_remove_emse: format!("DELETE FROM {s}.identities WHERE emse = $1"),

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

            sub_counts: format!(
                "SELECT count(*), count(*) FILTER (WHERE session_ref = $1) FROM {s}.subscriptions"
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
            sub_matching: format!(
                "SELECT {SUB_COLUMNS} FROM {s}.subscriptions \
                 WHERE (imsi = $1 OR imsi IS NULL) AND (events & $2) <> 0 ORDER BY id"
            ),
        }
    }
}
