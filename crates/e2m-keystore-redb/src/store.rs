//! Opening the store: the file, its tables, the schema version and the KEK start-up check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use e2m_keystore::{RetentionPolicy, SessionPolicy, SubscriptionPolicy};
use e2m_seal::{CheckRecord, Keyring, SealNonce};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    WriteTransaction,
};

use crate::RedbStoreError;
use crate::error::{DbResult, redb_err};
use crate::tables::{
    IDENTITIES, INT_KEY_EXPIRY, INT_KEYS, KEK_CHECKS, META, META_NEXT_SESSION_REF,
    META_NEXT_SUBSCRIPTION_ID, META_SCHEMA, SCHEMA_VERSION, SESSIONS, SESSIONS_BY_EMSE,
    SESSIONS_BY_EXPIRY, SUBS_BY_SESSION, SUBS_BY_UE, SUBSCRIPTIONS,
};
use crate::writer::Writer;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "e2m-emks.redb";

/// The policies the store applies (the same values the in-memory stores take).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedbStoreConfig {
    /// Intermediate keys kept per UE, and for how long.
    pub retention: RetentionPolicy,
    /// Session lifetime and limits.
    pub sessions: SessionPolicy,
    /// Subscription limits.
    pub subscriptions: SubscriptionPolicy,
}

/// The embedded durable EMKS store: all four e2m-keystore traits over one redb file.
///
/// Cheap to clone (one `Arc`): hand a clone to each place that needs one of the traits
/// (the EMKS core takes its four stores by value). The file is closed, and the writer
/// thread stopped after committing what was queued, when the last clone is dropped.
#[derive(Clone)]
pub struct RedbStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    // Declared first so that it drops first: the writer thread commits what is queued and
    // releases its handle on the database before the database closes.
    pub(crate) writer: Writer,
    pub(crate) db: Arc<Database>,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) config: RedbStoreConfig,
    path: PathBuf,
}

impl core::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.inner.path)
            .field("keyring", &self.inner.keyring)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store in `dir`, in the file [`DATABASE_FILE`], creating the
    /// directory if needed.
    ///
    /// Start-up checks, in this order: the file is a redb database and not damaged (a file
    /// that was not closed cleanly is repaired by redb first); its schema version is this
    /// build's; the KEKs of `keyring` open every stored check record (e2m-seal), so a
    /// missing or wrong KEK file is refused here with [`RedbStoreError::Kek`], never found
    /// later as keys that do not open. A check record for the newest KEK is stored before
    /// anything is sealed under it.
    ///
    /// # Errors
    /// [`RedbStoreError::DataDir`], [`RedbStoreError::AlreadyOpen`],
    /// [`RedbStoreError::Damaged`], [`RedbStoreError::SchemaVersion`],
    /// [`RedbStoreError::Kek`], [`RedbStoreError::Seal`], or [`RedbStoreError::Redb`].
    pub fn open(
        dir: impl AsRef<Path>,
        keyring: Keyring,
        config: RedbStoreConfig,
    ) -> Result<RedbStore, RedbStoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(RedbStoreError::DataDir)?;
        let path = dir.join(DATABASE_FILE);
        let db = Database::builder().create(&path).map_err(classify)?;
        prepare(&db, &keyring).map_err(|e| match e {
            RedbStoreError::Redb(e) => classify(e),
            other => other,
        })?;
        let db = Arc::new(db);
        let writer = Writer::start(Arc::clone(&db))?;
        Ok(RedbStore {
            inner: Arc::new(Inner {
                writer,
                db,
                keyring: Arc::new(keyring),
                config,
                path,
            }),
        })
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The policies this store applies.
    pub fn config(&self) -> RedbStoreConfig {
        self.inner.config
    }

    /// A snapshot for reading: it sees every commit made before it began, never waits for
    /// the writer, and the writer never waits for it (redb's MVCC).
    pub(crate) fn read(&self) -> DbResult<ReadTransaction> {
        self.inner.db.begin_read().map_err(redb_err)
    }
}

