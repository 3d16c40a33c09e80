//! The EMKS checks. Each is independent (its own UEs of the plan, its own sessions and
//! subscriptions, removed after it) and documents what it sends and expects in the table
//! at the end, which the README lists.

use std::time::Duration;

use e2m_https::pki::{PeerIdentity, Role};
use e2m_msg::rest::{self, MEDIA_TYPE_XML};
use e2m_msg::{
    CallbackUri, EventSet, EventType, KeyId, KeyIdSource, KeyRequest, Notification, ProblemCause,
    Registration, RegistrationResult, SubscriptionId, Timestamp, UeRef, XmlMessage,
};
use zeroize::Zeroizing;

use super::cx::{EmksCx, Pushed, Who, describe, made_up_session, random, random_u32, redact_ids};
use crate::callback::Received;
use crate::kdf;
use crate::plan::Ue;
use crate::verdict::{CheckDef, Outcome, Stop, check_table, clip, ensure, fail, skip};
use crate::wire::{Request, WireError};

fn app(ue: &Ue) -> UeRef {
    UeRef::AppIdentity(ue.app.clone())
}

// ---- TLS (seed 6.x.2.2.1) ----------------------------------------------------------------

async fn client_certificate_required(cx: &EmksCx) -> Outcome {
    no_http_without_trust(cx, Who::Anonymous).await
}

async fn untrusted_client_refused(cx: &EmksCx) -> Outcome {
    no_http_without_trust(cx, Who::Untrusted).await
}

/// A registration sent as `who` (no certificate, or one from a foreign CA) must get no HTTP
/// answer at all: mutual authentication is a property of the TLS layer.
async fn no_http_without_trust(cx: &EmksCx, who: Who) -> Outcome {
    let body = Registration {
        emse_id: cx.emse_id(Who::A).clone(),
        callback: None,
    }
    .encode();
    match cx
        .exchange(
            who,
            Request::new("POST", rest::SESSIONS_PATH).xml(body.as_bytes()),
        )
        .await?
    {
        Err(e @ (WireError::Tls(_) | WireError::Http(_))) => {
            Ok(format!("refused before HTTP: {}", clip(&e.to_string(), 90)))
        }
        Err(e) => fail!("{e} (the handshake should have been refused)"),
        Ok(ex) => {
            if ex.status == 201 {
                // Never leave a session behind, whoever it belongs to.
                if let Ok(r) = RegistrationResult::decode(&ex.body) {
                    cx.track_session(Who::A, &r.session_id);
                }
            }
            fail!(
                "TLS accepted a client with {}; HTTP answered {}",
                who.label(),
                describe(&ex)
            )
        }
    }
}

async fn server_identity(cx: &EmksCx) -> Outcome {
    let facts = match cx.handshake(Who::A).await? {
        Ok(facts) => facts,
        Err(e) => fail!("TLS handshake as EMSE A: {e}"),
    };
    match &facts.identity {
        Ok(id @ PeerIdentity::Emks(_)) => Ok(format!(
            "{}, {}, certificate names {}",
            facts.version,
            facts.suite,
            id.to_uri()
        )),
        Ok(other) => fail!(
            "the server certificate names {} (role {}), not an EMKS",
            other.to_uri(),
            other.role()
        ),
        Err(e) => fail!("the server certificate carries no e2m identity: {e}"),
    }
}

// ---- registration (6.x.2.2.2.1) ----------------------------------------------------------

async fn register_created(cx: &EmksCx) -> Outcome {
    let body = Registration {
        emse_id: cx.emse_id(Who::A).clone(),
        callback: None,
    }
    .encode();
    let mut sessions = Vec::new();
    for n in 0..2 {
        let what = format!("registration {}", n + 1);
        let ex = cx
            .send(
                Who::A,
                &what,
                Request::new("POST", rest::SESSIONS_PATH).xml(body.as_bytes()),
            )
            .await?;
        let result: RegistrationResult = cx.expect_message(&ex, &what, 201).await?;
        cx.track_session(Who::A, &result.session_id);
        cx.expect_location(&ex, &what, &rest::session_path(&result.session_id))?;
        let now = Timestamp::now_from_system_clock();
        ensure!(
            result.expires > now,
            "{what}: the session expires at {}, not in the future",
            result.expires
        );
        sessions.push(result);
    }
    ensure!(
        sessions[0].session_id != sessions[1].session_id,
        "two registrations got the same session id"
    );
    let secs = sessions[1]
        .expires
        .saturating_duration_since(Timestamp::now_from_system_clock())
        .as_secs();
    Ok(format!(
        "201 with Location and a 22-character session id, twice, distinct; session lifetime {secs} s"
    ))
}

async fn register_emse_id_mismatch(cx: &EmksCx) -> Outcome {
    let body = Registration {
        emse_id: cx.emse_id(Who::B).clone(),
        callback: None,
    }
    .encode();
    let what = "registration naming EMSE B with EMSE A's certificate";
    let ex = cx
        .send(
            Who::A,
            what,
            Request::new("POST", rest::SESSIONS_PATH).xml(body.as_bytes()),
        )
        .await?;
    if ex.status == 201
        && let Ok(r) = RegistrationResult::decode(&ex.body)
    {
        cx.track_session(Who::A, &r.session_id);
        cx.track_session(Who::B, &r.session_id);
    }
    cx.expect_problem(&ex, what, ProblemCause::EmseNotAuthorized)
        .await?;
    Ok("403 emse-not-authorized".into())
}

async fn register_hss_refused(cx: &EmksCx) -> Outcome {
    let body = Registration {
        emse_id: cx.emse_id(Who::A).clone(),
        callback: None,
    }
    .encode();
    let what = "registration with the HSS's certificate";
    let ex = cx
        .send(
            Who::Hss,
            what,
            Request::new("POST", rest::SESSIONS_PATH).xml(body.as_bytes()),
        )
        .await?;
    if ex.status == 201
        && let Ok(r) = RegistrationResult::decode(&ex.body)
    {
        cx.track_session(Who::Hss, &r.session_id);
    }
    cx.expect_problem(&ex, what, ProblemCause::EmseNotAuthorized)
        .await?;
    Ok("403 emse-not-authorized".into())
}

async fn register_never_locked_out(cx: &EmksCx) -> Outcome {
    let n = cx.t.sessions_per_emse;
    let mut last = None;
    for i in 0..=n {
        let session = cx.register(Who::B).await.map_err(|stop| match stop {
            Stop::Fail(e) => Stop::Fail(format!("registration {} of {}: {e}", i + 1, n + 1)),
            other => other,
        })?;
        last = Some(session);
    }
    let Some(last) = last else {
        fail!("no registration made");
    };
    // The newest session works.
    let ue = cx.plan().shared(32);
    let pushed = cx.push_fresh(ue).await?;
    let ex = cx.fetch(Who::B, &last, &app(ue), pushed.key_id).await?;
    cx.expect_key(
        &ex,
        "fetch in the newest session",
        Who::B,
        &app(ue),
        &pushed,
    )
    .await?;
    Ok(format!(
        "{} registrations of one EMSE: every one 201; the newest session serves keys",
        n + 1
    ))
}

// ---- pushes (6.x.2.1) --------------------------------------------------------------------

async fn push_accepted(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(1);
    let pushed = cx.push_fresh(ue).await?;
    // Stored: served to an EMSE at once.
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
    cx.expect_key(&ex, "fetch of the pushed key", Who::A, &app(ue), &pushed)
        .await?;
    Ok("204 with no body; the key is served at once".into())
}

async fn push_emse_refused(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(2);
    let key_id = random_u32()?;
    let int_key = Zeroizing::new(random::<32>()?);
    let ex = cx
        .push_raw(
            Who::A,
            &ue.imsi,
            KeyIdSource::RandLsb32(KeyId::from_u32(key_id)),
            &int_key,
            cx.next_created(),
        )
        .await?;
    cx.expect_problem(
        &ex,
        "key push with EMSE A's certificate",
        ProblemCause::EmseNotAuthorized,
    )
    .await?;
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), key_id).await?;
    cx.expect_problem(
        &ex,
        "fetch of the key EMSE A tried to push",
        ProblemCause::KeyNotAvailable,
    )
    .await?;
    Ok("403 emse-not-authorized; the key was not stored (404 key-not-available)".into())
}

async fn push_short_hash(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(3);
    let int_key = Zeroizing::new(random::<32>()?);
    let created = cx.next_created();
    let ex = cx
        .push_raw(
            Who::Hss,
            &ue.imsi,
            KeyIdSource::ShortHash,
            &int_key,
            created,
        )
        .await?;
    EmksCx::expect_empty(&ex, "short-hash key push", 204)?;
    let Some(key_id) = kdf::short_hash(&int_key, &cx.t.profile) else {
        fail!("the checker cannot compute the short hash");
    };
    let pushed = Pushed {
        key_id,
        int_key,
        created,
    };
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), key_id).await?;
    cx.expect_key(
        &ex,
        "fetch by the short-hash key id",
        Who::A,
        &app(ue),
        &pushed,
    )
    .await?;
    Ok(format!(
        "204; served under key id {key_id:08x} = the short hash computed here"
    ))
}

