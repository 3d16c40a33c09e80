//! The [`NotificationOutbox`] checks (issue 8: notifications recorded with their cause,
//! claimed under a lease, delivered at least once, dropped with their subscription).

use core::time::Duration;

use super::{Report, at, emse, imsi, ok, policy, push};
use crate::{
    Claim, EventSet, EventType, InstanceId, IntKeyStore, NotificationOutbox, PendingNotification,
    PushOutcome, RetentionPolicy, SessionRef, SubscriptionId, SubscriptionRecord,
    SubscriptionStore, UeFilter, UeRef,
};

/// The outbox checks. `make` builds, for the retention policy it is given, an empty key
/// store and the subscription store it records from (two views of one backend).
pub async fn outbox<K, B>(make: &dyn Fn(RetentionPolicy) -> (K, B)) -> Report
where
    K: IntKeyStore + NotificationOutbox,
    B: SubscriptionStore,
{
    outbox_selected(make, None).await
}

/// Only the check of [`outbox`] named `check`: what
/// [`conformance_tests!`](crate::conformance_tests) runs in each of its tests.
pub async fn outbox_only<K, B>(
    make: &dyn Fn(RetentionPolicy) -> (K, B),
    check: &'static str,
) -> Report
where
    K: IntKeyStore + NotificationOutbox,
    B: SubscriptionStore,
{
    outbox_selected(make, Some(check)).await
}

const X: InstanceId = InstanceId::from_u64(0x1111);
const Y: InstanceId = InstanceId::from_u64(0x2222);
const LEASE: Duration = Duration::from_secs(30);

fn sub(session: u64, who: &str, ue: Option<u64>, events: &[EventType]) -> SubscriptionRecord {
    let set = EventSet::from_events(events.iter().copied()).unwrap_or(EventSet::all());
    SubscriptionRecord {
        session: SessionRef::from_u64(session),
        emse: emse(who),
        events: set,
        ue: ue.map(|n| UeFilter {
            imsi: imsi(n),
            name: UeRef::Imsi(imsi(n)),
        }),
        callback: format!("https://{who}/e2m/v1/notifications"),
    }
}

fn claim<'a>(instance: InstanceId, now: u64, skip: &'a [crate::EmseId]) -> Claim<'a> {
    Claim {
        instance,
        now: at(now),
        lease: LEASE,
        max: 100,
        per_emse: 100,
        skip,
    }
}

/// (subscription, event, key id) of each entry, in id order.
fn summary(claimed: &[PendingNotification]) -> Vec<(SubscriptionId, EventType, u32)> {
    let mut sorted: Vec<&PendingNotification> = claimed.iter().collect();
    sorted.sort_by_key(|p| p.id);
    sorted
        .iter()
        .map(|p| (p.subscription, p.event, p.key_id.as_u32()))
        .collect()
}

const A: &str = "emse-a.example.com";
const B: &str = "emse-b.example.com";
const AVAILABLE: EventType = EventType::KeyAvailable;
const RETIRED: EventType = EventType::KeyRetired;

