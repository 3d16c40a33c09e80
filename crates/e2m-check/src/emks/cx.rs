//! What every EMKS check uses: the clients (one per identity the checker acts as), the
//! HSS's pushes, the expectations on answers (status, media type, XSD, strict decoding,
//! derivation), the notification endpoint, and the cleanup after each check.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use e2m_msg::rest::{self, MEDIA_TYPE_PROBLEM_XML, MEDIA_TYPE_XML};
use e2m_msg::{
    CallbackUri, EmseId, EventSet, Imsi, IntermediateKeyPush, KeyId, KeyIdSource, KeyRequest,
    KeyResponse, Problem, ProblemCause, Registration, RegistrationResult, SessionId, Subscription,
    SubscriptionId, SubscriptionResult, Timestamp, UeRef, XmlMessage,
};
use rustls::ClientConfig;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use super::{Cleanup, EmksTarget};
use crate::callback::CallbackServer;
use crate::kdf;
use crate::plan::{Ue, UePlan};
use crate::verdict::{Stop, clip, ensure, fail};
use crate::wire::{self, BaseUrl, Exchange, Request, TlsFacts, WireError};
use crate::xsd::{Schema, Xsd};

/// Whom the checker speaks as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    /// The first EMSE.
    A,
    /// The second EMSE.
    B,
    /// The HSS.
    Hss,
    /// No client certificate at all.
    Anonymous,
    /// The first EMSE's EMSE_Id in a certificate from a CA the EMKS does not trust.
    Untrusted,
}

impl Who {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Who::A => "EMSE A",
            Who::B => "EMSE B",
            Who::Hss => "HSS",
            Who::Anonymous => "no certificate",
            Who::Untrusted => "untrusted certificate",
        }
    }
}

/// Something a check created that the cleanup removes.
enum Undo {
    Session(Who, SessionId),
    Subscription(Who, SubscriptionId),
}

/// A key the checker pushed, which it keeps to verify derivations.
pub(crate) struct Pushed {
    pub(crate) key_id: u32,
    pub(crate) int_key: Zeroizing<[u8; 32]>,
    pub(crate) created: Timestamp,
}

/// The EMKS checks' context.
pub(crate) struct EmksCx {
    pub(crate) t: EmksTarget,
    base: BaseUrl,
    a: Arc<ClientConfig>,
    b: Arc<ClientConfig>,
    hss: Arc<ClientConfig>,
    anonymous: Arc<ClientConfig>,
    untrusted: Result<Arc<ClientConfig>, String>,
    xsd: Xsd,
    callback: OnceCell<Result<CallbackServer, String>>,
    undo: Mutex<Vec<Undo>>,
    /// The creation time (Unix ms) of the last key pushed.
    clock: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Random octets from the operating system.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], Stop> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| Stop::Fail(format!("random generator: {e}")))?;
    Ok(out)
}

/// A random 32-bit value.
pub(crate) fn random_u32() -> Result<u32, Stop> {
    Ok(u32::from_be_bytes(random::<4>()?))
}

/// A short description of an answer for evidence: status, media type and the problem cause
/// if the body names one. Never the body itself (it may hold a key).
pub(crate) fn describe(ex: &Exchange) -> String {
    let mut text = ex.status.to_string();
    if let Some(media) = ex.media_type() {
        text.push(' ');
        text.push_str(&media);
    }
    if let Some(cause) = problem_cause_text(&ex.body) {
        text.push_str(" cause ");
        text.push_str(&cause);
    }
    text
}

/// The text of a `<cause>` element, read leniently (for evidence only).
fn problem_cause_text(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<cause>")? + "<cause>".len();
    let end = text[start..].find("</cause>")? + start;
    Some(clip(&text[start..end], 40))
}

/// A session id in valid form that no EMKS issued (random: 128 bits).
pub(crate) fn made_up_session() -> Result<SessionId, Stop> {
    Ok(SessionId::from_array(random::<16>()?))
}