async fn push_same_key_id_replaces(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(4);
    let first = cx.push_fresh(ue).await?;
    let second = Pushed {
        key_id: first.key_id,
        int_key: Zeroizing::new(random::<32>()?),
        created: cx.next_created(),
    };
    cx.push_key(&ue.imsi, &second).await?;
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), first.key_id).await?;
    let what = "fetch after a newer key with the same key id";
    let response: e2m_msg::KeyResponse = cx.expect_message(&ex, what, 200).await?;
    let older = kdf::e2m_key(&first.int_key, cx.emse_id(Who::A).as_str(), &cx.t.profile);
    if older.is_some_and(|k| response.key.expose_secret() == &*k) {
        fail!("{what}: the older key with this key id is still served");
    }
    cx.expect_key(&ex, what, Who::A, &app(ue), &second).await?;
    Ok("the newer key replaced the older one with the same key id".into())
}

// ---- key fetch (6.x.2.2.2.2, 6.x.2.3 steps 5–6) ------------------------------------------

async fn fetch_by_app_identity(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(5);
    let pushed = cx.push_fresh(ue).await?;
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
    let response = cx
        .expect_key(&ex, "key fetch", Who::A, &app(ue), &pushed)
        .await?;
    let left = response
        .expires
        .saturating_duration_since(Timestamp::now_from_system_clock())
        .as_secs();
    Ok(format!(
        "200; e2m_key = KDF(e2m_int_key, EMSE_Id) verified; expires in {left} s"
    ))
}

async fn fetch_no_store(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(6);
    let pushed = cx.push_fresh(ue).await?;
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
    ensure!(ex.status == 200, "key fetch: {}, want 200", describe(&ex));
    let values: Vec<&str> = ex
        .headers
        .get_all("cache-control")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let no_store = values
        .iter()
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-store"));
    ensure!(
        no_store,
        "the key response's Cache-Control is {}, want no-store",
        if values.is_empty() {
            "absent".to_owned()
        } else {
            format!("{:?}", values.join(", "))
        }
    );
    Ok(format!("Cache-Control: {}", values.join(", ")))
}

async fn fetch_selects_by_key_id(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(7);
    let n = cx.t.keys_per_ue.clamp(1, 3);
    let mut keys = Vec::new();
    for _ in 0..n {
        keys.push(cx.push_fresh(ue).await?);
    }
    let session = cx.register(Who::A).await?;
    for (i, pushed) in keys.iter().enumerate() {
        let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
        let what = format!("fetch of key {} of {n}", i + 1);
        cx.expect_key(&ex, &what, Who::A, &app(ue), pushed).await?;
    }
    Ok(format!(
        "{n} keys held; each key id served its own key's derivation"
    ))
}

async fn fetch_by_imsi(cx: &EmksCx) -> Outcome {
    let Some(who) = [Who::A, Who::B].into_iter().find(|&w| cx.imsi_allowed(w)) else {
        skip!("no EMSE is allowed to name UEs by IMSI (give --imsi-emse)");
    };
    let ue = cx.plan().shared(8);
    let pushed = cx.push_fresh(ue).await?;
    let session = cx.register(who).await?;
    let by_imsi = UeRef::Imsi(ue.imsi.clone());
    let ex = cx.fetch(who, &session, &by_imsi, pushed.key_id).await?;
    cx.expect_key(&ex, "fetch by IMSI", who, &by_imsi, &pushed)
        .await?;
    Ok(format!(
        "200 to {} by IMSI; the response names the IMSI; derivation verified",
        who.label()
    ))
}

async fn fetch_imsi_not_permitted(cx: &EmksCx) -> Outcome {
    let Some(who) = [Who::B, Who::A].into_iter().find(|&w| !cx.imsi_allowed(w)) else {
        skip!("both EMSEs are allowed to name UEs by IMSI");
    };
    let ue = cx.plan().shared(9);
    let pushed = cx.push_fresh(ue).await?;
    let session = cx.register(who).await?;
    let ex = cx
        .fetch(who, &session, &UeRef::Imsi(ue.imsi.clone()), pushed.key_id)
        .await?;
    cx.expect_problem(
        &ex,
        &format!("fetch by IMSI by {}", who.label()),
        ProblemCause::EmseNotAuthorized,
    )
    .await?;
    Ok(format!("403 emse-not-authorized to {}", who.label()))
}

async fn fetch_key_separation(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(10);
    let pushed = cx.push_fresh(ue).await?;
    let session_a = cx.register(Who::A).await?;
    let session_b = cx.register(Who::B).await?;
    let ex_a = cx
        .fetch(Who::A, &session_a, &app(ue), pushed.key_id)
        .await?;
    let key_a = cx
        .expect_key(&ex_a, "fetch by EMSE A", Who::A, &app(ue), &pushed)
        .await?;
    let ex_b = cx
        .fetch(Who::B, &session_b, &app(ue), pushed.key_id)
        .await?;
    let key_b = cx
        .expect_key(&ex_b, "fetch by EMSE B", Who::B, &app(ue), &pushed)
        .await?;
    ensure!(
        key_a.key.expose_secret() != key_b.key.expose_secret(),
        "EMSE A and EMSE B got the same e2m_key"
    );
    Ok("one intermediate key; A and B each got the key derived for its own EMSE_Id".into())
}

async fn fetch_identity_scoped(cx: &EmksCx) -> Outcome {
    // Provisioned for B only: A may not resolve it.
    let only_b = cx.plan().only_second();
    let pushed = cx.push_fresh(only_b).await?;
    let session_a = cx.register(Who::A).await?;
    let session_b = cx.register(Who::B).await?;
    let ex = cx
        .fetch(Who::B, &session_b, &app(only_b), pushed.key_id)
        .await?;
    cx.expect_key(
        &ex,
        "fetch by B of an identity provisioned for B",
        Who::B,
        &app(only_b),
        &pushed,
    )
    .await?;
    let ex = cx
        .fetch(Who::A, &session_a, &app(only_b), pushed.key_id)
        .await?;
    cx.expect_problem(
        &ex,
        "fetch by A of an identity provisioned for B only",
        ProblemCause::UeUnknown,
    )
    .await?;
    // One identity, two IMSIs: each EMSE's own translation.
    let (for_a, for_b) = cx.plan().split();
    let key_a = cx.push_fresh(for_a).await?;
    let key_b = Pushed {
        key_id: key_a.key_id,
        int_key: Zeroizing::new(random::<32>()?),
        created: cx.next_created(),
    };
    cx.push_key(&for_b.imsi, &key_b).await?;
    let ex = cx
        .fetch(Who::A, &session_a, &app(for_a), key_a.key_id)
        .await?;
    cx.expect_key(
        &ex,
        "fetch by A of the identity A maps to its IMSI",
        Who::A,
        &app(for_a),
        &key_a,
    )
    .await?;
    let ex = cx
        .fetch(Who::B, &session_b, &app(for_b), key_b.key_id)
        .await?;
    cx.expect_key(
        &ex,
        "fetch by B of the identity B maps to another IMSI",
        Who::B,
        &app(for_b),
        &key_b,
    )
    .await?;
    Ok(
        "identities resolve per EMSE: not provisioned → 404 ue-unknown; one identity, two IMSIs"
            .into(),
    )
}

async fn fetch_unknown_identity(cx: &EmksCx) -> Outcome {
    let never = cx.plan().unprovisioned(random_u32()?).map_err(Stop::Fail)?;
    let session = cx.register(Who::A).await?;
    let ex = cx
        .fetch(Who::A, &session, &UeRef::AppIdentity(never), random_u32()?)
        .await?;
    cx.expect_problem(
        &ex,
        "fetch of an identity never provisioned",
        ProblemCause::UeUnknown,
    )
    .await?;
    Ok("404 ue-unknown".into())
}

async fn fetch_unknown_key_id(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(11);
    let pushed = cx.push_fresh(ue).await?;
    let session = cx.register(Who::A).await?;
    let other = pushed.key_id ^ 0x8000_0001;
    let ex = cx.fetch(Who::A, &session, &app(ue), other).await?;
    cx.expect_problem(
        &ex,
        "fetch of a key id never pushed",
        ProblemCause::KeyNotAvailable,
    )
    .await?;
    Ok("404 key-not-available".into())
}

async fn fetch_unknown_session(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(12);
    let pushed = cx.push_fresh(ue).await?;
    let made_up = made_up_session()?;
    let ex = cx.fetch(Who::A, &made_up, &app(ue), pushed.key_id).await?;
    cx.expect_problem(
        &ex,
        "fetch with a made-up session id",
        ProblemCause::UnknownSession,
    )
    .await?;
    let ex = cx.deregister(Who::A, &made_up).await?;
    cx.expect_problem(
        &ex,
        "deregistration of a made-up session id",
        ProblemCause::UnknownSession,
    )
    .await?;
    let target = format!(
        "{}/not-a-session-id/keys?appIdentity=x&keyId={:08x}",
        rest::SESSIONS_PATH,
        pushed.key_id
    );
    let ex = cx
        .send(
            Who::A,
            "fetch with a malformed session id",
            Request::new("GET", &target),
        )
        .await?;
    cx.expect_problem(
        &ex,
        "fetch with a malformed session id",
        ProblemCause::Malformed,
    )
    .await?;
    Ok("made-up id: 404 unknown-session (fetch and delete); malformed id: 400 malformed".into())
}

