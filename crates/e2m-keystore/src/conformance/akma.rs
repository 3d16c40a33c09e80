//! The [`AkmaContexts`] and [`AkmaOutbox`] checks: replacement per UE with its A-KID index
//! entry, lookup by the full A-KID, GPSI-registered contexts, expiry and sweep, removal and
//! the service-disablement entries it records, the outbox's claim, lease and retry.
//!
//! Run them with [`akma`] (a [`Report`]), or one `#[test]` per check with
//! [`akma_conformance_tests!`](crate::akma_conformance_tests); the threaded check
//! [`concurrent_akma_registrations`] needs a [`WaitOn`].

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use e2m_kdf::Kakma;
use e2m_keyid::akma::{AKid, Fqdn, UeId};

use super::{Check, Report, WaitOn, at, at_ms, ok, test_key_bytes};
use crate::{
    AkmaContext, AkmaContexts, AkmaOutbox, AkmaPendingNotification, AkmaPolicy, AkmaRegistered,
    Claim, InstanceId, Limit, NotifyTarget, StoreError, Timestamp,
};

const SUITE: &str = "akma";

/// The lifetime of K_AKMA in the checks.
const MAX_AGE: u64 = 3600;

fn policy(notify_per_ue: usize) -> AkmaPolicy {
    AkmaPolicy::new(Duration::from_secs(MAX_AGE), notify_per_ue).unwrap_or_default()
}

/// The suite's UEs: SUPIs (IMSI) for `n < 1000`, GPSIs (MSISDN) above.
fn ue(n: u64) -> UeId {
    let text = if n < 1000 {
        format!("imsi-00101{n:010}")
    } else {
        format!("msisdn-336{n:08}")
    };
    UeId::parse(&text).unwrap_or_else(|_| fallback_ue())
}

#[allow(clippy::panic, reason = "the suite's UEs are valid by construction")]
fn fallback_ue() -> UeId {
    panic!("constant UE rejected")
}

/// The A-KID of the `n`th registration in e2m's spelling (`rid0.atid<64 hex>@realm`).
fn a_kid(n: u64) -> AKid {
    AKid::parse(&format!(
        "rid0.atid{:064x}@5gc.mnc001.mcc001.3gppnetwork.org",
        u128::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    ))
    .unwrap_or_else(|_| fallback_a_kid())
}

#[allow(clippy::panic, reason = "the suite's A-KIDs are valid by construction")]
fn fallback_a_kid() -> AKid {
    panic!("constant A-KID rejected")
}

fn k_akma(n: u64) -> Kakma {
    Kakma::from_array(test_key_bytes(n, 0xA4A4))
}

fn af(name: &str) -> Fqdn {
    Fqdn::parse(name).unwrap_or_else(|_| fallback_af())
}

#[allow(clippy::panic, reason = "the suite's AF names are valid")]
fn fallback_af() -> Fqdn {
    panic!("constant FQDN rejected")
}

fn target(name: &str, uri: &str) -> NotifyTarget {
    NotifyTarget::new(af(name), uri).unwrap_or_else(|_| fallback_target())
}

#[allow(clippy::panic, reason = "the suite's URIs are valid")]
fn fallback_target() -> NotifyTarget {
    panic!("constant notification URI rejected")
}

/// Whether `found` is exactly the context registered as number `n` for `ue` at `t`.
fn is_context(found: Option<&AkmaContext>, ue: &UeId, n: u64, t: Timestamp) -> Check {
    let Some(c) = found else {
        return Err(format!("no context; expected registration {n} of {ue}"));
    };
    ensure!(c.ue == *ue, "context of {} instead of {ue}", c.ue);
    ensure!(
        c.a_kid == a_kid(n),
        "A-KID {} instead of {}",
        c.a_kid,
        a_kid(n)
    );
    ensure!(
        c.k_akma == k_akma(n),
        "another K_AKMA than registration {n}'s"
    );
    ensure!(
        c.registered == t,
        "registered {} instead of {t}",
        c.registered
    );
    let expires = t.saturating_add(Duration::from_secs(MAX_AGE));
    ensure!(
        c.expires == expires,
        "expires {} instead of {expires}",
        c.expires
    );
    Ok(())
}

async fn found<S: AkmaContexts>(
    s: &S,
    n: u64,
    now: Timestamp,
) -> Result<Option<AkmaContext>, String> {
    ok(s.retrieve(&a_kid(n), None, now).await)
}

/// All the [`AkmaContexts`] and [`AkmaOutbox`] checks. `make` builds an empty store for
/// the policy it is given.
pub async fn akma<S: AkmaContexts + AkmaOutbox>(make: &dyn Fn(AkmaPolicy) -> S) -> Report {
    akma_selected(make, None).await
}

