//! The [`IdentityMap::resolve_key`] checks: a key fetched by application identity answers
//! exactly as a resolve followed by a key read, whatever path the backend takes.

use super::{Check, Report, at, emse, imsi, key, kid, ok, policy, push};
use crate::identity_keys::resolve_then_get;
use crate::{
    AppIdentity, EmseId, IdentityKey, IdentityMap, IntKeyStore, RetentionPolicy, Timestamp,
};

/// The `resolve_key` checks. `make` builds, for the retention policy it is given, an empty
/// identity map and an empty key store that the map's `resolve_key` is asked to read
/// (two views of one backend, or any pair: every pair must give the same answers).
pub async fn identity_keys<M, K>(make: &dyn Fn(RetentionPolicy) -> (M, K)) -> Report
where
    M: IdentityMap,
    K: IntKeyStore,
{
    identity_keys_selected(make, None).await
}

/// Only the check of [`identity_keys`] named `check` (an empty report if there is none):
/// what [`conformance_tests!`](crate::conformance_tests) runs in each of its tests.
pub async fn identity_keys_only<M, K>(
    make: &dyn Fn(RetentionPolicy) -> (M, K),
    check: &'static str,
) -> Report
where
    M: IdentityMap,
    K: IntKeyStore,
{
    identity_keys_selected(make, Some(check)).await
}

fn a() -> EmseId {
    emse("emse-a.example.com")
}

fn b() -> EmseId {
    emse("emse-b.example.com")
}

fn ue() -> AppIdentity {
    super::app("sensor-17@iot.example.com")
}

/// What an [`IdentityKey`] says, comparable: (IMSI, key id, key octets, created, expires).
type Seen = Option<(String, Option<(u32, [u8; 32], Timestamp, Timestamp)>)>;

fn seen(found: &IdentityKey) -> Seen {
    match found {
        IdentityKey::UnknownIdentity => None,
        IdentityKey::NotHeld { imsi } => Some((imsi.as_str().to_owned(), None)),
        IdentityKey::Held { imsi, key } => Some((
            imsi.as_str().to_owned(),
            Some((
                key.info.key_id.as_u32(),
                *key.key.expose_secret(),
                key.info.created,
                key.info.expires,
            )),
        )),
    }
}

/// `resolve_key` of (`emse`, the test identity, `id`) at `now`, checked against the
/// two-step answer ([`resolve_then_get`]) and against `expect`; returns nothing else.
async fn same_answer<M: IdentityMap, K: IntKeyStore>(
    m: &M,
    k: &K,
    emse: &EmseId,
    id: u32,
    now: Timestamp,
    expect: &Seen,
) -> Check {
    let joined = seen(
        &m.resolve_key(k, emse, &ue(), kid(id), now)
            .await
            .map_err(|e| format!("resolve_key: store error: {e}"))?,
    );
    let two_steps = seen(
        &resolve_then_get(m, k, emse, &ue(), kid(id), now)
            .await
            .map_err(|e| format!("resolve then get: store error: {e}"))?,
    );
    let show = |s: &Seen| match s {
        None => "unknown identity".to_owned(),
        Some((imsi, None)) => format!("{imsi}, key not held"),
        Some((imsi, Some((id, _, created, expires)))) => {
            format!("{imsi}, key {id} created {created:?} expires {expires:?}")
        }
    };
    ensure!(
        joined == two_steps,
        "resolve_key says {} but resolve then get says {}",
        show(&joined),
        show(&two_steps)
    );
    ensure!(
        joined == *expect,
        "resolve_key says {}, expected {}",
        show(&joined),
        show(expect)
    );
    Ok(())
}

/// The answer for a held key `id` of UE `n`, created at `created` (seconds after T0).
fn held(n: u64, id: u32, created: u64, max_age_secs: u64) -> Seen {
    Some((
        imsi(n).as_str().to_owned(),
        Some((
            id,
            *key(n, id).expose_secret(),
            at(created),
            at(created + max_age_secs),
        )),
    ))
}

fn not_held(n: u64) -> Seen {
    Some((imsi(n).as_str().to_owned(), None))
}

const HOUR: u64 = 3600;