// ---- retention and the race cases (6.x.2.1, "Considerations on the key identifier") ------

async fn retention_most_recent_n(cx: &EmksCx) -> Outcome {
    let n = cx.t.keys_per_ue;
    ensure!(n >= 1, "--keys-per-ue must be at least 1");
    let ue = cx.plan().shared(13);
    let mut keys = Vec::new();
    for _ in 0..=n {
        keys.push(cx.push_fresh(ue).await?);
    }
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), keys[0].key_id).await?;
    if ex.status == 200 {
        fail!(
            "after {} pushes the oldest key is still served (more than {n} kept)",
            n + 1
        );
    }
    cx.expect_problem(
        &ex,
        &format!("fetch of the oldest of {} keys", n + 1),
        ProblemCause::KeyNotAvailable,
    )
    .await?;
    for (i, pushed) in keys.iter().enumerate().skip(1) {
        let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
        let what = format!("fetch of key {} of {} (should be kept)", i + 1, n + 1);
        cx.expect_key(&ex, &what, Who::A, &app(ue), pushed).await?;
    }
    Ok(format!(
        "{} pushes: the newest {n} served, the oldest refused with key-not-available",
        n + 1
    ))
}

async fn retention_race_a(cx: &EmksCx) -> Outcome {
    let n = cx.t.keys_per_ue;
    if n < 2 {
        skip!("one key per UE: no older key is retained");
    }
    // The UE's last AKA run succeeded with `kept`; n - 1 later runs failed (their keys were
    // pushed, the UE never saw them).
    let ue = cx.plan().shared(14);
    let kept = cx.push_fresh(ue).await?;
    let mut later = Vec::new();
    for _ in 1..n {
        later.push(cx.push_fresh(ue).await?);
    }
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), kept.key_id).await?;
    cx.expect_key(
        &ex,
        &format!("fetch of the UE's key after {} newer pushes", n - 1),
        Who::A,
        &app(ue),
        &kept,
    )
    .await?;
    if let Some(newest) = later.last() {
        let ex = cx.fetch(Who::A, &session, &app(ue), newest.key_id).await?;
        cx.expect_key(&ex, "fetch of the newest key", Who::A, &app(ue), newest)
            .await?;
    }
    Ok(format!(
        "the UE's older key served after {} newer pushes, and the newest too",
        n - 1
    ))
}

async fn retention_race_b(cx: &EmksCx) -> Outcome {
    if cx.t.keys_per_ue < 2 {
        skip!("one key per UE: no older key is retained");
    }
    let ue = cx.plan().shared(15);
    let old = cx.push_fresh(ue).await?;
    let session = cx.register(Who::A).await?;
    let new = Pushed {
        key_id: random_u32()?,
        int_key: Zeroizing::new(random::<32>()?),
        created: cx.next_created(),
    };
    // Re-authentication pushes `new` while the UE connects on `old`.
    let name = app(ue);
    let (pushed, fetched) = tokio::join!(
        cx.push_key(&ue.imsi, &new),
        cx.fetch(Who::A, &session, &name, old.key_id)
    );
    pushed?;
    cx.expect_key(
        &fetched?,
        "fetch of the older key during the push of a newer one",
        Who::A,
        &app(ue),
        &old,
    )
    .await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), old.key_id).await?;
    cx.expect_key(
        &ex,
        "fetch of the older key after the push of a newer one",
        Who::A,
        &app(ue),
        &old,
    )
    .await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), new.key_id).await?;
    cx.expect_key(&ex, "fetch of the newer key", Who::A, &app(ue), &new)
        .await?;
    Ok(
        "during and after a newer push, the older key id got the older key, the newer the newer"
            .into(),
    )
}

// ---- expiry -------------------------------------------------------------------------------

/// How long before its maximum age the lifetime check's key is pushed.
const LIFETIME_LEAD: Duration = Duration::from_secs(3);

async fn expiry_expired_key(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(16);
    let created = Timestamp::now_from_system_clock()
        .saturating_sub(cx.t.key_max_age)
        .saturating_sub(Duration::from_secs(60));
    let pushed = Pushed {
        key_id: random_u32()?,
        int_key: Zeroizing::new(random::<32>()?),
        created,
    };
    let ex = cx
        .push_raw(
            Who::Hss,
            &ue.imsi,
            KeyIdSource::RandLsb32(KeyId::from_u32(pushed.key_id)),
            &pushed.int_key,
            created,
        )
        .await?;
    let push_answer = describe(&ex);
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
    cx.expect_problem(
        &ex,
        "fetch of a key pushed past its maximum age",
        ProblemCause::KeyNotAvailable,
    )
    .await?;
    Ok(format!(
        "push answered {push_answer}; the key is not served (404 key-not-available)"
    ))
}

async fn expiry_key_lifetime(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(17);
    let created = Timestamp::now_from_system_clock()
        .saturating_sub(cx.t.key_max_age)
        .saturating_add(LIFETIME_LEAD);
    let pushed = cx.push_at(ue, created).await?;
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
    let response = cx
        .expect_key(
            &ex,
            &format!(
                "fetch of a key {} s before its maximum age",
                LIFETIME_LEAD.as_secs()
            ),
            Who::A,
            &app(ue),
            &pushed,
        )
        .await?;
    // Wait until just past the expiry the EMKS announced, then ask again.
    let wait = response
        .expires
        .saturating_duration_since(Timestamp::now_from_system_clock())
        .min(LIFETIME_LEAD + Duration::from_secs(2))
        + Duration::from_millis(600);
    tokio::time::sleep(wait).await;
    let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
    cx.expect_problem(
        &ex,
        "fetch after the announced expiry",
        ProblemCause::KeyNotAvailable,
    )
    .await?;
    Ok(format!(
        "served with expires = created + {} s, refused with key-not-available after it",
        response
            .expires
            .saturating_duration_since(pushed.created)
            .as_secs()
    ))
}

// ---- deregistration (6.x.2.2.2.3) and the session's binding ------------------------------

async fn deregister_ends_session(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(18);
    let pushed = cx.push_fresh(ue).await?;
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
    cx.expect_key(
        &ex,
        "fetch before deregistration",
        Who::A,
        &app(ue),
        &pushed,
    )
    .await?;
    let ex = cx.deregister(Who::A, &session).await?;
    EmksCx::expect_empty(&ex, "deregistration", 204)?;
    let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
    cx.expect_problem(
        &ex,
        "fetch after deregistration",
        ProblemCause::UnknownSession,
    )
    .await?;
    let ex = cx.deregister(Who::A, &session).await?;
    cx.expect_problem(&ex, "second deregistration", ProblemCause::UnknownSession)
        .await?;
    Ok("204; then the session is unknown to fetches (404) and to a second DELETE (404)".into())
}

async fn deregister_ends_subscriptions(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(19);
    let session = cx.register(Who::A).await?;
    let sub = cx
        .subscribe(
            Who::A,
            EventSet::single(EventType::KeyAvailable),
            Some(app(ue)),
        )
        .await?;
    let ex = cx.deregister(Who::A, &session).await?;
    EmksCx::expect_empty(&ex, "deregistration", 204)?;
    let pushed = cx.push_fresh(ue).await?;
    let callback = cx.callback().await?;
    let seen = callback
        .wait_for(1, cx.t.quiet_period, &|r| for_subscription(r, sub))
        .await;
    ensure!(
        seen.is_empty(),
        "a notification for the subscription arrived after its session was deregistered (key id {:08x})",
        pushed.key_id
    );
    let ex = cx.unsubscribe(Who::A, sub).await?;
    cx.expect_problem(
        &ex,
        "DELETE of the subscription after deregistration",
        ProblemCause::UnknownSubscription,
    )
    .await?;
    Ok(format!(
        "no notification in {} ms after a push; the subscription is gone (404 unknown-subscription)",
        cx.t.quiet_period.as_millis()
    ))
}

async fn session_bound_to_certificate(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(20);
    let pushed = cx.push_fresh(ue).await?;
    let session = cx.register(Who::A).await?;
    let ex = cx.fetch(Who::B, &session, &app(ue), pushed.key_id).await?;
    if ex.status == 200 {
        fail!("EMSE B fetched a key through EMSE A's session");
    }
    if ex.status == 403 {
        fail!(
            "B using A's session: 403 tells B the session exists; want 404 unknown-session, as for a made-up id"
        );
    }
    cx.expect_problem(
        &ex,
        "fetch by B with A's session",
        ProblemCause::UnknownSession,
    )
    .await?;
    let ex = cx.deregister(Who::B, &session).await?;
    if ex.status == 204 {
        fail!("EMSE B deregistered EMSE A's session (204)");
    }
    cx.expect_problem(
        &ex,
        "deregistration by B of A's session",
        ProblemCause::UnknownSession,
    )
    .await?;
    let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
    cx.expect_key(
        &ex,
        "fetch by A after B's attempts",
        Who::A,
        &app(ue),
        &pushed,
    )
    .await?;
    Ok("B's fetch and DELETE with A's session: 404 unknown-session; A's session unharmed".into())
}

