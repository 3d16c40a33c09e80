//! The crate's one error type: every failure of opening or using the store, typed.

use e2m_keystore::StoreError;
use e2m_seal::{CheckError, OpenError, SealError};

/// Why the redb store failed. No variant holds key material, a session id or file contents.
///
/// Store operations return it inside [`StoreError::Backend`] (the traits' error); opening
/// the store returns it directly, so that an operator is told exactly why the store refused
/// to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedbStoreError {
    /// The data directory could not be created or read.
    #[error("data directory: {0}")]
    DataDir(#[source] std::io::Error),
    /// Another process (or another store in this process) has the database open.
    #[error("the database is already open in another process or store")]
    AlreadyOpen,
    /// The file is not a redb database, or redb found it damaged (checksums, structure).
    #[error("the database file is damaged or not a redb database: {0}")]
    Damaged(#[source] redb::Error),
    /// redb could not read the file's structure at all (it stopped with a panic while
    /// opening it, which the store contained): the file is damaged.
    #[error("the database file is damaged: redb could not read its structure")]
    Unreadable,
    /// The file failed its integrity check at open and redb repaired it back to its last
    /// intact commit: data acknowledged before the damage may be missing. The store refused
    /// to start; the file now opens, so an operator who accepts the loss (or has restored a
    /// backup) starts again.
    #[error(
        "the database file failed its integrity check and was repaired to its last intact commit; acknowledged data may be lost (starting again accepts the repaired file)"
    )]
    Repaired,
    /// redb failed (I/O, a transaction or a commit). Nothing of the failed operation was
    /// committed.
    #[error("redb failed: {0}")]
    Redb(#[source] redb::Error),
    /// A stored value does not decode: the file was edited or damaged in a way redb's own
    /// checks do not see. The message names which kind of value.
    #[error("a stored {0} does not decode (damaged or edited data)")]
    Corrupt(&'static str),
    /// The file holds data of another layout of this crate.
    #[error("the database holds schema version {found}; this build reads version {expected}")]
    SchemaVersion {
        /// The version found in the file.
        found: u64,
        /// The version this build reads and writes.
        expected: u64,
    },
    /// The KEKs given do not open the data stored (start-up check, e2m-seal check records):
    /// a missing KEK file or one holding another key. The store refused to start.
    #[error("KEK check failed: {0}")]
    Kek(#[source] CheckError),
    /// A key could not be sealed (the operating system's random generator failed).
    #[error("sealing failed: {0}")]
    Seal(#[source] SealError),
    /// A stored key did not open although the start-up check passed: its record was edited
    /// or moved. It is never served.
    #[error("a stored key did not open: {0}")]
    Open(#[source] OpenError),
    /// The write transaction that held this operation failed (another operation of the
    /// same group commit, or the commit itself): nothing of it was committed.
    #[error("the group commit holding this operation failed: {0}")]
    Batch(#[source] std::sync::Arc<RedbStoreError>),
    /// The writer thread stopped (it panicked or the store is shutting down).
    #[error("the store's writer thread stopped")]
    WriterStopped,
    /// A write failed with an I/O error (the source, when known: a full disk, a failing
    /// device), and the store has not written since: it refuses writes at once while it
    /// recovers by itself (reopening the file and committing a test write, see
    /// [`RedbStore::check_writable`](crate::RedbStore::check_writable)). Reads are
    /// refused only for the moment the file is being reopened. Nothing acknowledged is
    /// lost: a write that failed was never acknowledged.
    #[error("the store cannot write since an I/O failure and is recovering{}", cause_text(.0))]
    Unavailable(Option<std::sync::Arc<RedbStoreError>>),
    /// A backup or restore file could not be created, read, written or renamed (for a
    /// backup, also: the file already exists).
    #[error("backup file: {0}")]
    BackupFile(#[source] std::io::Error),
    /// The file holds a table this build does not know (written by another build of this
    /// crate): a backup would not copy it, so none is made.
    #[error("the database holds table {0:?}, unknown to this build; no backup was made")]
    UnknownTable(String),
}

fn cause_text(cause: &Option<std::sync::Arc<RedbStoreError>>) -> String {
    cause
        .as_ref()
        .map_or_else(String::new, |cause| format!(" (cause: {cause})"))
}

impl From<RedbStoreError> for StoreError {
    fn from(e: RedbStoreError) -> StoreError {
        StoreError::Backend(Box::new(e))
    }
}

/// Wraps any redb error as [`RedbStoreError::Redb`].
pub(crate) fn redb_err(e: impl Into<redb::Error>) -> RedbStoreError {
    RedbStoreError::Redb(e.into())
}

/// What a storage step returns: a redb failure (the whole write transaction is abandoned).
pub(crate) type DbResult<T> = Result<T, RedbStoreError>;