async fn identity_keys_selected<M, K>(
    make: &dyn Fn(RetentionPolicy) -> (M, K),
    only: Option<&'static str>,
) -> Report
where
    M: IdentityMap,
    K: IntKeyStore,
{
    const S: &str = "identity_keys";
    let mut r = Report {
        only,
        ..Report::default()
    };
    let fresh = |n: usize| make(policy(n, HOUR));

    r.run(S, "a_held_key_is_served_with_its_imsi", async {
        let (m, k) = fresh(4);
        ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        push(&k, 1, 7, 0, 0).await?;
        push(&k, 1, 8, 1, 1).await?;
        same_answer(&m, &k, &a(), 7, at(2), &held(1, 7, 0, HOUR)).await?;
        same_answer(&m, &k, &a(), 8, at(2), &held(1, 8, 1, HOUR)).await
    })
    .await;
    r.run(S, "an_unknown_identity_is_unknown", async {
        let (m, k) = fresh(4);
        // The IMSI holds the key, but no identity names it.
        push(&k, 1, 7, 0, 0).await?;
        same_answer(&m, &k, &a(), 7, at(1), &None).await
    })
    .await;
    r.run(S, "another_emses_identity_is_unknown", async {
        let (m, k) = fresh(4);
        ok(m.provision(&b(), &ue(), &imsi(1)).await)?;
        push(&k, 1, 7, 0, 0).await?;
        same_answer(&m, &k, &a(), 7, at(1), &None).await?;
        same_answer(&m, &k, &b(), 7, at(1), &held(1, 7, 0, HOUR)).await
    })
    .await;
    r.run(S, "a_key_id_not_held_is_not_held", async {
        let (m, k) = fresh(4);
        ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        // No key at all, then another UE's key with this id, then another id of this UE.
        same_answer(&m, &k, &a(), 7, at(1), &not_held(1)).await?;
        push(&k, 2, 7, 0, 0).await?;
        same_answer(&m, &k, &a(), 7, at(1), &not_held(1)).await?;
        push(&k, 1, 8, 0, 0).await?;
        same_answer(&m, &k, &a(), 7, at(1), &not_held(1)).await
    })
    .await;
    r.run(S, "an_expired_key_is_not_held", async {
        let (m, k) = make(policy(4, 10));
        ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        push(&k, 1, 7, 0, 0).await?;
        same_answer(&m, &k, &a(), 7, at(9), &held(1, 7, 0, 10)).await?;
        // Live while now < created + max_age; not swept, still not served.
        same_answer(&m, &k, &a(), 7, at(10), &not_held(1)).await
    })
    .await;
    r.run(S, "a_retired_key_is_not_held", async {
        let (m, k) = fresh(1);
        ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        push(&k, 1, 7, 0, 0).await?;
        same_answer(&m, &k, &a(), 7, at(1), &held(1, 7, 0, HOUR)).await?;
        // Evicted by a newer key (N = 1) ...
        push(&k, 1, 8, 1, 1).await?;
        same_answer(&m, &k, &a(), 7, at(2), &not_held(1)).await?;
        same_answer(&m, &k, &a(), 8, at(2), &held(1, 8, 1, HOUR)).await?;
        // ... and every key removed with the UE.
        ok(k.remove_ue(&imsi(1)).await)?;
        same_answer(&m, &k, &a(), 8, at(2), &not_held(1)).await
    })
    .await;
    r.run(S, "a_replaced_key_is_served_as_replaced", async {
        let (m, k) = fresh(4);
        ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        push(&k, 1, 7, 0, 0).await?;
        same_answer(&m, &k, &a(), 7, at(1), &held(1, 7, 0, HOUR)).await?;
        // The same key id again, created later, with other octets: the new one is served.
        let other = key(99, 7);
        ok(k.push(&imsi(1), kid(7), &other, at(2), at(2)).await)?;
        let expect = Some((
            imsi(1).as_str().to_owned(),
            Some((7, *other.expose_secret(), at(2), at(2 + HOUR))),
        ));
        same_answer(&m, &k, &a(), 7, at(3), &expect).await
    })
    .await;
    r.run(S, "reprovisioning_follows_the_new_imsi", async {
        let (m, k) = fresh(4);
        ok(m.provision(&a(), &ue(), &imsi(1)).await)?;
        push(&k, 1, 7, 0, 0).await?;
        push(&k, 2, 8, 0, 0).await?;
        same_answer(&m, &k, &a(), 7, at(1), &held(1, 7, 0, HOUR)).await?;
        ok(m.provision(&a(), &ue(), &imsi(2)).await)?;
        // The old IMSI's key is no longer reachable through the identity ...
        same_answer(&m, &k, &a(), 7, at(1), &not_held(2)).await?;
        // ... the new IMSI's is.
        same_answer(&m, &k, &a(), 8, at(1), &held(2, 8, 0, HOUR)).await?;
        ok(m.remove(&a(), &ue()).await)?;
        same_answer(&m, &k, &a(), 8, at(1), &None).await
    })
    .await;
    r
}
