//! [`AkmaContexts`] and [`AkmaOutbox`] on redb: the AAnF's contexts in the same file as the
//! EMKS's state, K_AKMA sealed (e2m-seal's `AkmaKeyRecord`: bound to the UE, the A-KID, the
//! registration time and the expiry, under its own kind label).
//!
//! Tables (created at open; none existed before, so the schema version is unchanged):
//! - [`AKMA_CONTEXTS`]: UE (wire text) → A-KID, registered, expires, sealed K_AKMA;
//! - [`AKMA_BY_A_KID`]: A-KID → UE, the retrieval's index, changed in the transaction that
//!   changes the context (a registration replaces the UE's row *and* its old A-KID's entry);
//! - [`AKMA_EXPIRY`]: (expires, UE) → (), what a sweep visits;
//! - [`AKMA_TARGETS`]: (UE, AF, A-KID) → (until, notifUri), and [`AKMA_TARGET_EXPIRY`];
//! - [`AKMA_OUTBOX`]: entry id → (time, due, attempts, owner, AF, A-KID, notifUri), and
//!   [`AKMA_OUTBOX_DUE`]: (due, id) → (), what a claim walks.
//!
//! Every change is a job of the store's writer thread (group commit, durable on return);
//! reads are snapshots on the caller's thread. A retrieval with a notification target is a
//! write only when the target is new or changed.

use core::future::{Future, ready};
use std::collections::HashMap;

use e2m_keystore::akma::{
    AkmaContext, AkmaContexts, AkmaOutbox, AkmaPendingNotification, AkmaPolicy, AkmaRegistered,
    AkmaRemoved, NotifyTarget,
};
use e2m_keystore::e2m_keyid::akma::{AKid, Fqdn, UeId};
use e2m_keystore::{Claim, InstanceId, Limit, StoreError, Timestamp};
use e2m_seal::{AkmaKeyRecord, Kakma, SealNonce, SealedKey};
use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use crate::error::{DbResult, redb_err};
use crate::tables::META;
use crate::{RedbStore, RedbStoreError};

/// UE (its TS 29.571 wire text) → [`encode_context`].
pub(crate) const AKMA_CONTEXTS: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("akma_contexts");
/// A-KID → UE.
pub(crate) const AKMA_BY_A_KID: TableDefinition<'_, &str, &str> =
    TableDefinition::new("akma_by_a_kid");
/// (expires in Unix milliseconds, UE) → ().
pub(crate) const AKMA_EXPIRY: TableDefinition<'_, (u64, &str), ()> =
    TableDefinition::new("akma_expiry");
/// (UE, AF FQDN, A-KID) → until (8, BE) ‖ notifUri.
pub(crate) const AKMA_TARGETS: TableDefinition<'_, (&str, &str, &str), &[u8]> =
    TableDefinition::new("akma_targets");
/// (until, UE, AF FQDN, A-KID) → ().
pub(crate) const AKMA_TARGET_EXPIRY: TableDefinition<'_, (u64, &str, &str, &str), ()> =
    TableDefinition::new("akma_target_expiry");
/// Entry id → [`encode_entry`].
pub(crate) const AKMA_OUTBOX: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("akma_outbox");
/// (due, entry id) → ().
pub(crate) const AKMA_OUTBOX_DUE: TableDefinition<'_, (u64, u64), ()> =
    TableDefinition::new("akma_outbox_due");
/// `META` key of the next AKMA outbox entry id (absent: 1).
const META_NEXT_AKMA_NOTIFICATION_ID: &str = "next_akma_notification_id";

/// The most due entries one claim looks at.
const CLAIM_SCAN: usize = 4096;