impl EmksCx {
    /// Prepares the clients and the XSD files; `Err` if the run cannot start.
    pub(crate) async fn new(t: EmksTarget) -> Result<(EmksCx, Vec<String>), String> {
        let base = BaseUrl::parse(&t.url).map_err(|e| format!("EMKS URL {}: {e}", t.url))?;
        let a = wire::client_config(&t.ca, Some(&t.emse_a.credentials))?;
        let b = wire::client_config(&t.ca, Some(&t.emse_b.credentials))?;
        let hss = wire::client_config(&t.ca, Some(&t.hss))?;
        let anonymous = wire::client_config(&t.ca, None)?;
        let untrusted = untrusted_config(&t);
        let (xsd, note) = Xsd::new(t.xmllint)?;
        let mut notes: Vec<String> = note.into_iter().collect();
        if let Err(e) = &untrusted {
            notes.push(format!("no untrusted certificate could be made: {e}"));
        }
        Ok((
            EmksCx {
                t,
                base,
                a,
                b,
                hss,
                anonymous,
                untrusted,
                xsd,
                callback: OnceCell::new(),
                undo: Mutex::new(Vec::new()),
                clock: Mutex::new(0),
            },
            notes,
        ))
    }

    pub(crate) fn base(&self) -> &BaseUrl {
        &self.base
    }

    pub(crate) fn check_timeout(&self) -> Duration {
        self.t.check_timeout
    }

    pub(crate) fn plan(&self) -> &UePlan {
        &self.t.plan
    }

    pub(crate) async fn shutdown(&self) {
        self.cleanup().await;
    }

    fn config(&self, who: Who) -> Result<&Arc<ClientConfig>, Stop> {
        Ok(match who {
            Who::A => &self.a,
            Who::B => &self.b,
            Who::Hss => &self.hss,
            Who::Anonymous => &self.anonymous,
            Who::Untrusted => match &self.untrusted {
                Ok(c) => c,
                Err(e) => return Err(Stop::Skip(format!("no untrusted certificate: {e}"))),
            },
        })
    }

    /// The EMSE_Id of `who` (the first EMSE's for every non-EMSE identity).
    pub(crate) fn emse_id(&self, who: Who) -> &EmseId {
        match who {
            Who::B => &self.t.emse_b.id,
            _ => &self.t.emse_a.id,
        }
    }

    /// Whether `who` may name UEs by IMSI.
    pub(crate) fn imsi_allowed(&self, who: Who) -> bool {
        match who {
            Who::A => self.t.imsi_allowed_a,
            Who::B => self.t.imsi_allowed_b,
            _ => false,
        }
    }

    // ---- the wire --------------------------------------------------------------------

    /// One exchange, wire errors returned as they are.
    pub(crate) async fn exchange(
        &self,
        who: Who,
        request: Request<'_>,
    ) -> Result<Result<Exchange, WireError>, Stop> {
        let config = self.config(who)?;
        Ok(
            wire::send(&self.base, config, request, self.t.request_timeout)
                .await
                .map(|(exchange, _)| exchange),
        )
    }

    /// One exchange; no HTTP answer fails the check (evidence: `what` and the error).
    pub(crate) async fn send(
        &self,
        who: Who,
        what: &str,
        request: Request<'_>,
    ) -> Result<Exchange, Stop> {
        match self.exchange(who, request).await? {
            Ok(exchange) => Ok(exchange),
            Err(e) => fail!("{what} ({}): {e}", who.label()),
        }
    }

    /// The TLS handshake alone, as `who`.
    pub(crate) async fn handshake(&self, who: Who) -> Result<Result<TlsFacts, WireError>, Stop> {
        let config = self.config(who)?;
        Ok(wire::handshake(&self.base, config, self.t.request_timeout).await)
    }

    // ---- expectations ----------------------------------------------------------------

