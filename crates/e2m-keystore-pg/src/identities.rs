//! The identity map `(EMSE_Id, application identity) → IMSI` in PostgreSQL.

use std::sync::Arc;

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use e2m_keystore::identity_keys::{IdentityKey, IdentityKeyError, resolve_then_get};
use e2m_keystore::import::{IdentityRow, ImportSummary};
use e2m_keystore::{
    AppIdentity, DatabaseId, EmseId, IdentityMap, Imsi, IntKeyStore, KeyId, Provisioned,
    StoreError, Timestamp,
};
use tokio_postgres::IsolationLevel;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::backend::{Shared, db_time, from_db_time};
use crate::int_keys::{KeyRow, held_key, key_id_param};
use crate::{BackendError, schema};

/// The [`IdentityMap`] over PostgreSQL. Made by
/// [`PgBackend::identities`](crate::PgBackend::identities).
pub struct PgIdentityMap {
    shared: Arc<Shared>,
}

impl core::fmt::Debug for PgIdentityMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PgIdentityMap").finish_non_exhaustive()
    }
}

pub(crate) fn imsi_from_db(text: &str) -> Result<Imsi, BackendError> {
    Imsi::new(text).map_err(|_| BackendError::CorruptRow("invalid IMSI"))
}

/// The key columns of an `id_key_get` row: `None` when the join found no live key.
fn key_row(row: &tokio_postgres::Row, key_id: KeyId) -> Result<Option<KeyRow>, BackendError> {
    let (Some(created), Some(expires), Some(sealed)) = (
        row.try_get::<_, Option<i64>>(1)?,
        row.try_get::<_, Option<i64>>(2)?,
        row.try_get::<_, Option<Vec<u8>>>(3)?,
    ) else {
        return Ok(None);
    };
    Ok(Some(KeyRow {
        key_id,
        created: from_db_time(created)?,
        expires: from_db_time(expires)?,
        sealed,
    }))
}

