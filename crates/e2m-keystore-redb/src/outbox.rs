//! [`NotificationOutbox`] on redb: the entries a push or sweep records are written in the
//! push's (or sweep's) own write transaction, so the group commit that makes a push durable
//! makes its notifications durable with it; claims, deliveries and retries are writes of
//! the same writer thread.
//!
//! An entry is one row of [`OUTBOX`] (id → [`encode_entry`]), indexed by due time
//! ([`OUTBOX_DUE`]: what a claim walks, oldest first) and by subscription
//! ([`OUTBOX_BY_SUBSCRIPTION`]: what removing a subscription deletes, in the removal's
//! transaction). Claiming moves an entry's due time to the end of its lease, so an entry
//! whose claimer died simply comes due again.

use core::future::{Future, ready};

use e2m_keystore::{
    Claim, EventSet, EventType, Imsi, InstanceId, KeyId, NotificationOutbox, PendingNotification,
    PushOutcome, StoreError, SubscriptionId, Timestamp, events_of_push,
};
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::codec::decode_subscription;
use crate::error::{DbResult, redb_err};
use crate::tables::{
    META, META_NEXT_NOTIFICATION_ID, OUTBOX, OUTBOX_BY_SUBSCRIPTION, OUTBOX_DUE, SUBS_BY_UE,
    SUBSCRIPTIONS, UNFILTERED,
};
use crate::{RedbIntKeyStore, RedbStore, RedbStoreError};

/// The most due entries one claim looks at (so a claim's transaction stays short however
/// large the backlog of a skipped EMSE grows).
const CLAIM_SCAN: usize = 4096;

/// One outbox row, decoded.
struct Entry {
    subscription: u64,
    event: EventType,
    key_id: KeyId,
    time: u64,
    due: u64,
    attempts: u32,
    /// 0: not claimed.
    owner: u64,
    imsi: String,
}

const EVENTS: [EventType; 3] = EventType::ALL;

/// subscription (8) | event (1) | key id (4) | time (8) | due (8) | attempts (4) | owner (8)
/// | IMSI digits; integers big-endian.
fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(41 + e.imsi.len());
    out.extend_from_slice(&e.subscription.to_be_bytes());
    let event = EVENTS.iter().position(|x| *x == e.event).unwrap_or(0) as u8;
    out.push(event);
    out.extend_from_slice(&e.key_id.as_u32().to_be_bytes());
    out.extend_from_slice(&e.time.to_be_bytes());
    out.extend_from_slice(&e.due.to_be_bytes());
    out.extend_from_slice(&e.attempts.to_be_bytes());
    out.extend_from_slice(&e.owner.to_be_bytes());
    out.extend_from_slice(e.imsi.as_bytes());
    out
}

fn decode_entry(bytes: &[u8]) -> DbResult<Entry> {
    const BAD: RedbStoreError = RedbStoreError::Corrupt("outbox entry");
    let (fixed, imsi) = bytes.split_at_checked(41).ok_or(BAD)?;
    let u64_at = |i: usize| -> DbResult<u64> {
        Ok(u64::from_be_bytes(
            fixed[i..i + 8].try_into().map_err(|_| BAD)?,
        ))
    };
    let u32_at = |i: usize| -> DbResult<u32> {
        Ok(u32::from_be_bytes(
            fixed[i..i + 4].try_into().map_err(|_| BAD)?,
        ))
    };
    Ok(Entry {
        subscription: u64_at(0)?,
        event: *EVENTS.get(usize::from(fixed[8])).ok_or(BAD)?,
        key_id: KeyId::from_u32(u32_at(9)?),
        time: u64_at(13)?,
        due: u64_at(21)?,
        attempts: u32_at(29)?,
        owner: u64_at(33)?,
        imsi: std::str::from_utf8(imsi).map_err(|_| BAD)?.to_owned(),
    })
}

fn next_id(txn: &WriteTransaction) -> DbResult<u64> {
    // Files made before the outbox existed have no counter yet: it starts at 1.
    let mut meta = txn.open_table(META).map_err(redb_err)?;
    let n = meta
        .get(META_NEXT_NOTIFICATION_ID)
        .map_err(redb_err)?
        .map_or(1, |v| v.value());
    meta.insert(META_NEXT_NOTIFICATION_ID, n.saturating_add(1))
        .map_err(redb_err)?;
    Ok(n)
}