    /// The answer is `status` with an XML message of type `M`: `Content-Type:
    /// application/xml`, valid against the XSD, accepted by the strict decoder.
    pub(crate) async fn expect_message<M: XmlMessage>(
        &self,
        ex: &Exchange,
        what: &str,
        status: u16,
    ) -> Result<M, Stop> {
        ensure!(
            ex.status == status,
            "{what}: {}, want {status}",
            describe(ex)
        );
        let media = ex.media_type();
        ensure!(
            media.as_deref() == Some(MEDIA_TYPE_XML),
            "{what}: Content-Type {}, want {MEDIA_TYPE_XML}",
            ex.header("content-type").unwrap_or("absent")
        );
        if let Err(e) = self.xsd.validate(&ex.body, Schema::Messages).await {
            fail!("{what}: the {status} body is not valid: {}", clip(&e, 120));
        }
        match M::decode(&ex.body) {
            Ok(m) => Ok(m),
            Err(e) => fail!("{what}: the {status} body does not decode strictly: {e}"),
        }
    }

    /// The answer is the problem `cause`: its status, `Content-Type:
    /// application/problem+xml`, a document valid against the problem XSD that decodes
    /// strictly with this cause.
    pub(crate) async fn expect_problem(
        &self,
        ex: &Exchange,
        what: &str,
        cause: ProblemCause,
    ) -> Result<(), Stop> {
        ensure!(
            ex.status == cause.status(),
            "{what}: {}, want {} {cause}",
            describe(ex),
            cause.status()
        );
        let media = ex.media_type();
        ensure!(
            media.as_deref() == Some(MEDIA_TYPE_PROBLEM_XML),
            "{what}: {} with Content-Type {}, want {MEDIA_TYPE_PROBLEM_XML}",
            ex.status,
            ex.header("content-type").unwrap_or("absent")
        );
        if let Err(e) = self.xsd.validate(&ex.body, Schema::Problem).await {
            fail!(
                "{what}: the problem document is not valid: {}",
                clip(&e, 120)
            );
        }
        match Problem::decode(&ex.body) {
            Ok(p) if p.cause == cause => Ok(()),
            Ok(p) => fail!("{what}: {} with cause {}, want {cause}", ex.status, p.cause),
            Err(e) => fail!("{what}: the problem document does not decode strictly: {e}"),
        }
    }

    /// The answer is `status` with no body.
    pub(crate) fn expect_empty(ex: &Exchange, what: &str, status: u16) -> Result<(), Stop> {
        ensure!(
            ex.status == status,
            "{what}: {}, want {status}",
            describe(ex)
        );
        ensure!(
            ex.body.is_empty(),
            "{what}: {status} with a {}-octet body, want none",
            ex.body.len()
        );
        Ok(())
    }

    /// The `Location` of a 201 names `path` (as a path, or an absolute URL of this EMKS).
    pub(crate) fn expect_location(
        &self,
        ex: &Exchange,
        what: &str,
        path: &str,
    ) -> Result<(), Stop> {
        let Some(location) = ex.header("location") else {
            fail!("{what}: 201 without Location");
        };
        let absolute = format!("{}{path}", self.base);
        ensure!(
            location == path || location == absolute,
            "{what}: Location does not name the created resource ({} octets, want {})",
            location.len(),
            redact_ids(path)
        );
        Ok(())
    }

    // ---- sessions ---------------------------------------------------------------------

    /// Registers `who` (its own EMSE_Id, no callback): 201 with a registration result and
    /// a `Location`. The session is deregistered after the check.
    pub(crate) async fn register(&self, who: Who) -> Result<SessionId, Stop> {
        let body = Registration {
            emse_id: self.emse_id(who).clone(),
            callback: None,
        }
        .encode();
        let what = format!("registration of {}", who.label());
        let ex = self
            .send(
                who,
                &what,
                Request::new("POST", rest::SESSIONS_PATH).xml(body.as_bytes()),
            )
            .await?;
        let result: RegistrationResult = self.expect_message(&ex, &what, 201).await?;
        self.track_session(who, &result.session_id);
        Ok(result.session_id)
    }