/// Only the check of [`akma`] named `check` (an empty report if there is none): what
/// [`akma_conformance_tests!`](crate::akma_conformance_tests) runs in each of its tests.
pub async fn akma_only<S: AkmaContexts + AkmaOutbox>(
    make: &dyn Fn(AkmaPolicy) -> S,
    check: &'static str,
) -> Report {
    akma_selected(make, Some(check)).await
}

/// The names of the [`akma`] checks, in order.
pub const AKMA_CHECKS: &[&str] = &[
    "reports_its_policy",
    "register_then_retrieve_by_the_full_a_kid",
    "only_the_exact_a_kid_finds_a_context",
    "re_registration_replaces_the_context_and_its_a_kid",
    "the_same_a_kid_again_replaces_the_key",
    "an_a_kid_held_by_another_ue_is_refused",
    "contexts_expire",
    "remove_forgets_the_context_and_only_it",
    "gpsi_registered_contexts_are_served_like_supi_ones",
    "sweep_removes_only_expired_contexts",
    "interleaved_registrations_of_one_ue_leave_one_context",
    "remove_records_one_entry_per_live_target",
    "targets_of_a_replaced_a_kid_are_still_notified",
    "expired_targets_are_not_notified",
    "no_target_without_a_live_context",
    "targets_are_bounded_per_ue",
    "only_removal_records_entries",
    "a_claim_holds_until_its_lease_runs_out",
    "retry_at_releases_defers_and_counts",
    "a_claim_keeps_its_limits_in_all_per_af_and_skipped",
];

async fn akma_selected<S: AkmaContexts + AkmaOutbox>(
    make: &dyn Fn(AkmaPolicy) -> S,
    only: Option<&'static str>,
) -> Report {
    let mut r = Report {
        only,
        ..Report::default()
    };
    r.run(SUITE, AKMA_CHECKS[0], reports_its_policy(make)).await;
    r.run(
        SUITE,
        AKMA_CHECKS[1],
        register_then_retrieve(make(policy(8))),
    )
    .await;
    r.run(SUITE, AKMA_CHECKS[2], only_the_exact_a_kid(make(policy(8))))
        .await;
    r.run(
        SUITE,
        AKMA_CHECKS[3],
        re_registration_replaces(make(policy(8))),
    )
    .await;
    r.run(SUITE, AKMA_CHECKS[4], same_a_kid_again(make(policy(8))))
        .await;
    r.run(SUITE, AKMA_CHECKS[5], a_kid_of_another_ue(make(policy(8))))
        .await;
    r.run(SUITE, AKMA_CHECKS[6], contexts_expire(make(policy(8))))
        .await;
    r.run(SUITE, AKMA_CHECKS[7], remove_forgets(make(policy(8))))
        .await;
    r.run(SUITE, AKMA_CHECKS[8], gpsi_contexts(make(policy(8))))
        .await;
    r.run(SUITE, AKMA_CHECKS[9], sweep_only_expired(make(policy(8))))
        .await;
    r.run(
        SUITE,
        AKMA_CHECKS[10],
        interleaved_registrations(make(policy(8))),
    )
    .await;
    r.run(
        SUITE,
        AKMA_CHECKS[11],
        remove_records_entries(make(policy(8))),
    )
    .await;
    r.run(
        SUITE,
        AKMA_CHECKS[12],
        replaced_a_kid_targets(make(policy(8))),
    )
    .await;
    r.run(SUITE, AKMA_CHECKS[13], expired_targets(make(policy(8))))
        .await;
    r.run(
        SUITE,
        AKMA_CHECKS[14],
        no_target_without_context(make(policy(8))),
    )
    .await;
    r.run(SUITE, AKMA_CHECKS[15], targets_bounded(make(policy(2))))
        .await;
    r.run(
        SUITE,
        AKMA_CHECKS[16],
        only_removal_records(make(policy(8))),
    )
    .await;
    r.run(SUITE, AKMA_CHECKS[17], claim_lease(make(policy(8))))
        .await;
    r.run(SUITE, AKMA_CHECKS[18], retry_at_counts(make(policy(8))))
        .await;
    r.run(SUITE, AKMA_CHECKS[19], claim_limits(make(policy(8))))
        .await;
    r
}

async fn reports_its_policy<S: AkmaContexts>(make: &dyn Fn(AkmaPolicy) -> S) -> Check {
    for p in [policy(1), policy(7), AkmaPolicy::DEFAULT] {
        ensure!(
            make(p).policy() == p,
            "asked for {p:?}, store applies {:?}",
            make(p).policy()
        );
    }
    Ok(())
}

async fn register<S: AkmaContexts>(
    s: &S,
    ue_n: u64,
    n: u64,
    now: Timestamp,
) -> Result<AkmaRegistered, String> {
    ok(s.register(&ue(ue_n), &a_kid(n), &k_akma(n), now).await)
}