/// Creates the AKMA tables (called from the store's open, in its preparing transaction).
pub(crate) fn create_tables(txn: &WriteTransaction) -> DbResult<()> {
    txn.open_table(AKMA_CONTEXTS).map_err(redb_err)?;
    txn.open_table(AKMA_BY_A_KID).map_err(redb_err)?;
    txn.open_table(AKMA_EXPIRY).map_err(redb_err)?;
    txn.open_table(AKMA_TARGETS).map_err(redb_err)?;
    txn.open_table(AKMA_TARGET_EXPIRY).map_err(redb_err)?;
    txn.open_table(AKMA_OUTBOX).map_err(redb_err)?;
    txn.open_table(AKMA_OUTBOX_DUE).map_err(redb_err)?;
    Ok(())
}

/// The store's AKMA contexts, as [`AkmaContexts`] and [`AkmaOutbox`] (from
/// [`RedbStore::akma`]): a cheap handle on the store, with the policy it applies.
#[derive(Clone, Debug)]
pub struct RedbAkmaContexts {
    store: RedbStore,
    policy: AkmaPolicy,
}

impl RedbStore {
    /// The AKMA context store of this file, applying `policy` (a cheap handle). Every
    /// handle on one file should use the same policy.
    pub fn akma(&self, policy: AkmaPolicy) -> RedbAkmaContexts {
        RedbAkmaContexts {
            store: self.clone(),
            policy,
        }
    }
}

const CONTEXT: &str = "AKMA context";
const ENTRY: &str = "AKMA outbox entry";
const BAD_CONTEXT: RedbStoreError = RedbStoreError::Corrupt(CONTEXT);
const BAD_ENTRY: RedbStoreError = RedbStoreError::Corrupt(ENTRY);

/// A stored context, decoded (the UE is its key).
struct Row {
    a_kid: AKid,
    registered: Timestamp,
    expires: Timestamp,
    sealed: [u8; SealedKey::LEN],
}

fn time(ms: u64, what: &'static str) -> DbResult<Timestamp> {
    Timestamp::checked_from_unix_millis(ms).ok_or(RedbStoreError::Corrupt(what))
}

fn u64_at(bytes: &[u8], at: usize, what: &'static str) -> DbResult<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or(RedbStoreError::Corrupt(what))
}

/// len(A-KID) (1) ‖ A-KID ‖ registered (8) ‖ expires (8) ‖ sealed K_AKMA (65).
fn encode_context(row: &Row) -> Vec<u8> {
    let a_kid = row.a_kid.as_str().as_bytes();
    let mut out = Vec::with_capacity(1 + a_kid.len() + 16 + SealedKey::LEN);
    // At most 253 octets.
    out.push(a_kid.len() as u8);
    out.extend_from_slice(a_kid);
    out.extend_from_slice(&row.registered.as_unix_millis().to_be_bytes());
    out.extend_from_slice(&row.expires.as_unix_millis().to_be_bytes());
    out.extend_from_slice(&row.sealed);
    out
}

fn decode_context(bytes: &[u8]) -> DbResult<Row> {
    let n = usize::from(*bytes.first().ok_or(BAD_CONTEXT)?);
    let text = bytes.get(1..1 + n).ok_or(BAD_CONTEXT)?;
    let a_kid = std::str::from_utf8(text)
        .ok()
        .and_then(|t| AKid::parse(t).ok())
        .ok_or(BAD_CONTEXT)?;
    let at = 1 + n;
    let sealed = bytes
        .get(at + 16..)
        .and_then(|s| <[u8; SealedKey::LEN]>::try_from(s).ok())
        .ok_or(BAD_CONTEXT)?;
    Ok(Row {
        a_kid,
        registered: time(u64_at(bytes, at, CONTEXT)?, CONTEXT)?,
        expires: time(u64_at(bytes, at + 8, CONTEXT)?, CONTEXT)?,
        sealed,
    })
}

/// One outbox row, decoded.
struct Entry {
    time: u64,
    due: u64,
    attempts: u32,
    /// 0: not claimed.
    owner: u64,
    af: Fqdn,
    a_kid: AKid,
    uri: Box<str>,
}