    /// Remembers a session for the cleanup.
    pub(crate) fn track_session(&self, who: Who, session: &SessionId) {
        lock(&self.undo).push(Undo::Session(who, session.copy_secret()));
    }

    /// Remembers a subscription for the cleanup.
    pub(crate) fn track_subscription(&self, who: Who, id: SubscriptionId) {
        lock(&self.undo).push(Undo::Subscription(who, id));
    }

    /// `DELETE` of a session, as `who`.
    pub(crate) async fn deregister(&self, who: Who, session: &SessionId) -> Result<Exchange, Stop> {
        let target = rest::session_path(session);
        self.send(
            who,
            &format!("deregistration by {}", who.label()),
            Request::new("DELETE", &target),
        )
        .await
    }

    // ---- keys ---------------------------------------------------------------------------

    /// The creation time of the next key pushed: the run's clock, less the clock margin,
    /// and at least a millisecond after the previous one (so the keys of one UE have a
    /// definite order, and every key of this run is newer than any of an earlier run).
    pub(crate) fn next_created(&self) -> Timestamp {
        let now = Timestamp::now_from_system_clock()
            .saturating_sub(self.t.clock_margin)
            .as_unix_millis();
        let mut last = lock(&self.clock);
        *last = (*last + 1).max(now);
        Timestamp::from_unix_millis(*last)
    }

    /// The HSS pushes `int_key` for `imsi` with `key_id`, created at `created`; `Ok` with the
    /// answer (the caller judges it).
    pub(crate) async fn push_raw(
        &self,
        who: Who,
        imsi: &Imsi,
        key_id: KeyIdSource,
        int_key: &[u8; 32],
        created: Timestamp,
    ) -> Result<Exchange, Stop> {
        let body = IntermediateKeyPush {
            imsi: imsi.clone(),
            key_id,
            int_key: e2m_msg::E2mIntKey::from_array(*int_key),
            created,
        }
        .encode();
        self.send(
            who,
            &format!("key push by {}", who.label()),
            Request::new("POST", rest::INTERMEDIATE_KEYS_PATH).xml(body.as_bytes()),
        )
        .await
    }

    /// The HSS pushes a fresh random key with a random RAND-LSB32 key id for `ue`: 204.
    pub(crate) async fn push_fresh(&self, ue: &Ue) -> Result<Pushed, Stop> {
        let created = self.next_created();
        self.push_at(ue, created).await
    }

    /// As [`Self::push_fresh`] with a given creation time.
    pub(crate) async fn push_at(&self, ue: &Ue, created: Timestamp) -> Result<Pushed, Stop> {
        let pushed = Pushed {
            key_id: random_u32()?,
            int_key: Zeroizing::new(random::<32>()?),
            created,
        };
        self.push_key(&ue.imsi, &pushed).await?;
        Ok(pushed)
    }

    /// The HSS pushes `pushed` for `imsi`: 204 with no body.
    pub(crate) async fn push_key(&self, imsi: &Imsi, pushed: &Pushed) -> Result<(), Stop> {
        let ex = self
            .push_raw(
                Who::Hss,
                imsi,
                KeyIdSource::RandLsb32(KeyId::from_u32(pushed.key_id)),
                &pushed.int_key,
                pushed.created,
            )
            .await?;
        Self::expect_empty(&ex, "key push by the HSS", 204)
    }

    /// `GET` of a key as `who` in `session`.
    pub(crate) async fn fetch(
        &self,
        who: Who,
        session: &SessionId,
        ue: &UeRef,
        key_id: u32,
    ) -> Result<Exchange, Stop> {
        let target = KeyRequest {
            session_id: session.copy_secret(),
            ue: ue.clone(),
            key_id: KeyId::from_u32(key_id),
        }
        .to_target();
        self.send(
            who,
            &format!("key fetch by {}", who.label()),
            Request::new("GET", &target),
        )
        .await
    }

