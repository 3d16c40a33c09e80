//! Online backup and offline restore of the store file.
//!
//! A backup is a new redb file holding a copy of every table as of one read snapshot (an
//! MVCC snapshot: consistent across the tables, taken without stopping the writer, which
//! the copy never waits for). It is a store file like the original: intermediate keys
//! stay sealed in it exactly as stored (the copy never opens them), and it holds the KEK
//! check records, so it opens only with the KEK files that open the store. It is written
//! under a temporary name and renamed into place once complete and durable, so a file
//! with the backup's name is always a whole backup.
//!
//! A restore (with the store closed) verifies the backup as an open of the store would
//! (every page checksum, schema version, KEK check records against the keyring given),
//! keeps the file it replaces beside it, and renames the verified copy into place.

use std::path::{Path, PathBuf};

use e2m_seal::Keyring;
use redb::{
    Database, Key, MultimapTableHandle, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableHandle, Value,
};

use crate::akma::{
    AKMA_BY_A_KID, AKMA_CONTEXTS, AKMA_EXPIRY, AKMA_OUTBOX, AKMA_OUTBOX_DUE, AKMA_TARGET_EXPIRY,
    AKMA_TARGETS,
};
use crate::error::{DbResult, redb_err};
use crate::store::{DATABASE_FILE, open_checked};
use crate::tables::{
    IDENTITIES, INT_KEY_EXPIRY, INT_KEYS, KEK_CHECKS, META, META_KEYS_HELD, OUTBOX,
    OUTBOX_BY_SUBSCRIPTION, OUTBOX_DUE, SESSIONS, SESSIONS_BY_EMSE, SESSIONS_BY_EXPIRY,
    SUBS_BY_SESSION, SUBS_BY_UE, SUBSCRIPTIONS,
};
use crate::{RedbStore, RedbStoreError};

/// Rows copied per write transaction of the backup file (bounds the memory a backup of a
/// large store holds before it commits).
const ROWS_PER_COMMIT: u64 = 65_536;

/// What a backup holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupSummary {
    /// Intermediate keys held in the snapshot (expired ones count until swept).
    pub keys: u64,
    /// UEs with keys in the snapshot.
    pub ues: u64,
    /// Rows copied, over every table.
    pub rows: u64,
    /// The backup file's size in octets.
    pub bytes: u64,
}

/// What a restore installed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreSummary {
    /// Intermediate keys held in the restored file (expired ones count until swept).
    pub keys: u64,
    /// UEs with keys in the restored file.
    pub ues: u64,
    /// Where the file that was replaced now is (`None` if the data directory had none):
    /// kept for the operator, never deleted by the restore.
    pub replaced: Option<PathBuf>,
}

/// Copies every table of a snapshot, or of a file, in one place so that none is forgotten.
macro_rules! for_each_table {
    ($f:ident($($arg:expr),*)) => {{
        $f($($arg,)* META)?;
        $f($($arg,)* KEK_CHECKS)?;
        $f($($arg,)* INT_KEYS)?;
        $f($($arg,)* INT_KEY_EXPIRY)?;
        $f($($arg,)* IDENTITIES)?;
        $f($($arg,)* SESSIONS)?;
        $f($($arg,)* SESSIONS_BY_EMSE)?;
        $f($($arg,)* SESSIONS_BY_EXPIRY)?;
        $f($($arg,)* SUBSCRIPTIONS)?;
        $f($($arg,)* SUBS_BY_UE)?;
        $f($($arg,)* SUBS_BY_SESSION)?;
        $f($($arg,)* OUTBOX)?;
        $f($($arg,)* OUTBOX_DUE)?;
        $f($($arg,)* OUTBOX_BY_SUBSCRIPTION)?;
        $f($($arg,)* AKMA_CONTEXTS)?;
        $f($($arg,)* AKMA_BY_A_KID)?;
        $f($($arg,)* AKMA_EXPIRY)?;
        $f($($arg,)* AKMA_TARGETS)?;
        $f($($arg,)* AKMA_TARGET_EXPIRY)?;
        $f($($arg,)* AKMA_OUTBOX)?;
        $f($($arg,)* AKMA_OUTBOX_DUE)?;
    }};
}