async fn register_then_retrieve<S: AkmaContexts>(s: S) -> Check {
    let got = register(&s, 1, 10, at(0)).await?;
    ensure!(got == AkmaRegistered::Stored, "first registration: {got:?}");
    is_context(found(&s, 10, at(1)).await?.as_ref(), &ue(1), 10, at(0))?;
    is_context(
        ok(s.context_of(&ue(1), at(1)).await)?.as_ref(),
        &ue(1),
        10,
        at(0),
    )?;
    ensure!(ok(s.stored().await)? == 1, "one context stored");
    Ok(())
}

async fn only_the_exact_a_kid<S: AkmaContexts>(s: S) -> Check {
    register(&s, 1, 10, at(0)).await?;
    let full = a_kid(10);
    let text = full.as_str();
    let (user, realm) = (full.username(), full.realm());
    let near = [
        // One digit of the A-TID changed (the last), a prefix of the username, the username
        // in upper case, another realm, the username alone as the realm's user of another.
        format!(
            "{}{}@{realm}",
            &user[..user.len() - 1],
            if user.ends_with('0') { '1' } else { '0' }
        ),
        format!("{}@{realm}", &user[..user.len() - 8]),
        format!("{}@{realm}", user.to_ascii_uppercase()),
        format!("{user}@5gc.mnc002.mcc001.3gppnetwork.org"),
        format!("{user}@{realm}.example"),
    ];
    for other in &near {
        let Ok(other) = AKid::parse(other) else {
            return Err(format!("test A-KID {other} did not parse"));
        };
        ensure!(
            other.as_str() != text,
            "test A-KID equals the registered one"
        );
        let got = ok(s.retrieve(&other, None, at(1)).await)?;
        ensure!(got.is_none(), "{other} found the context of {text}");
    }
    ensure!(
        found(&s, 10, at(1)).await?.is_some(),
        "the full A-KID no longer finds it"
    );
    Ok(())
}

async fn re_registration_replaces<S: AkmaContexts>(s: S) -> Check {
    register(&s, 1, 10, at(0)).await?;
    register(&s, 2, 20, at(0)).await?;
    let got = register(&s, 1, 11, at(5)).await?;
    ensure!(
        got == AkmaRegistered::Replaced { old: a_kid(10) },
        "re-registration: {got:?}"
    );
    ensure!(
        found(&s, 10, at(6)).await?.is_none(),
        "the replaced A-KID still finds a context"
    );
    is_context(found(&s, 11, at(6)).await?.as_ref(), &ue(1), 11, at(5))?;
    is_context(
        ok(s.context_of(&ue(1), at(6)).await)?.as_ref(),
        &ue(1),
        11,
        at(5),
    )?;
    // Another UE is untouched.
    is_context(found(&s, 20, at(6)).await?.as_ref(), &ue(2), 20, at(0))?;
    ensure!(
        ok(s.stored().await)? == 2,
        "two contexts stored after a replacement"
    );
    Ok(())
}

async fn same_a_kid_again<S: AkmaContexts>(s: S) -> Check {
    register(&s, 1, 10, at(0)).await?;
    // The same A-KID with another key (an AUSF fault, or a retry after a lost answer with
    // the same key): the newest registration wins, it is not a second context.
    let got = ok(s.register(&ue(1), &a_kid(10), &k_akma(99), at(3)).await)?;
    ensure!(
        got == AkmaRegistered::Replaced { old: a_kid(10) },
        "same A-KID again: {got:?}"
    );
    let c = found(&s, 10, at(4))
        .await?
        .ok_or("no context after re-registration")?;
    ensure!(c.k_akma == k_akma(99), "the old K_AKMA is still served");
    ensure!(c.registered == at(3), "registration time not renewed");
    ensure!(ok(s.stored().await)? == 1, "one context");
    Ok(())
}

async fn a_kid_of_another_ue<S: AkmaContexts>(s: S) -> Check {
    register(&s, 1, 10, at(0)).await?;
    let got = ok(s.register(&ue(2), &a_kid(10), &k_akma(77), at(1)).await)?;
    ensure!(
        got == AkmaRegistered::AKidTaken,
        "another UE's A-KID: {got:?}"
    );
    is_context(found(&s, 10, at(2)).await?.as_ref(), &ue(1), 10, at(0))?;
    ensure!(
        ok(s.context_of(&ue(2), at(2)).await)?.is_none(),
        "the refused registration stored a context"
    );
    // Once the holder's context has expired, the A-KID is free.
    let later = at(MAX_AGE);
    let got = ok(s.register(&ue(2), &a_kid(10), &k_akma(77), later).await)?;
    ensure!(
        got == AkmaRegistered::Stored,
        "A-KID of an expired context: {got:?}"
    );
    let c = ok(s.retrieve(&a_kid(10), None, later).await)?.ok_or("not found")?;
    ensure!(
        c.ue == ue(2) && c.k_akma == k_akma(77),
        "the new holder is not served"
    );
    ensure!(
        ok(s.context_of(&ue(1), later).await)?.is_none(),
        "the expired holder came back"
    );
    Ok(())
}