async fn outbox_selected<K, Bs>(
    make: &dyn Fn(RetentionPolicy) -> (K, Bs),
    only: Option<&'static str>,
) -> Report
where
    K: IntKeyStore + NotificationOutbox,
    Bs: SubscriptionStore,
{
    const S: &str = "outbox";
    let mut r = Report {
        only,
        ..Report::default()
    };

    r.run(
        S,
        "a_push_records_one_entry_per_matching_subscription",
        async {
            let (keys, subs) = make(policy(4, 3600));
            let for7 = ok(subs.add(sub(1, A, Some(7), &[AVAILABLE])).await)?;
            let every = ok(subs.add(sub(2, B, None, &[AVAILABLE, RETIRED])).await)?;
            ok(subs.add(sub(1, A, Some(8), &[AVAILABLE])).await)?;
            ok(subs.add(sub(1, A, Some(7), &[RETIRED])).await)?;
            ensure!(
                push(&keys, 7, 0x10, 0, 0).await? == PushOutcome::Stored { evicted: None },
                "push"
            );
            ensure!(ok(keys.pending().await)? == 2, "pending after one push");
            let claimed = ok(keys.claim_due(&claim(X, 0, &[])).await)?;
            ensure!(
                summary(&claimed) == [(for7, AVAILABLE, 0x10), (every, AVAILABLE, 0x10)],
                "claimed {:?}",
                summary(&claimed)
            );
            let p = claimed.iter().find(|p| p.subscription == every);
            ensure!(
                p.is_some_and(|p| p.imsi == imsi(7)
                    && p.time == at(0)
                    && p.attempts == 0
                    && p.record.emse == emse(B)),
                "entry fields: {p:?}"
            );
            ensure!(claimed[0].id != claimed[1].id, "ids must differ");
            Ok(())
        },
    )
    .await;

    r.run(
        S,
        "eviction_and_replacement_record_key_retired_before_key_available",
        async {
            let (keys, subs) = make(policy(1, 3600));
            let s = ok(subs.add(sub(1, A, Some(7), &[AVAILABLE, RETIRED])).await)?;
            push(&keys, 7, 0x10, 0, 0).await?;
            push(&keys, 7, 0x20, 1, 1).await?;
            // Same id, new creation time: a replacement.
            push(&keys, 7, 0x20, 2, 2).await?;
            let claimed = ok(keys.claim_due(&claim(X, 2, &[])).await)?;
            let want = [
                (s, AVAILABLE, 0x10),
                (s, RETIRED, 0x10),
                (s, AVAILABLE, 0x20),
                (s, RETIRED, 0x20),
                (s, AVAILABLE, 0x20),
            ];
            ensure!(summary(&claimed) == want, "claimed {:?}", summary(&claimed));
            let mut ids: Vec<u64> = claimed.iter().map(|p| p.id).collect();
            let sorted = {
                let mut v = ids.clone();
                v.sort_unstable();
                v.dedup();
                v
            };
            ids.sort_unstable();
            ensure!(ids == sorted, "ids repeat");
            Ok(())
        },
    )
    .await;

    r.run(S, "pushes_that_change_nothing_record_nothing", async {
        let (keys, subs) = make(policy(1, 100));
        ok(subs.add(sub(1, A, None, &[AVAILABLE, RETIRED])).await)?;
        push(&keys, 7, 0x10, 50, 50).await?;
        ensure!(ok(keys.pending().await)? == 1, "the first push");
        ensure!(
            push(&keys, 7, 0x10, 50, 51).await? == PushOutcome::Unchanged,
            "identical"
        );
        ensure!(
            push(&keys, 7, 0x05, 10, 51).await? == PushOutcome::Stale,
            "stale"
        );
        ensure!(
            push(&keys, 7, 0x06, 0, 200).await? == PushOutcome::Expired,
            "expired"
        );
        ensure!(
            ok(keys.pending().await)? == 1,
            "entries were recorded for no change"
        );
        Ok(())
    })
    .await;

    r.run(S, "a_sweep_records_key_retired", async {
        let (keys, subs) = make(policy(4, 100));
        let s = ok(subs.add(sub(1, A, Some(7), &[RETIRED])).await)?;
        push(&keys, 7, 0x10, 0, 0).await?;
        push(&keys, 8, 0x11, 0, 0).await?;
        ensure!(
            ok(keys.pending().await)? == 0,
            "key-available was not subscribed to"
        );
        let gone = ok(keys.sweep(at(100)).await)?;
        ensure!(gone.len() == 2, "swept {}", gone.len());
        let claimed = ok(keys.claim_due(&claim(X, 100, &[])).await)?;
        ensure!(
            summary(&claimed) == [(s, RETIRED, 0x10)],
            "claimed {:?}",
            summary(&claimed)
        );
        ensure!(
            claimed[0].time == at(100),
            "the event's time is the sweep's"
        );
        Ok(())
    })
    .await;

    r.run(S, "a_claim_holds_until_its_lease_runs_out", async {
        let (keys, subs) = make(policy(4, 3600));
        ok(subs.add(sub(1, A, None, &[AVAILABLE])).await)?;
        push(&keys, 7, 0x10, 0, 0).await?;
        let first = ok(keys.claim_due(&claim(X, 0, &[])).await)?;
        ensure!(first.len() == 1, "first claim: {}", first.len());
        let id = first[0].id;
        ensure!(
            ok(keys.claim_due(&claim(Y, 0, &[])).await)?.is_empty(),
            "claimed twice at once"
        );
        ensure!(
            ok(keys.claim_due(&claim(Y, 29, &[])).await)?.is_empty(),
            "claimed within the lease"
        );
        ensure!(
            ok(keys.next_due().await)? == Some(at(30)),
            "next due is the lease's end"
        );
        // X died: after the lease, Y takes it over, with the same id.
        let again = ok(keys.claim_due(&claim(Y, 30, &[])).await)?;
        ensure!(
            again.len() == 1 && again[0].id == id,
            "not claimable after the lease: {again:?}"
        );
        ensure!(
            !ok(keys.retry_at(id, X, at(31)).await)?,
            "the old claimer released Y's claim"
        );
        ensure!(ok(keys.delivered(id).await)?, "delivered");
        ensure!(!ok(keys.delivered(id).await)?, "delivered twice");
        ensure!(ok(keys.pending().await)? == 0, "still pending");
        ensure!(
            ok(keys.next_due().await)?.is_none(),
            "next due of an empty outbox"
        );
        Ok(())
    })
    .await;

    r.run(S, "retry_at_releases_defers_and_counts", async {
        let (keys, subs) = make(policy(4, 3600));
        ok(subs.add(sub(1, A, None, &[AVAILABLE])).await)?;
        push(&keys, 7, 0x10, 0, 0).await?;
        let id = ok(keys.claim_due(&claim(X, 0, &[])).await)?
            .first()
            .map(|p| p.id)
            .ok_or("nothing claimed")?;
        ensure!(
            ok(keys.retry_at(id, X, at(5)).await)?,
            "retry_at by the claimer"
        );
        ensure!(
            ok(keys.claim_due(&claim(Y, 4, &[])).await)?.is_empty(),
            "claimed before it is due"
        );
        let again = ok(keys.claim_due(&claim(Y, 5, &[])).await)?;
        ensure!(
            again.len() == 1 && again[0].id == id && again[0].attempts == 1,
            "after the retry time: {again:?}"
        );
        Ok(())
    })
    .await;

    r.run(
        S,
        "a_claim_keeps_its_limits_in_all_per_emse_and_skipped",
        async {
            let (keys, subs) = make(policy(4, 3600));
            for _ in 0..3 {
                ok(subs.add(sub(1, A, None, &[AVAILABLE])).await)?;
            }
            ok(subs.add(sub(2, B, None, &[AVAILABLE])).await)?;
            push(&keys, 7, 0x10, 0, 0).await?;
            let count = |c: &[PendingNotification], who: &str| {
                c.iter().filter(|p| p.record.emse == emse(who)).count()
            };
            let skip_a = [emse(A)];
            let only_b = ok(keys.claim_due(&claim(X, 0, &skip_a)).await)?;
            ensure!(
                count(&only_b, A) == 0 && count(&only_b, B) == 1,
                "skip: {only_b:?}"
            );
            let capped = ok(keys
                .claim_due(&Claim {
                    per_emse: 2,
                    ..claim(X, 0, &[])
                })
                .await)?;
            ensure!(
                count(&capped, A) == 2 && capped.len() == 2,
                "per EMSE: {capped:?}"
            );
            let one = ok(keys
                .claim_due(&Claim {
                    max: 1,
                    ..claim(X, 0, &[])
                })
                .await)?;
            ensure!(one.len() == 1, "max: {one:?}");
            ensure!(
                ok(keys.claim_due(&claim(X, 0, &[])).await)?.is_empty(),
                "all were claimed"
            );
            Ok(())
        },
    )
    .await;

    r.run(
        S,
        "entries_of_ended_subscriptions_are_never_handed_out",
        async {
            let (keys, subs) = make(policy(4, 3600));
            let gone = ok(subs.add(sub(1, A, None, &[AVAILABLE])).await)?;
            ok(subs.add(sub(2, A, None, &[AVAILABLE])).await)?;
            let kept = ok(subs.add(sub(3, B, None, &[AVAILABLE])).await)?;
            push(&keys, 7, 0x10, 0, 0).await?;
            ensure!(ok(keys.pending().await)? == 3, "recorded");
            ok(subs.remove(SessionRef::from_u64(1), gone).await)?;
            ok(subs.remove_session(SessionRef::from_u64(2)).await)?;
            let claimed = ok(keys.claim_due(&claim(X, 0, &[])).await)?;
            ensure!(
                summary(&claimed) == [(kept, AVAILABLE, 0x10)],
                "claimed {:?}",
                summary(&claimed)
            );
            ensure!(
                ok(keys.pending().await)? == 1,
                "ended subscriptions' entries stay"
            );
            Ok(())
        },
    )
    .await;

    r.run(S, "no_subscription_no_entry", async {
        let (keys, subs) = make(policy(4, 3600));
        ok(subs.add(sub(1, A, Some(8), &[AVAILABLE])).await)?;
        push(&keys, 7, 0x10, 0, 0).await?;
        ensure!(
            ok(keys.pending().await)? == 0,
            "an entry for a subscription that does not match"
        );
        ensure!(
            ok(keys.claim_due(&claim(X, 0, &[])).await)?.is_empty(),
            "claimed"
        );
        Ok(())
    })
    .await;

    r
}