/// The names of the tables [`for_each_table`] copies.
fn known_tables() -> DbResult<Vec<String>> {
    let mut names = Vec::new();
    for_each_table!(push_name(&mut names));
    Ok(names)
}

fn push_name<K: Key + 'static, V: Value + 'static>(
    names: &mut Vec<String>,
    def: TableDefinition<'static, K, V>,
) -> DbResult<()> {
    names.push(def.name().to_owned());
    Ok(())
}

impl RedbStore {
    /// Writes an online backup of the whole store to `path`, a file that must not exist
    /// yet: a copy of every table as of one read snapshot, taken while the store keeps
    /// serving (reads and the writer never wait for the backup). Everything committed
    /// before the call is in it; the keys stay sealed as stored (the backup opens only
    /// with the same KEK files). The file is written as `path` + `.partial` and renamed to
    /// `path` once it is complete and durable; a failed backup leaves no file at `path`.
    ///
    /// It reads the whole store once and writes a file about its size: run it on a
    /// blocking thread (`spawn_blocking`), not on an async task.
    ///
    /// # Errors
    /// [`RedbStoreError::BackupFile`] if `path` exists or cannot be written;
    /// [`RedbStoreError::UnknownTable`] if the store holds a table this build does not
    /// copy; [`RedbStoreError::Redb`] or [`RedbStoreError::Unavailable`] if reading the
    /// store or writing the backup fails.
    pub fn backup_to(&self, path: impl AsRef<Path>) -> Result<BackupSummary, RedbStoreError> {
        let path = path.as_ref();
        if path.exists() {
            return Err(RedbStoreError::BackupFile(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            )));
        }
        let partial = with_suffix(path, ".partial");
        // A leftover of an interrupted backup would otherwise be opened as a database.
        match std::fs::remove_file(&partial) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RedbStoreError::BackupFile(e)),
        }
        let snapshot = self.read()?;
        check_tables(&snapshot)?;
        let result = write_copy(&snapshot, &partial);
        let summary = match result {
            Ok(summary) => summary,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        std::fs::rename(&partial, path).map_err(RedbStoreError::BackupFile)?;
        sync_dir(path)?;
        let bytes = std::fs::metadata(path)
            .map_err(RedbStoreError::BackupFile)?
            .len();
        Ok(BackupSummary { bytes, ..summary })
    }

    /// Restores a backup made by [`backup_to`](Self::backup_to) (or a copy of a store file
    /// made while its store was closed) into the data directory `dir`, for a store that is
    /// **not open**: the next [`open`](Self::open) of `dir` serves exactly what the backup
    /// holds.
    ///
    /// The backup is copied into `dir` and verified as an open verifies a store file
    /// (every page checksum, the schema version, the KEK check records against
    /// `keyring`), so a damaged backup or one made under other KEK files is refused and
    /// nothing is changed. The file it replaces, if any, is kept beside it as
    /// `e2m-emks.redb.replaced-<unix milliseconds>` (a damaged file may still be wanted;
    /// delete it when done). Keys pushed after the backup was taken are not in it.
    ///
    /// # Errors
    /// [`RedbStoreError::AlreadyOpen`] if a store (of this or another process) has the
    /// file in `dir` open; [`RedbStoreError::BackupFile`] if the backup cannot be read or
    /// the files cannot be written or renamed; the errors of [`open`](Self::open) if the
    /// backup does not verify ([`RedbStoreError::Damaged`], [`RedbStoreError::Repaired`],
    /// [`RedbStoreError::Kek`], [`RedbStoreError::SchemaVersion`], …).
    pub fn restore(
        backup: impl AsRef<Path>,
        dir: impl AsRef<Path>,
        keyring: &Keyring,
    ) -> Result<RestoreSummary, RedbStoreError> {
        let (backup, dir) = (backup.as_ref(), dir.as_ref());
        std::fs::create_dir_all(dir).map_err(RedbStoreError::DataDir)?;
        let target = dir.join(DATABASE_FILE);
        refuse_if_open(&target)?;
        let restoring = with_suffix(&target, ".restoring");
        std::fs::copy(backup, &restoring).map_err(RedbStoreError::BackupFile)?;
        let verified = (|| {
            std::fs::File::open(&restoring)
                .and_then(|f| f.sync_all())
                .map_err(RedbStoreError::BackupFile)?;
            let db = open_checked(&restoring, keyring, true)?;
            let txn = db.begin_read().map_err(redb_err)?;
            counts(&txn)
        })();
        let (keys, ues) = match verified {
            Ok(counts) => counts,
            Err(e) => {
                let _ = std::fs::remove_file(&restoring);
                return Err(e);
            }
        };
        // Checked again just before the swap: a store opened meanwhile keeps its file.
        refuse_if_open(&target)?;
        let replaced = if target.exists() {
            let aside = with_suffix(
                &target,
                &format!(".replaced-{}", crate::handle::unix_millis()),
            );
            std::fs::rename(&target, &aside).map_err(RedbStoreError::BackupFile)?;
            Some(aside)
        } else {
            None
        };
        std::fs::rename(&restoring, &target).map_err(RedbStoreError::BackupFile)?;
        sync_dir(&target)?;
        Ok(RestoreSummary {
            keys,
            ues,
            replaced,
        })
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes a rename in `path`'s directory durable.
fn sync_dir(path: &Path) -> DbResult<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(RedbStoreError::BackupFile)
}