async fn contexts_expire<S: AkmaContexts>(s: S) -> Check {
    register(&s, 1, 10, at(0)).await?;
    let last = at_ms(MAX_AGE * 1000 - 1);
    ensure!(
        found(&s, 10, last).await?.is_some(),
        "gone before its expiry"
    );
    ensure!(
        ok(s.context_of(&ue(1), last).await)?.is_some(),
        "context_of: gone before its expiry"
    );
    let end = at(MAX_AGE);
    ensure!(found(&s, 10, end).await?.is_none(), "served at its expiry");
    ensure!(
        ok(s.context_of(&ue(1), end).await)?.is_none(),
        "context_of: served at its expiry"
    );
    // An expired context is not "replaced" by a new registration: it was gone.
    let got = register(&s, 1, 11, end).await?;
    ensure!(
        got == AkmaRegistered::Stored,
        "registration after expiry: {got:?}"
    );
    Ok(())
}

async fn remove_forgets<S: AkmaContexts>(s: S) -> Check {
    register(&s, 1, 10, at(0)).await?;
    register(&s, 2, 20, at(0)).await?;
    let removed = ok(s.remove(&ue(1), at(1)).await)?;
    ensure!(removed.a_kid == Some(a_kid(10)), "removed: {removed:?}");
    ensure!(
        found(&s, 10, at(2)).await?.is_none(),
        "served after removal"
    );
    ensure!(
        ok(s.context_of(&ue(1), at(2)).await)?.is_none(),
        "context_of after removal"
    );
    is_context(found(&s, 20, at(2)).await?.as_ref(), &ue(2), 20, at(0))?;
    let again = ok(s.remove(&ue(1), at(3)).await)?;
    ensure!(again.a_kid.is_none(), "second removal: {again:?}");
    // A new registration after removal is a new context.
    let got = register(&s, 1, 12, at(4)).await?;
    ensure!(
        got == AkmaRegistered::Stored,
        "registration after removal: {got:?}"
    );
    Ok(())
}

async fn gpsi_contexts<S: AkmaContexts>(s: S) -> Check {
    let gpsi = ue(5_000);
    ensure!(gpsi.gpsi().is_some(), "test UE is not a GPSI");
    register(&s, 5_000, 50, at(0)).await?;
    is_context(found(&s, 50, at(1)).await?.as_ref(), &gpsi, 50, at(0))?;
    // The same digits as a SUPI are another UE.
    let supi_digits = UeId::parse("imsi-33600005000").map_err(|e| e.to_string())?;
    ensure!(
        ok(s.context_of(&supi_digits, at(1)).await)?.is_none(),
        "a GPSI's context found under a SUPI"
    );
    let got = register(&s, 5_000, 51, at(2)).await?;
    ensure!(
        got == AkmaRegistered::Replaced { old: a_kid(50) },
        "GPSI re-registration: {got:?}"
    );
    ensure!(
        found(&s, 50, at(3)).await?.is_none(),
        "replaced GPSI A-KID served"
    );
    let removed = ok(s.remove(&gpsi, at(4)).await)?;
    ensure!(
        removed.a_kid == Some(a_kid(51)),
        "GPSI removal: {removed:?}"
    );
    ensure!(
        found(&s, 51, at(5)).await?.is_none(),
        "removed GPSI context served"
    );
    Ok(())
}

async fn sweep_only_expired<S: AkmaContexts>(s: S) -> Check {
    register(&s, 1, 10, at(0)).await?;
    register(&s, 2, 20, at(100)).await?;
    register(&s, 3, 30, at(200)).await?;
    let n = ok(s.sweep(at(MAX_AGE + 100)).await)?;
    ensure!(n == 2, "swept {n} contexts, expected 2");
    ensure!(ok(s.stored().await)? == 1, "stored after sweep");
    is_context(
        found(&s, 30, at(MAX_AGE + 100)).await?.as_ref(),
        &ue(3),
        30,
        at(200),
    )?;
    ensure!(
        ok(s.sweep(at(MAX_AGE + 100)).await)? == 0,
        "a second sweep removed more"
    );
    Ok(())
}

/// Polls every future in turn until all are done (no runtime needed): for a networked
/// backend their I/O is in flight at once.
struct JoinAll<'a, T>(
    Vec<Option<Pin<Box<dyn Future<Output = T> + Send + 'a>>>>,
    Vec<Option<T>>,
);

// The outputs are only moved, never pinned; the futures are boxed.
impl<T> Unpin for JoinAll<'_, T> {}

