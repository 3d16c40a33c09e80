//! A key fetched by application identity: `(EMSE_Id, application identity, key id) → IMSI
//! and key`, what the EMKS does for every key request (seed 6.x.2.3 step 7: "resolve the
//! application identity to an IMSI, select the stored key by key id").
//!
//! [`IdentityMap::resolve_key`] answers it in two steps
//! by default ([`resolve_then_get`]); a backend whose identity map and key store live in
//! one database (they answer the same [`DatabaseId`]) may answer it with one query.

use core::sync::atomic::{AtomicU64, Ordering};

use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};

use crate::{HeldKey, IdentityMap, IntKeyStore, StoreError, Timestamp};

/// Which database a store lives in: an opaque token, equal for two stores only when one
/// query can read both (the same database, schema and keyring).
///
/// A backend draws one with [`DatabaseId::unique`] when it connects and hands it to every
/// store it makes; stores of different connections, processes or backends never compare
/// equal, so a token match is proof enough and no `Any` downcast is needed.
///
/// ```
/// use e2m_keystore::DatabaseId;
/// let (a, b) = (DatabaseId::unique(), DatabaseId::unique());
/// assert_ne!(a, b);
/// assert_eq!(a, a);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DatabaseId(u64);

impl DatabaseId {
    /// A token no other call of this process ever returns.
    pub fn unique() -> DatabaseId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        DatabaseId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What [`IdentityMap::resolve_key`] found.
///
/// Exhaustive on purpose: the three answers are the three outcomes of the seed's step
/// (unknown UE, key not held, key served), and a caller should have to decide each.
#[derive(Debug)]
pub enum IdentityKey {
    /// The identity is not provisioned for this EMSE (whether or not another EMSE has it:
    /// one answer, no enumeration).
    UnknownIdentity,
    /// The identity names `imsi`, which holds no live key with this key id (never pushed,
    /// evicted, replaced, removed or expired).
    NotHeld {
        /// The UE the identity names.
        imsi: Imsi,
    },
    /// The identity names `imsi`, which holds this key.
    Held {
        /// The UE the identity names.
        imsi: Imsi,
        /// The live key with the requested id (zeroized when dropped).
        key: HeldKey,
    },
}

impl IdentityKey {
    /// The IMSI the identity resolved to, if it did.
    pub fn imsi(&self) -> Option<&Imsi> {
        match self {
            IdentityKey::UnknownIdentity => None,
            IdentityKey::NotHeld { imsi } | IdentityKey::Held { imsi, .. } => Some(imsi),
        }
    }
}

/// A failed [`IdentityMap::resolve_key`]: the store's
/// error, and the IMSI if the identity was resolved before the failure (so that an audit
/// record names the UE exactly as a separate resolve and key read would have).
#[derive(Debug)]
pub struct IdentityKeyError {
    /// The IMSI the identity resolved to before the failure, if any.
    pub imsi: Option<Imsi>,
    /// What failed.
    pub error: StoreError,
}

impl IdentityKeyError {
    /// A failure before (or while) the identity was resolved.
    pub fn unresolved(error: StoreError) -> IdentityKeyError {
        IdentityKeyError { imsi: None, error }
    }
}

impl From<StoreError> for IdentityKeyError {
    fn from(error: StoreError) -> Self {
        IdentityKeyError::unresolved(error)
    }
}

impl core::fmt::Display for IdentityKeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for IdentityKeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The two-step answer of [`IdentityMap::resolve_key`]:
/// `map.resolve`, then `keys.get` of the IMSI found. The default of the trait method, and
/// what an override falls back to when it cannot do better (e.g. `keys` lives elsewhere).
///
/// # Errors
/// The first store error, with the IMSI if the resolve had succeeded.
pub async fn resolve_then_get<M, K>(
    map: &M,
    keys: &K,
    emse: &EmseId,
    app: &AppIdentity,
    key_id: KeyId,
    now: Timestamp,
) -> Result<IdentityKey, IdentityKeyError>
where
    M: IdentityMap + ?Sized,
    K: IntKeyStore + ?Sized,
{
    let Some(imsi) = map.resolve(emse, app).await? else {
        return Ok(IdentityKey::UnknownIdentity);
    };
    get_for(keys, imsi, key_id, now).await
}

/// `keys.get` of an IMSI already resolved, as an [`IdentityKey`].
pub(crate) async fn get_for<K: IntKeyStore + ?Sized>(
    keys: &K,
    imsi: Imsi,
    key_id: KeyId,
    now: Timestamp,
) -> Result<IdentityKey, IdentityKeyError> {
    match keys.get(&imsi, key_id, now).await {
        Ok(Some(key)) => Ok(IdentityKey::Held { imsi, key }),
        Ok(None) => Ok(IdentityKey::NotHeld { imsi }),
        Err(error) => Err(IdentityKeyError {
            imsi: Some(imsi),
            error,
        }),
    }
}