/// time (8) ‖ due (8) ‖ attempts (4) ‖ owner (8) ‖ len(AF) (1) ‖ AF ‖ len(A-KID) (1) ‖
/// A-KID ‖ notifUri; integers big-endian.
fn encode_entry(e: &Entry) -> Vec<u8> {
    let (af, a_kid) = (e.af.as_str().as_bytes(), e.a_kid.as_str().as_bytes());
    let mut out = Vec::with_capacity(30 + af.len() + a_kid.len() + e.uri.len());
    out.extend_from_slice(&e.time.to_be_bytes());
    out.extend_from_slice(&e.due.to_be_bytes());
    out.extend_from_slice(&e.attempts.to_be_bytes());
    out.extend_from_slice(&e.owner.to_be_bytes());
    // Both at most 253 octets.
    out.push(af.len() as u8);
    out.extend_from_slice(af);
    out.push(a_kid.len() as u8);
    out.extend_from_slice(a_kid);
    out.extend_from_slice(e.uri.as_bytes());
    out
}

fn decode_entry(bytes: &[u8]) -> DbResult<Entry> {
    let text = |from: usize, len: usize| -> DbResult<&str> {
        bytes
            .get(from..from + len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or(BAD_ENTRY)
    };
    let attempts = bytes.get(16..20).ok_or(BAD_ENTRY)?;
    let af_len = usize::from(*bytes.get(28).ok_or(BAD_ENTRY)?);
    let af = Fqdn::parse(text(29, af_len)?).map_err(|_| BAD_ENTRY)?;
    let at = 29 + af_len;
    let kid_len = usize::from(*bytes.get(at).ok_or(BAD_ENTRY)?);
    let a_kid = AKid::parse(text(at + 1, kid_len)?).map_err(|_| BAD_ENTRY)?;
    let uri_at = at + 1 + kid_len;
    let uri = text(uri_at, bytes.len().saturating_sub(uri_at))?;
    Ok(Entry {
        time: u64_at(bytes, 0, ENTRY)?,
        due: u64_at(bytes, 8, ENTRY)?,
        attempts: u32::from_be_bytes(attempts.try_into().map_err(|_| BAD_ENTRY)?),
        owner: u64_at(bytes, 20, ENTRY)?,
        af,
        a_kid,
        uri: uri.into(),
    })
}

/// until (8) ‖ notifUri.
fn encode_target(until: Timestamp, uri: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + uri.len());
    out.extend_from_slice(&until.as_unix_millis().to_be_bytes());
    out.extend_from_slice(uri.as_bytes());
    out
}

fn decode_target(bytes: &[u8]) -> DbResult<(u64, &str)> {
    const WHAT: &str = "AKMA notification target";
    let until = u64_at(bytes, 0, WHAT)?;
    let uri = bytes
        .get(8..)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or(RedbStoreError::Corrupt(WHAT))?;
    Ok((until, uri))
}

/// The UE's stored row, in `txn`.
fn row_in(txn: &WriteTransaction, ue: &str) -> DbResult<Option<Row>> {
    let rows = txn.open_table(AKMA_CONTEXTS).map_err(redb_err)?;
    let row = rows.get(ue).map_err(redb_err)?;
    row.map(|v| decode_context(v.value())).transpose()
}

/// Removes the UE's row, its A-KID's index entry (if it points to the UE) and its sweep
/// entry; returns the row.
fn take_in(txn: &WriteTransaction, ue: &str) -> DbResult<Option<Row>> {
    let Some(row) = row_in(txn, ue)? else {
        return Ok(None);
    };
    txn.open_table(AKMA_CONTEXTS)
        .map_err(redb_err)?
        .remove(ue)
        .map_err(redb_err)?;
    let mut index = txn.open_table(AKMA_BY_A_KID).map_err(redb_err)?;
    let points_here = index
        .get(row.a_kid.as_str())
        .map_err(redb_err)?
        .is_some_and(|v| v.value() == ue);
    if points_here {
        index.remove(row.a_kid.as_str()).map_err(redb_err)?;
    }
    txn.open_table(AKMA_EXPIRY)
        .map_err(redb_err)?
        .remove((row.expires.as_unix_millis(), ue))
        .map_err(redb_err)?;
    Ok(Some(row))
}