impl PgIdentityMap {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        PgIdentityMap { shared }
    }

    async fn provision_now(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
        imsi: &Imsi,
    ) -> Result<Provisioned, BackendError> {
        let rows = self
            .shared
            .query(
                &self.shared.sql.id_provision,
                &[&emse.as_str(), &app.as_str(), &imsi.as_str()],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(Provisioned::New);
        };
        let previous: &str = row.try_get(0)?;
        if previous == imsi.as_str() {
            return Ok(Provisioned::Unchanged);
        }
        Ok(Provisioned::Replaced {
            previous: imsi_from_db(previous)?,
        })
    }

    async fn resolve_now(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
    ) -> Result<Option<Imsi>, BackendError> {
        let rows = self
            .shared
            .query(
                &self.shared.sql.id_resolve,
                &[&emse.as_str(), &app.as_str()],
            )
            .await?;
        rows.first()
            .map(|row| imsi_from_db(row.try_get(0)?))
            .transpose()
    }

    /// The mapping and the key in one statement (`id_key_get`, one autocommit statement at
    /// READ COMMITTED: one snapshot of both tables), the key opened as `PgIntKeyStore::get`
    /// opens it. Only for a key store of this backend (same pool, schema and keyring).
    async fn resolve_key_joined(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<IdentityKey, IdentityKeyError> {
        let unresolved = |e: BackendError| IdentityKeyError::unresolved(e.into());
        let rows = self
            .shared
            .query(
                &self.shared.sql.id_key_get,
                &[
                    &emse.as_str(),
                    &app.as_str(),
                    &key_id_param(key_id),
                    &db_time(now),
                ],
            )
            .await
            .map_err(unresolved)?;
        let Some(row) = rows.first() else {
            return Ok(IdentityKey::UnknownIdentity);
        };
        let imsi = row
            .try_get(0)
            .map_err(BackendError::from)
            .and_then(imsi_from_db)
            .map_err(unresolved)?;
        // Past here the identity is resolved: a failure names the IMSI, as a failed key
        // read after a resolve would.
        match key_row(row, key_id)
            .and_then(|r| r.map(|r| held_key(&self.shared, &imsi, &r)).transpose())
        {
            Ok(Some(key)) => Ok(IdentityKey::Held { imsi, key }),
            Ok(None) => Ok(IdentityKey::NotHeld { imsi }),
            Err(e) => Err(IdentityKeyError {
                imsi: Some(imsi),
                error: e.into(),
            }),
        }
    }

    async fn remove_now(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
    ) -> Result<Option<Imsi>, BackendError> {
        let rows = self
            .shared
            .query(&self.shared.sql.id_remove, &[&emse.as_str(), &app.as_str()])
            .await?;
        rows.first()
            .map(|row| imsi_from_db(row.try_get(0)?))
            .transpose()
    }

    /// The import: rows checked against each other here, then in one transaction COPY'd
    /// into a staging table, checked against the map, and inserted by one
    /// `INSERT … ON CONFLICT DO NOTHING`.
    async fn provision_all_now(&self, rows: &[IdentityRow]) -> Result<ImportSummary, StoreError> {
        // Rows of this call against each other: a repeat of a pair is unchanged if it names
        // the same IMSI, a conflict (at the repeat's line) if not.
        let mut first: HashMap<(&str, &str), &IdentityRow> = HashMap::with_capacity(rows.len());
        let mut repeats = 0;
        let mut conflict_in_call: Option<usize> = None;
        for row in rows {
            match first.entry((row.emse.as_str(), row.app.as_str())) {
                Entry::Vacant(v) => {
                    v.insert(row);
                }
                Entry::Occupied(o) if o.get().imsi == row.imsi => repeats += 1,
                Entry::Occupied(_) => {
                    conflict_in_call.get_or_insert(row.line);
                }
            }
        }
        let mut unique: Vec<&IdentityRow> = first.into_values().collect();
        unique.sort_unstable_by_key(|r| r.line);

        let sql = &self.shared.sql;
        let mut conn = self.shared.conn().await?;
        let tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(BackendError::from)?;
        let staged: Result<Option<i64>, BackendError> = async {
            tx.batch_execute(&format!(
                "{}; {}",
                sql.id_import_lock,
                schema::IMPORT_STAGING
            ))
            .await?;
            let sink = tx.copy_in(schema::IMPORT_COPY).await?;
            let writer =
                BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT]);
            let mut writer = std::pin::pin!(writer);
            for row in &unique {
                let line = i64::try_from(row.line).unwrap_or(i64::MAX);
                writer
                    .as_mut()
                    .write(&[
                        &line,
                        &row.emse.as_str(),
                        &row.app.as_str(),
                        &row.imsi.as_str(),
                    ])
                    .await?;
            }
            writer.finish().await?;
            let row = tx.query_one(&sql.id_import_conflict, &[]).await?;
            Ok(row.try_get(0)?)
        }
        .await;
        let conflict_in_store = staged?;
        // The first conflicting row, in file order, of either kind.
        let conflict_in_store = conflict_in_store.and_then(|l| usize::try_from(l).ok());
        let conflict = match (conflict_in_call, conflict_in_store) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(line) = conflict {
            tx.rollback().await.map_err(BackendError::from)?;
            return Err(StoreError::ImportConflict { line });
        }
        let added = tx
            .execute(&sql.id_import_insert, &[])
            .await
            .map_err(BackendError::from)?;
        tx.commit().await.map_err(BackendError::from)?;
        let added = usize::try_from(added).unwrap_or(usize::MAX);
        Ok(ImportSummary::new(
            added,
            unique.len().saturating_sub(added) + repeats,
        ))
    }

    async fn remove_emse_now(&self, emse: &EmseId) -> Result<usize, BackendError> {
        let n = self
            .shared
            .execute(&self.shared.sql.id_remove_emse, &[&emse.as_str()])
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl IdentityMap for PgIdentityMap {
    async fn provision(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
        imsi: &Imsi,
    ) -> Result<Provisioned, StoreError> {
        Ok(self.provision_now(emse, app, imsi).await?)
    }

    async fn resolve(&self, emse: &EmseId, app: &AppIdentity) -> Result<Option<Imsi>, StoreError> {
        Ok(self.resolve_now(emse, app).await?)
    }

    async fn remove(&self, emse: &EmseId, app: &AppIdentity) -> Result<Option<Imsi>, StoreError> {
        Ok(self.remove_now(emse, app).await?)
    }

    async fn remove_emse(&self, emse: &EmseId) -> Result<usize, StoreError> {
        Ok(self.remove_emse_now(emse).await?)
    }

    async fn provision_all(&self, rows: Vec<IdentityRow>) -> Result<ImportSummary, StoreError> {
        self.provision_all_now(&rows).await
    }

    fn database(&self) -> Option<DatabaseId> {
        Some(self.shared.database)
    }

    /// One statement joining the identity map and the keys when `keys` is a store of this
    /// backend (or a read cache in front of one: it forwards the token), which saves a
    /// pool checkout and a round trip per fetch; the two-step default otherwise.
    async fn resolve_key<K: IntKeyStore>(
        &self,
        keys: &K,
        emse: &EmseId,
        app: &AppIdentity,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<IdentityKey, IdentityKeyError> {
        if keys.database() != Some(self.shared.database) {
            return resolve_then_get(self, keys, emse, app, key_id, now).await;
        }
        self.resolve_key_joined(emse, app, key_id, now).await
    }
}