    /// The answer is the key response for `ue` and `pushed`'s key id, with `e2m_key =
    /// KDF(e2m_int_key, EMSE_Id of who)` (computed here), an expiry in the future and not
    /// after the key's maximum age, and `Cache-Control: no-store` (its own check names it;
    /// here it is not required).
    pub(crate) async fn expect_key(
        &self,
        ex: &Exchange,
        what: &str,
        who: Who,
        ue: &UeRef,
        pushed: &Pushed,
    ) -> Result<KeyResponse, Stop> {
        let response: KeyResponse = self.expect_message(ex, what, 200).await?;
        ensure!(
            response.ue == *ue,
            "{what}: the response names another UE than the request"
        );
        ensure!(
            response.key_id.as_u32() == pushed.key_id,
            "{what}: key id {} in the response, want {:08x}",
            response.key_id,
            pushed.key_id
        );
        let Some(expected) =
            kdf::e2m_key(&pushed.int_key, self.emse_id(who).as_str(), &self.t.profile)
        else {
            fail!("{what}: the checker cannot derive for this EMSE_Id");
        };
        if response.key.expose_secret() != &*expected {
            let for_other = [Who::A, Who::B].into_iter().find(|&other| {
                other != who
                    && kdf::e2m_key(
                        &pushed.int_key,
                        self.emse_id(other).as_str(),
                        &self.t.profile,
                    )
                    .is_some_and(|k| response.key.expose_secret() == &*k)
            });
            match for_other {
                Some(other) => fail!(
                    "{what}: e2m_key was derived for {}'s EMSE_Id, not for {}'s",
                    other.label(),
                    who.label()
                ),
                None => fail!(
                    "{what}: e2m_key is not KDF(e2m_int_key of key id {:08x}, EMSE_Id {})",
                    pushed.key_id,
                    self.emse_id(who)
                ),
            }
        }
        let now = Timestamp::now_from_system_clock();
        ensure!(
            response.expires > now.saturating_sub(self.t.clock_margin),
            "{what}: the key expires at {}, in the past",
            response.expires
        );
        let latest = pushed
            .created
            .saturating_add(self.t.key_max_age)
            .saturating_add(Duration::from_secs(1));
        ensure!(
            response.expires <= latest,
            "{what}: the key expires at {}, after its intermediate key's maximum age ({} s from its creation)",
            response.expires,
            self.t.key_max_age.as_secs()
        );
        Ok(response)
    }

    // ---- notifications ---------------------------------------------------------------

    /// The checker's notification endpoint (started at first use, kept for the run).
    pub(crate) async fn callback(&self) -> Result<&CallbackServer, Stop> {
        let started = self
            .callback
            .get_or_init(|| async {
                CallbackServer::start(
                    self.t.callback_listen,
                    self.t.callback_host.as_deref(),
                    self.t
                        .callback_credentials
                        .as_ref()
                        .unwrap_or(&self.t.emse_a.credentials),
                    &self.t.ca,
                )
                .await
            })
            .await;
        match started {
            Ok(server) => Ok(server),
            Err(e) => fail!("the checker's notification endpoint did not start: {e}"),
        }
    }

    /// Subscribes as `who` to `events` about `ue` with the checker's callback: 201 with a
    /// subscription result and a `Location`. Removed after the check.
    pub(crate) async fn subscribe(
        &self,
        who: Who,
        events: EventSet,
        ue: Option<UeRef>,
    ) -> Result<SubscriptionId, Stop> {
        let callback = self.callback().await?.callback().clone();
        self.subscribe_to(who, events, ue, callback).await
    }