impl<T> Future for JoinAll<'_, T> {
    type Output = Vec<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<T>> {
        let this = self.get_mut();
        let mut pending = false;
        for (slot, out) in this.0.iter_mut().zip(this.1.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(this.1.iter_mut().filter_map(Option::take).collect())
        }
    }
}

fn join_all<'a, T>(futures: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>) -> JoinAll<'a, T> {
    let n = futures.len();
    JoinAll(
        futures.into_iter().map(Some).collect(),
        (0..n).map(|_| None).collect(),
    )
}

/// Exactly one of the registrations `ns` of UE `ue_n` is held, and it is the only A-KID of
/// them that finds anything.
async fn exactly_one_of<S: AkmaContexts>(s: &S, ue_n: u64, ns: &[u64], now: Timestamp) -> Check {
    let held =
        ok(s.context_of(&ue(ue_n), now).await)?.ok_or("no context after the registrations")?;
    let mut finding = Vec::new();
    for &n in ns {
        if let Some(c) = found(s, n, now).await? {
            ensure!(c.ue == ue(ue_n), "A-KID {n} finds another UE's context");
            ensure!(
                c.k_akma == k_akma(n),
                "A-KID {n} finds another registration's K_AKMA"
            );
            finding.push(n);
        }
    }
    ensure!(finding.len() == 1, "A-KIDs {finding:?} all find a context");
    ensure!(
        held.a_kid == a_kid(finding[0]),
        "context_of and the A-KID index disagree"
    );
    Ok(())
}

async fn interleaved_registrations<S: AkmaContexts>(s: S) -> Check {
    for round in 0..4u64 {
        let ns: Vec<u64> = (0..8).map(|i| 1_000 + round * 100 + i).collect();
        let t = at(round);
        let futures = ns
            .iter()
            .map(|&n| {
                let s = &s;
                Box::pin(async move { s.register(&ue(7), &a_kid(n), &k_akma(n), t).await })
                    as Pin<Box<dyn Future<Output = Result<AkmaRegistered, StoreError>> + Send + '_>>
            })
            .collect();
        for result in join_all(futures).await {
            ok(result)?;
        }
        exactly_one_of(&s, 7, &ns, t).await?;
        ensure!(
            ok(s.stored().await)? == 1,
            "round {round}: more than one context stored"
        );
    }
    Ok(())
}

/// The due entries, claimed at `now` for a minute by instance 1, sorted by (AF, A-KID).
async fn claim_all<S: AkmaOutbox>(
    s: &S,
    now: Timestamp,
) -> Result<Vec<AkmaPendingNotification>, String> {
    let mut got = ok(s
        .claim_due(&Claim {
            instance: InstanceId::from_u64(1),
            now,
            lease: Duration::from_secs(60),
            max: 1000,
            per_emse: 1000,
            skip: &[],
        })
        .await)?;
    got.sort_by_key(|e| (e.af, e.a_kid));
    Ok(got)
}

async fn remove_records_entries<S: AkmaContexts + AkmaOutbox>(s: S) -> Check {
    register(&s, 1, 10, at(0)).await?;
    register(&s, 2, 20, at(0)).await?;
    let x = target("af-x.example.com", "https://af-x.example.com/akma/old");
    let x2 = target("af-x.example.com", "https://af-x.example.com/akma/new");
    let y = target("af-y.example.com", "http://10.0.0.7:8080/notify");
    let z = target("af-z.example.com", "https://af-z.example.com/n");
    ok(s.retrieve(&a_kid(10), Some(&x), at(1)).await)?.ok_or("retrieve x")?;
    // The same AF again: its target is replaced, not doubled.
    ok(s.retrieve(&a_kid(10), Some(&x2), at(2)).await)?.ok_or("retrieve x again")?;
    ok(s.retrieve(&a_kid(10), Some(&y), at(2)).await)?.ok_or("retrieve y")?;
    // A target of another UE is not this removal's.
    ok(s.retrieve(&a_kid(20), Some(&z), at(2)).await)?.ok_or("retrieve z")?;
    ensure!(ok(s.pending().await)? == 0, "entries before any removal");
    let removed = ok(s.remove(&ue(1), at(5)).await)?;
    ensure!(
        removed.notifications == 2,
        "removal recorded {} entries",
        removed.notifications
    );
    ensure!(
        ok(s.pending().await)? == 2,
        "outbox holds {} entries",
        ok(s.pending().await)?
    );
    let got = claim_all(&s, at(5)).await?;
    let seen: Vec<(&str, &str, AKid, Timestamp, u32)> = got
        .iter()
        .map(|e| (e.af.as_str(), &*e.notif_uri, e.a_kid, e.time, e.attempts))
        .collect();
    let want = vec![
        (
            "af-x.example.com",
            "https://af-x.example.com/akma/new",
            a_kid(10),
            at(5),
            0,
        ),
        (
            "af-y.example.com",
            "http://10.0.0.7:8080/notify",
            a_kid(10),
            at(5),
            0,
        ),
    ];
    ensure!(seen == want, "entries {seen:?}, expected {want:?}");
    ensure!(got[0].id != got[1].id, "two entries share an id");
    // The UE's targets went with its context: a second removal records nothing.
    let again = ok(s.remove(&ue(1), at(6)).await)?;
    ensure!(
        again.notifications == 0,
        "second removal recorded {}",
        again.notifications
    );
    Ok(())
}