/// One registration, inside the batch's transaction (the K_AKMA sealed by the caller).
fn register_in(
    txn: &WriteTransaction,
    ue: &str,
    new: &Row,
    now: Timestamp,
) -> DbResult<AkmaRegistered> {
    let holder: Option<String> = {
        let index = txn.open_table(AKMA_BY_A_KID).map_err(redb_err)?;
        let entry = index.get(new.a_kid.as_str()).map_err(redb_err)?;
        entry.map(|v| v.value().to_owned())
    };
    if let Some(holder) = holder.filter(|h| h != ue) {
        let live = row_in(txn, &holder)?.is_some_and(|r| r.expires > now);
        if live {
            return Ok(AkmaRegistered::AKidTaken);
        }
        // Expired, not yet swept: it gives way.
        take_in(txn, &holder)?;
    }
    let old = take_in(txn, ue)?.filter(|r| r.expires > now);
    txn.open_table(AKMA_CONTEXTS)
        .map_err(redb_err)?
        .insert(ue, encode_context(new).as_slice())
        .map_err(redb_err)?;
    txn.open_table(AKMA_BY_A_KID)
        .map_err(redb_err)?
        .insert(new.a_kid.as_str(), ue)
        .map_err(redb_err)?;
    txn.open_table(AKMA_EXPIRY)
        .map_err(redb_err)?
        .insert((new.expires.as_unix_millis(), ue), ())
        .map_err(redb_err)?;
    Ok(match old {
        None => AkmaRegistered::Stored,
        Some(old) => AkmaRegistered::Replaced { old: old.a_kid },
    })
}

/// The live row whose A-KID is `a_kid`, with its UE, in the read snapshot `txn`.
fn find(txn: &ReadTransaction, a_kid: &AKid, now: Timestamp) -> DbResult<Option<(UeId, Row)>> {
    let index = txn.open_table(AKMA_BY_A_KID).map_err(redb_err)?;
    let Some(ue) = index.get(a_kid.as_str()).map_err(redb_err)? else {
        return Ok(None);
    };
    let ue_text = ue.value();
    let rows = txn.open_table(AKMA_CONTEXTS).map_err(redb_err)?;
    let Some(row) = rows.get(ue_text).map_err(redb_err)? else {
        return Ok(None);
    };
    let row = decode_context(row.value())?;
    if row.a_kid != *a_kid || row.expires <= now {
        return Ok(None);
    }
    let ue = UeId::parse(ue_text).map_err(|_| BAD_CONTEXT)?;
    Ok(Some((ue, row)))
}

/// The live row whose A-KID is `a_kid`, with its UE, in `txn`.
fn find_in(txn: &WriteTransaction, a_kid: &AKid, now: Timestamp) -> DbResult<Option<String>> {
    let ue = {
        let index = txn.open_table(AKMA_BY_A_KID).map_err(redb_err)?;
        let entry = index.get(a_kid.as_str()).map_err(redb_err)?;
        match entry {
            Some(v) => v.value().to_owned(),
            None => return Ok(None),
        }
    };
    Ok(row_in(txn, &ue)?
        .filter(|r| r.a_kid == *a_kid && r.expires > now)
        .map(|_| ue))
}

/// The UE's targets, (AF, A-KID, until).
fn targets_in(txn: &WriteTransaction, ue: &str) -> DbResult<Vec<(String, String, u64, String)>> {
    let table = txn.open_table(AKMA_TARGETS).map_err(redb_err)?;
    let mut out = Vec::new();
    for entry in table.range((ue, "", "")..).map_err(redb_err)? {
        let (k, v) = entry.map_err(redb_err)?;
        let (u, af, a_kid) = k.value();
        if u != ue {
            break;
        }
        let (until, uri) = decode_target(v.value())?;
        out.push((af.to_owned(), a_kid.to_owned(), until, uri.to_owned()));
    }
    Ok(out)
}

