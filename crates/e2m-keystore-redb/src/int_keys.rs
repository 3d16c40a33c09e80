//! [`IntKeyStore`] on redb: one row per UE holding its retained keys, each sealed.

use core::future::{Future, ready};

use e2m_keystore::{
    E2mIntKey, HeldKey, Imsi, IntKeyStore, KeyId, KeyInfo, PushOutcome, RetentionPolicy,
    StoreError, Timestamp,
};
use e2m_seal::{IntKeyRecord, Keyring, SealNonce, SealedKey};
use redb::{ReadableTable, WriteTransaction};
use subtle::ConstantTimeEq;

use crate::codec::{Slot, decode_slots, encode_slots};
use crate::error::{DbResult, redb_err};
use crate::tables::{INT_KEY_EXPIRY, INT_KEYS, META, META_KEYS_HELD};
use crate::{RedbIntKeyStore, RedbStore, RedbStoreError};

/// When a stored key stops being served: its sealed expiry, or the current policy's
/// `created + max_age` if that is earlier (a policy shortened since the push).
fn expiry(slot: &Slot, policy: &RetentionPolicy) -> Timestamp {
    slot.expires.min(policy.expires_at(slot.created))
}

fn info(slot: &Slot, policy: &RetentionPolicy) -> KeyInfo {
    KeyInfo {
        key_id: slot.key_id,
        created: slot.created,
        expires: expiry(slot, policy),
    }
}

/// The live slots of a record: unexpired, and at most the newest N (a policy lowered since
/// the pushes keeps only the newest N in service).
fn live(slots: Vec<Slot>, policy: &RetentionPolicy, now: Timestamp) -> Vec<Slot> {
    let mut live: Vec<Slot> = slots
        .into_iter()
        .filter(|s| now < expiry(s, policy))
        .collect();
    let excess = live.len().saturating_sub(policy.keys_per_ue());
    live.drain(..excess);
    live
}

/// The sweep index entry of a record: its earliest sealed expiry, in Unix milliseconds.
fn earliest(slots: &[Slot]) -> Option<u64> {
    slots.iter().map(|s| s.expires.as_unix_millis()).min()
}

/// Opens a stored slot of `imsi`.
fn open(keyring: &Keyring, imsi: &Imsi, slot: &Slot) -> DbResult<E2mIntKey> {
    let record = IntKeyRecord::new(imsi, slot.key_id, slot.created, slot.expires);
    let sealed = SealedKey::from_bytes(&slot.sealed).map_err(RedbStoreError::Open)?;
    keyring.open(&record, &sealed).map_err(RedbStoreError::Open)
}

/// Replaces the UE's row by `slots` (removing it if empty) and moves its sweep index entry.
fn write_record(txn: &WriteTransaction, imsi: &str, old: &[Slot], slots: &[Slot]) -> DbResult<()> {
    let mut rows = txn.open_table(INT_KEYS).map_err(redb_err)?;
    let mut index = txn.open_table(INT_KEY_EXPIRY).map_err(redb_err)?;
    if let Some(t) = earliest(old) {
        index.remove((t, imsi)).map_err(redb_err)?;
    }
    match earliest(slots) {
        Some(t) => {
            rows.insert(imsi, encode_slots(slots).as_slice())
                .map_err(redb_err)?;
            index.insert((t, imsi), ()).map_err(redb_err)?;
        }
        None => {
            rows.remove(imsi).map_err(redb_err)?;
        }
    }
    drop((rows, index));
    let delta = slots.len() as i64 - old.len() as i64;
    if delta != 0 {
        let mut meta = txn.open_table(META).map_err(redb_err)?;
        let held = meta
            .get(META_KEYS_HELD)
            .map_err(redb_err)?
            .map_or(0, |v| v.value());
        meta.insert(META_KEYS_HELD, held.saturating_add_signed(delta))
            .map_err(redb_err)?;
    }
    Ok(())
}

fn read_slots_in(txn: &WriteTransaction, imsi: &str) -> DbResult<Vec<Slot>> {
    let rows = txn.open_table(INT_KEYS).map_err(redb_err)?;
    let row = rows.get(imsi).map_err(redb_err)?;
    row.map_or_else(|| Ok(Vec::new()), |v| decode_slots(v.value()))
}

/// One push, inside the batch's transaction: retention (last N, maximum age) is applied
/// to the UE's row in the same transaction, so a committed push and its evictions are one
/// atomic change. Mirrors the in-memory store's rules exactly (the conformance suite
/// checks both).
/// One push as queued for the writer: the key already sealed by the caller (so that no
/// copy of its octets travels through futures, channels or closures; the caller's borrowed
/// key is the only plaintext), and the clear fields it is bound to.
struct Push {
    imsi: Imsi,
    key_id: KeyId,
    created: Timestamp,
    now: Timestamp,
    /// Sealed for (IMSI, key id, created, `policy.expires_at(created)`).
    slot: Slot,
}

