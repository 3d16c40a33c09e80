//! The database handle that readers and the writer thread share, and how the store
//! recovers from an I/O failure without a restart.
//!
//! When a write fails with an I/O error (a full disk, a failing device), redb latches the
//! failure: every later read and write of that `Database` returns `PreviousIo` until it is
//! closed and opened again. The handle therefore holds the database in an
//! `RwLock<Option<Database>>` that only the writer thread changes:
//!
//! 1. a write that fails with an I/O error marks the handle *failed*; from then on writes
//!    are refused at once with [`RedbStoreError::Unavailable`] (naming the cause), without
//!    touching the file;
//! 2. the writer thread closes the database and opens it again, so that reads (an MVCC
//!    snapshot of the last commit, which the failed commit did not change) are served
//!    again, and commits a small test write; if the commit succeeds the store is writable
//!    again, otherwise it reopens once more for the readers and tries again later (after
//!    100 ms, doubling to [`MAX_RETRY`]), whether or not operations are queued.
//!
//! Readers take the lock only to begin their read transaction; the writer holds it for
//! writing only to swap the handle, never while opening or repairing the file, so a reader
//! never waits for a recovery: in between it gets [`RedbStoreError::Unavailable`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use e2m_seal::Keyring;
use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

use crate::RedbStoreError;
use crate::error::{DbResult, redb_err};
use crate::tables::{META, META_WRITE_PROBE};

/// The longest wait between two recovery attempts.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(2);

/// The first wait after a failed attempt.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The database, swappable by the writer thread (see the module docs).
pub(crate) struct Handle {
    db: RwLock<Option<Database>>,
    /// Set by a write that failed with an I/O error; cleared by a successful test commit.
    failed: AtomicBool,
    /// Why the store is failed (the first I/O error of this failure).
    cause: Mutex<Option<Arc<RedbStoreError>>>,
    path: PathBuf,
    keyring: Arc<Keyring>,
}

impl Handle {
    pub(crate) fn new(db: Database, path: PathBuf, keyring: Arc<Keyring>) -> Handle {
        Handle {
            db: RwLock::new(Some(db)),
            failed: AtomicBool::new(false),
            cause: Mutex::new(None),
            path,
            keyring,
        }
    }

    /// A read snapshot of the last commit.
    pub(crate) fn begin_read(&self) -> DbResult<ReadTransaction> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(db) => db.begin_read().map_err(redb_err),
            None => Err(self.unavailable()),
        }
    }

    /// A write transaction, unless the store is failed (then the error says why).
    pub(crate) fn begin_write(&self) -> DbResult<WriteTransaction> {
        if self.is_failed() {
            return Err(self.unavailable());
        }
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(db) => db.begin_write().map_err(redb_err),
            None => Err(self.unavailable()),
        }
    }

    /// Whether writes are refused until a recovery succeeds.
    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The error a refused operation gets while the store is failed.
    pub(crate) fn unavailable(&self) -> RedbStoreError {
        let cause = self
            .cause
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        RedbStoreError::Unavailable(cause)
    }

    /// Marks the store failed if `error` is one that only closing and reopening the
    /// database cures (an I/O error, or redb's latched `PreviousIo`). Returns whether it did.
    pub(crate) fn note_failure(&self, error: &RedbStoreError) -> bool {
        if !needs_reopen(error) {
            return false;
        }
        let mut cause = self.cause.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.failed.swap(true, Ordering::AcqRel) || cause.is_none() {
            *cause = Some(Arc::new(describe(error)));
        }
        true
    }

    /// One recovery attempt (on the writer thread, with no write transaction alive):
    /// close, reopen, commit a test write. Returns whether the store is writable again.
    /// Whatever the outcome, the database is left open for readers if it opens at all.
    pub(crate) fn recover(&self) -> bool {
        self.close();
        let db = match crate::store::open_checked(&self.path, &self.keyring, false) {
            Ok(db) => db,
            Err(_) => return false,
        };
        let probed = write_probe(&db);
        self.put(db);
        if probed.is_ok() {
            *self.cause.lock().unwrap_or_else(PoisonError::into_inner) = None;
            self.failed.store(false, Ordering::Release);
            return true;
        }
        // The failed commit latched the new handle too: reopen once more so that reads go
        // on while the writes wait for the next attempt.
        self.close();
        if let Ok(db) = crate::store::open_checked(&self.path, &self.keyring, false) {
            self.put(db);
        }
        false
    }

    /// Takes the database out of the handle (readers get `Unavailable` meanwhile) and
    /// closes it. A database whose I/O failed writes nothing on close; redb repairs the
    /// file from its last commit at the next open.
    fn close(&self) {
        let old = self
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(old) = old {
            let _ = old.close();
        }
    }

    fn put(&self, db: Database) {
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(db);
    }
}

/// The schedule of recovery attempts while the store is failed: at once, then after
/// 100 ms doubling to [`MAX_RETRY`].
#[derive(Debug, Default)]
pub(crate) struct Retry {
    next: Option<Instant>,
    wait: Duration,
}

impl Retry {
    /// How long until the next attempt is due (zero: now).
    pub(crate) fn until_due(&self) -> Duration {
        self.next.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        })
    }

    /// Records a failed attempt.
    pub(crate) fn failed(&mut self) {
        self.wait = if self.wait.is_zero() {
            FIRST_RETRY
        } else {
            (self.wait * 2).min(MAX_RETRY)
        };
        self.next = Some(Instant::now() + self.wait);
    }

    /// Records a successful attempt (the next failure starts the schedule again).
    pub(crate) fn succeeded(&mut self) {
        *self = Retry::default();
    }
}

/// Commits one small write (the time of the test in `meta`), as the store's writes do.
pub(crate) fn write_probe(db: &Database) -> DbResult<()> {
    let mut txn = db.begin_write().map_err(redb_err)?;
    txn.set_quick_repair(true);
    {
        let mut meta = txn.open_table(META).map_err(redb_err)?;
        meta.insert(META_WRITE_PROBE, unix_millis())
            .map_err(redb_err)?;
    }
    txn.commit().map_err(redb_err)
}

pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether `error` latches redb's handle (an I/O error, or the latch itself).
fn needs_reopen(error: &RedbStoreError) -> bool {
    match error {
        RedbStoreError::Redb(e) => matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo),
        RedbStoreError::Batch(inner) => needs_reopen(inner),
        _ => false,
    }
}

/// A copy of an I/O error to keep as the cause (redb's errors are not `Clone`).
fn describe(error: &RedbStoreError) -> RedbStoreError {
    match error {
        RedbStoreError::Batch(inner) => describe(inner),
        RedbStoreError::Redb(redb::Error::Io(io)) => RedbStoreError::Redb(redb::Error::Io(
            std::io::Error::new(io.kind(), io.to_string()),
        )),
        _ => RedbStoreError::Redb(redb::Error::PreviousIo),
    }
}