// ---- subscriptions and notifications (6.x.2.2.2) -----------------------------------------

/// Whether a received request is a notification for subscription `sub` (read leniently:
/// the checks judge the document strictly afterwards).
fn for_subscription(r: &Received, sub: SubscriptionId) -> bool {
    let needle = format!("<subscriptionId>{sub}</subscriptionId>");
    std::str::from_utf8(&r.body).is_ok_and(|b| b.contains(&needle))
}

/// Judges one delivered notification: POST to the callback's path, over mutual TLS with an
/// EMKS certificate, `application/xml`, valid, strictly decoded.
async fn judge_notification(cx: &EmksCx, r: &Received, what: &str) -> Result<Notification, Stop> {
    ensure!(r.method == "POST", "{what}: method {}, want POST", r.method);
    ensure!(
        r.target == rest::NOTIFICATIONS_PATH,
        "{what}: sent to {}, want the callback's path {}",
        clip(&r.target, 60),
        rest::NOTIFICATIONS_PATH
    );
    match &r.peer {
        Ok(id) if id.role() == Role::Emks => {}
        Ok(id) => fail!(
            "{what}: the client certificate names {}, not an EMKS",
            id.to_uri()
        ),
        Err(e) => fail!("{what}: the client certificate carries no e2m identity: {e}"),
    }
    let media = r.content_type.as_deref().map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    ensure!(
        media.as_deref() == Some(MEDIA_TYPE_XML),
        "{what}: Content-Type {}, want {MEDIA_TYPE_XML}",
        r.content_type.as_deref().unwrap_or("absent")
    );
    if let Err(e) = cx.validate(&r.body).await {
        fail!("{what}: the notification is not valid: {}", clip(&e, 120));
    }
    match Notification::decode(&r.body) {
        Ok(n) => Ok(n),
        Err(e) => fail!("{what}: the notification does not decode strictly: {e}"),
    }
}

async fn subscribe_created(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(21);
    let _session = cx.register(Who::A).await?;
    let sub = cx
        .subscribe(
            Who::A,
            EventSet::single(EventType::KeyAvailable),
            Some(app(ue)),
        )
        .await?;
    let ex = cx.unsubscribe(Who::A, sub).await?;
    EmksCx::expect_empty(&ex, "DELETE of the subscription", 204)?;
    Ok("201 with Location /e2m/v1/subscriptions/{id} and a valid result; DELETE 204".into())
}

/// More subscriptions of one EMSE to one UE than e2m's per-UE bound on a push's fan-out
/// (4): an EMKS that bounds them makes the oldest give way (as for sessions), so that an
/// EMSE that restarted without unsubscribing is never locked out of its UEs' events.
const SUBSCRIPTIONS_TO_ONE_UE: usize = 8;

async fn subscribe_never_locked_out(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(34);
    let _session = cx.register(Who::A).await?;
    let mut newest = None;
    for i in 0..SUBSCRIPTIONS_TO_ONE_UE {
        let sub = cx
            .subscribe(
                Who::A,
                EventSet::single(EventType::KeyAvailable),
                Some(app(ue)),
            )
            .await
            .map_err(|stop| match stop {
                Stop::Fail(e) => Stop::Fail(format!(
                    "subscription {} of {SUBSCRIPTIONS_TO_ONE_UE} to one UE: {e}",
                    i + 1
                )),
                other => other,
            })?;
        newest = Some(sub);
    }
    let Some(newest) = newest else {
        fail!("no subscription made");
    };
    // The newest subscription is live: a push reaches it.
    let pushed = cx.push_fresh(ue).await?;
    let callback = cx.callback().await?;
    let key_hex = format!("<keyId>{:08x}</keyId>", pushed.key_id);
    let seen = callback
        .wait_for(1, cx.t.notification_wait, &|r| {
            for_subscription(r, newest) && String::from_utf8_lossy(&r.body).contains(&key_hex)
        })
        .await;
    ensure!(
        !seen.is_empty(),
        "no key-available notification to the newest of {SUBSCRIPTIONS_TO_ONE_UE} subscriptions within {} s of a push",
        cx.t.notification_wait.as_secs()
    );
    Ok(format!(
        "{SUBSCRIPTIONS_TO_ONE_UE} subscriptions of one EMSE to one UE: every one 201; the newest notified of a push"
    ))
}

async fn subscribe_all_ues(cx: &EmksCx) -> Outcome {
    let permitted = [Who::A, Who::B].into_iter().find(|&w| cx.imsi_allowed(w));
    let refused = [Who::B, Who::A].into_iter().find(|&w| !cx.imsi_allowed(w));
    let mut evidence = Vec::new();
    if let Some(who) = refused {
        let _session = cx.register(who).await?;
        let callback = cx.callback().await?.callback().clone();
        let ex = cx
            .subscribe_raw(
                who,
                EventSet::single(EventType::KeyAvailable),
                None,
                callback,
            )
            .await?;
        if ex.status == 201
            && let Ok(r) = e2m_msg::SubscriptionResult::decode(&ex.body)
        {
            cx.track_subscription(who, r.subscription_id);
        }
        cx.expect_problem(
            &ex,
            &format!(
                "subscription to every UE by {} (no IMSI permission)",
                who.label()
            ),
            ProblemCause::EmseNotAuthorized,
        )
        .await?;
        evidence.push(format!("{}: 403 emse-not-authorized", who.label()));
    }
    if let Some(who) = permitted {
        let ue = cx.plan().shared(31);
        let _session = cx.register(who).await?;
        let sub = cx
            .subscribe(who, EventSet::single(EventType::KeyAvailable), None)
            .await?;
        let pushed = cx.push_fresh(ue).await?;
        let key_hex = format!("<keyId>{:08x}</keyId>", pushed.key_id);
        let callback = cx.callback().await?;
        let seen = callback
            .wait_for(1, cx.t.notification_wait, &|r| {
                for_subscription(r, sub) && String::from_utf8_lossy(&r.body).contains(&key_hex)
            })
            .await;
        let Some(first) = seen.first() else {
            fail!(
                "no notification to {}'s subscription to every UE within {} s of a push",
                who.label(),
                cx.t.notification_wait.as_secs()
            );
        };
        let n = judge_notification(cx, first, "notification to a subscription to every UE").await?;
        ensure!(
            n.ue == UeRef::Imsi(ue.imsi.clone()),
            "a notification to a subscription to every UE must name the UE by IMSI"
        );
        evidence.push(format!("{}: 201, notified naming the IMSI", who.label()));
    }
    if evidence.is_empty() {
        skip!("no EMSE to check with");
    }
    Ok(evidence.join("; "))
}

async fn subscribe_callback_host(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(22);
    let _session = cx.register(Who::A).await?;
    let foreign = CallbackUri::new("https://callback.invalid/e2m/v1/notifications")
        .map_err(|e| Stop::Fail(format!("callback URI: {e}")))?;
    let ex = cx
        .subscribe_raw(
            Who::A,
            EventSet::single(EventType::KeyAvailable),
            Some(app(ue)),
            foreign,
        )
        .await?;
    if ex.status == 201
        && let Ok(r) = e2m_msg::SubscriptionResult::decode(&ex.body)
    {
        cx.track_subscription(Who::A, r.subscription_id);
    }
    cx.expect_problem(
        &ex,
        "subscription with a callback host the certificate does not name",
        ProblemCause::EmseNotAuthorized,
    )
    .await?;
    Ok("403 emse-not-authorized for callback.invalid".into())
}

async fn subscribe_key_in_use_refused(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(22);
    let _session = cx.register(Who::A).await?;
    let callback = cx.callback().await?.callback().clone();
    let ex = cx
        .subscribe_raw(
            Who::A,
            EventSet::single(EventType::KeyInUse),
            Some(app(ue)),
            callback,
        )
        .await?;
    if ex.status == 201
        && let Ok(r) = e2m_msg::SubscriptionResult::decode(&ex.body)
    {
        cx.track_subscription(Who::A, r.subscription_id);
    }
    cx.expect_problem(&ex, "subscription to key-in-use", ProblemCause::Malformed)
        .await?;
    Ok("400 malformed".into())
}

