//! [`IdentityMap`] on redb: `(EMSE_Id, application identity) → IMSI`.

use core::future::{Future, ready};

use std::collections::HashMap;

use e2m_keystore::import::{IdentityRow, ImportSummary};
use e2m_keystore::{AppIdentity, EmseId, IdentityMap, Imsi, Provisioned, StoreError};
use redb::{ReadableTable, WriteTransaction};

use crate::error::{DbResult, redb_err};
use crate::tables::IDENTITIES;
use crate::{RedbIdentityMap, RedbStore, RedbStoreError};

fn parse_imsi(text: &str) -> DbResult<Imsi> {
    Imsi::new(text).map_err(|_| RedbStoreError::Corrupt("identity map IMSI"))
}

pub(crate) fn provision_in(
    txn: &WriteTransaction,
    emse: &str,
    app: &str,
    imsi: &Imsi,
) -> DbResult<Provisioned> {
    let mut map = txn.open_table(IDENTITIES).map_err(redb_err)?;
    let previous = map
        .insert((emse, app), imsi.as_str())
        .map_err(redb_err)?
        .map(|v| v.value().to_owned());
    Ok(match previous {
        None => Provisioned::New,
        Some(p) if p == imsi.as_str() => Provisioned::Unchanged,
        Some(p) => Provisioned::Replaced {
            previous: parse_imsi(&p)?,
        },
    })
}

fn remove_in(txn: &WriteTransaction, emse: &str, app: &str) -> DbResult<Option<Imsi>> {
    let mut map = txn.open_table(IDENTITIES).map_err(redb_err)?;
    let removed = map
        .remove((emse, app))
        .map_err(redb_err)?
        .map(|v| v.value().to_owned());
    removed.as_deref().map(parse_imsi).transpose()
}

fn remove_emse_in(txn: &WriteTransaction, emse: &str) -> DbResult<usize> {
    let mut map = txn.open_table(IDENTITIES).map_err(redb_err)?;
    // Tuple keys sort by their first element, so the EMSE's rows are one contiguous range
    // starting at (emse, ""): read it up to the first other EMSE, then remove.
    let mut apps = Vec::new();
    for entry in map.range((emse, "")..).map_err(redb_err)? {
        let (k, _) = entry.map_err(redb_err)?;
        let (e, app) = k.value();
        if e != emse {
            break;
        }
        apps.push(app.to_owned());
    }
    for app in &apps {
        map.remove((emse, app.as_str())).map_err(redb_err)?;
    }
    Ok(apps.len())
}

/// All rows or none, in the batch's transaction: every row is checked (against the table
/// and the rows before it) before the first is written, so a conflict writes nothing and
/// leaves the rest of the group commit untouched.
fn provision_all_in(
    txn: &WriteTransaction,
    rows: &[IdentityRow],
) -> DbResult<Result<ImportSummary, StoreError>> {
    let mut map = txn.open_table(IDENTITIES).map_err(redb_err)?;
    let mut in_call: HashMap<(&str, &str), &str> = HashMap::with_capacity(rows.len());
    let mut fresh = Vec::with_capacity(rows.len());
    let mut unchanged = 0;
    for row in rows {
        let key = (row.emse.as_str(), row.app.as_str());
        let imsi = row.imsi.as_str();
        if let Some(earlier) = in_call.get(&key) {
            if *earlier != imsi {
                return Ok(Err(StoreError::ImportConflict { line: row.line }));
            }
            unchanged += 1;
            continue;
        }
        in_call.insert(key, imsi);
        match map.get(key).map_err(redb_err)? {
            Some(stored) if stored.value() != imsi => {
                return Ok(Err(StoreError::ImportConflict { line: row.line }));
            }
            Some(_) => unchanged += 1,
            None => fresh.push(row),
        }
    }
    for row in &fresh {
        map.insert((row.emse.as_str(), row.app.as_str()), row.imsi.as_str())
            .map_err(redb_err)?;
    }
    Ok(Ok(ImportSummary::new(fresh.len(), unchanged)))
}

impl RedbStore {
    fn resolve_now(&self, emse: &EmseId, app: &AppIdentity) -> DbResult<Option<Imsi>> {
        let txn = self.read()?;
        let map = txn.open_table(IDENTITIES).map_err(redb_err)?;
        let found = map
            .get((emse.as_str(), app.as_str()))
            .map_err(redb_err)?
            .map(|v| v.value().to_owned());
        found.as_deref().map(parse_imsi).transpose()
    }
}

impl IdentityMap for RedbIdentityMap {
    fn provision(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
        imsi: &Imsi,
    ) -> impl Future<Output = Result<Provisioned, StoreError>> + Send {
        let (emse, app, imsi) = (
            emse.as_str().to_owned(),
            app.as_str().to_owned(),
            imsi.clone(),
        );
        self.0
            .inner
            .writer
            .write(move |txn| provision_in(txn, &emse, &app, &imsi).map(Ok))
    }

    fn resolve(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
    ) -> impl Future<Output = Result<Option<Imsi>, StoreError>> + Send {
        ready(self.0.resolve_now(emse, app).map_err(StoreError::from))
    }

    fn remove(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
    ) -> impl Future<Output = Result<Option<Imsi>, StoreError>> + Send {
        let (emse, app) = (emse.as_str().to_owned(), app.as_str().to_owned());
        self.0
            .inner
            .writer
            .write(move |txn| remove_in(txn, &emse, &app).map(Ok))
    }

    fn remove_emse(&self, emse: &EmseId) -> impl Future<Output = Result<usize, StoreError>> + Send {
        let emse = emse.as_str().to_owned();
        self.0
            .inner
            .writer
            .write(move |txn| remove_emse_in(txn, &emse).map(Ok))
    }

    /// One write transaction for the whole call (inside a group commit), durable when the
    /// future resolves.
    fn provision_all(
        &self,
        rows: Vec<IdentityRow>,
    ) -> impl Future<Output = Result<ImportSummary, StoreError>> + Send {
        self.0
            .inner
            .writer
            .write(move |txn| provision_all_in(txn, &rows))
    }
}