/// Refuses when a store has `path` open (redb's file lock): a restore must not swap the
/// file under a running store. A file that cannot be opened for another reason (damaged,
/// in need of repair) is not in use, and is not changed by this check.
fn refuse_if_open(path: &Path) -> DbResult<()> {
    if !path.exists() {
        return Ok(());
    }
    let attempt = std::panic::catch_unwind(|| Database::builder().open_read_only(path).map(drop));
    match attempt {
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(RedbStoreError::AlreadyOpen),
        _ => Ok(()),
    }
}

/// Refuses a snapshot holding a table the backup would not copy.
fn check_tables(snapshot: &ReadTransaction) -> DbResult<()> {
    let known = known_tables()?;
    for table in snapshot.list_tables().map_err(redb_err)? {
        if !known.iter().any(|name| name == table.name()) {
            return Err(RedbStoreError::UnknownTable(table.name().to_owned()));
        }
    }
    if let Some(table) = snapshot.list_multimap_tables().map_err(redb_err)?.next() {
        return Err(RedbStoreError::UnknownTable(table.name().to_owned()));
    }
    Ok(())
}

/// Writes the copy of `snapshot` into a new file at `path`.
fn write_copy(snapshot: &ReadTransaction, path: &Path) -> DbResult<BackupSummary> {
    let db = Database::builder()
        .create(path)
        .map_err(|e| RedbStoreError::Redb(e.into()))?;
    let mut rows = 0u64;
    for_each_table!(copy_table(snapshot, &db, &mut rows));
    let (keys, ues) = counts(snapshot)?;
    db.close().map_err(|e| RedbStoreError::Redb(e.into()))?;
    Ok(BackupSummary {
        keys,
        ues,
        rows,
        bytes: 0,
    })
}

/// Copies one table, committing (durably) every [`ROWS_PER_COMMIT`] rows and at its end.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    snapshot: &ReadTransaction,
    db: &Database,
    rows: &mut u64,
    def: TableDefinition<'static, K, V>,
) -> DbResult<()> {
    let source = snapshot.open_table(def).map_err(redb_err)?;
    let mut entries = source.iter().map_err(redb_err)?;
    loop {
        let txn = db.begin_write().map_err(redb_err)?;
        let mut copied = 0u64;
        let mut more = false;
        {
            let mut out = txn.open_table(def).map_err(redb_err)?;
            for entry in entries.by_ref() {
                let (key, value) = entry.map_err(redb_err)?;
                out.insert(key.value(), value.value()).map_err(redb_err)?;
                copied += 1;
                if copied == ROWS_PER_COMMIT {
                    more = true;
                    break;
                }
            }
        }
        txn.commit().map_err(redb_err)?;
        *rows += copied;
        if !more {
            return Ok(());
        }
    }
}

/// (keys held, UEs with keys) of a snapshot.
fn counts(txn: &ReadTransaction) -> DbResult<(u64, u64)> {
    let meta = txn.open_table(META).map_err(redb_err)?;
    let keys = meta
        .get(META_KEYS_HELD)
        .map_err(redb_err)?
        .map_or(0, |v| v.value());
    let ues = txn
        .open_table(INT_KEYS)
        .map_err(redb_err)?
        .len()
        .map_err(redb_err)?;
    Ok((keys, ues))
}