async fn notify_key_available(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(23);
    let _session = cx.register(Who::A).await?;
    let sub = cx
        .subscribe(
            Who::A,
            EventSet::single(EventType::KeyAvailable),
            Some(app(ue)),
        )
        .await?;
    let started = std::time::Instant::now();
    let pushed = cx.push_fresh(ue).await?;
    let callback = cx.callback().await?;
    let key_hex = format!("<keyId>{:08x}</keyId>", pushed.key_id);
    let seen = callback
        .wait_for(1, cx.t.notification_wait, &|r| {
            for_subscription(r, sub) && String::from_utf8_lossy(&r.body).contains(&key_hex)
        })
        .await;
    let Some(first) = seen.first() else {
        fail!(
            "no key-available notification within {} s of the push",
            cx.t.notification_wait.as_secs()
        );
    };
    let took = first.at.saturating_duration_since(started);
    let n = judge_notification(cx, first, "key-available notification").await?;
    ensure!(
        n.subscription_id == sub && n.event == EventType::KeyAvailable,
        "the notification names event {} of subscription {}, want key-available of {sub}",
        n.event,
        n.subscription_id
    );
    ensure!(
        n.ue == app(ue),
        "the notification names the UE otherwise than the subscription did"
    );
    ensure!(
        n.key_id.as_u32() == pushed.key_id,
        "the notification names key id {}, want {:08x}",
        n.key_id,
        pushed.key_id
    );
    // Only the subscribed event: a push that evicted an older key must not send
    // key-retired to this subscription.
    let other = callback.matching(&|r| {
        for_subscription(r, sub) && String::from_utf8_lossy(&r.body).contains("key-retired")
    });
    ensure!(
        other.is_empty(),
        "a key-retired notification reached a subscription to key-available only"
    );
    Ok(format!(
        "POST over mutual TLS from an EMKS certificate after {} ms: valid, subscription, event, UE and key id right",
        took.as_millis()
    ))
}

async fn notify_key_retired(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(24);
    let _session = cx.register(Who::A).await?;
    let sub = cx
        .subscribe(
            Who::A,
            EventSet::single(EventType::KeyRetired),
            Some(app(ue)),
        )
        .await?;
    let n = cx.t.keys_per_ue;
    let mut keys = Vec::new();
    for _ in 0..=n {
        keys.push(cx.push_fresh(ue).await?);
    }
    let evicted = &keys[0];
    let callback = cx.callback().await?;
    let key_hex = format!("<keyId>{:08x}</keyId>", evicted.key_id);
    let seen = callback
        .wait_for(1, cx.t.notification_wait, &|r| {
            for_subscription(r, sub) && String::from_utf8_lossy(&r.body).contains(&key_hex)
        })
        .await;
    let Some(first) = seen.first() else {
        fail!(
            "no key-retired notification for the evicted key within {} s",
            cx.t.notification_wait.as_secs()
        );
    };
    let note = judge_notification(cx, first, "key-retired notification").await?;
    ensure!(
        note.event == EventType::KeyRetired && note.subscription_id == sub,
        "the notification names event {}, want key-retired",
        note.event
    );
    ensure!(
        note.ue == app(ue),
        "the notification names the UE otherwise than the subscription did"
    );
    let available = callback.matching(&|r| {
        for_subscription(r, sub) && String::from_utf8_lossy(&r.body).contains("key-available")
    });
    ensure!(
        available.is_empty(),
        "a key-available notification reached a subscription to key-retired only"
    );
    Ok(format!(
        "{} pushes: key-retired for the evicted key id, valid, over mutual TLS",
        n + 1
    ))
}

async fn notify_redelivered(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(30);
    let _session = cx.register(Who::A).await?;
    let sub = cx
        .subscribe(
            Who::A,
            EventSet::single(EventType::KeyAvailable),
            Some(app(ue)),
        )
        .await?;
    let callback = cx.callback().await?;
    let needle = format!("<subscriptionId>{sub}</subscriptionId>");
    callback.refuse_once(needle, 503);
    let pushed = cx.push_fresh(ue).await?;
    let key_hex = format!("<keyId>{:08x}</keyId>", pushed.key_id);
    let seen = callback
        .wait_for(2, cx.t.notification_wait, &|r| {
            for_subscription(r, sub) && String::from_utf8_lossy(&r.body).contains(&key_hex)
        })
        .await;
    let [first, second, ..] = &seen[..] else {
        fail!(
            "{} deliveries within {} s after the first was answered 503, want it again",
            seen.len(),
            cx.t.notification_wait.as_secs()
        );
    };
    ensure!(
        first.answered == 503,
        "the first delivery was not the one refused"
    );
    let a = judge_notification(cx, first, "refused delivery").await?;
    let b = judge_notification(cx, second, "repeated delivery").await?;
    ensure!(
        a.id == b.id,
        "the repeat carries notificationId {:?}, the first {:?}: the EMSE cannot drop duplicates",
        b.id.map(|i| i.as_u64()),
        a.id.map(|i| i.as_u64())
    );
    ensure!(
        a.id.is_some(),
        "the notifications carry no notificationId, by which an EMSE drops a repeat"
    );
    Ok(format!(
        "repeated {} ms after a 503, with the same notificationId",
        second.at.saturating_duration_since(first.at).as_millis()
    ))
}

async fn notify_key_retired_on_expiry(cx: &EmksCx) -> Outcome {
    let Some(wait) = cx.t.expiry_notification_wait else {
        skip!("no --expiry-notification-wait given (it must cover the EMKS's expiry sweep period)");
    };
    let ue = cx.plan().shared(33);
    let _session = cx.register(Who::A).await?;
    let sub = cx
        .subscribe(
            Who::A,
            EventSet::single(EventType::KeyRetired),
            Some(app(ue)),
        )
        .await?;
    let lead = Duration::from_secs(2);
    let created = Timestamp::now_from_system_clock()
        .saturating_sub(cx.t.key_max_age)
        .saturating_add(lead);
    let pushed = cx.push_at(ue, created).await?;
    let expires = created.saturating_add(cx.t.key_max_age);
    let callback = cx.callback().await?;
    let key_hex = format!("<keyId>{:08x}</keyId>", pushed.key_id);
    let seen = callback
        .wait_for(1, lead + wait, &|r| {
            for_subscription(r, sub) && String::from_utf8_lossy(&r.body).contains(&key_hex)
        })
        .await;
    let Some(first) = seen.first() else {
        fail!(
            "no key-retired notification within {} s of the key's expiry",
            wait.as_secs()
        );
    };
    let n = judge_notification(cx, first, "key-retired notification on expiry").await?;
    ensure!(
        n.event == EventType::KeyRetired,
        "the notification names event {}, want key-retired",
        n.event
    );
    let after = Timestamp::now_from_system_clock().saturating_duration_since(expires);
    Ok(format!(
        "key-retired for the expired key about {} ms after its expiry",
        after.as_millis()
    ))
}

async fn unsubscribe_ends_notifications(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(25);
    let _session = cx.register(Who::A).await?;
    let sub = cx
        .subscribe(
            Who::A,
            EventSet::single(EventType::KeyAvailable),
            Some(app(ue)),
        )
        .await?;
    let ex = cx.unsubscribe(Who::A, sub).await?;
    EmksCx::expect_empty(&ex, "DELETE of the subscription", 204)?;
    let ex = cx.unsubscribe(Who::A, sub).await?;
    cx.expect_problem(
        &ex,
        "second DELETE of the subscription",
        ProblemCause::UnknownSubscription,
    )
    .await?;
    cx.push_fresh(ue).await?;
    let callback = cx.callback().await?;
    let seen = callback
        .wait_for(1, cx.t.quiet_period, &|r| for_subscription(r, sub))
        .await;
    ensure!(
        seen.is_empty(),
        "a notification arrived for a removed subscription"
    );
    Ok(format!(
        "DELETE 204, again 404 unknown-subscription; no notification in {} ms after a push",
        cx.t.quiet_period.as_millis()
    ))
}

async fn unsubscribe_other_emse(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(26);
    let _session_a = cx.register(Who::A).await?;
    let _session_b = cx.register(Who::B).await?;
    let sub = cx
        .subscribe(
            Who::A,
            EventSet::single(EventType::KeyAvailable),
            Some(app(ue)),
        )
        .await?;
    let ex = cx.unsubscribe(Who::B, sub).await?;
    if ex.status == 204 {
        fail!("EMSE B removed EMSE A's subscription (204)");
    }
    cx.expect_problem(
        &ex,
        "DELETE by B of A's subscription",
        ProblemCause::UnknownSubscription,
    )
    .await?;
    let ex = cx.unsubscribe(Who::A, sub).await?;
    EmksCx::expect_empty(&ex, "DELETE by A of its subscription afterwards", 204)?;
    Ok("B's DELETE: 404 unknown-subscription; A's subscription was still there (204)".into())
}

async fn notification_key_in_use(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(27);
    let pushed = cx.push_fresh(ue).await?;
    let _session = cx.register(Who::A).await?;
    let body = Notification {
        subscription_id: SubscriptionId::from_u64(0),
        event: EventType::KeyInUse,
        ue: app(ue),
        key_id: KeyId::from_u32(pushed.key_id),
        time: Timestamp::now_from_system_clock(),
        id: None,
    }
    .encode();
    let what = "key-in-use notification from EMSE A";
    let ex = cx
        .send(
            Who::A,
            what,
            Request::new("POST", rest::NOTIFICATIONS_PATH).xml(body.as_bytes()),
        )
        .await?;
    EmksCx::expect_empty(&ex, what, 204)?;
    Ok("204".into())
}

