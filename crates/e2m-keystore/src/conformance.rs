//! The conformance suite: every promise of the store traits, as checks that any backend's
//! tests run against fresh stores.
//!
//! ```
//! use e2m_keystore::{block_on, conformance, MemoryIntKeyStore};
//! let report = block_on(conformance::int_keys(&MemoryIntKeyStore::new));
//! assert!(report.is_ok(), "{report}");
//! ```
//!
//! The checks are `async`, as the store traits are: a backend whose futures need a runtime
//! awaits them from its own async test (`#[tokio::test]`); [`block_on`]
//! serves a backend whose futures are ready at once.
//!
//! Each check gets a fresh store from the factory, so checks never depend on one another.
//! The suite returns a [`Report`] rather than panicking, so a backend can print every
//! failure at once.

use core::future::Future;
use core::time::Duration;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use e2m_kdf::E2mIntKey;
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};

use crate::import::{IdentityRow, ImportSummary};
use crate::{
    EventSet, EventType, IdentityMap, IntKeyStore, Limit, Provisioned, PushOutcome,
    RetentionPolicy, SessionId, SessionPolicy, SessionRef, SessionStore, StoreError,
    SubscriptionPolicy, SubscriptionRecord, SubscriptionStore, Timestamp, UeFilter, UeRef,
    block_on,
};

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// Which suite (`"int_keys"`, `"identities"`, `"sessions"`, `"subscriptions"`).
    pub suite: &'static str,
    /// The check's name.
    pub check: &'static str,
    /// Why it failed; `None` if it passed.
    pub failure: Option<String>,
}

/// The outcome of a suite run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Every check run, in order.
    pub results: Vec<CheckResult>,
    /// Run only the check of this name (see [`conformance_tests!`](crate::conformance_tests)).
    only: Option<&'static str>,
}

impl Report {
    /// Whether every check passed (and at least one ran).
    pub fn is_ok(&self) -> bool {
        !self.results.is_empty() && self.results.iter().all(|r| r.failure.is_none())
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.results.iter().filter(|r| r.failure.is_some())
    }

    /// Appends another report's results.
    pub fn merge(&mut self, other: Report) {
        self.results.extend(other.results);
    }

    async fn run(
        &mut self,
        suite: &'static str,
        check: &'static str,
        f: impl Future<Output = Check>,
    ) {
        if self.only.is_some_and(|only| only != check) {
            return;
        }
        let failure = f.await.err();
        self.results.push(CheckResult {
            suite,
            check,
            failure,
        });
    }
}

impl core::fmt::Display for Report {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let failed = self.failures().count();
        writeln!(f, "{} checks, {} failed", self.results.len(), failed)?;
        for r in self.failures() {
            writeln!(
                f,
                "  FAIL {}::{}: {}",
                r.suite,
                r.check,
                r.failure.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}

/// Factories of fresh stores, one per trait, for [`run_all`].
pub struct Factories<'a, I, M, S, B> {
    /// Makes an empty intermediate key store with the given policy.
    pub int_keys: &'a dyn Fn(RetentionPolicy) -> I,
    /// Makes an empty identity map.
    pub identities: &'a dyn Fn() -> M,
    /// Makes an empty session store with the given policy.
    pub sessions: &'a dyn Fn(SessionPolicy) -> S,
    /// Makes an empty subscription store with the given policy.
    pub subscriptions: &'a dyn Fn(SubscriptionPolicy) -> B,
}

/// Runs all four suites.
pub async fn run_all<I, M, S, B>(f: &Factories<'_, I, M, S, B>) -> Report
where
    I: IntKeyStore,
    M: IdentityMap,
    S: SessionStore,
    B: SubscriptionStore,
{
    let mut report = int_keys(f.int_keys).await;
    report.merge(identities(f.identities).await);
    report.merge(sessions(f.sessions).await);
    report.merge(subscriptions(f.subscriptions).await);
    report
}

/// One `#[test]` per conformance check, so that a backend's failing check is named by the
/// test harness (`int_keys::sweep_removes_only_expired_keys FAILED`), like hkdf's
/// `new_test!`. Each section is optional; each makes a module of tests named after the
/// suite, and a `CHECKS` list of the check names it covers.
///
/// `run` waits for a future: [`block_on`] for stores whose futures are
/// ready at once or driven elsewhere; a backend needing its runtime passes a function
/// such as `fn run<F: Future>(f: F) -> F::Output { runtime().block_on(f) }`.
///
/// ```
/// mod memory {
///     use e2m_keystore::{MemoryIdentityMap, MemoryIntKeyStore, MemorySessionStore,
///         MemorySubscriptionStore};
///
///     e2m_keystore::conformance_tests! {
///         run: e2m_keystore::block_on,
///         int_keys: MemoryIntKeyStore::new,
///         identities: MemoryIdentityMap::new,
///         sessions: MemorySessionStore::new,
///         subscriptions: MemorySubscriptionStore::new,
///     }
/// }
/// assert_eq!(memory::int_keys::CHECKS.len(), 22);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (
        run: $run:expr
        $(, int_keys: $int_keys:expr)?
        $(, identities: $identities:expr)?
        $(, sessions: $sessions:expr)?
        $(, subscriptions: $subscriptions:expr)?
        $(, outbox: $outbox:expr)?
        $(, identity_keys: $identity_keys:expr)?
        $(,)?
    ) => {
        $($crate::__conformance_suite_tests!(int_keys, int_keys_only, $run, $int_keys, [
            reports_its_policy,
            push_then_get_returns_the_same_key,
            unknown_ue_or_key_id_is_none,
            a_push_as_old_as_the_oldest_key_evicts_that_key,
            keeps_the_last_n_and_evicts_the_oldest,
            latest_is_the_newest_by_creation_time,
            equal_creation_times_order_by_key_id,
            a_push_tied_with_the_oldest_but_a_lower_id_is_stale,
            milliseconds_order_keys_within_a_second,
            any_arrival_order_keeps_the_n_newest,
            same_key_id_replaces,
            same_id_older_creation_time_is_stale,
            identical_push_is_idempotent,
            same_id_new_creation_time_is_a_replacement,
            keys_expire_at_max_age,
            expired_push_is_refused,
            stale_push_is_not_stored,
            expired_keys_do_not_take_a_place,
            ues_are_independent,
            remove_ue_forgets_every_key,
            sweep_removes_only_expired_keys,
            a_policy_of_one_keeps_only_the_latest
        ]);)?
        $($crate::__conformance_suite_tests!(identities, identities_only, $run, $identities, [
            provision_then_resolve,
            an_identity_means_nothing_to_another_emse,
            no_normalisation,
            reprovision_replaces_and_repeat_is_unchanged,
            remove,
            remove_emse,
            provision_all_is_idempotent,
            provision_all_is_all_or_nothing
        ]);)?
        $($crate::__conformance_suite_tests!(sessions, sessions_only, $run, $sessions, [
            reports_its_policy,
            create_binds_the_emse_and_get_finds_it,
            ids_are_fresh_and_random,
            a_session_ref_is_never_reused,
            only_the_exact_id_finds_a_session,
            sessions_expire,
            of_emse_lists_live_sessions_of_that_emse,
            remove_ends_a_session,
            evict_oldest_ends_that_emses_oldest_session,
            limit_per_emse,
            limit_in_total_and_expired_sessions_free_places
        ]);)?
        $($crate::__conformance_suite_tests!(subscriptions, subscriptions_only, $run, $subscriptions, [
            add_get_remove_by_owner_only,
            matching_by_ue_and_event,
            remove_session_removes_only_its_own,
            limits_and_invalid_input,
            a_subscription_id_is_never_reused,
            at_most_max_per_ue_for_one_emse_and_one_ue
        ]);)?
        $($crate::__conformance_suite_tests!(outbox, outbox_only, $run, $outbox, [
            a_push_records_one_entry_per_matching_subscription,
            eviction_and_replacement_record_key_retired_before_key_available,
            pushes_that_change_nothing_record_nothing,
            a_sweep_records_key_retired,
            a_claim_holds_until_its_lease_runs_out,
            retry_at_releases_defers_and_counts,
            a_claim_keeps_its_limits_in_all_per_emse_and_skipped,
            entries_of_ended_subscriptions_are_never_handed_out,
            no_subscription_no_entry
        ]);)?
        $($crate::__conformance_suite_tests!(identity_keys, identity_keys_only, $run, $identity_keys, [
            a_held_key_is_served_with_its_imsi,
            an_unknown_identity_is_unknown,
            another_emses_identity_is_unknown,
            a_key_id_not_held_is_not_held,
            an_expired_key_is_not_held,
            a_retired_key_is_not_held,
            a_replaced_key_is_served_as_replaced,
            reprovisioning_follows_the_new_imsi
        ]);)?
    };
}

