//! The tables of the database file, and what each key and value means.
//!
//! Every table is created when the store opens, so a read never meets a missing table.

use redb::TableDefinition;

/// The layout version this build reads and writes (`META["schema"]`). 2: every stored time
/// (key and session records, both expiry indexes) is in Unix milliseconds and the keys are
/// sealed in e2m-seal format 2; a version-1 file (seconds) is refused at open with
/// [`crate::RedbStoreError::SchemaVersion`], never read with the wrong unit.
pub(crate) const SCHEMA_VERSION: u64 = 2;

/// `"schema"` → [`SCHEMA_VERSION`]; `"next_session_ref"`, `"next_subscription_id"` → the
/// next number to hand out (persisted, so that neither is ever reused, even across restarts).
pub(crate) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
pub(crate) const META_SCHEMA: &str = "schema";
pub(crate) const META_NEXT_SESSION_REF: &str = "next_session_ref";
pub(crate) const META_NEXT_SUBSCRIPTION_ID: &str = "next_subscription_id";
/// `"next_notification_id"` → the next outbox entry id (absent in files made before the
/// outbox: then 1).
pub(crate) const META_NEXT_NOTIFICATION_ID: &str = "next_notification_id";
/// `"keys_held"` → intermediate keys held (changed in the transactions that change them).
pub(crate) const META_KEYS_HELD: &str = "keys_held";
/// `"write_probe"` → when (Unix milliseconds) a readiness check or a recovery last
/// committed its test write ([`crate::RedbStore::check_writable`]); read by nothing.
pub(crate) const META_WRITE_PROBE: &str = "write_probe";

/// KEK version → its e2m-seal check record (65 octets), verified at every start.
pub(crate) const KEK_CHECKS: TableDefinition<'_, u32, &[u8]> = TableDefinition::new("kek_checks");

/// IMSI (its digits) → the UE's retained keys, oldest first ([`crate::codec::Slot`]s).
pub(crate) const INT_KEYS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("int_keys");

/// (earliest stored expiry of the UE's keys in Unix milliseconds, IMSI) → (): what `sweep` visits, so that a
/// sweep costs in proportion to what expired, not to the number of UEs.
pub(crate) const INT_KEY_EXPIRY: TableDefinition<'_, (u64, &str), ()> =
    TableDefinition::new("int_key_expiry");

/// (EMSE_Id, application identity) → IMSI.
pub(crate) const IDENTITIES: TableDefinition<'_, (&str, &str), &str> =
    TableDefinition::new("identities");

/// Session digest ([`e2m_keystore::SessionDigest`], never the id) → the session
/// ([`crate::codec::encode_session`]).
pub(crate) const SESSIONS: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new("sessions");

/// (EMSE_Id, session ref) → session digest: `of_emse` and the per-EMSE limit.
pub(crate) const SESSIONS_BY_EMSE: TableDefinition<'_, (&str, u64), &[u8; 32]> =
    TableDefinition::new("sessions_by_emse");

/// (expiry in Unix milliseconds, session ref) → session digest: what `sweep` visits.
pub(crate) const SESSIONS_BY_EXPIRY: TableDefinition<'_, (u64, u64), &[u8; 32]> =
    TableDefinition::new("sessions_by_expiry");

/// Subscription id → the subscription ([`crate::codec::encode_subscription`]).
pub(crate) const SUBSCRIPTIONS: TableDefinition<'_, u64, &[u8]> =
    TableDefinition::new("subscriptions");

/// (IMSI of the UE filter, or [`UNFILTERED`] for none, subscription id) → (): `matching`.
pub(crate) const SUBS_BY_UE: TableDefinition<'_, (&str, u64), ()> =
    TableDefinition::new("subscriptions_by_ue");

/// The `SUBS_BY_UE` key of a subscription without a UE filter (no IMSI is empty).
pub(crate) const UNFILTERED: &str = "";

/// (session ref, subscription id) → (): the per-session limit and `remove_session`.
pub(crate) const SUBS_BY_SESSION: TableDefinition<'_, (u64, u64), ()> =
    TableDefinition::new("subscriptions_by_session");

/// Outbox entry id → the entry ([`crate::outbox`]): a notification recorded with the push
/// or sweep that caused it, until it is delivered or its subscription ends.
pub(crate) const OUTBOX: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("outbox");

/// (due time, entry id) → (): what a claim walks, oldest first. A claimed entry is due
/// again at the end of its lease.
pub(crate) const OUTBOX_DUE: TableDefinition<'_, (u64, u64), ()> =
    TableDefinition::new("outbox_due");

/// (subscription id, entry id) → (): what removing a subscription deletes.
pub(crate) const OUTBOX_BY_SUBSCRIPTION: TableDefinition<'_, (u64, u64), ()> =
    TableDefinition::new("outbox_by_subscription");