fn remove_target_in(
    txn: &WriteTransaction,
    ue: &str,
    af: &str,
    a_kid: &str,
    until: u64,
) -> DbResult<()> {
    txn.open_table(AKMA_TARGETS)
        .map_err(redb_err)?
        .remove((ue, af, a_kid))
        .map_err(redb_err)?;
    txn.open_table(AKMA_TARGET_EXPIRY)
        .map_err(redb_err)?
        .remove((until, ue, af, a_kid))
        .map_err(redb_err)?;
    Ok(())
}

/// A retrieval with a target, inside the batch's transaction: `None` if the context is gone
/// (nothing stored then).
fn note_in(
    txn: &WriteTransaction,
    a_kid: &AKid,
    target: &NotifyTarget,
    limit: usize,
    now: Timestamp,
) -> DbResult<Result<Option<(String, Row)>, StoreError>> {
    let Some(ue) = find_in(txn, a_kid, now)? else {
        return Ok(Ok(None));
    };
    let Some(row) = row_in(txn, &ue)? else {
        return Ok(Ok(None));
    };
    let until = row.expires.as_unix_millis();
    let now_ms = now.as_unix_millis();
    let (af, kid) = (target.af().as_str(), a_kid.as_str());
    let mut live = 0;
    let mut known = None;
    for (t_af, t_kid, t_until, _) in targets_in(txn, &ue)? {
        if t_af == af && t_kid == kid {
            known = Some(t_until);
        } else if t_until > now_ms {
            live += 1;
        }
    }
    if known.is_none_or(|u| u <= now_ms) && live >= limit {
        return Ok(Err(StoreError::LimitReached(Limit::NotifyTargetsPerUe)));
    }
    if let Some(old) = known {
        remove_target_in(txn, &ue, af, kid, old)?;
    }
    txn.open_table(AKMA_TARGETS)
        .map_err(redb_err)?
        .insert(
            (ue.as_str(), af, kid),
            encode_target(row.expires, target.uri()).as_slice(),
        )
        .map_err(redb_err)?;
    txn.open_table(AKMA_TARGET_EXPIRY)
        .map_err(redb_err)?
        .insert((until, ue.as_str(), af, kid), ())
        .map_err(redb_err)?;
    Ok(Ok(Some((ue, row))))
}

fn next_entry_id(txn: &WriteTransaction) -> DbResult<u64> {
    let mut meta = txn.open_table(META).map_err(redb_err)?;
    let n = meta
        .get(META_NEXT_AKMA_NOTIFICATION_ID)
        .map_err(redb_err)?
        .map_or(1, |v| v.value());
    meta.insert(META_NEXT_AKMA_NOTIFICATION_ID, n.saturating_add(1))
        .map_err(redb_err)?;
    Ok(n)
}

/// One removal, inside the batch's transaction: the context, its targets, and an outbox
/// entry per live target, together.
fn remove_in(txn: &WriteTransaction, ue: &str, now: Timestamp) -> DbResult<AkmaRemoved> {
    let a_kid = take_in(txn, ue)?
        .filter(|r| r.expires > now)
        .map(|r| r.a_kid);
    let now_ms = now.as_unix_millis();
    let mut notifications = 0;
    for (af, kid, until, uri) in targets_in(txn, ue)? {
        remove_target_in(txn, ue, &af, &kid, until)?;
        if until <= now_ms {
            continue;
        }
        let entry = Entry {
            time: now_ms,
            due: now_ms,
            attempts: 0,
            owner: 0,
            af: Fqdn::parse(&af).map_err(|_| BAD_ENTRY)?,
            a_kid: AKid::parse(&kid).map_err(|_| BAD_ENTRY)?,
            uri: uri.into(),
        };
        let id = next_entry_id(txn)?;
        txn.open_table(AKMA_OUTBOX)
            .map_err(redb_err)?
            .insert(id, encode_entry(&entry).as_slice())
            .map_err(redb_err)?;
        txn.open_table(AKMA_OUTBOX_DUE)
            .map_err(redb_err)?
            .insert((now_ms, id), ())
            .map_err(redb_err)?;
        notifications += 1;
    }
    Ok(AkmaRemoved {
        a_kid,
        notifications,
    })
}