async fn notification_refused(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(27);
    let _session = cx.register(Who::A).await?;
    let never = cx.plan().unprovisioned(random_u32()?).map_err(Stop::Fail)?;
    let note = |event: EventType, ue: UeRef| {
        Notification {
            subscription_id: SubscriptionId::from_u64(0),
            event,
            ue,
            key_id: KeyId::from_u32(1),
            time: Timestamp::now_from_system_clock(),
            id: None,
        }
        .encode()
    };
    let cases = [
        (
            Who::A,
            "key-in-use about an identity never provisioned",
            note(EventType::KeyInUse, UeRef::AppIdentity(never)),
            ProblemCause::UeUnknown,
        ),
        (
            Who::A,
            "key-available from an EMSE",
            note(EventType::KeyAvailable, app(ue)),
            ProblemCause::Malformed,
        ),
        (
            Who::Hss,
            "key-in-use from the HSS",
            note(EventType::KeyInUse, app(ue)),
            ProblemCause::EmseNotAuthorized,
        ),
    ];
    for (who, what, body, cause) in cases {
        let ex = cx
            .send(
                who,
                what,
                Request::new("POST", rest::NOTIFICATIONS_PATH).xml(body.as_bytes()),
            )
            .await?;
        cx.expect_problem(&ex, what, cause).await?;
    }
    Ok("404 ue-unknown, 400 malformed, 403 emse-not-authorized".into())
}

// ---- the REST binding: resources, methods, media types, bodies, limits ------------------

async fn binding_not_found(cx: &EmksCx) -> Outcome {
    for target in ["/e2m/v1/no-such-resource", "/e2m/v2/sessions", "/"] {
        let what = format!("GET {target}");
        let ex = cx.send(Who::A, &what, Request::new("GET", target)).await?;
        cx.expect_problem(&ex, &what, ProblemCause::NotFound)
            .await?;
    }
    Ok("404 not-found for three unknown resources".into())
}

async fn binding_method_not_allowed(cx: &EmksCx) -> Outcome {
    let id = made_up_session()?.to_text();
    let session = format!("{}/{}", rest::SESSIONS_PATH, id.as_str());
    let keys = format!("{session}/keys?appIdentity=x&keyId=00000001");
    let cases: [(&str, &str, &str); 4] = [
        ("GET", rest::SESSIONS_PATH, "POST"),
        ("PUT", &session, "DELETE"),
        ("POST", &keys, "GET"),
        ("GET", rest::INTERMEDIATE_KEYS_PATH, "POST"),
    ];
    for (method, target, allow) in cases {
        let what = format!(
            "{method} {}",
            redact_ids(target.split('?').next().unwrap_or(""))
        );
        let mut request = Request::new(method, target);
        if method != "GET" {
            request = request.xml(b"<x/>");
        }
        let ex = cx.send(Who::A, &what, request).await?;
        cx.expect_problem(&ex, &what, ProblemCause::MethodNotAllowed)
            .await?;
        let header = ex.header("allow").unwrap_or("");
        let allowed: Vec<&str> = header.split(',').map(str::trim).collect();
        ensure!(
            allowed.contains(&allow),
            "{what}: 405 with Allow {:?}, want one naming {allow}",
            header
        );
    }
    Ok("405 method-not-allowed with the right Allow on four resources".into())
}

async fn binding_unsupported_media_type(cx: &EmksCx) -> Outcome {
    let body = Registration {
        emse_id: cx.emse_id(Who::A).clone(),
        callback: None,
    }
    .encode();
    for content_type in [Some("text/plain"), Some("application/json"), None] {
        let what = format!(
            "registration with Content-Type {}",
            content_type.unwrap_or("absent")
        );
        let mut request = Request::new("POST", rest::SESSIONS_PATH).body(body.as_bytes().to_vec());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let ex = cx.send(Who::A, &what, request).await?;
        if ex.status == 201
            && let Ok(r) = RegistrationResult::decode(&ex.body)
        {
            cx.track_session(Who::A, &r.session_id);
        }
        cx.expect_problem(&ex, &what, ProblemCause::UnsupportedMediaType)
            .await?;
    }
    Ok("415 unsupported-media-type for text/plain, application/json and none".into())
}

async fn binding_media_type_parameters(cx: &EmksCx) -> Outcome {
    let body = Registration {
        emse_id: cx.emse_id(Who::A).clone(),
        callback: None,
    }
    .encode();
    let what = "registration with Content-Type application/xml; charset=utf-8";
    let ex = cx
        .send(
            Who::A,
            what,
            Request::new("POST", rest::SESSIONS_PATH)
                .header("content-type", "application/xml; charset=utf-8")
                .body(body.as_bytes().to_vec()),
        )
        .await?;
    let result: RegistrationResult = cx.expect_message(&ex, what, 201).await?;
    cx.track_session(Who::A, &result.session_id);
    Ok("201: a media type parameter is accepted".into())
}

async fn binding_malformed_xml(cx: &EmksCx) -> Outcome {
    let emse = cx.emse_id(Who::A).as_str();
    let ns = e2m_msg::NAMESPACE;
    let cases = [
        (
            "truncated",
            format!("<registration xmlns=\"{ns}\"><emseId>{emse}</emseId>"),
        ),
        (
            "a DOCTYPE with an entity",
            format!(
                "<!DOCTYPE registration [<!ENTITY e \"{emse}\">]><registration xmlns=\"{ns}\"><emseId>&e;</emseId></registration>"
            ),
        ),
        (
            "an unknown element",
            format!(
                "<registration xmlns=\"{ns}\"><emseId>{emse}</emseId><extra>1</extra></registration>"
            ),
        ),
        (
            "another namespace",
            format!(
                "<registration xmlns=\"urn:example:other\"><emseId>{emse}</emseId></registration>"
            ),
        ),
        ("not XML", "emseId=".to_owned() + emse),
    ];
    for (name, body) in cases {
        let what = format!("registration with {name}");
        let ex = cx
            .send(
                Who::A,
                &what,
                Request::new("POST", rest::SESSIONS_PATH).xml(body.as_bytes()),
            )
            .await?;
        if ex.status == 201
            && let Ok(r) = RegistrationResult::decode(&ex.body)
        {
            cx.track_session(Who::A, &r.session_id);
        }
        cx.expect_problem(&ex, &what, ProblemCause::Malformed)
            .await?;
    }
    Ok("400 malformed for five malformed registrations (DOCTYPE and entity included)".into())
}

async fn binding_bad_query(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(28);
    // A key id with a hex letter in it, so that its upper-case spelling differs (a random
    // one has none about once in 43).
    let mut pushed = cx.push_fresh(ue).await?;
    for _ in 0..16 {
        if format!("{:08x}", pushed.key_id)
            .bytes()
            .any(|b| b.is_ascii_alphabetic())
        {
            break;
        }
        pushed = cx.push_fresh(ue).await?;
    }
    let session = cx.register(Who::A).await?;
    let good = KeyRequest {
        session_id: session.copy_secret(),
        ue: app(ue),
        key_id: KeyId::from_u32(pushed.key_id),
    }
    .to_target();
    let (path, query) = good.split_once('?').unwrap_or((good.as_str(), ""));
    let id = format!("keyId={:08x}", pushed.key_id);
    let app_param = query.split('&').next().unwrap_or("");
    let upper = format!("keyId={:08X}", pushed.key_id);
    let cases: Vec<(&str, String)> = vec![
        ("no keyId", format!("{path}?{app_param}")),
        ("no UE", format!("{path}?{id}")),
        (
            "appIdentity and imsi",
            format!("{path}?{app_param}&imsi={}&{id}", ue.imsi),
        ),
        ("keyId twice", format!("{path}?{app_param}&{id}&{id}")),
        (
            "an unknown parameter",
            format!("{path}?{app_param}&{id}&x=1"),
        ),
        ("an upper-case keyId", format!("{path}?{app_param}&{upper}")),
    ];
    for (name, target) in cases {
        let what = format!("key fetch with {name}");
        let ex = cx.send(Who::A, &what, Request::new("GET", &target)).await?;
        cx.expect_problem(&ex, &what, ProblemCause::Malformed)
            .await?;
    }
    // The well-formed request works (the refusals above were about the query alone).
    let ex = cx
        .send(Who::A, "well-formed key fetch", Request::new("GET", &good))
        .await?;
    cx.expect_key(&ex, "well-formed key fetch", Who::A, &app(ue), &pushed)
        .await?;
    Ok("400 malformed for six ambiguous or incomplete queries; the well-formed one 200".into())
}

