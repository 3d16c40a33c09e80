//! The shared part of the four stores: the pool, the keyring and the statements.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use e2m_keystore::{DatabaseId, RetentionPolicy, SessionPolicy, SubscriptionPolicy, Timestamp};
use e2m_seal::{CheckRecord, Keyring, SealNonce};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::schema::{self, Sql};
use crate::{
    BackendError, ConnectError, PgConfig, PgIdentityMap, PgIntKeyStore, PgSessionStore,
    PgSubscriptionStore,
};

/// What every store handle of one [`PgBackend`] shares.
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) keyring: Keyring,
    pub(crate) sql: Sql,
    /// The AKMA tables' DDL and statements (issue 18).
    pub(crate) akma: crate::akma::AkmaSql,
    /// The token every store of this backend answers to `database()`: stores sharing it
    /// share the pool, the schema and the keyring, so one statement can read them together.
    pub(crate) database: DatabaseId,
    /// How the outbox's `LISTEN` connection (outside the pool) connects.
    pub(crate) listen_config: tokio_postgres::Config,
    /// Asks the announcer task to `NOTIFY` the outbox channel (see [`Shared::announce`]).
    announcer: Arc<tokio::sync::Notify>,
}

impl Shared {
    /// Tells the other instances that this one recorded outbox entries: a task of this
    /// backend sends one `pg_notify` in a statement of its own. Not in the push's
    /// transaction, because PostgreSQL serialises the commits of notifying transactions on
    /// one global lock held across the WAL flush (pushes with a subscriber fell from about
    /// 3,400/s to 440/s with a trigger doing it). Requests made while one announcement is
    /// under way fold into the next, so there is at most one announcing statement in
    /// flight per instance. An announcement that fails is only a lost wake-up: deliverers
    /// also poll, and the outbox rows are the truth.
    pub(crate) fn announce(&self) {
        self.announcer.notify_one();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Wakes the announcer task so that it finds the backend gone and ends.
        self.announcer.notify_one();
    }
}

/// The announcer task: one `pg_notify` per wake-up, while the backend lives.
async fn announce_while_alive(shared: std::sync::Weak<Shared>, wake: Arc<tokio::sync::Notify>) {
    loop {
        wake.notified().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // A failure is a lost wake-up only (see `Shared::announce`).
        let _ = shared.execute(&shared.sql.outbox_announce, &[]).await;
    }
}

/// A pooled connection.
pub(crate) type Conn = deadpool_postgres::Object;

impl Shared {
    /// A connection from the pool (made if none is free, recycled if it broke).
    pub(crate) async fn conn(&self) -> Result<Conn, BackendError> {
        Ok(self.pool.get().await?)
    }

    /// Runs one statement (prepared once per connection) and returns its rows.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, BackendError> {
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(sql).await?;
        Ok(conn.query(&statement, params).await?)
    }

    /// Runs one statement and returns how many rows it changed.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, BackendError> {
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(sql).await?;
        Ok(conn.execute(&statement, params).await?)
    }
}

/// One EMKS instance's connection to the shared PostgreSQL store: a bounded pool, the
/// operator's keyring, and the schema. The four store handles it makes share them.
///
/// Cloning is cheap (one `Arc`); every clone uses the same pool.
#[derive(Clone)]
pub struct PgBackend {
    pub(crate) shared: Arc<Shared>,
}