fn sweep_in(txn: &WriteTransaction, now: Timestamp) -> DbResult<usize> {
    let end = now.as_unix_millis().saturating_add(1);
    let expired: Vec<String> = {
        let index = txn.open_table(AKMA_EXPIRY).map_err(redb_err)?;
        let mut out = Vec::new();
        for entry in index.range(..(end, "")).map_err(redb_err)? {
            let (k, _) = entry.map_err(redb_err)?;
            out.push(k.value().1.to_owned());
        }
        out
    };
    for ue in &expired {
        take_in(txn, ue)?;
    }
    let targets: Vec<(u64, String, String, String)> = {
        let index = txn.open_table(AKMA_TARGET_EXPIRY).map_err(redb_err)?;
        let mut out = Vec::new();
        for entry in index.range(..(end, "", "", "")).map_err(redb_err)? {
            let (k, _) = entry.map_err(redb_err)?;
            let (until, ue, af, kid) = k.value();
            out.push((until, ue.to_owned(), af.to_owned(), kid.to_owned()));
        }
        out
    };
    for (until, ue, af, kid) in targets {
        remove_target_in(txn, &ue, &af, &kid, until)?;
    }
    Ok(expired.len())
}

impl RedbAkmaContexts {
    /// Opens the sealed K_AKMA of `row` for `ue`: the record it is bound to is rebuilt from
    /// the row's place, so a row moved or edited fails to open.
    fn context(&self, ue: UeId, row: &Row) -> DbResult<AkmaContext> {
        let record = AkmaKeyRecord::new(&ue, &row.a_kid, row.registered, row.expires);
        let sealed = SealedKey::from_bytes(&row.sealed).map_err(RedbStoreError::Open)?;
        let k_akma = self
            .store
            .inner
            .keyring
            .open_k_akma(&record, &sealed)
            .map_err(RedbStoreError::Open)?;
        Ok(AkmaContext {
            ue,
            a_kid: row.a_kid,
            k_akma,
            registered: row.registered,
            expires: row.expires,
        })
    }

    fn seal(&self, ue: &UeId, a_kid: &AKid, k_akma: &Kakma, now: Timestamp) -> DbResult<Row> {
        let expires = self.policy.expires_at(now);
        let record = AkmaKeyRecord::new(ue, a_kid, now, expires);
        let nonce = SealNonce::random().map_err(RedbStoreError::Seal)?;
        let sealed = self
            .store
            .inner
            .keyring
            .seal_k_akma(&record, k_akma, nonce)
            .map_err(RedbStoreError::Seal)?;
        Ok(Row {
            a_kid: *a_kid,
            registered: now,
            expires,
            sealed: *sealed.as_bytes(),
        })
    }

    /// A read that serves the retrieval if the target is already stored as it would be
    /// (the context and the target from one snapshot).
    fn known_target(
        &self,
        a_kid: &AKid,
        target: &NotifyTarget,
        now: Timestamp,
    ) -> DbResult<Option<AkmaContext>> {
        let txn = self.store.read()?;
        let Some((ue, row)) = find(&txn, a_kid, now)? else {
            return Ok(None);
        };
        let table = txn.open_table(AKMA_TARGETS).map_err(redb_err)?;
        let ue_text = ue.to_string();
        let stored = table
            .get((ue_text.as_str(), target.af().as_str(), a_kid.as_str()))
            .map_err(redb_err)?;
        let same = match stored {
            Some(v) => {
                let (until, uri) = decode_target(v.value())?;
                until == row.expires.as_unix_millis() && uri == target.uri()
            }
            None => false,
        };
        if same {
            self.context(ue, &row).map(Some)
        } else {
            Ok(None)
        }
    }