async fn binding_unexpected_body(cx: &EmksCx) -> Outcome {
    let ue = cx.plan().shared(29);
    let pushed = cx.push_fresh(ue).await?;
    let session = cx.register(Who::A).await?;
    let fetch = KeyRequest {
        session_id: session.copy_secret(),
        ue: app(ue),
        key_id: KeyId::from_u32(pushed.key_id),
    }
    .to_target();
    let deregister = rest::session_path(&session);
    let unsubscribe = rest::subscription_path(&SubscriptionId::from_u64(1));
    for (method, target, what) in [
        ("GET", fetch.as_str(), "key fetch with a body"),
        ("DELETE", deregister.as_str(), "deregistration with a body"),
        ("DELETE", unsubscribe.as_str(), "unsubscription with a body"),
    ] {
        let ex = cx
            .send(Who::A, what, Request::new(method, target).xml(b"<x/>"))
            .await?;
        cx.expect_problem(&ex, what, ProblemCause::Malformed)
            .await?;
    }
    // The refused DELETE left the session alone.
    let ex = cx.fetch(Who::A, &session, &app(ue), pushed.key_id).await?;
    cx.expect_key(
        &ex,
        "fetch after the refused deregistration",
        Who::A,
        &app(ue),
        &pushed,
    )
    .await?;
    Ok("400 malformed for a GET and two DELETEs with a body; the session unharmed".into())
}

async fn limits_body_size(cx: &EmksCx) -> Outcome {
    let mut body = Registration {
        emse_id: cx.emse_id(Who::A).clone(),
        callback: None,
    }
    .encode()
    .as_bytes()
    .to_vec();
    // Padded with white space after the root: well-formed, one octet over the limit.
    body.resize(e2m_msg::MAX_DOCUMENT_LEN + 1, b' ');
    let what = format!("registration of {} octets", body.len());
    let ex = match cx
        .exchange(Who::A, Request::new("POST", rest::SESSIONS_PATH).xml(&body))
        .await?
    {
        Ok(ex) => ex,
        Err(e) => fail!("{what}: {e}; want 413 payload-too-large"),
    };
    if ex.status == 201
        && let Ok(r) = RegistrationResult::decode(&ex.body)
    {
        cx.track_session(Who::A, &r.session_id);
    }
    cx.expect_problem(&ex, &what, ProblemCause::PayloadTooLarge)
        .await?;
    Ok(format!(
        "413 payload-too-large for {} octets",
        e2m_msg::MAX_DOCUMENT_LEN + 1
    ))
}

async fn limits_head_size(cx: &EmksCx) -> Outcome {
    let pad = "a".repeat(96 * 1024);
    let what = "a request with a 96 KiB header";
    match cx
        .exchange(
            Who::A,
            Request::new("GET", rest::SESSIONS_PATH).header("x-e2m-check-pad", &pad),
        )
        .await?
    {
        Err(e @ (WireError::Http(_) | WireError::Tls(_))) => Ok(format!(
            "connection closed without an answer ({})",
            clip(&e.to_string(), 60)
        )),
        Err(e) => fail!("{what}: {e}"),
        Ok(ex) if matches!(ex.status, 431 | 400 | 413) => Ok(describe(&ex)),
        Ok(ex) => fail!(
            "{what}: {}, want 431 (RFC 6585 §5) or 400: the head was accepted",
            describe(&ex)
        ),
    }
}