/// One suite's tests for [`conformance_tests!`](crate::conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_suite_tests {
    ($suite:ident, $only:ident, $run:expr, $make:expr, [$($check:ident),* $(,)?]) => {
        /// The conformance checks of this suite, one test each.
        pub mod $suite {
            #[allow(unused_imports, reason = "the factory may name items of the enclosing module")]
            use super::*;

            /// The checks these tests cover.
            pub const CHECKS: &[&str] = &[$(stringify!($check)),*];

            $(
                #[test]
                fn $check() {
                    let report = ($run)($crate::conformance::$only(&$make, stringify!($check)));
                    assert_eq!(report.results.len(), 1, "the suite has no check of this name");
                    assert!(report.is_ok(), "{report}");
                }
            )*
        }
    };
}

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn ok<T>(r: Result<T, StoreError>) -> Result<T, String> {
    r.map_err(|e| format!("store error: {e}"))
}

fn imsi(n: u64) -> Imsi {
    // 15 digits: a test PLMN (001/01) and a 10-digit MSIN; always valid.
    Imsi::new(&format!("00101{:010}", n % 10_000_000_000)).unwrap_or_else(|_| fallback_imsi())
}

fn fallback_imsi() -> Imsi {
    // Unreachable for the formats above; a fixed valid IMSI keeps this panic-free.
    match Imsi::new("001010000000000") {
        Ok(i) => i,
        Err(_) => unreachable_imsi(),
    }
}

#[allow(clippy::panic, reason = "a constant, valid IMSI cannot fail to parse")]
fn unreachable_imsi() -> Imsi {
    panic!("constant IMSI rejected")
}

fn emse(name: &str) -> EmseId {
    EmseId::new(name).unwrap_or_else(|_| emse_fallback())
}

#[allow(clippy::panic, reason = "the suite's constant EMSE_Ids are valid")]
fn emse_fallback() -> EmseId {
    panic!("constant EMSE_Id rejected")
}

fn app(name: &str) -> AppIdentity {
    AppIdentity::new(name).unwrap_or_else(|_| app_fallback())
}

#[allow(clippy::panic, reason = "the suite's constant identities are valid")]
fn app_fallback() -> AppIdentity {
    panic!("constant application identity rejected")
}