async fn replaced_a_kid_targets<S: AkmaContexts + AkmaOutbox>(s: S) -> Check {
    register(&s, 1, 10, at(0)).await?;
    let x = target("af-x.example.com", "https://af-x.example.com/n");
    let y = target("af-y.example.com", "https://af-y.example.com/n");
    ok(s.retrieve(&a_kid(10), Some(&x), at(1)).await)?.ok_or("retrieve x")?;
    register(&s, 1, 11, at(10)).await?;
    ok(s.retrieve(&a_kid(11), Some(&y), at(11)).await)?.ok_or("retrieve y")?;
    let removed = ok(s.remove(&ue(1), at(20)).await)?;
    ensure!(
        removed.notifications == 2,
        "removal recorded {}",
        removed.notifications
    );
    let got = claim_all(&s, at(20)).await?;
    let seen: Vec<(&str, AKid)> = got.iter().map(|e| (e.af.as_str(), e.a_kid)).collect();
    let want = vec![
        ("af-x.example.com", a_kid(10)),
        ("af-y.example.com", a_kid(11)),
    ];
    ensure!(
        seen == want,
        "entries {seen:?}, expected {want:?} (each AF with the A-KID it knows)"
    );
    Ok(())
}

async fn expired_targets<S: AkmaContexts + AkmaOutbox>(s: S) -> Check {
    register(&s, 1, 10, at(0)).await?;
    let x = target("af-x.example.com", "https://af-x.example.com/n");
    ok(s.retrieve(&a_kid(10), Some(&x), at(1)).await)?.ok_or("retrieve x")?;
    // The first context expired (and with it every K_AF the AF had from it); a new one.
    register(&s, 1, 11, at(MAX_AGE + 10)).await?;
    let removed = ok(s.remove(&ue(1), at(MAX_AGE + 20)).await)?;
    ensure!(removed.notifications == 0, "an expired target was notified");
    ensure!(ok(s.pending().await)? == 0, "outbox not empty");
    // And the sweep drops expired targets: a later removal has none to notify either.
    register(&s, 2, 20, at(0)).await?;
    ok(s.retrieve(&a_kid(20), Some(&x), at(1)).await)?.ok_or("retrieve x for UE 2")?;
    ok(s.sweep(at(MAX_AGE)).await)?;
    register(&s, 2, 21, at(MAX_AGE)).await?;
    let removed = ok(s.remove(&ue(2), at(MAX_AGE)).await)?;
    ensure!(removed.notifications == 0, "a swept target was notified");
    Ok(())
}

async fn no_target_without_context<S: AkmaContexts + AkmaOutbox>(s: S) -> Check {
    let x = target("af-x.example.com", "https://af-x.example.com/n");
    let got = ok(s.retrieve(&a_kid(10), Some(&x), at(1)).await)?;
    ensure!(got.is_none(), "a context out of nowhere");
    register(&s, 1, 10, at(0)).await?;
    ok(s.remove(&ue(1), at(2)).await)?;
    // After removal, the A-KID finds nothing and stores no target.
    ensure!(
        ok(s.retrieve(&a_kid(10), Some(&x), at(3)).await)?.is_none(),
        "served after removal"
    );
    register(&s, 1, 11, at(4)).await?;
    let removed = ok(s.remove(&ue(1), at(5)).await)?;
    ensure!(
        removed.notifications == 0,
        "a target stored without a context was notified"
    );
    Ok(())
}

async fn targets_bounded<S: AkmaContexts + AkmaOutbox>(s: S) -> Check {
    // The policy allows two live targets per UE.
    register(&s, 1, 10, at(0)).await?;
    for name in ["af-a.example.com", "af-b.example.com"] {
        let t = target(name, &format!("https://{name}/n"));
        ok(s.retrieve(&a_kid(10), Some(&t), at(1)).await)?.ok_or("retrieve")?;
    }
    let c = target("af-c.example.com", "https://af-c.example.com/n");
    match s.retrieve(&a_kid(10), Some(&c), at(2)).await {
        Err(StoreError::LimitReached(Limit::NotifyTargetsPerUe)) => {}
        other => {
            return Err(format!(
                "a third target: {:?}",
                other.map(|c| c.map(|c| c.a_kid))
            ));
        }
    }
    // A known target again is no new one.
    let a = target("af-a.example.com", "https://af-a.example.com/again");
    ok(s.retrieve(&a_kid(10), Some(&a), at(3)).await)?.ok_or("repeat")?;
    // Without a target the context is still served.
    ensure!(
        found(&s, 10, at(3)).await?.is_some(),
        "not served without a target"
    );
    let removed = ok(s.remove(&ue(1), at(4)).await)?;
    ensure!(
        removed.notifications == 2,
        "removal recorded {}",
        removed.notifications
    );
    Ok(())
}