/// The EMKS checks, in the order they run.
pub(super) static CHECKS: &[CheckDef<EmksCx>] = check_table![EmksCx;
    client_certificate_required => {
        name: "tls.client-certificate-required",
        clause: "6.x.2.2.1 (mutual TLS)",
        sends: "a registration over TLS without a client certificate",
        expects: "the handshake refused: no HTTP answer at all",
    },
    untrusted_client_refused => {
        name: "tls.untrusted-client-refused",
        clause: "6.x.2.2.1 (mutual TLS)",
        sends: "a registration with EMSE A's EMSE_Id in a certificate from a CA the EMKS does not trust",
        expects: "the handshake refused: no HTTP answer at all",
    },
    server_identity => {
        name: "tls.server-identity",
        clause: "6.x.2.2.1; TS 33.210 §6.2; e2m cert profile",
        sends: "a TLS handshake as EMSE A",
        expects: "TLS 1.2 or 1.3 with an AEAD suite; a certificate chaining to the CA, valid for the host, naming one urn:e2m:emks: identity",
    },
    register_created => {
        name: "register.created",
        clause: "6.x.2.2.2.1",
        sends: "POST /e2m/v1/sessions with EMSE A's registration, twice",
        expects: "201, application/xml, a valid registrationResult (22-character session id, expiry in the future), Location: /e2m/v1/sessions/{id}; two distinct ids",
    },
    register_emse_id_mismatch => {
        name: "register.emse-id-mismatch",
        clause: "6.x.2.2.1; 6.x.2.2.2.1",
        sends: "a registration naming EMSE B, with EMSE A's certificate",
        expects: "403 emse-not-authorized",
    },
    register_hss_refused => {
        name: "register.hss-refused",
        clause: "6.x.2.2.1",
        sends: "a registration with the HSS's certificate",
        expects: "403 emse-not-authorized",
    },
    register_never_locked_out => {
        name: "register.never-locked-out",
        clause: "e2m binding (an EMSE that lost its sessions is never locked out)",
        sends: "--sessions-per-emse + 1 registrations of EMSE B (default 65), then a fetch in the newest session",
        expects: "201 every time (the oldest session makes way); the newest session serves keys",
    },
    push_accepted => {
        name: "push.accepted",
        clause: "6.x.2.3 prerequisite a; e2m push binding",
        sends: "POST /e2m/v1/intermediate-keys as the HSS, then a fetch as EMSE A",
        expects: "204 with no body; the key served at once",
    },
    push_emse_refused => {
        name: "push.emse-refused",
        clause: "6.x.2.2.1; e2m push binding",
        sends: "a key push with EMSE A's certificate, then a fetch of that key id",
        expects: "403 emse-not-authorized; the key not stored (404 key-not-available)",
    },
    push_short_hash => {
        name: "push.short-hash",
        clause: "6.x.2.1 key identifier, alternative 2",
        sends: "a push with `<shortHash/>`, then a fetch by the short hash the checker computes",
        expects: "204; 200 with the key derived from the pushed e2m_int_key",
    },
    push_same_key_id_replaces => {
        name: "push.same-key-id-replaces",
        clause: "6.x.2.1 key identifier; DESIGN §4",
        sends: "two pushes with one key id (the second created later), then a fetch",
        expects: "the newer key's derivation",
    },
    fetch_by_app_identity => {
        name: "fetch.by-app-identity",
        clause: "6.x.2.2.2.2; 6.x.2.3 steps 5-6",
        sends: "GET /e2m/v1/sessions/{id}/keys?appIdentity=…&keyId=… for a key the checker pushed",
        expects: "200 (not the seed's 201: GET creates nothing), application/xml, a valid keyResponse naming the UE and key id, e2m_key = KDF(e2m_int_key, EMSE_Id), expiry in the future within the key's maximum age",
    },
    fetch_no_store => {
        name: "fetch.no-store",
        clause: "RFC 9111 §5.2.2.5; e2m binding",
        sends: "a key fetch",
        expects: "Cache-Control: no-store on the key response",
    },
    fetch_selects_by_key_id => {
        name: "fetch.selects-by-key-id",
        clause: "6.x.2.3 step 6",
        sends: "three pushes for one UE, a fetch of each key id",
        expects: "each key id answered with its own key's derivation",
    },
    fetch_by_imsi => {
        name: "fetch.by-imsi",
        clause: "6.x.2.1 user identity, case 1",
        sends: "a fetch with imsi=… by an EMSE the operator lets name IMSIs (--imsi-emse)",
        expects: "200, the response naming the IMSI, derivation verified (skipped when no EMSE may)",
    },
    fetch_imsi_not_permitted => {
        name: "fetch.imsi-not-permitted",
        clause: "6.x.2.1 user identity, case 1 (privacy)",
        sends: "a fetch with imsi=… by an EMSE not allowed to name IMSIs",
        expects: "403 emse-not-authorized",
    },
    fetch_key_separation => {
        name: "fetch.key-separation",
        clause: "6.x.2.3 step 6 (EMSE_Id as KDF input)",
        sends: "one push; the same UE and key id fetched by EMSE A and by EMSE B",
        expects: "two different keys, each KDF(e2m_int_key, its own EMSE_Id)",
    },
    fetch_identity_scoped => {
        name: "fetch.identity-scoped",
        clause: "6.x.2.1 user identity, case 2",
        sends: "fetches of an identity provisioned for B only, and of one identity mapped to different IMSIs for A and B",
        expects: "404 ue-unknown to A and the key to B; each EMSE the key of its own IMSI",
    },
    fetch_unknown_identity => {
        name: "fetch.unknown-identity",
        clause: "6.x.2.1 user identity; e2m binding",
        sends: "a fetch naming an identity never provisioned",
        expects: "404 ue-unknown (the same answer as not provisioned for this EMSE)",
    },
    fetch_unknown_key_id => {
        name: "fetch.unknown-key-id",
        clause: "6.x.2.1 key identifier",
        sends: "a fetch of a key id never pushed for a known UE",
        expects: "404 key-not-available (the UE must re-authenticate)",
    },
    fetch_unknown_session => {
        name: "fetch.unknown-session",
        clause: "6.x.2.2.2.2; e2m binding",
        sends: "a fetch and a DELETE with a made-up session id; a fetch with a malformed one",
        expects: "404 unknown-session twice; 400 malformed",
    },
    retention_most_recent_n => {
        name: "retention.most-recent-n",
        clause: "6.x.2.1 key identifier (a fixed small number of keys)",
        sends: "N+1 pushes for one UE (N = --keys-per-ue), fetches of each",
        expects: "the oldest refused with 404 key-not-available, the newest N served",
    },
    retention_race_a => {
        name: "retention.race-a",
        clause: "6.x.2.1 key identifier, case a",
        sends: "the UE's key, then N-1 newer pushes (failed AKA runs), fetches of the UE's key and the newest",
        expects: "both served with their own derivations",
    },
    retention_race_b => {
        name: "retention.race-b",
        clause: "6.x.2.1 key identifier, case b",
        sends: "a fetch of the UE's key at the same time as the push of a newer one, and after it",
        expects: "the older key id answered with the older key every time; the newer with the newer",
    },
    expiry_expired_key => {
        name: "expiry.expired-key",
        clause: "6.x.2.1 (EMKS retention policy)",
        sends: "a push of a key created more than --key-max-age ago, then a fetch",
        expects: "the key not served: 404 key-not-available",
    },
    expiry_key_lifetime => {
        name: "expiry.key-lifetime",
        clause: "6.x.2.1 (EMKS retention policy)",
        sends: "a push of a key 3 s short of its maximum age, a fetch, another fetch after the announced expiry",
        expects: "200 with an expiry no later than creation + maximum age; then 404 key-not-available",
    },
    deregister_ends_session => {
        name: "deregister.ends-session",
        clause: "6.x.2.2.2.3",
        sends: "DELETE /e2m/v1/sessions/{id}, then a fetch and a second DELETE with that id",
        expects: "204 with no body; then 404 unknown-session to both",
    },
    deregister_ends_subscriptions => {
        name: "deregister.ends-subscriptions",
        clause: "6.x.2.2.2.3; 6.x.2.2.2",
        sends: "a subscription, the deregistration of its session, a push for its UE, a DELETE of the subscription",
        expects: "no notification; 404 unknown-subscription",
    },
    session_bound_to_certificate => {
        name: "session.bound-to-certificate",
        clause: "6.x.2.2.1 (authenticated EMSE); e2m binding",
        sends: "EMSE A's session id used by EMSE B to fetch (a UE provisioned for B) and to DELETE",
        expects: "404 unknown-session to both (no oracle of which ids exist); A's session still serves A",
    },
    subscribe_created => {
        name: "subscribe.created",
        clause: "6.x.2.2.2 (subscription)",
        sends: "POST /e2m/v1/subscriptions (key-available, one UE, the checker's callback), then DELETE",
        expects: "201, a valid subscriptionResult, Location: /e2m/v1/subscriptions/{id}; 204",
    },
    subscribe_never_locked_out => {
        name: "subscribe.never-locked-out",
        clause: "e2m binding (an EMSE that lost its subscriptions is never locked out)",
        sends: "8 key-available subscriptions of EMSE A to one UE (twice e2m's per-UE bound), then a push for the UE",
        expects: "201 every time (an EMKS that bounds them lets the oldest make way); a key-available notification to the newest",
    },
    subscribe_all_ues => {
        name: "subscribe.all-ues",
        clause: "6.x.2.1 user identity, case 1; e2m binding",
        sends: "a subscription with no UE by an EMSE not allowed IMSIs; one by an EMSE allowed (--imsi-emse), then a push",
        expects: "403 emse-not-authorized; 201 and a notification naming the UE by IMSI",
    },
    subscribe_callback_host => {
        name: "subscribe.callback-host",
        clause: "e2m binding (callbacks only to hosts the certificate names)",
        sends: "a subscription whose callback is `https://callback.invalid/…`",
        expects: "403 emse-not-authorized",
    },
    subscribe_key_in_use_refused => {
        name: "subscribe.key-in-use-refused",
        clause: "e2m binding (key-in-use is EMSE to EMKS)",
        sends: "a subscription to key-in-use",
        expects: "400 malformed",
    },
    notify_key_available => {
        name: "notify.key-available",
        clause: "6.x.2.2.1 (EMKS as HTTP client); 6.x.2.2.2",
        sends: "a key-available subscription for one UE, then a push for it",
        expects: "a POST to the callback over mutual TLS with an EMKS certificate: application/xml, valid, naming the subscription, key-available, the UE as subscribed and the key id; no key-retired to it",
    },
    notify_key_retired => {
        name: "notify.key-retired",
        clause: "6.x.2.2.2; 6.x.2.1 retention",
        sends: "a key-retired subscription for one UE, then N+1 pushes",
        expects: "a valid key-retired notification for the evicted key id; no key-available to it",
    },
    notify_redelivered => {
        name: "notify.redelivered",
        clause: "e2m binding (notifications at least once)",
        sends: "a key-available subscription, a push, and a 503 to the first delivery",
        expects: "the notification delivered again, with the same notificationId",
    },
    notify_key_retired_on_expiry => {
        name: "notify.key-retired-on-expiry",
        clause: "6.x.2.2.2; 6.x.2.1 retention (maximum age)",
        sends: "a key-retired subscription, a push of a key 2 s short of its maximum age (only with --expiry-notification-wait)",
        expects: "a valid key-retired notification for it after its expiry, within the wait",
    },
    unsubscribe_ends_notifications => {
        name: "unsubscribe.ends-notifications",
        clause: "6.x.2.2.2",
        sends: "DELETE of a subscription, twice, then a push for its UE",
        expects: "204, then 404 unknown-subscription; no notification",
    },
    unsubscribe_other_emse => {
        name: "unsubscribe.other-emse",
        clause: "6.x.2.2.1; 6.x.2.2.2",
        sends: "EMSE B's DELETE of EMSE A's subscription, then A's",
        expects: "404 unknown-subscription to B; 204 to A",
    },
    notification_key_in_use => {
        name: "notification.key-in-use",
        clause: "6.x.2.2.2 (notification by EMSE)",
        sends: "POST /e2m/v1/notifications: key-in-use for a UE EMSE A may name",
        expects: "204 with no body",
    },
    notification_refused => {
        name: "notification.refused",
        clause: "6.x.2.2.2 (notification by EMSE); e2m binding",
        sends: "key-in-use about an identity never provisioned; key-available from an EMSE; key-in-use from the HSS",
        expects: "404 ue-unknown; 400 malformed; 403 emse-not-authorized",
    },
    binding_not_found => {
        name: "binding.not-found",
        clause: "e2m binding; RFC 9457",
        sends: "GET of /e2m/v1/no-such-resource, /e2m/v2/sessions and /",
        expects: "404 not-found problem documents (application/problem+xml, valid, strict)",
    },
    binding_method_not_allowed => {
        name: "binding.method-not-allowed",
        clause: "e2m binding; RFC 9110 §15.5.6",
        sends: "GET /sessions, PUT /sessions/{id}, POST …/keys, GET /intermediate-keys",
        expects: "405 method-not-allowed with Allow naming POST, DELETE, GET, POST",
    },
    binding_unsupported_media_type => {
        name: "binding.unsupported-media-type",
        clause: "6.x.2.2.1 (XML content); RFC 9110 §15.5.16",
        sends: "a registration as text/plain, as application/json, and with no Content-Type",
        expects: "415 unsupported-media-type",
    },
    binding_media_type_parameters => {
        name: "binding.media-type-parameters",
        clause: "RFC 9110 §8.3.1",
        sends: "a registration with Content-Type: application/xml; charset=utf-8",
        expects: "201",
    },
    binding_malformed_xml => {
        name: "binding.malformed-xml",
        clause: "e2m binding (strict XML)",
        sends: "registrations: truncated, with a DOCTYPE and entity, with an unknown element, in another namespace, not XML",
        expects: "400 malformed for each",
    },
    binding_bad_query => {
        name: "binding.bad-query",
        clause: "e2m binding (strict query)",
        sends: "key fetches without keyId, without UE, with appIdentity and imsi, keyId twice, an unknown parameter, an upper-case keyId",
        expects: "400 malformed for each; the well-formed fetch 200",
    },
    binding_unexpected_body => {
        name: "binding.unexpected-body",
        clause: "e2m binding (GET and DELETE carry everything in the target)",
        sends: "a key fetch, a deregistration and an unsubscription, each with an XML body",
        expects: "400 malformed for each; the session not deregistered",
    },
    limits_body_size => {
        name: "limits.body-size",
        clause: "e2m binding (64 KiB documents); RFC 9110 §15.5.14",
        sends: "a registration of 65,537 octets",
        expects: "413 payload-too-large",
    },
    limits_head_size => {
        name: "limits.head-size",
        clause: "RFC 6585 §5",
        sends: "a request with a 96 KiB header field",
        expects: "431 or 400 (or the connection closed): never processed",
    },
];