impl core::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PgBackend")
            .field("pool", &self.shared.pool.status())
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Connects, creates the schema if missing, and checks the keyring against the check
    /// records stored in the database (storing one for the newest KEK if it has none).
    ///
    /// # Errors
    /// [`ConnectError::Database`] if the database cannot be reached or the schema not made;
    /// [`ConnectError::Kek`] if a KEK file is missing or holds another key than the one the
    /// stored data was sealed under; [`ConnectError::SchemaTooNew`].
    pub async fn connect(config: &PgConfig, keyring: Keyring) -> Result<PgBackend, ConnectError> {
        let manager = Manager::from_config(
            config.connection_config(),
            NoTls,
            ManagerConfig {
                // A connection whose socket closed is dropped on return to the pool, so the
                // pool heals by itself when the database comes back.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.timeout))
            .recycle_timeout(Some(config.timeout))
            .build()
            .map_err(|_| ConnectError::InvalidConfig("connection pool could not be built"))?;
        let announcer = Arc::new(tokio::sync::Notify::new());
        let shared = Arc::new(Shared {
            pool,
            keyring,
            sql: Sql::new(&config.schema),
            akma: crate::akma::AkmaSql::new(&config.schema),
            database: DatabaseId::unique(),
            listen_config: config.connection_config(),
            announcer: Arc::clone(&announcer),
        });
        tokio::spawn(announce_while_alive(Arc::downgrade(&shared), announcer));
        create_schema(&shared).await?;
        check_keyring(&shared).await?;
        Ok(PgBackend { shared })
    }

    /// The intermediate key store, applying `policy` to the pushes it takes. Every
    /// instance on one database should use the same policy (an instance with a smaller N
    /// evicts down to its N at its next push for a UE).
    pub fn int_keys(&self, policy: RetentionPolicy) -> PgIntKeyStore {
        PgIntKeyStore::new(self.shared.clone(), policy)
    }

    /// The identity map.
    pub fn identities(&self) -> PgIdentityMap {
        PgIdentityMap::new(self.shared.clone())
    }

    /// The session store, applying `policy`.
    pub fn sessions(&self, policy: SessionPolicy) -> PgSessionStore {
        PgSessionStore::new(self.shared.clone(), policy)
    }

    /// The subscription store, applying `policy`.
    pub fn subscriptions(&self, policy: SubscriptionPolicy) -> PgSubscriptionStore {
        PgSubscriptionStore::new(self.shared.clone(), policy)
    }

    /// A wake-up handle for this instance's notification deliverer: notified whenever any
    /// instance on the database recorded outbox entries (each instance `NOTIFY`s the
    /// outbox channel after a push or sweep that wrote some; a task of this call `LISTEN`s
    /// on one connection of its own, outside the pool, and reconnects if it breaks). Give it to the EMKS
    /// server (`e2m_https::emks::EmksServerOptions::outbox_wake`); the listening task ends
    /// when every other handle on it is dropped. Needs a Tokio runtime.
    pub fn outbox_wakeups(&self) -> Arc<tokio::sync::Notify> {
        let wake = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(crate::outbox::listen(
            self.shared.clone(),
            Arc::clone(&wake),
        ));
        wake
    }

    /// Whether this instance can write to the database now: one small write on a pooled
    /// connection, committed like a push (it sets the `write_probe` row of the schema's
    /// `meta` table to the time of the test; with a synchronous standby, it waits for it as
    /// a push does). It fails while the database is down or unreachable, on a standby
    /// (read-only until promoted), with `default_transaction_read_only` on, and when the
    /// database cannot write. An EMKS's readiness check calls it (at most about once a
    /// second); bound it with a timeout, since with a synchronous standby that is gone it
    /// waits as pushes do.
    ///
    /// # Errors
    /// [`BackendError::Pool`] if no connection can be had (the database is down: within
    /// the configured timeout), [`BackendError::Database`] if the statement fails
    /// (read-only, in recovery, the connection broke).
    pub async fn check_writable(&self) -> Result<(), BackendError> {
        self.shared
            .execute(&self.shared.sql.write_probe, &[])
            .await
            .map(drop)
    }

    /// Closes the pool: every operation after this fails with a typed error, and the
    /// connections are closed as they return.
    pub fn close(&self) {
        self.shared.pool.close();
    }
}

/// Creates the schema (idempotent), serialised between instances that start at once, and
/// refuses a schema of another format. An existing schema's format is read before any DDL
/// runs, so an old schema (and the old instances still using it) is left untouched.
async fn create_schema(shared: &Shared) -> Result<(), ConnectError> {
    let mut conn = shared.conn().await?;
    let tx = conn.transaction().await?;
    tx.execute(schema::ADVISORY_XACT_LOCK, &[&schema::lock::SCHEMA])
        .await?;
    let exists: bool = tx
        .query_one(&shared.sql.format_exists, &[])
        .await?
        .try_get(0)?;
    if exists && let Some(row) = tx.query_opt(&shared.sql.format_get, &[]).await? {
        check_format(row.try_get(0)?)?;
    }
    tx.batch_execute(&shared.sql.ddl).await?;
    tx.batch_execute(&shared.akma.ddl).await?;
    tx.execute(&shared.sql.format_set, &[&schema::FORMAT.to_string()])
        .await?;
    let row = tx.query_one(&shared.sql.format_get, &[]).await?;
    check_format(row.try_get(0)?)?;
    tx.commit().await?;
    Ok(())
}

/// Accepts only the format this build writes: an older one holds times in another unit.
fn check_format(found: &str) -> Result<(), ConnectError> {
    let found: i32 = found
        .parse()
        .map_err(|_| BackendError::CorruptRow("meta.format is not a number"))?;
    match found.cmp(&schema::FORMAT) {
        core::cmp::Ordering::Equal => Ok(()),
        core::cmp::Ordering::Greater => Err(ConnectError::SchemaTooNew {
            found,
            known: schema::FORMAT,
        }),
        core::cmp::Ordering::Less => Err(ConnectError::SchemaTooOld {
            found,
            expected: schema::FORMAT,
        }),
    }
}

/// Reads the check records, verifies the keyring against them, and records the newest KEK
/// if the database has no record of it yet.
async fn check_keyring(shared: &Shared) -> Result<(), ConnectError> {
    let records = read_check_records(shared).await?;
    let check = shared
        .keyring
        .startup_check(records.iter())
        .map_err(ConnectError::Kek)?;
    let Some(version) = check.newest_unrecorded else {
        return Ok(());
    };
    let nonce = SealNonce::random().map_err(|e| ConnectError::Database(BackendError::Seal(e)))?;
    let record = shared
        .keyring
        .make_check_record(version, nonce)
        .map_err(|e| ConnectError::Database(BackendError::Seal(e)))?;
    shared
        .execute(
            &shared.sql.checks_add,
            &[&i64::from(version.get()), &record.as_bytes().as_slice()],
        )
        .await?;
    // Another instance may have recorded the same version at the same moment (the insert
    // above then did nothing): verify what is stored now.
    let records = read_check_records(shared).await?;
    shared
        .keyring
        .startup_check(records.iter())
        .map_err(ConnectError::Kek)?;
    Ok(())
}

async fn read_check_records(shared: &Shared) -> Result<Vec<CheckRecord>, ConnectError> {
    let rows = shared.query(&shared.sql.checks_get, &[]).await?;
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        let bytes: &[u8] = row.try_get(0).map_err(BackendError::Database)?;
        let record = CheckRecord::from_bytes(bytes)
            .map_err(|e| ConnectError::Kek(e2m_seal::CheckError::Damaged(e)))?;
        records.push(record);
    }
    Ok(records)
}

/// A timestamp as stored: Unix milliseconds in a `bigint` (the full resolution; schema
/// format 2; [`Timestamp::MAX`] fits).
pub(crate) fn db_time(t: Timestamp) -> i64 {
    i64::try_from(t.as_unix_millis()).unwrap_or(i64::MAX)
}

/// A stored timestamp (Unix milliseconds).
pub(crate) fn from_db_time(ms: i64) -> Result<Timestamp, BackendError> {
    u64::try_from(ms)
        .ok()
        .and_then(Timestamp::checked_from_unix_millis)
        .ok_or(BackendError::CorruptRow("timestamp out of range"))
}