/// Sorts a redb error met while opening: a lock held elsewhere, a damaged or foreign file,
/// or anything else.
fn classify(e: impl Into<redb::Error>) -> RedbStoreError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::DatabaseAlreadyOpen => RedbStoreError::AlreadyOpen,
        redb::Error::Corrupted(_) | redb::Error::UpgradeRequired(_) => RedbStoreError::Damaged(e),
        redb::Error::Io(ref io) if io.kind() == std::io::ErrorKind::InvalidData => {
            RedbStoreError::Damaged(e)
        }
        other => RedbStoreError::Redb(other),
    }
}

/// Creates the tables, checks the schema version and the KEKs, in one write transaction.
fn prepare(db: &Database, keyring: &Keyring) -> DbResult<()> {
    let mut txn = db.begin_write().map_err(redb_err)?;
    txn.set_quick_repair(true);
    create_tables(&txn)?;
    check_schema(&txn)?;
    check_keks(&txn, keyring)?;
    txn.commit().map_err(redb_err)
}

fn create_tables(txn: &WriteTransaction) -> DbResult<()> {
    txn.open_table(INT_KEYS).map_err(redb_err)?;
    txn.open_table(INT_KEY_EXPIRY).map_err(redb_err)?;
    txn.open_table(IDENTITIES).map_err(redb_err)?;
    txn.open_table(SESSIONS).map_err(redb_err)?;
    txn.open_table(SESSIONS_BY_EMSE).map_err(redb_err)?;
    txn.open_table(SESSIONS_BY_EXPIRY).map_err(redb_err)?;
    txn.open_table(SUBSCRIPTIONS).map_err(redb_err)?;
    txn.open_table(SUBS_BY_UE).map_err(redb_err)?;
    txn.open_table(SUBS_BY_SESSION).map_err(redb_err)?;
    txn.open_table(KEK_CHECKS).map_err(redb_err)?;
    Ok(())
}

fn check_schema(txn: &WriteTransaction) -> DbResult<()> {
    let mut meta = txn.open_table(META).map_err(redb_err)?;
    let found = meta.get(META_SCHEMA).map_err(redb_err)?.map(|v| v.value());
    match found {
        Some(SCHEMA_VERSION) => Ok(()),
        Some(found) => Err(RedbStoreError::SchemaVersion {
            found,
            expected: SCHEMA_VERSION,
        }),
        None => {
            // A new file; a file with data but no schema entry was not written by this crate.
            if meta.len().map_err(redb_err)? != 0 {
                return Err(RedbStoreError::Corrupt("schema entry"));
            }
            meta.insert(META_SCHEMA, SCHEMA_VERSION).map_err(redb_err)?;
            meta.insert(META_NEXT_SESSION_REF, 1).map_err(redb_err)?;
            meta.insert(META_NEXT_SUBSCRIPTION_ID, 1)
                .map_err(redb_err)?;
            Ok(())
        }
    }
}

fn check_keks(txn: &WriteTransaction, keyring: &Keyring) -> DbResult<()> {
    let mut checks = txn.open_table(KEK_CHECKS).map_err(redb_err)?;
    let mut stored = Vec::new();
    for entry in checks.iter().map_err(redb_err)? {
        let (_, bytes) = entry.map_err(redb_err)?;
        let record = CheckRecord::from_bytes(bytes.value())
            .map_err(|e| RedbStoreError::Kek(e2m_seal::CheckError::Damaged(e)))?;
        stored.push(record);
    }
    let check = keyring
        .startup_check(stored.iter())
        .map_err(RedbStoreError::Kek)?;
    if let Some(version) = check.newest_unrecorded {
        let nonce = SealNonce::random().map_err(RedbStoreError::Seal)?;
        let record = keyring
            .make_check_record(version, nonce)
            .map_err(RedbStoreError::Seal)?;
        checks
            .insert(version.get(), record.as_bytes().as_slice())
            .map_err(redb_err)?;
    }
    Ok(())
}
