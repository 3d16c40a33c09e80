//! [`SubscriptionStore`] on redb: subscriptions by id, indexed by UE and by session.

use core::future::{Future, ready};

use e2m_keystore::{
    EmseId, EventSet, Imsi, Limit, SessionRef, StoreError, SubscriptionId, SubscriptionPolicy,
    SubscriptionRecord, SubscriptionStore,
};
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::codec::{decode_subscription, encode_subscription};
use crate::error::{DbResult, redb_err};
use crate::sessions::next_number;
use crate::tables::{
    META_NEXT_SUBSCRIPTION_ID, SUBS_BY_SESSION, SUBS_BY_UE, SUBSCRIPTIONS, UNFILTERED,
};
use crate::{RedbStore, RedbSubscriptionStore};

fn ue_key(sub: &SubscriptionRecord) -> &str {
    sub.ue.as_ref().map_or(UNFILTERED, |f| f.imsi.as_str())
}

fn add_in(
    txn: &WriteTransaction,
    policy: &SubscriptionPolicy,
    sub: &SubscriptionRecord,
) -> DbResult<Result<SubscriptionId, StoreError>> {
    let mut subs = txn.open_table(SUBSCRIPTIONS).map_err(redb_err)?;
    if subs.len().map_err(redb_err)? >= policy.max_total as u64 {
        return Ok(Err(StoreError::LimitReached(Limit::SubscriptionsTotal)));
    }
    let mut by_session = txn.open_table(SUBS_BY_SESSION).map_err(redb_err)?;
    let owner = sub.session.as_u64();
    let mut held = 0usize;
    for entry in by_session
        .range((owner, 0)..=(owner, u64::MAX))
        .map_err(redb_err)?
    {
        entry.map_err(redb_err)?;
        held += 1;
    }
    if held >= policy.max_per_session {
        return Ok(Err(StoreError::LimitReached(
            Limit::SubscriptionsPerSession,
        )));
    }
    let same_ue = {
        let by_ue = txn.open_table(SUBS_BY_UE).map_err(redb_err)?;
        same_ue_in(&by_ue, &subs, &sub.emse, ue_key(sub))?.len()
    };
    if same_ue >= policy.max_per_ue {
        return Ok(Err(StoreError::LimitReached(Limit::SubscriptionsPerUe)));
    }
    let id = next_number(txn, META_NEXT_SUBSCRIPTION_ID)?;
    subs.insert(id, encode_subscription(sub).as_slice())
        .map_err(redb_err)?;
    by_session.insert((owner, id), ()).map_err(redb_err)?;
    txn.open_table(SUBS_BY_UE)
        .map_err(redb_err)?
        .insert((ue_key(sub), id), ())
        .map_err(redb_err)?;
    Ok(Ok(SubscriptionId::from_u64(id)))
}