async fn only_removal_records<S: AkmaContexts + AkmaOutbox>(s: S) -> Check {
    let x = target("af-x.example.com", "https://af-x.example.com/n");
    register(&s, 1, 10, at(0)).await?;
    ok(s.retrieve(&a_kid(10), Some(&x), at(1)).await)?;
    register(&s, 1, 11, at(2)).await?;
    ok(s.retrieve(&a_kid(11), Some(&x), at(3)).await)?;
    ok(s.sweep(at(MAX_AGE + 5)).await)?;
    ensure!(
        ok(s.pending().await)? == 0,
        "registration, retrieval or sweep recorded entries"
    );
    ensure!(
        ok(s.next_due().await)?.is_none(),
        "next_due of an empty outbox"
    );
    Ok(())
}

/// A store with one removal's entries: UE 1 had targets at the AFs named.
async fn with_entries<S: AkmaContexts + AkmaOutbox>(s: &S, afs: &[&str], now: Timestamp) -> Check {
    register(s, 1, 10, at(0)).await?;
    for name in afs {
        let t = target(name, &format!("https://{name}/n"));
        ok(s.retrieve(&a_kid(10), Some(&t), at(1)).await)?.ok_or("retrieve")?;
    }
    let removed = ok(s.remove(&ue(1), now).await)?;
    ensure!(
        removed.notifications == afs.len(),
        "recorded {}",
        removed.notifications
    );
    Ok(())
}

async fn claim_lease<S: AkmaContexts + AkmaOutbox>(s: S) -> Check {
    with_entries(&s, &["af-a.example.com"], at(10)).await?;
    ensure!(
        ok(s.next_due().await)? == Some(at(10)),
        "next_due before the claim"
    );
    let first = claim_all(&s, at(10)).await?;
    ensure!(first.len() == 1, "claimed {}", first.len());
    ensure!(
        ok(s.next_due().await)? == Some(at(70)),
        "next_due is not the lease's end"
    );
    ensure!(
        claim_all(&s, at(69)).await?.is_empty(),
        "claimed again within the lease"
    );
    // The claimer died: after the lease anyone claims it, with the same id.
    let again = claim_all(&s, at(70)).await?;
    ensure!(
        again.len() == 1 && again[0].id == first[0].id,
        "not claimed again after the lease"
    );
    ensure!(
        ok(s.delivered(first[0].id).await)?,
        "delivered: entry not there"
    );
    ensure!(!ok(s.delivered(first[0].id).await)?, "delivered twice");
    ensure!(ok(s.pending().await)? == 0, "delivered entry still pending");
    ensure!(
        claim_all(&s, at(1_000)).await?.is_empty(),
        "a delivered entry came back"
    );
    Ok(())
}

async fn retry_at_counts<S: AkmaContexts + AkmaOutbox>(s: S) -> Check {
    with_entries(&s, &["af-a.example.com"], at(10)).await?;
    let claimed = claim_all(&s, at(10)).await?;
    let id = claimed.first().ok_or("nothing claimed")?.id;
    ensure!(
        !ok(s.retry_at(id, InstanceId::from_u64(2), at(11)).await)?,
        "another instance released the claim"
    );
    ensure!(
        ok(s.retry_at(id, InstanceId::from_u64(1), at(30)).await)?,
        "the claimer could not release"
    );
    ensure!(
        ok(s.next_due().await)? == Some(at(30)),
        "not due at the retry time"
    );
    ensure!(
        claim_all(&s, at(29)).await?.is_empty(),
        "claimed before the retry time"
    );
    let again = claim_all(&s, at(30)).await?;
    ensure!(
        again.len() == 1 && again[0].attempts == 1,
        "attempts not counted: {again:?}"
    );
    ensure!(again[0].id == id, "the retry has another id");
    Ok(())
}