/// Records `event` about `imsi` for every matching subscription, in `txn`.
pub(crate) fn record_in(
    txn: &WriteTransaction,
    imsi: &str,
    event: EventType,
    key_id: KeyId,
    now: Timestamp,
) -> DbResult<usize> {
    let wanted = EventSet::single(event);
    let matching: Vec<u64> = {
        let by_ue = txn.open_table(SUBS_BY_UE).map_err(redb_err)?;
        let subs = txn.open_table(SUBSCRIPTIONS).map_err(redb_err)?;
        let mut ids = Vec::new();
        for ue in [imsi, UNFILTERED] {
            for entry in by_ue.range((ue, 0)..=(ue, u64::MAX)).map_err(redb_err)? {
                let (k, _) = entry.map_err(redb_err)?;
                let id = k.value().1;
                let Some(row) = subs.get(id).map_err(redb_err)? else {
                    continue;
                };
                if decode_subscription(row.value())?.events.intersects(wanted) {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable();
        ids
    };
    if matching.is_empty() {
        return Ok(0);
    }
    let mut rows = txn.open_table(OUTBOX).map_err(redb_err)?;
    let mut due = txn.open_table(OUTBOX_DUE).map_err(redb_err)?;
    let mut by_sub = txn.open_table(OUTBOX_BY_SUBSCRIPTION).map_err(redb_err)?;
    let t = now.as_unix_millis();
    for subscription in &matching {
        let id = next_id(txn)?;
        let entry = Entry {
            subscription: *subscription,
            event,
            key_id,
            time: t,
            due: t,
            attempts: 0,
            owner: 0,
            imsi: imsi.to_owned(),
        };
        rows.insert(id, encode_entry(&entry).as_slice())
            .map_err(redb_err)?;
        due.insert((t, id), ()).map_err(redb_err)?;
        by_sub.insert((*subscription, id), ()).map_err(redb_err)?;
    }
    Ok(matching.len())
}

/// Records the events of a push (see [`events_of_push`]), in the push's transaction.
pub(crate) fn record_push_in(
    txn: &WriteTransaction,
    imsi: &Imsi,
    key_id: KeyId,
    outcome: &PushOutcome,
    now: Timestamp,
) -> DbResult<()> {
    for (event, id) in events_of_push(outcome, key_id).into_iter().flatten() {
        record_in(txn, imsi.as_str(), event, id, now)?;
    }
    Ok(())
}

/// Deletes every entry of subscription `subscription`, in the removal's transaction.
pub(crate) fn drop_subscription_in(txn: &WriteTransaction, subscription: u64) -> DbResult<()> {
    let ids: Vec<u64> = {
        let by_sub = txn.open_table(OUTBOX_BY_SUBSCRIPTION).map_err(redb_err)?;
        let mut ids = Vec::new();
        for entry in by_sub
            .range((subscription, 0)..=(subscription, u64::MAX))
            .map_err(redb_err)?
        {
            ids.push(entry.map_err(redb_err)?.0.value().1);
        }
        ids
    };
    for id in ids {
        remove_entry_in(txn, id)?;
    }
    Ok(())
}

/// Removes entry `id` and its index rows; whether it was there.
fn remove_entry_in(txn: &WriteTransaction, id: u64) -> DbResult<bool> {
    let mut rows = txn.open_table(OUTBOX).map_err(redb_err)?;
    let entry = {
        let row = rows.remove(id).map_err(redb_err)?;
        match row {
            Some(v) => decode_entry(v.value())?,
            None => return Ok(false),
        }
    };
    txn.open_table(OUTBOX_DUE)
        .map_err(redb_err)?
        .remove((entry.due, id))
        .map_err(redb_err)?;
    txn.open_table(OUTBOX_BY_SUBSCRIPTION)
        .map_err(redb_err)?
        .remove((entry.subscription, id))
        .map_err(redb_err)?;
    Ok(true)
}

/// Moves entry `id` (now `entry`) to a new due time, rewriting its row.
fn reschedule_in(txn: &WriteTransaction, id: u64, old_due: u64, entry: &Entry) -> DbResult<()> {
    let mut due = txn.open_table(OUTBOX_DUE).map_err(redb_err)?;
    due.remove((old_due, id)).map_err(redb_err)?;
    due.insert((entry.due, id), ()).map_err(redb_err)?;
    txn.open_table(OUTBOX)
        .map_err(redb_err)?
        .insert(id, encode_entry(entry).as_slice())
        .map_err(redb_err)?;
    Ok(())
}

/// What a claim needs, owned (it travels to the writer thread).
struct OwnedClaim {
    instance: u64,
    now: u64,
    until: u64,
    max: usize,
    per_emse: usize,
    skip: Vec<String>,
}

fn claim_in(txn: &WriteTransaction, claim: &OwnedClaim) -> DbResult<Vec<PendingNotification>> {
    let candidates: Vec<(u64, u64)> = {
        let due = txn.open_table(OUTBOX_DUE).map_err(redb_err)?;
        let mut out = Vec::new();
        for entry in due
            .range(..=(claim.now, u64::MAX))
            .map_err(redb_err)?
            .take(CLAIM_SCAN)
        {
            let (k, _) = entry.map_err(redb_err)?;
            out.push(k.value());
        }
        out
    };
    let mut taken: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (at, id) in candidates {
        if out.len() >= claim.max {
            break;
        }
        let entry = {
            let rows = txn.open_table(OUTBOX).map_err(redb_err)?;
            let row = rows.get(id).map_err(redb_err)?;
            match row {
                Some(v) => decode_entry(v.value())?,
                None => continue,
            }
        };
        let record = {
            let subs = txn.open_table(SUBSCRIPTIONS).map_err(redb_err)?;
            let row = subs.get(entry.subscription).map_err(redb_err)?;
            row.map(|v| decode_subscription(v.value())).transpose()?
        };
        let Some(record) = record else {
            // Removed with its subscription already; kept only by a damaged index.
            remove_entry_in(txn, id)?;
            continue;
        };
        let emse = record.emse.as_str();
        if claim.skip.iter().any(|s| s == emse) {
            continue;
        }
        let n = taken.entry(emse.to_owned()).or_insert(0);
        if *n >= claim.per_emse {
            continue;
        }
        *n += 1;
        let imsi = Imsi::new(&entry.imsi).map_err(|_| RedbStoreError::Corrupt("IMSI"))?;
        let time = Timestamp::checked_from_unix_millis(entry.time)
            .ok_or(RedbStoreError::Corrupt("outbox time"))?;
        out.push(PendingNotification {
            id,
            subscription: SubscriptionId::from_u64(entry.subscription),
            record,
            event: entry.event,
            imsi,
            key_id: entry.key_id,
            time,
            attempts: entry.attempts,
        });
        let claimed = Entry {
            due: claim.until,
            owner: claim.instance,
            ..entry
        };
        reschedule_in(txn, id, at, &claimed)?;
    }
    Ok(out)
}

fn retry_in(txn: &WriteTransaction, id: u64, instance: u64, when: u64) -> DbResult<bool> {
    let entry = {
        let rows = txn.open_table(OUTBOX).map_err(redb_err)?;
        let row = rows.get(id).map_err(redb_err)?;
        match row {
            Some(v) => decode_entry(v.value())?,
            None => return Ok(false),
        }
    };
    if entry.owner != instance {
        return Ok(false);
    }
    let old = entry.due;
    let released = Entry {
        due: when,
        owner: 0,
        attempts: entry.attempts.saturating_add(1),
        ..entry
    };
    reschedule_in(txn, id, old, &released)?;
    Ok(true)
}

impl RedbStore {
    fn next_due_now(&self) -> DbResult<Option<Timestamp>> {
        let txn = self.read()?;
        let due = txn.open_table(OUTBOX_DUE).map_err(redb_err)?;
        let first = due.first().map_err(redb_err)?;
        Ok(first.and_then(|(k, _)| Timestamp::checked_from_unix_millis(k.value().0)))
    }

    fn pending_now(&self) -> DbResult<u64> {
        let txn = self.read()?;
        let rows = txn.open_table(OUTBOX).map_err(redb_err)?;
        rows.len().map_err(redb_err)
    }
}

/// Every method but the two reads is a write of the writer thread (durable, group
/// committed): a claim is never lost to a crash unnoticed, it only runs out.
impl NotificationOutbox for RedbIntKeyStore {
    fn claim_due(
        &self,
        claim: &Claim<'_>,
    ) -> impl Future<Output = Result<Vec<PendingNotification>, StoreError>> + Send {
        let owned = OwnedClaim {
            instance: claim.instance.as_u64(),
            now: claim.now.as_unix_millis(),
            until: claim.lease_until().as_unix_millis(),
            max: claim.max,
            per_emse: claim.per_emse,
            skip: claim.skip.iter().map(|e| e.as_str().to_owned()).collect(),
        };
        self.0
            .inner
            .writer
            .write(move |txn| claim_in(txn, &owned).map(Ok))
    }

    fn delivered(&self, id: u64) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.0
            .inner
            .writer
            .write(move |txn| remove_entry_in(txn, id).map(Ok))
    }

    fn retry_at(
        &self,
        id: u64,
        instance: InstanceId,
        when: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let (instance, when) = (instance.as_u64(), when.as_unix_millis());
        self.0
            .inner
            .writer
            .write(move |txn| retry_in(txn, id, instance, when).map(Ok))
    }

    fn next_due(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        ready(self.0.next_due_now().map_err(StoreError::from))
    }

    fn pending(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        ready(self.0.pending_now().map_err(StoreError::from))
    }
}
