//! Opening the store: the file, its tables, the schema version and the KEK start-up check.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use e2m_keystore::{RetentionPolicy, SessionPolicy, StoreError, SubscriptionPolicy};
use e2m_seal::{CheckRecord, Keyring, SealNonce};
use redb::{Database, ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::RedbStoreError;
use crate::error::{DbResult, redb_err};
use crate::handle::Handle;
use crate::tables::{
    IDENTITIES, INT_KEY_EXPIRY, INT_KEYS, KEK_CHECKS, META, META_NEXT_SESSION_REF,
    META_NEXT_SUBSCRIPTION_ID, META_SCHEMA, META_WRITE_PROBE, OUTBOX, OUTBOX_BY_SUBSCRIPTION,
    OUTBOX_DUE, SCHEMA_VERSION, SESSIONS, SESSIONS_BY_EMSE, SESSIONS_BY_EXPIRY, SUBS_BY_SESSION,
    SUBS_BY_UE, SUBSCRIPTIONS,
};
use crate::writer::Writer;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "e2m-emks.redb";

/// The policies the store applies (the same values the in-memory stores take), and how
/// carefully it opens its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedbStoreConfig {
    /// Intermediate keys kept per UE, and for how long.
    pub retention: RetentionPolicy,
    /// Session lifetime and limits.
    pub sessions: SessionPolicy,
    /// Subscription limits.
    pub subscriptions: SubscriptionPolicy,
    /// Verify every page checksum of the file at open (redb's `check_integrity`), on by
    /// default. redb verifies checksums when it repairs a file that was not closed cleanly,
    /// but not when it reads a page later, and a damaged page read later can make redb
    /// panic (seen: an out-of-range slice index in its B-tree code). With the check, damage
    /// done to the file while the store was closed is refused at open with
    /// [`RedbStoreError::Damaged`]. It reads the whole file once (see the crate's restart
    /// figures); turning it off trades that protection for a faster start.
    pub verify_at_open: bool,
    /// Commit with redb's quick repair, on by default: each commit also saves the
    /// allocator state and commits in two phases, so that opening after a crash takes
    /// moments instead of a walk over the whole file. It costs a second disk flush per
    /// commit, which halves the commits per second when the disk's flush latency is what
    /// limits them (see the crate's performance figures for both settings).
    pub quick_repair: bool,
}

impl Default for RedbStoreConfig {
    fn default() -> Self {
        RedbStoreConfig {
            retention: RetentionPolicy::DEFAULT,
            sessions: SessionPolicy::DEFAULT,
            subscriptions: SubscriptionPolicy::DEFAULT,
            verify_at_open: true,
            quick_repair: true,
        }
    }
}

/// The embedded durable EMKS store: all four e2m-keystore traits over one redb file.
///
/// Each trait is served by a view: [`int_keys`](Self::int_keys),
/// [`identities`](Self::identities), [`sessions`](Self::sessions),
/// [`subscriptions`](Self::subscriptions), all cheap handles (one `Arc`) on the same file,
/// to hand to the EMKS core (which takes its four stores by value). The file is closed, and the writer
/// thread stopped after committing what was queued, when the last clone is dropped.
#[derive(Clone)]
pub struct RedbStore {
    pub(crate) inner: Arc<Inner>,
}

/// The store's intermediate keys, as an [`IntKeyStore`](e2m_keystore::IntKeyStore)
/// (from [`RedbStore::int_keys`]). Each trait has its own view type, as each in-memory
/// store is its own type, so that method names (`get`, `remove`, `sweep`) never clash.
#[derive(Clone, Debug)]
pub struct RedbIntKeyStore(pub(crate) RedbStore);

/// The store's identity map, as an [`IdentityMap`](e2m_keystore::IdentityMap) (from
/// [`RedbStore::identities`]).
#[derive(Clone, Debug)]
pub struct RedbIdentityMap(pub(crate) RedbStore);

/// The store's EMSE sessions, as a [`SessionStore`](e2m_keystore::SessionStore) (from
/// [`RedbStore::sessions`]).
#[derive(Clone, Debug)]
pub struct RedbSessionStore(pub(crate) RedbStore);

/// The store's subscriptions, as a [`SubscriptionStore`](e2m_keystore::SubscriptionStore)
/// (from [`RedbStore::subscriptions`]).
#[derive(Clone, Debug)]
pub struct RedbSubscriptionStore(pub(crate) RedbStore);