/// Seals `key` for its place; the expiry bound is the policy's `created + max_age`.
fn seal(
    keyring: &Keyring,
    policy: &RetentionPolicy,
    imsi: &Imsi,
    key_id: KeyId,
    key: &E2mIntKey,
    created: Timestamp,
) -> Result<Slot, RedbStoreError> {
    let expires = policy.expires_at(created);
    let nonce = SealNonce::random().map_err(RedbStoreError::Seal)?;
    let record = IntKeyRecord::new(imsi, key_id, created, expires);
    let sealed = keyring
        .seal(&record, key, nonce)
        .map_err(RedbStoreError::Seal)?;
    Ok(Slot {
        key_id,
        created,
        expires,
        sealed: *sealed.as_bytes(),
    })
}

fn push_in(
    txn: &WriteTransaction,
    keyring: &Keyring,
    policy: &RetentionPolicy,
    push: &Push,
) -> DbResult<Result<PushOutcome, StoreError>> {
    let Push {
        imsi,
        key_id,
        created,
        now,
        slot: new,
    } = push;
    let (key_id, created, now) = (*key_id, *created, *now);
    let old = read_slots_in(txn, imsi.as_str())?;
    let mut kept: Vec<&Slot> = Vec::with_capacity(old.len() + 1);
    let mut replaced = false;
    for slot in old.iter().filter(|s| now < expiry(s, policy)) {
        if slot.key_id == key_id {
            if slot.created > created {
                // The held key with this id is newer: it wins, whatever the arrival order.
                return Ok(Ok(PushOutcome::Stale));
            }
            if slot.created == created {
                // Sealed bytes differ at every seal (random nonce): compare the keys, both
                // opened here and zeroized when dropped.
                let same = match (open(keyring, imsi, slot), open(keyring, imsi, new)) {
                    (Ok(held), Ok(pushed)) => {
                        bool::from(held.expose_secret().ct_eq(pushed.expose_secret()))
                    }
                    (Err(e), _) | (_, Err(e)) => return Ok(Err(e.into())),
                };
                if same {
                    return Ok(Ok(PushOutcome::Unchanged));
                }
            }
            replaced = true;
            continue;
        }
        kept.push(slot);
    }
    // Retention order: creation time, then key id (no kept slot has the pushed id).
    let mut pos = kept.partition_point(|s| (s.created, s.key_id) < (created, key_id));
    let mut evicted = None;
    if !replaced {
        while kept.len() >= policy.keys_per_ue() {
            if pos == 0 {
                return Ok(Ok(PushOutcome::Stale));
            }
            evicted = Some(kept.remove(0).key_id);
            pos -= 1;
        }
    }
    let mut slots: Vec<Slot> = Vec::with_capacity(kept.len() + 1);
    for (i, s) in kept.iter().enumerate() {
        if i == pos {
            slots.push(new.duplicate());
        }
        slots.push(s.duplicate());
    }
    if pos == kept.len() {
        slots.push(new.duplicate());
    }
    write_record(txn, imsi.as_str(), &old, &slots)?;
    Ok(Ok(if replaced {
        PushOutcome::Replaced
    } else {
        PushOutcome::Stored { evicted }
    }))
}

fn remove_ue_in(txn: &WriteTransaction, imsi: &str) -> DbResult<usize> {
    let old = read_slots_in(txn, imsi)?;
    if !old.is_empty() {
        write_record(txn, imsi, &old, &[])?;
    }
    Ok(old.len())
}