/// `emse`'s subscriptions under the UE index key `ue` (an IMSI, or [`UNFILTERED`]), in id
/// order. The index holds every EMSE's subscriptions for that UE: at most
/// `max_per_ue` for each EMSE that can name the UE.
fn same_ue_in(
    by_ue: &impl ReadableTable<(&'static str, u64), ()>,
    subs: &impl ReadableTable<u64, &'static [u8]>,
    emse: &EmseId,
    ue: &str,
) -> DbResult<Vec<(SubscriptionId, SubscriptionRecord)>> {
    let mut out = Vec::new();
    for entry in by_ue.range((ue, 0)..=(ue, u64::MAX)).map_err(redb_err)? {
        let (k, _) = entry.map_err(redb_err)?;
        let id = k.value().1;
        let Some(row) = subs.get(id).map_err(redb_err)? else {
            continue;
        };
        let sub = decode_subscription(row.value())?;
        if sub.emse == *emse {
            out.push((SubscriptionId::from_u64(id), sub));
        }
    }
    Ok(out)
}

/// Removes subscription `id` and its index entries if `owner` made it (any owner if
/// `None`).
fn remove_in(
    txn: &WriteTransaction,
    owner: Option<SessionRef>,
    id: u64,
) -> DbResult<Option<SubscriptionRecord>> {
    let mut subs = txn.open_table(SUBSCRIPTIONS).map_err(redb_err)?;
    let sub = {
        let row = subs.get(id).map_err(redb_err)?;
        row.map(|v| decode_subscription(v.value())).transpose()?
    };
    let Some(sub) = sub.filter(|s| owner.is_none_or(|o| o == s.session)) else {
        return Ok(None);
    };
    subs.remove(id).map_err(redb_err)?;
    txn.open_table(SUBS_BY_SESSION)
        .map_err(redb_err)?
        .remove((sub.session.as_u64(), id))
        .map_err(redb_err)?;
    txn.open_table(SUBS_BY_UE)
        .map_err(redb_err)?
        .remove((ue_key(&sub), id))
        .map_err(redb_err)?;
    // Its pending notifications end with it, in the same transaction.
    crate::outbox::drop_subscription_in(txn, id)?;
    Ok(Some(sub))
}

fn remove_session_in(txn: &WriteTransaction, owner: SessionRef) -> DbResult<usize> {
    let ids: Vec<u64> = {
        let by_session = txn.open_table(SUBS_BY_SESSION).map_err(redb_err)?;
        let o = owner.as_u64();
        let mut ids = Vec::new();
        for entry in by_session.range((o, 0)..=(o, u64::MAX)).map_err(redb_err)? {
            let (k, _) = entry.map_err(redb_err)?;
            ids.push(k.value().1);
        }
        ids
    };
    let mut n = 0;
    for id in ids {
        n += usize::from(remove_in(txn, Some(owner), id)?.is_some());
    }
    Ok(n)
}

impl RedbStore {
    fn subscription_now(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> DbResult<Option<SubscriptionRecord>> {
        let txn = self.read()?;
        let subs = txn.open_table(SUBSCRIPTIONS).map_err(redb_err)?;
        let row = subs.get(id.as_u64()).map_err(redb_err)?;
        let sub = row.map(|v| decode_subscription(v.value())).transpose()?;
        Ok(sub.filter(|s| s.session == owner))
    }

    fn of_emse_for_ue_now(
        &self,
        emse: &EmseId,
        imsi: Option<&Imsi>,
    ) -> DbResult<Vec<(SubscriptionId, SubscriptionRecord)>> {
        let txn = self.read()?;
        let by_ue = txn.open_table(SUBS_BY_UE).map_err(redb_err)?;
        let subs = txn.open_table(SUBSCRIPTIONS).map_err(redb_err)?;
        same_ue_in(&by_ue, &subs, emse, imsi.map_or(UNFILTERED, Imsi::as_str))
    }

    fn matching_now(
        &self,
        imsi: &Imsi,
        event: EventSet,
    ) -> DbResult<Vec<(SubscriptionId, SubscriptionRecord)>> {
        let txn = self.read()?;
        let by_ue = txn.open_table(SUBS_BY_UE).map_err(redb_err)?;
        let subs = txn.open_table(SUBSCRIPTIONS).map_err(redb_err)?;
        let mut out = Vec::new();
        for ue in [imsi.as_str(), UNFILTERED] {
            for entry in by_ue.range((ue, 0)..=(ue, u64::MAX)).map_err(redb_err)? {
                let (k, _) = entry.map_err(redb_err)?;
                let id = k.value().1;
                let Some(row) = subs.get(id).map_err(redb_err)? else {
                    continue;
                };
                let sub = decode_subscription(row.value())?;
                if sub.events.intersects(event) {
                    out.push((SubscriptionId::from_u64(id), sub));
                }
            }
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }
}

impl SubscriptionStore for RedbSubscriptionStore {
    fn add(
        &self,
        sub: SubscriptionRecord,
    ) -> impl Future<Output = Result<SubscriptionId, StoreError>> + Send {
        let policy = self.0.inner.config.subscriptions;
        async move {
            if sub.callback.is_empty() || sub.callback.len() > policy.max_callback_len {
                return Err(StoreError::InvalidInput("callback empty or too long"));
            }
            self.0
                .inner
                .writer
                .write(move |txn| add_in(txn, &policy, &sub))
                .await
        }
    }

    fn get(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> impl Future<Output = Result<Option<SubscriptionRecord>, StoreError>> + Send {
        ready(self.0.subscription_now(owner, id).map_err(StoreError::from))
    }

    fn remove(
        &self,
        owner: SessionRef,
        id: SubscriptionId,
    ) -> impl Future<Output = Result<Option<SubscriptionRecord>, StoreError>> + Send {
        self.0
            .inner
            .writer
            .write(move |txn| remove_in(txn, Some(owner), id.as_u64()).map(Ok))
    }

    fn remove_session(
        &self,
        owner: SessionRef,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        self.0
            .inner
            .writer
            .write(move |txn| remove_session_in(txn, owner).map(Ok))
    }

    fn of_emse_for_ue(
        &self,
        emse: &EmseId,
        imsi: Option<&Imsi>,
    ) -> impl Future<Output = Result<Vec<(SubscriptionId, SubscriptionRecord)>, StoreError>> + Send
    {
        ready(
            self.0
                .of_emse_for_ue_now(emse, imsi)
                .map_err(StoreError::from),
        )
    }

    fn matching(
        &self,
        imsi: &Imsi,
        event: EventSet,
    ) -> impl Future<Output = Result<Vec<(SubscriptionId, SubscriptionRecord)>, StoreError>> + Send
    {
        ready(self.0.matching_now(imsi, event).map_err(StoreError::from))
    }
}