/// The key octets the suite pushes for `(ue, id)`: distinct for every pair, and checkable,
/// so a served key that is not exactly the one pushed (torn, swapped) is detected.
pub fn test_key_bytes(ue: u64, id: u32) -> [u8; 32] {
    let mut state = ue.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(id);
    let mut out = [0u8; 32];
    for chunk in out.chunks_exact_mut(8) {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

fn key(ue: u64, id: u32) -> E2mIntKey {
    E2mIntKey::from_array(test_key_bytes(ue, id))
}

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(T0 + secs)
}

/// `ms` milliseconds after `T0`.
fn at_ms(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(T0 * 1000 + ms)
}

/// A small deterministic generator (xorshift64), so that a failing shuffle can be named by
/// its seed and repeated.
struct Shuffler(u64);

impl Shuffler {
    fn new(seed: u64) -> Shuffler {
        // Never zero (xorshift's fixed point).
        Shuffler(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// One pushed key of a shuffle round: its id and creation time (ms after `T0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RoundKey {
    id: u32,
    created_ms: u64,
}

/// `count` keys with distinct ids in random order relative to their creation times, created
/// at distinct milliseconds within one second, or (`ties`) two keys per millisecond so
/// that the key id decides between them. Returned in a shuffled push order, with the ids
/// the store must end up holding: the newest `keep` by (creation time, key id), oldest
/// first.
fn shuffle_round(seed: u64, count: usize, keep: usize, ties: bool) -> (Vec<RoundKey>, Vec<u32>) {
    let mut rng = Shuffler::new(seed);
    let mut millis: Vec<u64> = (0..1000).collect();
    rng.shuffle(&mut millis);
    let mut ids: Vec<u32> = Vec::with_capacity(count);
    while ids.len() < count {
        let id = (rng.next() >> 32) as u32;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut keys: Vec<RoundKey> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| RoundKey {
            id,
            created_ms: millis[if ties { i / 2 } else { i }],
        })
        .collect();
    let mut order = keys.clone();
    order.sort_by_key(|k| (k.created_ms, k.id));
    let expect = order[order.len().saturating_sub(keep)..]
        .iter()
        .map(|k| k.id)
        .collect();
    rng.shuffle(&mut keys);
    (keys, expect)
}

/// Pushes `round` for UE `ue` one after another (in its shuffled order) and checks that
/// exactly `expect` is held, in that order, with the newest as `latest`.
async fn push_round<S: IntKeyStore + ?Sized>(
    s: &S,
    ue: u64,
    round: &[RoundKey],
    expect: &[u32],
    seed: u64,
) -> Check {
    let now = at(1);
    for k in round {
        ok(s.push(
            &imsi(ue),
            kid(k.id),
            &key(ue, k.id),
            at_ms(k.created_ms),
            now,
        )
        .await)?;
    }
    check_round(s, ue, round, expect, seed).await
}

/// After a round: exactly `expect` held, oldest first, each with its own octets, the
/// newest as `latest`, every other key of the round not served.
async fn check_round<S: IntKeyStore + ?Sized>(
    s: &S,
    ue: u64,
    round: &[RoundKey],
    expect: &[u32],
    seed: u64,
) -> Check {
    let now = at(1);
    let held = ids_held(s, ue, now).await?;
    ensure!(
        held == expect,
        "seed {seed}: pushes {round:?} (in this order) left {held:x?}, expected the newest {expect:x?}"
    );
    let latest = ok(s.latest(&imsi(ue), now).await)?.map(|k| k.info.key_id.as_u32());
    ensure!(
        latest == expect.last().copied(),
        "seed {seed}: latest {latest:x?}, expected {:x?}",
        expect.last()
    );
    for k in round {
        if expect.contains(&k.id) {
            served_is(s, ue, k.id, 1).await?;
            let info = ok(s.get(&imsi(ue), kid(k.id), now).await)?.map(|h| h.info.created);
            ensure!(
                info == Some(at_ms(k.created_ms)),
                "seed {seed}: key {:x} created {:?}, pushed as {:?}",
                k.id,
                info,
                at_ms(k.created_ms)
            );
        } else {
            not_served(s, ue, k.id, 1).await?;
        }
    }
    Ok(())
}

fn kid(n: u32) -> KeyId {
    KeyId::from_u32(n)
}

fn policy(n: usize, max_age_secs: u64) -> RetentionPolicy {
    RetentionPolicy::new(n, Duration::from_secs(max_age_secs)).unwrap_or(RetentionPolicy::DEFAULT)
}

async fn ids_held<S: IntKeyStore + ?Sized>(
    s: &S,
    ue: u64,
    now: Timestamp,
) -> Result<Vec<u32>, String> {
    Ok(ok(s.held(&imsi(ue), now).await)?
        .iter()
        .map(|k| k.key_id.as_u32())
        .collect())
}

async fn push<S: IntKeyStore + ?Sized>(
    s: &S,
    ue: u64,
    id: u32,
    created: u64,
    now: u64,
) -> Result<PushOutcome, String> {
    ok(
        s.push(&imsi(ue), kid(id), &key(ue, id), at(created), at(now))
            .await,
    )
}

/// Pushes key `id` of `ue` created `created_ms` milliseconds after `T0`, at `T0 + 5 s`.
async fn push_ms<S: IntKeyStore + ?Sized>(
    s: &S,
    ue: u64,
    id: u32,
    created_ms: u64,
) -> Result<PushOutcome, String> {
    ok(
        s.push(&imsi(ue), kid(id), &key(ue, id), at_ms(created_ms), at(5))
            .await,
    )
}

async fn served_is<S: IntKeyStore + ?Sized>(s: &S, ue: u64, id: u32, now: u64) -> Check {
    match ok(s.get(&imsi(ue), kid(id), at(now)).await)? {
        Some(k) => {
            ensure!(
                k.info.key_id == kid(id),
                "get({id:x}) returned key id {}",
                k.info.key_id
            );
            ensure!(
                k.key.expose_secret() == &test_key_bytes(ue, id),
                "get({id:x}) returned other key octets"
            );
            Ok(())
        }
        None => Err(format!("key {id:x} of UE {ue} not served at +{now}")),
    }
}

async fn not_served<S: IntKeyStore + ?Sized>(s: &S, ue: u64, id: u32, now: u64) -> Check {
    ensure!(
        ok(s.get(&imsi(ue), kid(id), at(now)).await)?.is_none(),
        "key {id:x} of UE {ue} still served at +{now}"
    );
    Ok(())
}

/// The [`IntKeyStore`] checks. `make` builds an empty store applying the policy it is given.
pub async fn int_keys<S: IntKeyStore>(make: &dyn Fn(RetentionPolicy) -> S) -> Report {
    int_keys_selected(make, None).await
}

/// Only the check of [`int_keys`] named `check` (an empty report if there is none): what
/// [`conformance_tests!`](crate::conformance_tests) runs in each of its tests.
pub async fn int_keys_only<S: IntKeyStore>(
    make: &dyn Fn(RetentionPolicy) -> S,
    check: &'static str,
) -> Report {
    int_keys_selected(make, Some(check)).await
}

async fn int_keys_selected<S: IntKeyStore>(
    make: &dyn Fn(RetentionPolicy) -> S,
    only: Option<&'static str>,
) -> Report {
    const S: &str = "int_keys";
    let mut r = Report {
        only,
        ..Report::default()
    };
    let fresh = || make(policy(4, 1000));

    r.run(S, "reports_its_policy", async {
        let p = policy(3, 77);
        ensure!(
            make(p).retention() == p,
            "retention() differs from the policy given"
        );
        Ok(())
    })
    .await;
    r.run(S, "push_then_get_returns_the_same_key", async {
        let s = fresh();
        let out = push(&s, 1, 0xa1, 0, 0).await?;
        ensure!(
            out == PushOutcome::Stored { evicted: None },
            "first push: {out:?}"
        );
        served_is(&s, 1, 0xa1, 1).await?;
        let k = ok(s.get(&imsi(1), kid(0xa1), at(1)).await)?;
        let info = k.map(|k| k.info);
        ensure!(
            info.map(|i| (i.created, i.expires)) == Some((at(0), at(1000))),
            "created/expires wrong: {info:?}"
        );
        Ok(())
    })
    .await;
    r.run(S, "unknown_ue_or_key_id_is_none", async {
        let s = fresh();
        push(&s, 1, 0xa1, 0, 0).await?;
        not_served(&s, 2, 0xa1, 1).await?;
        not_served(&s, 1, 0xa2, 1).await?;
        ensure!(
            ok(s.latest(&imsi(2), at(1)).await)?.is_none(),
            "latest of unknown UE"
        );
        ensure!(
            ids_held(&s, 2, at(1)).await?.is_empty(),
            "held of unknown UE"
        );
        Ok(())
    })
    .await;
    r.run(
        S,
        "a_push_as_old_as_the_oldest_key_evicts_that_key",
        async {
            // Retention is creation order with ties broken by key id: a full UE receiving a key
            // created at the same instant as its oldest one, with a higher id, keeps the
            // newcomer, evicts the oldest, and is not `Stale` (it is not older than every key).
            let s = fresh();
            for (t, id) in (1..=4).enumerate() {
                push(&s, 1, id, t as u64, t as u64).await?;
            }
            let out = push(&s, 1, 9, 0, 10).await?;
            ensure!(
                out == PushOutcome::Stored {
                    evicted: Some(kid(1))
                },
                "push created with the oldest key's time: {out:?}"
            );
            not_served(&s, 1, 1, 11).await?;
            for id in [2, 3, 4, 9] {
                served_is(&s, 1, id, 11).await?;
            }
            Ok(())
        },
    )
    .await;
    r.run(S, "keeps_the_last_n_and_evicts_the_oldest", async {
        let s = fresh();
        for (t, id) in (1..=4).enumerate() {
            push(&s, 1, id, t as u64, t as u64).await?;
        }
        let out = push(&s, 1, 5, 10, 10).await?;
        ensure!(
            out == PushOutcome::Stored {
                evicted: Some(kid(1))
            },
            "fifth push: {out:?}"
        );
        not_served(&s, 1, 1, 11).await?;
        for id in 2..=5 {
            served_is(&s, 1, id, 11).await?;
        }
        let held = ids_held(&s, 1, at(11)).await?;
        ensure!(held == [2, 3, 4, 5], "held oldest first: {held:?}");
        Ok(())
    })
    .await;
    r.run(S, "latest_is_the_newest_by_creation_time", async {
        let s = fresh();
        push(&s, 1, 0x30, 30, 40).await?;
        push(&s, 1, 0x10, 10, 40).await?;
        push(&s, 1, 0x20, 20, 40).await?;
        let held = ids_held(&s, 1, at(41)).await?;
        ensure!(held == [0x10, 0x20, 0x30], "creation order: {held:?}");
        let latest = ok(s.latest(&imsi(1), at(41)).await)?.map(|k| k.info.key_id);
        ensure!(latest == Some(kid(0x30)), "latest: {latest:?}");
        Ok(())
    })
    .await;
    r.run(S, "equal_creation_times_order_by_key_id", async {
        // Two keys created in the same millisecond: the higher key id is the newer, in
        // either arrival order (UE 1 gets them one way round, UE 2 the other).
        let s = fresh();
        push(&s, 1, 0xb, 5, 5).await?;
        push(&s, 1, 0xa, 5, 5).await?;
        push(&s, 2, 0xa, 5, 5).await?;
        push(&s, 2, 0xb, 5, 5).await?;
        for ue in [1, 2] {
            let latest = ok(s.latest(&imsi(ue), at(6)).await)?.map(|k| k.info.key_id);
            ensure!(
                latest == Some(kid(0xb)),
                "UE {ue}: latest of a tie: {latest:?}"
            );
            let held = ids_held(&s, ue, at(6)).await?;
            ensure!(held == [0xa, 0xb], "UE {ue}: order of a tie: {held:x?}");
        }
        Ok(())
    })
    .await;
    r.run(
        S,
        "a_push_tied_with_the_oldest_but_a_lower_id_is_stale",
        async {
            let s = fresh();
            for (t, id) in (5..=8).enumerate() {
                push(&s, 1, id, t as u64, t as u64).await?;
            }
            let out = push(&s, 1, 4, 0, 10).await?;
            ensure!(
                out == PushOutcome::Stale,
                "tied with the oldest, lower id: {out:?}"
            );
            let held = ids_held(&s, 1, at(11)).await?;
            ensure!(
                held == [5, 6, 7, 8],
                "a stale push changed the store: {held:?}"
            );
            Ok(())
        },
    )
    .await;
    r.run(S, "milliseconds_order_keys_within_a_second", async {
        // Ten pushes in one second, arriving newest first (the field report of issue 9
        // item 15): the four newest by millisecond are kept, whatever their ids.
        let s = fresh();
        for i in (0..10u32).rev() {
            push_ms(&s, 1, 100 - i, 1000 + u64::from(i) * 7).await?;
        }
        let held = ids_held(&s, 1, at(2)).await?;
        ensure!(held == [94, 93, 92, 91], "held: {held:?}");
        let t = ok(s.get(&imsi(1), kid(91), at(2)).await)?.map(|k| k.info.created);
        ensure!(
            t == Some(at_ms(1063)),
            "creation time kept to the ms: {t:?}"
        );
        Ok(())
    })
    .await;
    r.run(S, "any_arrival_order_keeps_the_n_newest", async {
        // N + 3 keys created at distinct milliseconds of one second (or two per millisecond,
        // decided by key id), pushed in 64 shuffled orders: the N newest are always kept.
        let s = fresh();
        let n = s.retention().keys_per_ue();
        for seed in 0..64u64 {
            let (round, expect) = shuffle_round(seed, n + 3, n, seed % 4 == 3);
            push_round(&s, 100 + seed, &round, &expect, seed).await?;
        }
        Ok(())
    })
    .await;
    r.run(S, "same_key_id_replaces", async {
        let s = fresh();
        push(&s, 1, 7, 0, 0).await?;
        push(&s, 1, 8, 1, 1).await?;
        // Same id, other octets: built under another UE number so the bytes differ.
        let out = ok(s.push(&imsi(1), kid(7), &key(99, 7), at(2), at(2)).await)?;
        ensure!(out == PushOutcome::Replaced, "replacing push: {out:?}");
        let got = ok(s.get(&imsi(1), kid(7), at(3)).await)?;
        ensure!(
            got.as_ref()
                .map(|k| k.key.expose_secret() == &test_key_bytes(99, 7))
                == Some(true),
            "old octets still served after replacement"
        );
        let held = ids_held(&s, 1, at(3)).await?;
        ensure!(
            held == [8, 7],
            "replacement re-ordered by creation: {held:?}"
        );
        Ok(())
    })
    .await;
    r.run(S, "identical_push_is_idempotent", async {
        let s = fresh();
        for t in 0..4 {
            push(&s, 1, t + 1, u64::from(t), u64::from(t)).await?;
        }
        let out = push(&s, 1, 1, 0, 5).await?;
        ensure!(out == PushOutcome::Unchanged, "repeated push: {out:?}");
        let held = ids_held(&s, 1, at(5)).await?;
        ensure!(
            held == [1, 2, 3, 4],
            "a repeated push changed the store: {held:?}"
        );
        Ok(())
    })
    .await;
    r.run(S, "same_id_older_creation_time_is_stale", async {
        // Newest wins for one id too: the older push of an id is refused in either order,
        // to the millisecond.
        let s = fresh();
        push_ms(&s, 1, 1, 3001).await?;
        let out = push_ms(&s, 1, 1, 3000).await?;
        ensure!(
            out == PushOutcome::Stale,
            "older push of a held id: {out:?}"
        );
        let info = ok(s.get(&imsi(1), kid(1), at(4)).await)?.map(|k| k.info.created);
        ensure!(
            info == Some(at_ms(3001)),
            "the newer key was replaced: {info:?}"
        );
        Ok(())
    })
    .await;
    r.run(S, "same_id_new_creation_time_is_a_replacement", async {
        let s = fresh();
        push(&s, 1, 1, 0, 0).await?;
        let out = push(&s, 1, 1, 3, 3).await?;
        ensure!(out == PushOutcome::Replaced, "{out:?}");
        let info = ok(s.get(&imsi(1), kid(1), at(4)).await)?.map(|k| k.info.created);
        ensure!(info == Some(at(3)), "creation time not updated: {info:?}");
        Ok(())
    })
    .await;
    r.run(S, "keys_expire_at_max_age", async {
        let s = fresh();
        push(&s, 1, 1, 100, 100).await?;
        served_is(&s, 1, 1, 1099).await?;
        not_served(&s, 1, 1, 1100).await?;
        ensure!(
            ok(s.latest(&imsi(1), at(1100)).await)?.is_none(),
            "latest served an expired key"
        );
        ensure!(
            ids_held(&s, 1, at(1100)).await?.is_empty(),
            "held lists an expired key"
        );
        Ok(())
    })
    .await;
    r.run(S, "expired_push_is_refused", async {
        let s = fresh();
        let out = push(&s, 1, 1, 0, 1000).await?;
        ensure!(out == PushOutcome::Expired, "{out:?}");
        not_served(&s, 1, 1, 1000).await?;
        not_served(&s, 1, 1, 0).await?;
        Ok(())
    })
    .await;
    r.run(S, "stale_push_is_not_stored", async {
        let s = fresh();
        for id in 1..=4 {
            push(&s, 1, id, 10 + u64::from(id), 20).await?;
        }
        let out = push(&s, 1, 9, 5, 20).await?;
        ensure!(out == PushOutcome::Stale, "{out:?}");
        not_served(&s, 1, 9, 21).await?;
        let held = ids_held(&s, 1, at(21)).await?;
        ensure!(
            held == [1, 2, 3, 4],
            "a stale push changed the store: {held:?}"
        );
        Ok(())
    })
    .await;
    r.run(S, "expired_keys_do_not_take_a_place", async {
        let s = fresh();
        for id in 1..=4 {
            push(&s, 1, id, 0, 0).await?;
        }
        let out = push(&s, 1, 5, 1000, 1000).await?;
        ensure!(out.is_held(), "{out:?}");
        let held = ids_held(&s, 1, at(1000)).await?;
        ensure!(held == [5], "{held:?}");
        // And a push older than the expired keys but still live is stored, not stale.
        Ok(())
    })
    .await;
    r.run(S, "ues_are_independent", async {
        let s = fresh();
        push(&s, 1, 1, 0, 0).await?;
        push(&s, 2, 1, 0, 0).await?;
        served_is(&s, 1, 1, 1).await?;
        served_is(&s, 2, 1, 1).await?;
        ok(s.remove_ue(&imsi(1)).await)?;
        not_served(&s, 1, 1, 1).await?;
        served_is(&s, 2, 1, 1).await?;
        Ok(())
    })
    .await;
    r.run(S, "remove_ue_forgets_every_key", async {
        let s = fresh();
        for id in 1..=3 {
            push(&s, 1, id, 0, 0).await?;
        }
        let n = ok(s.remove_ue(&imsi(1)).await)?;
        ensure!(n == 3, "remove_ue returned {n}");
        for id in 1..=3 {
            not_served(&s, 1, id, 1).await?;
        }
        let n = ok(s.remove_ue(&imsi(1)).await)?;
        ensure!(n == 0, "second remove_ue returned {n}");
        Ok(())
    })
    .await;
    r.run(S, "sweep_removes_only_expired_keys", async {
        let s = fresh();
        push(&s, 1, 1, 0, 0).await?;
        push(&s, 1, 2, 500, 500).await?;
        push(&s, 2, 1, 0, 0).await?;
        let mut retired: Vec<_> = ok(s.sweep(at(1000)).await)?
            .into_iter()
            .map(|(imsi, info)| (imsi, info.key_id, info.created))
            .collect();
        retired.sort_by(|a, b| a.0.cmp(&b.0));
        ensure!(
            retired == [(imsi(1), kid(1), at(0)), (imsi(2), kid(1), at(0))],
            "sweep reported {retired:?}"
        );
        served_is(&s, 1, 2, 1000).await?;
        let again = ok(s.sweep(at(1000)).await)?;
        ensure!(again.is_empty(), "second sweep removed {again:?}");
        Ok(())
    })
    .await;
    r.run(S, "a_policy_of_one_keeps_only_the_latest", async {
        let s = make(policy(1, 1000));
        push(&s, 1, 1, 0, 0).await?;
        let out = push(&s, 1, 2, 1, 1).await?;
        ensure!(
            out == PushOutcome::Stored {
                evicted: Some(kid(1))
            },
            "{out:?}"
        );
        not_served(&s, 1, 1, 2).await?;
        served_is(&s, 1, 2, 2).await?;
        Ok(())
    })
    .await;
    r
}

fn row(line: usize, emse: &EmseId, name: &str, ue: u64) -> IdentityRow {
    IdentityRow {
        line,
        emse: emse.clone(),
        app: app(name),
        imsi: imsi(ue),
    }
}

/// The [`IdentityMap`] checks.
pub async fn identities<M: IdentityMap>(make: &dyn Fn() -> M) -> Report {
    identities_selected(make, None).await
}

/// Only the check of [`identities`] named `check` (an empty report if there is none): what
/// [`conformance_tests!`](crate::conformance_tests) runs in each of its tests.
pub async fn identities_only<M: IdentityMap>(make: &dyn Fn() -> M, check: &'static str) -> Report {
    identities_selected(make, Some(check)).await
}

async fn identities_selected<M: IdentityMap>(
    make: &dyn Fn() -> M,
    only: Option<&'static str>,
) -> Report {
    const S: &str = "identities";
    let mut r = Report {
        only,
        ..Report::default()
    };
    let a = || emse("emse-a.example.com");
    let b = || emse("emse-b.example.com");
    let ue = || app("sensor-17@iot.example.com");

    r.run(S, "provision_then_resolve", async {
        let m = make();
        let out = ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        ensure!(out == Provisioned::New, "{out:?}");
        let got = ok(m.resolve(&a(), &ue()).await)?;
        ensure!(got == Some(imsi(1)), "{got:?}");
        Ok(())
    })
    .await;
    r.run(S, "an_identity_means_nothing_to_another_emse", async {
        let m = make();
        ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        let got = ok(m.resolve(&b(), &ue()).await)?;
        ensure!(
            got.is_none(),
            "resolved for an EMSE it was not provisioned for"
        );
        Ok(())
    })
    .await;
    r.run(S, "no_normalisation", async {
        let m = make();
        ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        for other in [
            "Sensor-17@iot.example.com",
            "sensor-17@IOT.example.com",
            "sensor-17@iot.example.com.",
        ] {
            ensure!(
                ok(m.resolve(&a(), &app(other)).await)?.is_none(),
                "{other} resolved"
            );
        }
        ensure!(
            ok(m.resolve(&emse("EMSE-A.example.com"), &ue()).await)?.is_none(),
            "EMSE_Id compared without case"
        );
        Ok(())
    })
    .await;
    r.run(S, "reprovision_replaces_and_repeat_is_unchanged", async {
        let m = make();
        ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        let out = ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        ensure!(out == Provisioned::Unchanged, "{out:?}");
        let out = ok(m.provision(&a(), &ue(), &imsi(2)).await)?;
        ensure!(
            out == Provisioned::Replaced { previous: imsi(1) },
            "{out:?}"
        );
        let got = ok(m.resolve(&a(), &ue()).await)?;
        ensure!(got == Some(imsi(2)), "{got:?}");
        Ok(())
    })
    .await;
    r.run(S, "remove", async {
        let m = make();
        ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        ok(m.provision(&b(), &ue(), &imsi(1)).await)?;
        let got = ok(m.remove(&a(), &ue()).await)?;
        ensure!(got == Some(imsi(1)), "{got:?}");
        ensure!(
            ok(m.resolve(&a(), &ue()).await)?.is_none(),
            "still resolved after remove"
        );
        ensure!(
            ok(m.resolve(&b(), &ue()).await)?.is_some(),
            "remove touched another EMSE"
        );
        ensure!(ok(m.remove(&a(), &ue()).await)?.is_none(), "second remove");
        Ok(())
    })
    .await;
    r.run(S, "remove_emse", async {
        let m = make();
        for n in 0..10u64 {
            ok(m.provision(&a(), &app(&format!("ue-{n}")), &imsi(n)).await)?;
        }
        ok(m.provision(&b(), &app("ue-0"), &imsi(0)).await)?;
        let n = ok(m.remove_emse(&a()).await)?;
        ensure!(n == 10, "remove_emse returned {n}");
        ensure!(
            ok(m.resolve(&a(), &app("ue-3")).await)?.is_none(),
            "still resolved"
        );
        ensure!(
            ok(m.resolve(&b(), &app("ue-0")).await)?.is_some(),
            "other EMSE lost its map"
        );
        Ok(())
    })
    .await;
    r.run(S, "provision_all_is_idempotent", async {
        let m = make();
        let rows = || {
            (0..3u64)
                .map(|n| row(n as usize + 2, &a(), &format!("ue-{n}"), n))
                .collect::<Vec<_>>()
        };
        let first = ok(m.provision_all(rows()).await)?;
        ensure!(first == ImportSummary::new(3, 0), "first import: {first:?}");
        let again = ok(m.provision_all(rows()).await)?;
        ensure!(
            again == ImportSummary::new(0, 3) && again.changed_nothing(),
            "re-import: {again:?}"
        );
        for n in 0..3u64 {
            let got = ok(m.resolve(&a(), &app(&format!("ue-{n}"))).await)?;
            ensure!(got == Some(imsi(n)), "ue-{n}: {got:?}");
        }
        Ok(())
    })
    .await;
    r.run(S, "provision_all_is_all_or_nothing", async {
        let m = make();
        ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        // A new row, then one mapping the provisioned identity to another IMSI.
        let rows = vec![row(2, &b(), "ue-new", 5), row(3, &a(), ue().as_str(), 2)];
        match m.provision_all(rows).await {
            Err(StoreError::ImportConflict { line: 3 }) => {}
            other => return Err(format!("conflict with the store: {other:?}")),
        }
        ensure!(
            ok(m.resolve(&b(), &app("ue-new")).await)?.is_none(),
            "a row of a refused import was stored"
        );
        ensure!(
            ok(m.resolve(&a(), &ue()).await)? == Some(imsi(1)),
            "a refused import changed a mapping"
        );
        // Two rows of one call disagreeing.
        let rows = vec![
            row(7, &b(), "ue-x", 5),
            row(8, &b(), "ue-y", 6),
            row(9, &b(), "ue-x", 6),
        ];
        match m.provision_all(rows).await {
            Err(StoreError::ImportConflict { line: 9 }) => {}
            other => return Err(format!("conflict within the call: {other:?}")),
        }
        ensure!(
            ok(m.resolve(&b(), &app("ue-y")).await)?.is_none(),
            "a row of a refused import was stored"
        );
        Ok(())
    })
    .await;
    r
}

/// The [`SessionStore`] checks. `make` builds an empty store applying the policy given.
pub async fn sessions<S: SessionStore>(make: &dyn Fn(SessionPolicy) -> S) -> Report {
    sessions_selected(make, None).await
}

/// Only the check of [`sessions`] named `check` (an empty report if there is none): what
/// [`conformance_tests!`](crate::conformance_tests) runs in each of its tests.
pub async fn sessions_only<S: SessionStore>(
    make: &dyn Fn(SessionPolicy) -> S,
    check: &'static str,
) -> Report {
    sessions_selected(make, Some(check)).await
}

async fn sessions_selected<S: SessionStore>(
    make: &dyn Fn(SessionPolicy) -> S,
    only: Option<&'static str>,
) -> Report {
    const SUITE: &str = "sessions";
    let mut r = Report {
        only,
        ..Report::default()
    };
    let small =
        || SessionPolicy::new(Duration::from_secs(100), 3, 5).unwrap_or(SessionPolicy::DEFAULT);
    let a = || emse("emse-a.example.com");
    let b = || emse("emse-b.example.com");

    r.run(SUITE, "reports_its_policy", async {
        ensure!(make(small()).session_policy() == small(), "policy differs");
        Ok(())
    })
    .await;
    r.run(SUITE, "create_binds_the_emse_and_get_finds_it", async {
        let s = make(small());
        let (id, info) = ok(s.create(&a(), at(0)).await)?;
        ensure!(info.emse == a(), "bound to {:?}", info.emse);
        ensure!(info.created == at(0) && info.expires == at(100), "{info:?}");
        let got = ok(s.get(&id, at(1)).await)?;
        ensure!(got.as_ref() == Some(&info), "{got:?}");
        Ok(())
    })
    .await;
    r.run(SUITE, "ids_are_fresh_and_random", async {
        let s = make(SessionPolicy::DEFAULT);
        let mut seen: Vec<[u8; 16]> = Vec::new();
        let mut refs = Vec::new();
        for n in 0..40 {
            let (id, info) = ok(s.create(&emse(&format!("emse-{}", n % 8)), at(0)).await)?;
            seen.push(*id.expose_secret());
            refs.push(info.session);
        }
        seen.sort_unstable();
        seen.dedup();
        ensure!(seen.len() == 40, "duplicate session ids");
        // 40 ids of 128 random bits: every bit position should vary.
        let ones: Vec<usize> = (0..128)
            .map(|bit| {
                seen.iter()
                    .filter(|id| id[bit / 8] >> (bit % 8) & 1 == 1)
                    .count()
            })
            .collect();
        ensure!(
            ones.iter().all(|&n| n > 0 && n < 40),
            "some bit of the session id never changes: not 128 random bits"
        );
        refs.sort_unstable();
        refs.dedup();
        ensure!(refs.len() == 40, "duplicate session refs");
        Ok(())
    })
    .await;
    r.run(SUITE, "a_session_ref_is_never_reused", async {
        // Audit records and subscriptions name sessions by `SessionRef`: a new session must
        // never take the ref of one that ended (removed or swept), or a stale subscription
        // or audit trail would point at the wrong EMSE session.
        let s = make(small());
        let mut refs = Vec::new();
        for round in 0..4u64 {
            let (id, info) = ok(s.create(&a(), at(round * 200)).await)?;
            refs.push(info.session);
            ok(s.remove(&id).await)?;
            let (_, swept) = ok(s.create(&b(), at(round * 200)).await)?;
            refs.push(swept.session);
            ok(s.sweep(at(round * 200 + 150)).await)?;
        }
        let n = refs.len();
        refs.sort_unstable();
        refs.dedup();
        ensure!(
            refs.len() == n,
            "a session ref was reused after removal or expiry"
        );
        Ok(())
    })
    .await;
    r.run(SUITE, "only_the_exact_id_finds_a_session", async {
        let s = make(small());
        let (id, _) = ok(s.create(&a(), at(0)).await)?;
        let mut bytes = *id.expose_secret();
        for bit in [0usize, 7, 64, 127] {
            bytes[bit / 8] ^= 1 << (bit % 8);
            let other = SessionId::from_array(bytes);
            ensure!(
                ok(s.get(&other, at(1)).await)?.is_none(),
                "id with bit {bit} flipped found"
            );
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        ensure!(
            ok(s.get(&SessionId::from_array([0; 16]), at(1)).await)?.is_none(),
            "zero id found"
        );
        Ok(())
    })
    .await;
    r.run(SUITE, "sessions_expire", async {
        let s = make(small());
        let (id, _) = ok(s.create(&a(), at(0)).await)?;
        ensure!(
            ok(s.get(&id, at(99)).await)?.is_some(),
            "gone before expiry"
        );
        ensure!(ok(s.get(&id, at(100)).await)?.is_none(), "served at expiry");
        let swept = ok(s.sweep(at(100)).await)?;
        ensure!(
            swept.len() == 1 && swept[0].emse == a(),
            "sweep returned {swept:?}"
        );
        ensure!(
            ok(s.sweep(at(100)).await)?.is_empty(),
            "second sweep not empty"
        );
        Ok(())
    })
    .await;
    r.run(SUITE, "of_emse_lists_live_sessions_of_that_emse", async {
        let s = make(small());
        let (_, first) = ok(s.create(&a(), at(0)).await)?;
        let (_, second) = ok(s.create(&a(), at(50)).await)?;
        ok(s.create(&b(), at(0)).await)?;
        let got = ok(s.of_emse(&a(), at(60)).await)?;
        ensure!(got == [first, second.clone()], "of_emse: {got:?}");
        let got = ok(s.of_emse(&a(), at(100)).await)?;
        ensure!(got == [second], "expired session listed: {got:?}");
        ensure!(
            ok(s.of_emse(&emse("emse-c"), at(0)).await)?.is_empty(),
            "unknown EMSE"
        );
        Ok(())
    })
    .await;
    r.run(SUITE, "remove_ends_a_session", async {
        let s = make(small());
        let (id, info) = ok(s.create(&a(), at(0)).await)?;
        let (other, _) = ok(s.create(&a(), at(0)).await)?;
        let got = ok(s.remove(&id).await)?;
        ensure!(got == Some(info), "remove returned {got:?}");
        ensure!(ok(s.get(&id, at(1)).await)?.is_none(), "found after remove");
        ensure!(ok(s.remove(&id).await)?.is_none(), "second remove");
        ensure!(
            ok(s.get(&other, at(1)).await)?.is_some(),
            "remove ended another session"
        );
        Ok(())
    })
    .await;
    r.run(
        SUITE,
        "evict_oldest_ends_that_emses_oldest_session",
        async {
            let s = make(small());
            ensure!(
                ok(s.evict_oldest(&a()).await)?.is_none(),
                "evicted from an EMSE with no session"
            );
            let (b_id, _) = ok(s.create(&b(), at(0)).await)?;
            let (first_id, first) = ok(s.create(&a(), at(10)).await)?;
            let (second_id, second) = ok(s.create(&a(), at(20)).await)?;
            let (third_id, _) = ok(s.create(&a(), at(30)).await)?;
            // At the limit (3): the oldest goes, a new one fits, the others stay.
            let got = ok(s.evict_oldest(&a()).await)?;
            ensure!(got == Some(first), "evicted {got:?}");
            ensure!(
                ok(s.get(&first_id, at(31)).await)?.is_none(),
                "found after eviction"
            );
            ensure!(
                ok(s.create(&a(), at(31)).await).is_ok(),
                "an evicted session still holds a place"
            );
            for (id, what) in [
                (&second_id, "second"),
                (&third_id, "third"),
                (&b_id, "other EMSE's"),
            ] {
                ensure!(
                    ok(s.get(id, at(32)).await)?.is_some(),
                    "the {what} session was evicted"
                );
            }
            let got = ok(s.evict_oldest(&a()).await)?;
            ensure!(got == Some(second), "evicted {got:?} next");
            Ok(())
        },
    )
    .await;
    r.run(SUITE, "limit_per_emse", async {
        let s = make(small());
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(ok(s.create(&a(), at(0)).await)?.0);
        }
        match s.create(&a(), at(0)).await {
            Err(StoreError::LimitReached(Limit::SessionsPerEmse)) => {}
            other => {
                return Err(format!(
                    "fourth session of one EMSE: {:?}",
                    other.map(|x| x.1)
                ));
            }
        }
        ensure!(
            ok(s.create(&b(), at(0)).await).is_ok(),
            "another EMSE refused"
        );
        if let Some(first) = ids.first() {
            ok(s.remove(first).await)?;
        }
        ensure!(
            ok(s.create(&a(), at(0)).await).is_ok(),
            "a removed session still holds a place"
        );
        Ok(())
    })
    .await;
    r.run(
        SUITE,
        "limit_in_total_and_expired_sessions_free_places",
        async {
            let s = make(small());
            for n in 0..5 {
                ok(s.create(&emse(&format!("emse-{n}")), at(0)).await)?;
            }
            match s.create(&emse("emse-x"), at(1)).await {
                Err(StoreError::LimitReached(Limit::SessionsTotal)) => {}
                other => return Err(format!("sixth session: {:?}", other.map(|x| x.1))),
            }
            ensure!(
                ok(s.create(&emse("emse-x"), at(100)).await).is_ok(),
                "expired sessions still hold places"
            );
            Ok(())
        },
    )
    .await;
    r
}

/// The [`SubscriptionStore`] checks.
pub async fn subscriptions<B: SubscriptionStore>(make: &dyn Fn(SubscriptionPolicy) -> B) -> Report {
    subscriptions_selected(make, None).await
}

/// Only the check of [`subscriptions`] named `check` (an empty report if there is none): what
/// [`conformance_tests!`](crate::conformance_tests) runs in each of its tests.
pub async fn subscriptions_only<B: SubscriptionStore>(
    make: &dyn Fn(SubscriptionPolicy) -> B,
    check: &'static str,
) -> Report {
    subscriptions_selected(make, Some(check)).await
}

async fn subscriptions_selected<B: SubscriptionStore>(
    make: &dyn Fn(SubscriptionPolicy) -> B,
    only: Option<&'static str>,
) -> Report {
    const S: &str = "subscriptions";
    let mut r = Report {
        only,
        ..Report::default()
    };
    let policy = SubscriptionPolicy {
        max_per_session: 3,
        max_per_ue: 3,
        max_total: 5,
        max_callback_len: 64,
    };
    let sub = |session: u64, ue: Option<u64>, events: EventSet| SubscriptionRecord {
        session: SessionRef::from_u64(session),
        emse: emse("emse-a.example.com"),
        events,
        ue: ue.map(|n| UeFilter {
            imsi: imsi(n),
            name: UeRef::AppIdentity(app(&format!("ue-{n}"))),
        }),
        callback: "https://emse-a.example.com/notify".to_owned(),
    };
    let s1 = SessionRef::from_u64(1);
    let s2 = SessionRef::from_u64(2);

    r.run(S, "add_get_remove_by_owner_only", async {
        let b = make(policy);
        let x = sub(1, Some(7), EventSet::single(EventType::KeyAvailable));
        let id = ok(b.add(x.clone()).await)?;
        ensure!(
            ok(b.get(s1, id).await)? == Some(x.clone()),
            "owner cannot read it"
        );
        ensure!(
            ok(b.get(s2, id).await)?.is_none(),
            "another session can read it"
        );
        ensure!(
            ok(b.remove(s2, id).await)?.is_none(),
            "another session removed it"
        );
        ensure!(
            ok(b.get(s1, id).await)?.is_some(),
            "gone after a refused remove"
        );
        ensure!(ok(b.remove(s1, id).await)? == Some(x), "owner's remove");
        ensure!(
            ok(b.get(s1, id).await)?.is_none(),
            "still there after remove"
        );
        Ok(())
    })
    .await;
    r.run(S, "matching_by_ue_and_event", async {
        let b = make(policy);
        let only7 = ok(b
            .add(sub(1, Some(7), EventSet::single(EventType::KeyAvailable)))
            .await)?;
        let all = ok(b
            .add(sub(2, None, EventSet::single(EventType::KeyAvailable)))
            .await)?;
        let removed = ok(b
            .add(sub(2, Some(7), EventSet::single(EventType::KeyRetired)))
            .await)?;
        let ids = async |imsi_n: u64, ev: EventSet| -> Result<Vec<_>, String> {
            Ok(ok(b.matching(&imsi(imsi_n), ev).await)?
                .into_iter()
                .map(|(id, _)| id)
                .collect())
        };
        ensure!(
            ids(7, EventSet::single(EventType::KeyAvailable)).await? == [only7, all],
            "UE 7, key available"
        );
        ensure!(
            ids(8, EventSet::single(EventType::KeyAvailable)).await? == [all],
            "UE 8, key available"
        );
        ensure!(
            ids(7, EventSet::single(EventType::KeyRetired)).await? == [removed],
            "UE 7, keys removed"
        );
        ensure!(
            ids(8, EventSet::single(EventType::KeyRetired))
                .await?
                .is_empty(),
            "UE 8, keys removed"
        );
        Ok(())
    })
    .await;
    r.run(S, "remove_session_removes_only_its_own", async {
        let b = make(policy);
        ok(
            b.add(sub(1, Some(7), EventSet::single(EventType::KeyAvailable)))
                .await,
        )?;
        ok(
            b.add(sub(1, None, EventSet::single(EventType::KeyAvailable)))
                .await,
        )?;
        let keep = ok(b
            .add(sub(2, Some(7), EventSet::single(EventType::KeyAvailable)))
            .await)?;
        let n = ok(b.remove_session(s1).await)?;
        ensure!(n == 2, "remove_session returned {n}");
        let left: Vec<_> = ok(b
            .matching(&imsi(7), EventSet::single(EventType::KeyAvailable))
            .await)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
        ensure!(left == [keep], "{left:?}");
        Ok(())
    })
    .await;
    r.run(S, "a_subscription_id_is_never_reused", async {
        // Notifications, their outbox entries and `DELETE /subscriptions/{id}` name a
        // subscription by its id: an id handed out again after its subscription ended
        // (removed, or its session ended) would route a stale notification, or another
        // EMSE's unsubscribe, to a new subscriber. The newest id is removed each time, so
        // that a store counting from its highest live id fails as well.
        let b = make(policy);
        let mut ids = Vec::new();
        for round in 0..4u64 {
            let s = SessionRef::from_u64(10 + round);
            let kept = ok(b
                .add(sub(
                    10 + round,
                    Some(7),
                    EventSet::single(EventType::KeyAvailable),
                ))
                .await)?;
            let newest = ok(b
                .add(sub(
                    10 + round,
                    None,
                    EventSet::single(EventType::KeyRetired),
                ))
                .await)?;
            ids.extend([kept, newest]);
            ensure!(
                ok(b.remove(s, newest).await)?.is_some(),
                "round {round}: the owner could not remove its subscription"
            );
            let after_remove = ok(b
                .add(sub(
                    10 + round,
                    None,
                    EventSet::single(EventType::KeyAvailable),
                ))
                .await)?;
            ids.push(after_remove);
            ensure!(
                ok(b.remove_session(s).await)? == 2,
                "round {round}: ending the session did not remove its two subscriptions"
            );
        }
        let after_all_ended = ok(b
            .add(sub(99, Some(8), EventSet::single(EventType::KeyAvailable)))
            .await)?;
        ids.push(after_all_ended);
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        ensure!(
            ids.len() == n,
            "a subscription id was handed out again after its subscription ended"
        );
        Ok(())
    })
    .await;
    r.run(S, "at_most_max_per_ue_for_one_emse_and_one_ue", async {
        // The fan-out bound of one push (issue 16 item 4): whatever its sessions, one EMSE
        // holds at most `max_per_ue` subscriptions for one UE, and at most `max_per_ue`
        // without a filter; other UEs and other EMSEs are counted apart.
        let b = make(SubscriptionPolicy {
            max_per_session: 10,
            max_per_ue: 2,
            max_total: 100,
            max_callback_len: 64,
        });
        let of = |who: &str, session: u64, ue: Option<u64>| SubscriptionRecord {
            emse: emse(who),
            ..sub(session, ue, EventSet::single(EventType::KeyAvailable))
        };
        let (a, b_emse) = ("emse-a.example.com", "emse-b.example.com");
        let a1 = ok(b.add(of(a, 1, Some(7))).await)?;
        let a2 = ok(b.add(of(a, 2, Some(7))).await)?;
        ensure!(
            matches!(
                b.add(of(a, 3, Some(7))).await,
                Err(StoreError::LimitReached(Limit::SubscriptionsPerUe))
            ),
            "a third subscription of one EMSE for one UE was accepted"
        );
        let a8 = ok(b.add(of(a, 3, Some(8))).await)?;
        let b7 = ok(b.add(of(b_emse, 4, Some(7))).await)?;
        let u1 = ok(b.add(of(a, 1, None)).await)?;
        let u2 = ok(b.add(of(a, 2, None)).await)?;
        ensure!(
            matches!(
                b.add(of(a, 3, None)).await,
                Err(StoreError::LimitReached(Limit::SubscriptionsPerUe))
            ),
            "a third unfiltered subscription of one EMSE was accepted"
        );
        let ids = |v: Vec<(crate::SubscriptionId, SubscriptionRecord)>| -> Vec<_> {
            v.into_iter().map(|(id, _)| id).collect()
        };
        let listed = ids(ok(b.of_emse_for_ue(&emse(a), Some(&imsi(7))).await)?);
        ensure!(listed == [a1, a2], "EMSE A, UE 7: {listed:?}");
        let listed = ids(ok(b.of_emse_for_ue(&emse(a), None).await)?);
        ensure!(listed == [u1, u2], "EMSE A, no filter: {listed:?}");
        let listed = ids(ok(b.of_emse_for_ue(&emse(a), Some(&imsi(8))).await)?);
        ensure!(listed == [a8], "EMSE A, UE 8: {listed:?}");
        let listed = ids(ok(b.of_emse_for_ue(&emse(b_emse), Some(&imsi(7))).await)?);
        ensure!(listed == [b7], "EMSE B, UE 7: {listed:?}");
        let matched = ids(ok(b
            .matching(&imsi(7), EventSet::single(EventType::KeyAvailable))
            .await)?);
        ensure!(
            matched == [a1, a2, b7, u1, u2],
            "refused subscriptions were stored: {matched:?}"
        );
        // Removing one frees its place.
        ok(b.remove(s1, a1).await)?;
        let a3 = ok(b.add(of(a, 3, Some(7))).await)?;
        let listed = ids(ok(b.of_emse_for_ue(&emse(a), Some(&imsi(7))).await)?);
        ensure!(listed == [a2, a3], "after a removal: {listed:?}");
        Ok(())
    })
    .await;
    r.run(S, "limits_and_invalid_input", async {
        let b = make(policy);
        for _ in 0..3 {
            ok(
                b.add(sub(1, None, EventSet::single(EventType::KeyAvailable)))
                    .await,
            )?;
        }
        ensure!(
            matches!(
                b.add(sub(1, None, EventSet::single(EventType::KeyAvailable)))
                    .await,
                Err(StoreError::LimitReached(Limit::SubscriptionsPerSession))
            ),
            "fourth subscription of one session accepted"
        );
        // (Filtered on UEs of their own, so that the per-UE limit stays out of the way.)
        for n in 20..22 {
            ok(
                b.add(sub(2, Some(n), EventSet::single(EventType::KeyAvailable)))
                    .await,
            )?;
        }
        ensure!(
            matches!(
                b.add(sub(3, Some(22), EventSet::single(EventType::KeyAvailable)))
                    .await,
                Err(StoreError::LimitReached(Limit::SubscriptionsTotal))
            ),
            "sixth subscription accepted"
        );
        // (An empty event set cannot be built: `EventSet` is non-empty by construction.)
        let b = make(policy);
        let mut long = sub(1, None, EventSet::single(EventType::KeyAvailable));
        long.callback = "x".repeat(65);
        ensure!(
            matches!(b.add(long).await, Err(StoreError::InvalidInput(_))),
            "over-long callback accepted"
        );
        ensure!(
            b.matching(&imsi(1), EventSet::single(EventType::KeyAvailable))
                .await
                .map(|v| v.len())
                .ok()
                == Some(0),
            "refused subscriptions were stored"
        );
        Ok(())
    })
    .await;
    r
}

/// What [`stress_int_keys`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StressReport {
    /// Pushes made.
    pub pushes: u64,
    /// Lookups made.
    pub lookups: u64,
    /// Lookups that found a key.
    pub hits: u64,
}

/// Sizes of a [`stress_int_keys`] run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StressConfig {
    /// UEs.
    pub ues: u32,
    /// Pusher threads (each owns a disjoint set of UEs, so per-UE push order is known).
    pub pushers: u32,
    /// Keys pushed per UE.
    pub keys_per_ue: u32,
    /// Fetcher threads.
    pub fetchers: u32,
    /// Lookups per fetcher.
    pub lookups_per_fetcher: u32,
}

impl Default for StressConfig {
    /// 1,000 UEs, 2 pushers of 12 keys per UE, 2 fetchers of 30,000 lookups.
    fn default() -> Self {
        StressConfig {
            ues: 1000,
            pushers: 2,
            keys_per_ue: 12,
            fetchers: 2,
            lookups_per_fetcher: 30_000,
        }
    }
}

/// A multi-threaded stress test of an [`IntKeyStore`] (which should apply a policy with a
/// maximum age of at least an hour): pushers and fetchers run at once, and every fetched
/// key is checked.
///
/// Each UE's keys have ids 1, 2, 3, … pushed in order with increasing creation times; after
/// each push the pusher publishes the newest id pushed and the newest id evicted. A fetcher
/// reads those, then looks a key up, and fails the run if
/// - a key is served with other octets than were pushed under its id (torn or mixed up),
/// - a key is served that had been evicted before the lookup began (served past eviction),
/// - `latest` returns a key older than one whose push had completed (a lost key).
///
/// At the end every UE must hold exactly its last N keys.
///
/// Threads, not concurrent futures on one task, so that an in-memory backend meets real
/// parallel contention on its locks. Each thread drives its store calls with
/// [`block_on`], which parks the thread while a future is pending: right
/// for a backend whose I/O is driven elsewhere (a `tokio-postgres` client whose connection
/// task runs on a multi-threaded runtime; call this function from
/// `tokio::task::spawn_blocking`), and for one whose futures are ready at once (in-memory,
/// or an embedded database called synchronously).
///
/// # Errors
/// A description of the first violation seen.
pub fn stress_int_keys<S: IntKeyStore + 'static>(
    store: Arc<S>,
    config: StressConfig,
) -> Result<StressReport, String> {
    let n = store.retention().keys_per_ue();
    let ues = config.ues.max(1);
    let pushed: Arc<Vec<AtomicU32>> = Arc::new((0..ues).map(|_| AtomicU32::new(0)).collect());
    let evicted: Arc<Vec<AtomicU32>> = Arc::new((0..ues).map(|_| AtomicU32::new(0)).collect());
    let pushes = Arc::new(AtomicU64::new(0));
    let now = at(config.keys_per_ue.into());
    let mut handles = Vec::new();
    for p in 0..config.pushers.max(1) {
        let (store, pushed, evicted, pushes) = (
            store.clone(),
            pushed.clone(),
            evicted.clone(),
            pushes.clone(),
        );
        let pushers = config.pushers.max(1);
        handles.push(std::thread::spawn(move || -> Result<(u64, u64), String> {
            block_on(async {
                for id in 1..=config.keys_per_ue {
                    for ue in (p..ues).step_by(pushers as usize) {
                        let out =
                            push(&*store, ue.into(), id, id.into(), 0)
                                .await
                                .and_then(|o| {
                                    if o.is_held() {
                                        Ok(o)
                                    } else {
                                        Err(format!("push {id} of UE {ue}: {o:?}"))
                                    }
                                })?;
                        if let PushOutcome::Stored { evicted: Some(e) } = out {
                            evicted[ue as usize].store(e.as_u32(), Ordering::Release);
                        }
                        pushed[ue as usize].store(id, Ordering::Release);
                        pushes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok((0, 0))
            })
        }));
    }
    for f in 0..config.fetchers {
        let (store, pushed, evicted) = (store.clone(), pushed.clone(), evicted.clone());
        handles.push(std::thread::spawn(move || -> Result<(u64, u64), String> {
            block_on(async {
            let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ (u64::from(f) << 32 | 1);
            let mut hits = 0;
            for _ in 0..config.lookups_per_fetcher {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let ue = (rng % u64::from(ues)) as u32;
                let before_evicted = evicted[ue as usize].load(Ordering::Acquire);
                let before_pushed = pushed[ue as usize].load(Ordering::Acquire);
                // Ask for a key around the newest: some held, some evicted, some not yet pushed.
                let id = before_pushed.saturating_sub((rng >> 40) as u32 % (n as u32 + 2)) + 1;
                if let Some(k) = ok(store.get(&imsi(ue.into()), kid(id), now).await)? {
                    hits += 1;
                    ensure!(
                        k.key.expose_secret() == &test_key_bytes(ue.into(), id) && k.info.key_id == kid(id),
                        "UE {ue} key {id}: served octets differ from those pushed (torn or mixed)"
                    );
                    ensure!(
                        id > before_evicted,
                        "UE {ue} key {id} served after its eviction (evicted up to {before_evicted})"
                    );
                }
                let latest = ok(store.latest(&imsi(ue.into()), now).await)?.map(|k| k.info.key_id.as_u32());
                if before_pushed > 0 {
                    ensure!(
                        latest.is_some_and(|l| l >= before_pushed),
                        "UE {ue}: latest {latest:?} older than completed push {before_pushed} (lost key)"
                    );
                }
            }
            Ok((u64::from(config.lookups_per_fetcher), hits))
            })
        }));
    }
    let mut report = StressReport::default();
    for h in handles {
        let (lookups, hits) = h
            .join()
            .map_err(|_| "a stress thread panicked".to_owned())??;
        report.lookups += lookups;
        report.hits += hits;
    }
    report.pushes = pushes.load(Ordering::Relaxed);
    let last = config.keys_per_ue;
    let expect: Vec<u32> = (last.saturating_sub(n as u32) + 1..=last).collect();
    block_on(async {
        for ue in 0..ues {
            let held = ids_held(&*store, ue.into(), now).await?;
            ensure!(
                held == expect,
                "UE {ue} ends holding {held:?}, expected {expect:?}"
            );
            for id in &expect {
                served_is(&*store, ue.into(), *id, now.as_unix_secs() - T0).await?;
            }
        }
        Ok(report)
    })
}

/// How a test waits for a store's future on one of [`shuffled_pushes`]' threads:
/// [`BlockOn`] for a store whose futures are ready at once or driven elsewhere; a backend
/// whose futures need its runtime's context wraps the runtime's handle (for tokio,
/// `Handle::block_on`).
pub trait WaitOn: Sync {
    /// Runs `f` to completion on the calling thread.
    fn wait<F: Future>(&self, f: F) -> F::Output;
}

/// [`WaitOn`] with [`block_on`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockOn;

impl WaitOn for BlockOn {
    fn wait<F: Future>(&self, f: F) -> F::Output {
        block_on(f)
    }
}

/// Sizes of a [`shuffled_pushes`] run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShuffleConfig {
    /// Rounds, each on a UE of its own with its own shuffle (seeds `0..rounds`).
    pub rounds: u32,
    /// Keys pushed per round beyond the policy's N (the `k` of N + k).
    pub extra: u32,
    /// Threads pushing each round's keys at once.
    pub threads: u32,
}

impl Default for ShuffleConfig {
    /// 200 rounds of N + 6 keys over 4 threads.
    fn default() -> Self {
        ShuffleConfig {
            rounds: 200,
            extra: 6,
            threads: 4,
        }
    }
}

/// What [`shuffled_pushes`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShuffleReport {
    /// Pushes made.
    pub pushes: u64,
    /// Pushes answered [`PushOutcome::Stale`] (overtaken by newer keys already held).
    pub stale: u64,
    /// Pushes that evicted a held key.
    pub evictions: u64,
}