fn sweep_in(
    txn: &WriteTransaction,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> DbResult<Vec<(Imsi, KeyInfo)>> {
    // Every row with a sealed expiry at or before `now` has something to remove.
    let due: Vec<String> = {
        let index = txn.open_table(INT_KEY_EXPIRY).map_err(redb_err)?;
        let end = (now.as_unix_millis().saturating_add(1), "");
        let mut due = Vec::new();
        for entry in index.range(..end).map_err(redb_err)? {
            let (k, _) = entry.map_err(redb_err)?;
            due.push(k.value().1.to_owned());
        }
        due
    };
    let mut gone = Vec::new();
    for imsi_text in due {
        let imsi = Imsi::new(&imsi_text).map_err(|_| RedbStoreError::Corrupt("IMSI"))?;
        let old = read_slots_in(txn, &imsi_text)?;
        let (expired, kept): (Vec<&Slot>, Vec<&Slot>) =
            old.iter().partition(|s| now >= expiry(s, policy));
        gone.extend(expired.iter().map(|s| (imsi.clone(), info(s, policy))));
        let kept: Vec<Slot> = kept.into_iter().map(Slot::duplicate).collect();
        write_record(txn, &imsi_text, &old, &kept)?;
    }
    Ok(gone)
}

impl Slot {
    fn duplicate(&self) -> Slot {
        Slot {
            key_id: self.key_id,
            created: self.created,
            expires: self.expires,
            sealed: self.sealed,
        }
    }
}

/// Reads, inline on the caller's thread: a read transaction is an MVCC snapshot that never
/// waits for the writer, and a lookup is one B-tree descent (plus an AES-GCM-SIV open,
/// ~0.5 µs), short enough not to need `spawn_blocking`.
impl RedbStore {
    /// Intermediate keys held over all UEs (expired ones count until swept): a counter
    /// kept in the same transactions as the keys, so reading it costs one lookup.
    ///
    /// # Errors
    /// [`RedbStoreError`] if redb fails.
    pub fn key_count(&self) -> Result<u64, RedbStoreError> {
        let txn = self.read()?;
        let meta = txn.open_table(META).map_err(redb_err)?;
        Ok(meta
            .get(META_KEYS_HELD)
            .map_err(redb_err)?
            .map_or(0, |v| v.value()))
    }

    fn live_slots(&self, imsi: &Imsi, now: Timestamp) -> DbResult<Vec<Slot>> {
        let txn = self.read()?;
        let rows = txn.open_table(INT_KEYS).map_err(redb_err)?;
        let row = rows.get(imsi.as_str()).map_err(redb_err)?;
        let slots = row.map_or_else(|| Ok(Vec::new()), |v| decode_slots(v.value()))?;
        Ok(live(slots, &self.inner.config.retention, now))
    }

    fn held_key(&self, imsi: &Imsi, slot: &Slot) -> DbResult<HeldKey> {
        Ok(HeldKey {
            info: info(slot, &self.inner.config.retention),
            key: open(&self.inner.keyring, imsi, slot)?,
        })
    }

    fn get_now(&self, imsi: &Imsi, key_id: KeyId, now: Timestamp) -> DbResult<Option<HeldKey>> {
        let slots = self.live_slots(imsi, now)?;
        slots
            .iter()
            .find(|s| s.key_id == key_id)
            .map(|s| self.held_key(imsi, s))
            .transpose()
    }

    fn latest_now(&self, imsi: &Imsi, now: Timestamp) -> DbResult<Option<HeldKey>> {
        let slots = self.live_slots(imsi, now)?;
        slots.last().map(|s| self.held_key(imsi, s)).transpose()
    }

    fn held_now(&self, imsi: &Imsi, now: Timestamp) -> DbResult<Vec<KeyInfo>> {
        let policy = &self.inner.config.retention;
        Ok(self
            .live_slots(imsi, now)?
            .iter()
            .map(|s| info(s, policy))
            .collect())
    }
}

impl IntKeyStore for RedbIntKeyStore {
    fn retention(&self) -> RetentionPolicy {
        self.0.inner.config.retention
    }

    /// Acknowledged (the future resolves) only after the group commit holding the push is
    /// durable. The key is sealed here, from the caller's borrow, before it is queued.
    fn push(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: &E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<PushOutcome, StoreError>> + Send {
        let policy = self.0.inner.config.retention;
        let keyring = self.0.inner.keyring.clone();
        async move {
            if now >= policy.expires_at(created) {
                return Ok(PushOutcome::Expired);
            }
            let slot = seal(&keyring, &policy, imsi, key_id, key, created)?;
            let push = Push {
                imsi: imsi.clone(),
                key_id,
                created,
                now,
                slot,
            };
            self.0
                .inner
                .writer
                .write(move |txn| {
                    let outcome = push_in(txn, &keyring, &policy, &push)?;
                    // The notifications the push causes, in its own transaction (outbox).
                    if let Ok(done) = &outcome {
                        crate::outbox::record_push_in(
                            txn,
                            &push.imsi,
                            push.key_id,
                            done,
                            push.now,
                        )?;
                    }
                    Ok(outcome)
                })
                .await
        }
    }

    fn get(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<HeldKey>, StoreError>> + Send {
        ready(self.0.get_now(imsi, key_id, now).map_err(StoreError::from))
    }

    fn latest(
        &self,
        imsi: &Imsi,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<HeldKey>, StoreError>> + Send {
        ready(self.0.latest_now(imsi, now).map_err(StoreError::from))
    }

    fn held(
        &self,
        imsi: &Imsi,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<KeyInfo>, StoreError>> + Send {
        ready(self.0.held_now(imsi, now).map_err(StoreError::from))
    }

    fn remove_ue(&self, imsi: &Imsi) -> impl Future<Output = Result<usize, StoreError>> + Send {
        let imsi = imsi.as_str().to_owned();
        self.0
            .inner
            .writer
            .write(move |txn| remove_ue_in(txn, &imsi).map(Ok))
    }

    fn sweep(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<(Imsi, KeyInfo)>, StoreError>> + Send {
        let policy = self.0.inner.config.retention;
        self.0.inner.writer.write(move |txn| {
            let gone = sweep_in(txn, &policy, now)?;
            // `key-retired` for each swept key, in the sweep's transaction (outbox).
            for (imsi, info) in &gone {
                crate::outbox::record_in(
                    txn,
                    imsi.as_str(),
                    e2m_keystore::EventType::KeyRetired,
                    info.key_id,
                    now,
                )?;
            }
            Ok(Ok(gone))
        })
    }
}