    async fn retrieve_now(
        &self,
        a_kid: &AKid,
        notify: Option<&NotifyTarget>,
        now: Timestamp,
    ) -> Result<Option<AkmaContext>, StoreError> {
        let Some(target) = notify else {
            return match find(&self.store.read()?, a_kid, now)? {
                Some((ue, row)) => Ok(Some(self.context(ue, &row)?)),
                None => Ok(None),
            };
        };
        if let Some(context) = self.known_target(a_kid, target, now)? {
            return Ok(Some(context));
        }
        let (kid, owned, limit) = (*a_kid, target.clone(), self.policy.notify_per_ue());
        let noted = self
            .store
            .inner
            .writer
            .write(move |txn| note_in(txn, &kid, &owned, limit, now))
            .await?;
        match noted {
            Some((ue, row)) => {
                let ue = UeId::parse(&ue).map_err(|_| BAD_CONTEXT)?;
                Ok(Some(self.context(ue, &row)?))
            }
            None => Ok(None),
        }
    }
}

impl AkmaContexts for RedbAkmaContexts {
    fn policy(&self) -> AkmaPolicy {
        self.policy
    }

    fn register(
        &self,
        ue: &UeId,
        a_kid: &AKid,
        k_akma: &Kakma,
        now: Timestamp,
    ) -> impl Future<Output = Result<AkmaRegistered, StoreError>> + Send {
        // Sealed here, so that no copy of K_AKMA travels to the writer thread.
        let sealed = self.seal(ue, a_kid, k_akma, now);
        let ue = ue.to_string();
        async move {
            let row = sealed?;
            self.store
                .inner
                .writer
                .write(move |txn| register_in(txn, &ue, &row, now).map(Ok))
                .await
        }
    }