async fn claim_limits<S: AkmaContexts + AkmaOutbox>(s: S) -> Check {
    // Two UEs removed, each with targets at AFs a, b, c: two entries per AF.
    for (ue_n, n) in [(1, 10), (2, 20)] {
        register(&s, ue_n, n, at(0)).await?;
        for name in ["af-a.example.com", "af-b.example.com", "af-c.example.com"] {
            let t = target(name, &format!("https://{name}/n"));
            ok(s.retrieve(&a_kid(n), Some(&t), at(1)).await)?.ok_or("retrieve")?;
        }
        ok(s.remove(&ue(ue_n), at(10)).await)?;
    }
    let skip = [af("af-c.example.com")];
    let claim = |max, per_af, skip| Claim {
        instance: InstanceId::from_u64(1),
        now: at(10),
        lease: Duration::from_secs(60),
        max,
        per_emse: per_af,
        skip,
    };
    let got = ok(s.claim_due(&claim(3, 1, &skip)).await)?;
    let mut afs: Vec<&str> = got.iter().map(|e| e.af.as_str()).collect();
    afs.sort_unstable();
    ensure!(
        afs == ["af-a.example.com", "af-b.example.com"],
        "per AF 1, c skipped: {afs:?}"
    );
    let got = ok(s.claim_due(&claim(1, 10, &[])).await)?;
    ensure!(got.len() == 1, "max 1 claimed {}", got.len());
    let got = ok(s.claim_due(&claim(100, 10, &[])).await)?;
    ensure!(got.len() == 3, "the rest: {} (expected 3)", got.len());
    ensure!(
        ok(s.pending().await)? == 6,
        "pending {}",
        ok(s.pending().await)?
    );
    Ok(())
}

/// Registrations for one UE from `threads` threads at once, `rounds` times (each round a
/// fresh set of A-KIDs): after each round exactly one context is held, its A-KID is the
/// only one of the round's that finds anything, and it is served with its own K_AKMA.
/// Needs a store that is `Sync` and a [`WaitOn`] to drive its futures on plain threads.
pub fn concurrent_akma_registrations<S, W>(
    store: &S,
    wait: &W,
    threads: usize,
    rounds: usize,
) -> Report
where
    S: AkmaContexts,
    W: WaitOn,
{
    let mut report = Report::default();
    let mut failure = None;
    for round in 0..rounds as u64 {
        let t = at(round);
        let ns: Vec<u64> = (0..threads as u64)
            .map(|i| 10_000 + round * 1_000 + i)
            .collect();
        let results: Vec<Result<AkmaRegistered, StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ns
                .iter()
                .map(|&n| {
                    scope.spawn(move || wait.wait(store.register(&ue(9), &a_kid(n), &k_akma(n), t)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(StoreError::InvalidInput("thread panicked")))
                })
                .collect()
        });
        let check = results
            .into_iter()
            .try_for_each(|r| ok(r).map(drop))
            .and_then(|()| wait.wait(exactly_one_of(store, 9, &ns, t)));
        if let Err(e) = check {
            failure = Some(format!("round {round}: {e}"));
            break;
        }
    }
    report.results.push(super::CheckResult {
        suite: SUITE,
        check: "concurrent_registrations_of_one_ue_leave_one_context",
        failure,
    });
    report
}

/// One `#[test]` per [`akma`] check (the suite's section of
/// [`conformance_tests!`](crate::conformance_tests), kept apart so that the AKMA store can
/// be tested alone): `run` waits for a future, `akma` makes a fresh store for an
/// [`AkmaPolicy`].
///
/// ```
/// mod memory {
///     e2m_keystore::akma_conformance_tests! {
///         run: e2m_keystore::block_on,
///         akma: e2m_keystore::MemoryAkmaContexts::new,
///     }
/// }
/// assert_eq!(memory::akma::CHECKS.len(), e2m_keystore::conformance::AKMA_CHECKS.len());
/// ```
#[macro_export]
macro_rules! akma_conformance_tests {
    (run: $run:expr, akma: $akma:expr $(,)?) => {
        $crate::__conformance_suite_tests!(
            akma,
            akma_only,
            $run,
            $akma,
            [
                reports_its_policy,
                register_then_retrieve_by_the_full_a_kid,
                only_the_exact_a_kid_finds_a_context,
                re_registration_replaces_the_context_and_its_a_kid,
                the_same_a_kid_again_replaces_the_key,
                an_a_kid_held_by_another_ue_is_refused,
                contexts_expire,
                remove_forgets_the_context_and_only_it,
                gpsi_registered_contexts_are_served_like_supi_ones,
                sweep_removes_only_expired_contexts,
                interleaved_registrations_of_one_ue_leave_one_context,
                remove_records_one_entry_per_live_target,
                targets_of_a_replaced_a_kid_are_still_notified,
                expired_targets_are_not_notified,
                no_target_without_a_live_context,
                targets_are_bounded_per_ue,
                only_removal_records_entries,
                a_claim_holds_until_its_lease_runs_out,
                retry_at_releases_defers_and_counts,
                a_claim_keeps_its_limits_in_all_per_af_and_skipped
            ]
        );
    };
}