pub(crate) struct Inner {
    // Declared first so that it drops first: the writer thread commits what is queued and
    // releases its handle on the database before the database closes.
    pub(crate) writer: Writer,
    pub(crate) db: Arc<Handle>,
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
    /// that was not closed cleanly is repaired by redb first; an existing file is never
    /// re-created, so one truncated to nothing is refused, not taken for a new store); its schema version is this
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
        let db = open_checked(&path, &keyring, config.verify_at_open)?;
        let keyring = Arc::new(keyring);
        let db = Arc::new(Handle::new(db, path.clone(), Arc::clone(&keyring)));
        let writer = Writer::start(Arc::clone(&db), config.quick_repair)?;
        Ok(RedbStore {
            inner: Arc::new(Inner {
                writer,
                db,
                keyring,
                config,
                path,
            }),
        })
    }

    /// Commits a small test write through the group commit (it rides on the batch being
    /// formed, if any) and returns when it is durable: whether the store can write now.
    /// An EMKS's readiness check calls it (at most about once a second: each call is a
    /// disk flush).
    ///
    /// After a write failed with an I/O error (a full disk), the store refuses writes with
    /// [`RedbStoreError::Unavailable`] and recovers by itself, without a restart: its
    /// writer thread closes and reopens the database (reads go on from the reopened file)
    /// and commits such a test write, at once and then every 100 ms doubling to 2 s, until
    /// one succeeds; meanwhile this returns the `Unavailable` error.
    ///
    /// # Errors
    /// [`RedbStoreError::Unavailable`] while the store recovers from an I/O failure;
    /// [`RedbStoreError::Batch`] if the commit holding the test write failed (its source
    /// says why); [`RedbStoreError::WriterStopped`].
    pub async fn check_writable(&self) -> Result<(), RedbStoreError> {
        let done = self.inner.writer.write(|txn| {
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert(META_WRITE_PROBE, crate::handle::unix_millis())
                .map_err(redb_err)?;
            Ok(Ok(()))
        });
        done.await.map_err(|e| match e {
            StoreError::Backend(source) => match source.downcast::<RedbStoreError>() {
                Ok(e) => *e,
                Err(_) => RedbStoreError::WriterStopped,
            },
            _ => RedbStoreError::WriterStopped,
        })
    }

    /// The intermediate key store (a cheap handle on this store).
    pub fn int_keys(&self) -> RedbIntKeyStore {
        RedbIntKeyStore(self.clone())
    }

    /// The identity map (a cheap handle on this store).
    pub fn identities(&self) -> RedbIdentityMap {
        RedbIdentityMap(self.clone())
    }

    /// The session store (a cheap handle on this store).
    pub fn sessions(&self) -> RedbSessionStore {
        RedbSessionStore(self.clone())
    }

    /// The subscription store (a cheap handle on this store).
    pub fn subscriptions(&self) -> RedbSubscriptionStore {
        RedbSubscriptionStore(self.clone())
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
        self.inner.db.begin_read()
    }
}

/// Opens the file at `path` (verifying it if asked) and prepares it: tables, schema
/// version, KEK check records. What every open of a store file does: at start, at each
/// recovery after an I/O failure (without the whole-file verification), and on a backup
/// being restored.
pub(crate) fn open_checked(path: &Path, keyring: &Keyring, verify: bool) -> DbResult<Database> {
    let db = open_file(path, verify)?;
    prepare(&db, keyring).map_err(|e| match e {
        RedbStoreError::Redb(e) => classify(e),
        other => other,
    })?;
    Ok(db)
}

/// Opens (or creates) the file and, if asked, verifies it.
///
/// redb 4.6 panics on some damaged files while opening them (seen: an out-of-range slice
/// index reading the saved allocator state of a file whose pages were garbled). Nothing of
/// the database exists yet at that point (the half-built handle and its file lock are
/// dropped while unwinding), so the panic is contained here and reported as
/// [`RedbStoreError::Unreadable`] instead of taking the process down with a backtrace.
pub(crate) fn open_file(path: &Path, verify: bool) -> DbResult<Database> {
    let attempt = std::panic::catch_unwind(AssertUnwindSafe(|| -> DbResult<Database> {
        // `create` would turn an existing empty file (a store truncated to nothing) into a
        // new, empty store without a word: an existing file is only ever opened.
        let mut db = if path.exists() {
            Database::builder().open(path)
        } else {
            Database::builder().create(path)
        }
        .map_err(classify)?;
        // `Ok(false)`: redb found damage and repaired the file back to its last intact
        // commit, which may have dropped acknowledged data: refuse, loudly, once.
        if verify && !db.check_integrity().map_err(classify)? {
            return Err(RedbStoreError::Repaired);
        }
        Ok(db)
    }));
    attempt.unwrap_or(Err(RedbStoreError::Unreadable))
}

/// Sorts a redb error met while opening: a lock held elsewhere, a damaged or foreign file,
/// or anything else.
pub(crate) fn classify(e: impl Into<redb::Error>) -> RedbStoreError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::DatabaseAlreadyOpen => RedbStoreError::AlreadyOpen,
        redb::Error::Corrupted(_) | redb::Error::UpgradeRequired(_) => RedbStoreError::Damaged(e),
        // Not a database (redb's own "InvalidData"), or shorter than its header says.
        redb::Error::Io(ref io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
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
    // Added after schema version 1 shipped: created here in files that lack them, which
    // needs no new version (nothing existing changes meaning).
    txn.open_table(OUTBOX).map_err(redb_err)?;
    txn.open_table(OUTBOX_DUE).map_err(redb_err)?;
    txn.open_table(OUTBOX_BY_SUBSCRIPTION).map_err(redb_err)?;
    // The AAnF's AKMA contexts (issue 18), likewise added without a new version.
    crate::akma::create_tables(txn)?;
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
