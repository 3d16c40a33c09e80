//! The identity map `(EMSE_Id, application identity) → IMSI` in PostgreSQL.

use core::future::Future;
use std::sync::Arc;

use e2m_keystore::{AppIdentity, EmseId, IdentityMap, Imsi, Provisioned, StoreError};

use crate::BackendError;
use crate::backend::Shared;

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
            .query(&self.shared.sql.id_resolve, &[&emse.as_str(), &app.as_str()])
            .await?;
        rows.first()
            .map(|row| imsi_from_db(row.try_get(0)?))
            .transpose()
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

    async fn remove_emse_now(&self, emse: &EmseId) -> Result<usize, BackendError> {
        let n = self
            .shared
            .execute(&self.shared.sql.id_remove_emse, &[&emse.as_str()])
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl IdentityMap for PgIdentityMap {
    fn provision(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
        imsi: &Imsi,
    ) -> impl Future<Output = Result<Provisioned, StoreError>> + Send {
        async move { Ok(self.provision_now(emse, app, imsi).await?) }
    }

    fn resolve(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
    ) -> impl Future<Output = Result<Option<Imsi>, StoreError>> + Send {
        async move { Ok(self.resolve_now(emse, app).await?) }
    }

    fn remove(
        &self,
        emse: &EmseId,
        app: &AppIdentity,
    ) -> impl Future<Output = Result<Option<Imsi>, StoreError>> + Send {
        async move { Ok(self.remove_now(emse, app).await?) }
    }

    fn remove_emse(&self, emse: &EmseId) -> impl Future<Output = Result<usize, StoreError>> + Send {
        async move { Ok(self.remove_emse_now(emse).await?) }
    }
}