    /// As [`Self::subscribe`] with another callback.
    pub(crate) async fn subscribe_to(
        &self,
        who: Who,
        events: EventSet,
        ue: Option<UeRef>,
        callback: CallbackUri,
    ) -> Result<SubscriptionId, Stop> {
        let ex = self.subscribe_raw(who, events, ue, callback).await?;
        let what = format!("subscription by {}", who.label());
        let result: SubscriptionResult = self.expect_message(&ex, &what, 201).await?;
        self.track_subscription(who, result.subscription_id);
        self.expect_location(
            &ex,
            &what,
            &rest::subscription_path(&result.subscription_id),
        )?;
        Ok(result.subscription_id)
    }

    /// The subscription request's answer, unjudged.
    pub(crate) async fn subscribe_raw(
        &self,
        who: Who,
        events: EventSet,
        ue: Option<UeRef>,
        callback: CallbackUri,
    ) -> Result<Exchange, Stop> {
        let body = Subscription {
            events,
            ue,
            callback,
        }
        .encode();
        self.send(
            who,
            &format!("subscription by {}", who.label()),
            Request::new("POST", rest::SUBSCRIPTIONS_PATH).xml(body.as_bytes()),
        )
        .await
    }

    /// `DELETE` of a subscription as `who`.
    pub(crate) async fn unsubscribe(&self, who: Who, id: SubscriptionId) -> Result<Exchange, Stop> {
        let target = rest::subscription_path(&id);
        self.send(
            who,
            &format!("unsubscription by {}", who.label()),
            Request::new("DELETE", &target),
        )
        .await
    }

    /// Validates a document against the message XSD (for bodies the checker received on
    /// its callback).
    pub(crate) async fn validate(&self, document: &[u8]) -> Result<(), String> {
        self.xsd.validate(document, Schema::Messages).await
    }
}

impl Cleanup for EmksCx {
    async fn cleanup(&self) {
        let undo = std::mem::take(&mut *lock(&self.undo));
        for item in undo.into_iter().rev() {
            let (who, request_target) = match &item {
                Undo::Subscription(who, id) => (*who, Zeroizing::new(rest::subscription_path(id))),
                Undo::Session(who, session) => (*who, rest::session_path(session)),
            };
            let Ok(config) = self.config(who) else {
                continue;
            };
            // 204 or 404 (already gone) are both fine; nothing to report either way.
            let _ = wire::send(
                &self.base,
                config,
                Request::new("DELETE", &request_target),
                self.t.request_timeout,
            )
            .await;
        }
        if let Some(Ok(callback)) = self.callback.get() {
            callback.clear_refusals();
        }
    }
}

/// A path with the ids after `sessions/` and `subscriptions/` replaced (evidence never
/// carries a session id).
pub(crate) fn redact_ids(path: &str) -> String {
    let mut out = Vec::new();
    let mut after = false;
    for segment in path.split('/') {
        if after {
            out.push("{id}");
            after = false;
        } else {
            out.push(segment);
            after = segment == "sessions" || segment == "subscriptions";
        }
    }
    out.join("/")
}

/// A client configuration with the first EMSE's EMSE_Id in a certificate from a fresh CA
/// (generated now, written to a temporary directory and removed at once).
fn untrusted_config(t: &EmksTarget) -> Result<Arc<ClientConfig>, String> {
    use e2m_https::pki::{GeneratedPki, PkiSpec};
    let spec = PkiSpec::new(vec![t.emse_a.id.clone()]).map_err(|e| e.to_string())?;
    let generated = GeneratedPki::generate(&spec).map_err(|e| e.to_string())?;
    let dir = generated
        .write_to_temp_dir("check-untrusted")
        .map_err(|e| e.to_string())?;
    let credentials = dir.emse(&t.emse_a.id).map_err(|e| e.to_string());
    let _ = dir.remove();
    // Trusts the EMKS's real CA, so that only the client side is foreign.
    wire::client_config(&t.ca, Some(&credentials?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_redacted() {
        assert_eq!(
            redact_ids("/e2m/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA/keys"),
            "/e2m/v1/sessions/{id}/keys"
        );
        assert_eq!(
            redact_ids("/e2m/v1/subscriptions/7"),
            "/e2m/v1/subscriptions/{id}"
        );
    }
}