    fn retrieve(
        &self,
        a_kid: &AKid,
        notify: Option<&NotifyTarget>,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<AkmaContext>, StoreError>> + Send {
        self.retrieve_now(a_kid, notify, now)
    }

    fn context_of(
        &self,
        ue: &UeId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<AkmaContext>, StoreError>> + Send {
        let read = || -> DbResult<Option<AkmaContext>> {
            let txn = self.store.read()?;
            let rows = txn.open_table(AKMA_CONTEXTS).map_err(redb_err)?;
            let ue_text = ue.to_string();
            let Some(row) = rows.get(ue_text.as_str()).map_err(redb_err)? else {
                return Ok(None);
            };
            let row = decode_context(row.value())?;
            if row.expires <= now {
                return Ok(None);
            }
            self.context(*ue, &row).map(Some)
        };
        ready(read().map_err(StoreError::from))
    }

    fn remove(
        &self,
        ue: &UeId,
        now: Timestamp,
    ) -> impl Future<Output = Result<AkmaRemoved, StoreError>> + Send {
        let ue = ue.to_string();
        self.store
            .inner
            .writer
            .write(move |txn| remove_in(txn, &ue, now).map(Ok))
    }

    fn sweep(&self, now: Timestamp) -> impl Future<Output = Result<usize, StoreError>> + Send {
        self.store
            .inner
            .writer
            .write(move |txn| sweep_in(txn, now).map(Ok))
    }

    fn stored(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let count = || -> DbResult<u64> {
            let txn = self.store.read()?;
            let rows = txn.open_table(AKMA_CONTEXTS).map_err(redb_err)?;
            rows.len().map_err(redb_err)
        };
        ready(count().map_err(StoreError::from))
    }
}

/// What a claim needs, owned (it travels to the writer thread).
struct OwnedClaim {
    instance: u64,
    now: u64,
    until: u64,
    max: usize,
    per_af: usize,
    skip: Vec<Fqdn>,
}

fn entry_in(txn: &WriteTransaction, id: u64) -> DbResult<Option<Entry>> {
    let rows = txn.open_table(AKMA_OUTBOX).map_err(redb_err)?;
    let row = rows.get(id).map_err(redb_err)?;
    row.map(|v| decode_entry(v.value())).transpose()
}

fn reschedule_in(txn: &WriteTransaction, id: u64, old_due: u64, entry: &Entry) -> DbResult<()> {
    let mut due = txn.open_table(AKMA_OUTBOX_DUE).map_err(redb_err)?;
    due.remove((old_due, id)).map_err(redb_err)?;
    due.insert((entry.due, id), ()).map_err(redb_err)?;
    txn.open_table(AKMA_OUTBOX)
        .map_err(redb_err)?
        .insert(id, encode_entry(entry).as_slice())
        .map_err(redb_err)?;
    Ok(())
}

fn claim_in(txn: &WriteTransaction, claim: &OwnedClaim) -> DbResult<Vec<AkmaPendingNotification>> {
    let candidates: Vec<(u64, u64)> = {
        let due = txn.open_table(AKMA_OUTBOX_DUE).map_err(redb_err)?;
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
    let mut taken: HashMap<Fqdn, usize> = HashMap::new();
    let mut out = Vec::new();
    for (at, id) in candidates {
        if out.len() >= claim.max {
            break;
        }
        let Some(entry) = entry_in(txn, id)? else {
            continue;
        };
        if claim.skip.contains(&entry.af) {
            continue;
        }
        let n = taken.entry(entry.af).or_insert(0);
        if *n >= claim.per_af {
            continue;
        }
        *n += 1;
        out.push(AkmaPendingNotification {
            id,
            af: entry.af,
            notif_uri: entry.uri.clone(),
            a_kid: entry.a_kid,
            time: time(entry.time, ENTRY)?,
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

fn delivered_in(txn: &WriteTransaction, id: u64) -> DbResult<bool> {
    let Some(entry) = entry_in(txn, id)? else {
        return Ok(false);
    };
    txn.open_table(AKMA_OUTBOX)
        .map_err(redb_err)?
        .remove(id)
        .map_err(redb_err)?;
    txn.open_table(AKMA_OUTBOX_DUE)
        .map_err(redb_err)?
        .remove((entry.due, id))
        .map_err(redb_err)?;
    Ok(true)
}

fn retry_in(txn: &WriteTransaction, id: u64, instance: u64, when: u64) -> DbResult<bool> {
    let Some(entry) = entry_in(txn, id)? else {
        return Ok(false);
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

/// Every method but the two reads is a write of the writer thread (durable, group
/// committed), as the EMKS outbox's are.
impl AkmaOutbox for RedbAkmaContexts {
    fn claim_due(
        &self,
        claim: &Claim<'_, Fqdn>,
    ) -> impl Future<Output = Result<Vec<AkmaPendingNotification>, StoreError>> + Send {
        let owned = OwnedClaim {
            instance: claim.instance.as_u64(),
            now: claim.now.as_unix_millis(),
            until: claim.lease_until().as_unix_millis(),
            max: claim.max,
            per_af: claim.per_emse,
            skip: claim.skip.to_vec(),
        };
        self.store
            .inner
            .writer
            .write(move |txn| claim_in(txn, &owned).map(Ok))
    }

    fn delivered(&self, id: u64) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.store
            .inner
            .writer
            .write(move |txn| delivered_in(txn, id).map(Ok))
    }

    fn retry_at(
        &self,
        id: u64,
        instance: InstanceId,
        when: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let (instance, when) = (instance.as_u64(), when.as_unix_millis());
        self.store
            .inner
            .writer
            .write(move |txn| retry_in(txn, id, instance, when).map(Ok))
    }

    fn next_due(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        let read = || -> DbResult<Option<Timestamp>> {
            let txn = self.store.read()?;
            let due = txn.open_table(AKMA_OUTBOX_DUE).map_err(redb_err)?;
            let first = due.first().map_err(redb_err)?;
            Ok(first.and_then(|(k, _)| Timestamp::checked_from_unix_millis(k.value().0)))
        };
        ready(read().map_err(StoreError::from))
    }

    fn pending(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let read = || -> DbResult<u64> {
            let txn = self.store.read()?;
            let rows = txn.open_table(AKMA_OUTBOX).map_err(redb_err)?;
            rows.len().map_err(redb_err)
        };
        ready(read().map_err(StoreError::from))
    }
}
