//! Errors of the PostgreSQL backend: at start-up ([`ConnectError`]) and per operation
//! ([`BackendError`], carried inside [`StoreError::Backend`]).

use e2m_keystore::StoreError;
use e2m_seal::{CheckError, OpenError, SealError};

/// The pool's error when it could not hand out a connection.
pub type PoolError = deadpool_postgres::PoolError;

/// Why one store operation failed in the backend. It reaches the caller as
/// [`StoreError::Backend`]; `downcast_ref::<BackendError>()` on its source tells which.
/// No variant carries key material, a session id or a query parameter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// No connection could be had from the pool (the database is down or unreachable, or
    /// every connection stayed busy past the wait timeout).
    #[error("no database connection: {0}")]
    Pool(#[source] PoolError),
    /// The database refused or failed a statement, or the connection broke during it.
    #[error("database error: {0}")]
    Database(#[source] tokio_postgres::Error),
    /// A stored row holds a value no store writes (an edited or foreign row).
    #[error("a stored row is malformed: {0}")]
    CorruptRow(&'static str),
    /// A stored intermediate key does not open for its row: its sealed bytes were edited
    /// or moved from another row, or its KEK is not in the keyring.
    #[error("a stored key does not open: {0}")]
    Open(#[source] OpenError),
    /// Sealing a pushed key failed (the OS random generator failed).
    #[error("sealing a key failed: {0}")]
    Seal(#[source] SealError),
}

impl From<PoolError> for BackendError {
    fn from(e: PoolError) -> Self {
        BackendError::Pool(e)
    }
}

impl From<tokio_postgres::Error> for BackendError {
    fn from(e: tokio_postgres::Error) -> Self {
        BackendError::Database(e)
    }
}

impl From<BackendError> for StoreError {
    fn from(e: BackendError) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// Why [`PgBackend::connect`](crate::PgBackend::connect) refused to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is not usable (the text says which setting).
    #[error("invalid PostgreSQL store configuration: {0}")]
    InvalidConfig(&'static str),
    /// The connection string does not parse.
    #[error("invalid PostgreSQL connection string: {0}")]
    Conninfo(#[source] tokio_postgres::Error),
    /// The database could not be reached, or creating or reading the schema failed.
    #[error("PostgreSQL store start-up failed: {0}")]
    Database(#[source] BackendError),
    /// The KEK files given do not open the keys already stored: a KEK file is missing or
    /// holds another key. Nothing was served or written.
    #[error("the KEK files do not match the keys stored in the database: {0}")]
    Kek(#[source] CheckError),
    /// The schema was written by an older version of this crate, in a format this build
    /// does not read (format 1 held times in seconds and ordered ties by arrival). Nothing
    /// was changed in it.
    #[error(
        "the database schema has format {found}; this build reads format {expected} only (start a new schema, or drain and drop the old one)"
    )]
    SchemaTooOld {
        /// The format recorded in the database.
        found: i32,
        /// The format this build reads and writes.
        expected: i32,
    },
    /// The schema was written by a newer version of this crate.
    #[error("the database schema has format {found}; this build knows formats up to {known}")]
    SchemaTooNew {
        /// The format recorded in the database.
        found: i32,
        /// The newest format this build knows.
        known: i32,
    },
}

impl From<BackendError> for ConnectError {
    fn from(e: BackendError) -> Self {
        ConnectError::Database(e)
    }
}

impl From<tokio_postgres::Error> for ConnectError {
    fn from(e: tokio_postgres::Error) -> Self {
        ConnectError::Database(BackendError::Database(e))
    }
}

impl From<PoolError> for ConnectError {
    fn from(e: PoolError) -> Self {
        ConnectError::Database(BackendError::Pool(e))
    }
}