/// Concurrent pushes in shuffled order keep the N newest (issue 9 item 15): each round
/// pushes N + k keys of one UE, created at distinct milliseconds of one second (every
/// fourth round two per millisecond, so that the key id decides), split over several
/// threads that start together behind a barrier, each pushing its share of a shuffled
/// order. Afterwards the UE must hold exactly the N newest by (creation time, key id),
/// oldest first, with the newest as `latest` and every other key not served; and every
/// key not kept must have been answered `Stale` or evicted exactly once, so
/// `stale + evictions = k` per round. A failure names the round's seed.
///
/// The store should apply a maximum age of at least two seconds (the pushes are created in
/// `T0`'s second and pushed at `T0 + 1 s`).
///
/// # Errors
/// A description of the first violation seen.
pub fn shuffled_pushes<S: IntKeyStore, W: WaitOn>(
    store: &S,
    wait: &W,
    config: ShuffleConfig,
) -> Result<ShuffleReport, String> {
    let n = store.retention().keys_per_ue();
    let threads = config.threads.max(1) as usize;
    let mut report = ShuffleReport::default();
    for seed in 0..u64::from(config.rounds) {
        let ue = 1_000_000 + seed;
        let count = n + config.extra as usize;
        let (round, expect) = shuffle_round(seed, count, n, seed % 4 == 3);
        let barrier = std::sync::Barrier::new(threads);
        let outcomes: Vec<Result<PushOutcome, String>> = std::thread::scope(|scope| {
            let chunk = round.len().div_ceil(threads);
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let share = round.get(t * chunk..).unwrap_or(&[]);
                    let share = &share[..chunk.min(share.len())];
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        share
                            .iter()
                            .map(|k| {
                                wait.wait(async {
                                    ok(store
                                        .push(
                                            &imsi(ue),
                                            kid(k.id),
                                            &key(ue, k.id),
                                            at_ms(k.created_ms),
                                            at(1),
                                        )
                                        .await)
                                })
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| vec![Err("a pusher thread panicked".to_owned())])
                })
                .collect()
        });
        let (mut stale, mut evictions) = (0, 0);
        for outcome in outcomes {
            match outcome? {
                PushOutcome::Stale => stale += 1,
                PushOutcome::Stored { evicted: Some(_) } => evictions += 1,
                PushOutcome::Stored { evicted: None } => {}
                other => return Err(format!("seed {seed}: a push answered {other:?}")),
            }
        }
        ensure!(
            stale + evictions == config.extra as usize,
            "seed {seed}: {stale} stale + {evictions} evicted, expected {} in all",
            config.extra
        );
        wait.wait(check_round(store, ue, &round, &expect, seed))?;
        report.pushes += round.len() as u64;
        report.stale += stale as u64;
        report.evictions += evictions as u64;
    }
    Ok(report)
}
mod akma;
mod identity_keys;
mod outbox;
pub use akma::{AKMA_CHECKS, akma, akma_only, concurrent_akma_registrations};
pub use identity_keys::{identity_keys, identity_keys_only};
pub use outbox::{outbox, outbox_only};
