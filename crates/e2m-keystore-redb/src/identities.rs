//! [`IdentityMap`] on redb: `(EMSE_Id, application identity) → IMSI`.

use core::future::{Future, ready};

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
}
