//! The EMKS's decisions: one entry point per operation of the seed's interface.

use e2m_keyid::{EmseId, Imsi, KeyId};
use e2m_keystore::{
    self as ks, HeldKey, IdentityKey, IdentityMap, IntKeyStore, MemoryIdentityMap,
    MemoryIntKeyStore, MemorySessionStore, MemorySubscriptionStore, NotificationOutbox,
    PendingNotification, PushOutcome, RetentionPolicy, SessionInfo, SessionPolicy, SessionStore,
    StoreError, SubscriptionPolicy, SubscriptionRecord, SubscriptionStore, UeFilter,
};
use e2m_msg::{
    CallbackUri, Deregistration, IntermediateKeyPush, KeyIdSource, KeyRequest, KeyResponse,
    Notification, NotificationId, Problem, ProblemCause, Registration, RegistrationResult,
    Subscription, SubscriptionResult,
};
use e2m_types::{EventType, SessionId, SubscriptionId, Timestamp, UeRef};

use crate::audit::{
    Action, AuditRecord, AuditRecords, Effects, OutboundNotification, Outcome, Verdict,
};
use crate::{EmksConfig, Peer, callback_target};

/// A refusal: the cause the peer is told, and the reason the audit records.
struct Refusal {
    cause: ProblemCause,
    reason: &'static str,
}

fn refuse(cause: ProblemCause, reason: &'static str) -> Refusal {
    Refusal { cause, reason }
}

/// An identity unknown, or known but not provisioned for this EMSE: one answer, so that an
/// EMSE cannot probe which identities exist elsewhere.
fn identity_not_provisioned() -> Refusal {
    refuse(
        ProblemCause::UeUnknown,
        "identity not provisioned for this EMSE",
    )
}

/// Store failures are the operator's, not the peer's: 503 (retry later), or 429 for a
/// limit that the peer itself reached.
fn store_failed(e: StoreError) -> Refusal {
    match e {
        StoreError::LimitReached(ks::Limit::SessionsPerEmse)
        | StoreError::LimitReached(ks::Limit::SubscriptionsPerSession)
        | StoreError::LimitReached(ks::Limit::SubscriptionsPerUe) => {
            refuse(ProblemCause::RateLimited, "limit reached")
        }
        StoreError::InvalidInput(_) => refuse(ProblemCause::Malformed, "invalid input"),
        _ => refuse(ProblemCause::Unavailable, "store unavailable"),
    }
}

/// Builds the [`Outcome`] of a decision: its one audit record, completed with the verdict,
/// the effects, and the answer for the peer.
fn finish<T>(
    mut record: AuditRecord,
    mut effects: Effects,
    result: Result<T, Refusal>,
) -> Outcome<T> {
    let result = match result {
        Ok(v) => {
            record.verdict = Verdict::Granted;
            Ok(v)
        }
        Err(r) => {
            record.verdict = Verdict::Refused(r.cause);
            record.reason = r.reason;
            // Problem responses carry the cause only: the detail text could leak what the
            // audit knows (which UE exists, whose session it is).
            Err(Problem::new(r.cause))
        }
    };
    // The decision's own audit record comes first, then any the decision added (a
    // registration that replaced its EMSE's oldest session records that session's end).
    let added = core::mem::replace(&mut effects.audit, AuditRecords::one(record));
    for extra in added.iter() {
        effects.audit.push(extra.clone());
    }
    Outcome { result, effects }
}

/// The EMKS: the key server's decisions over four stores, with no I/O of its own.
///
/// Every entry point takes the decoded message, the [`Peer`] the transport authenticated
/// and `now`, and returns an [`Outcome`]: the response or problem to send, notifications
/// to deliver and audit records to write. It is `Sync`: call it from any number of
/// threads or tasks.
///
/// The entry points are `async fn`s because the stores are (a networked backend awaits
/// its I/O); the core itself has no I/O, no runtime and no clock. Over the in-memory stores
/// every future is ready at once: await it in an async transport, or wait for it with
/// [`block_on`](e2m_keystore::block_on) in synchronous code.
///
/// The stores are type parameters, not `Arc<dyn …>`: an async trait method behind `dyn`
/// would need a boxed future (one allocation per store call, three on a key fetch), while
/// generics keep every call statically dispatched and inlined.
pub struct Emks<
    K = MemoryIntKeyStore,
    M = MemoryIdentityMap,
    S = MemorySessionStore,
    B = MemorySubscriptionStore,
> {
    keys: K,
    identities: M,
    sessions: S,
    subscriptions: B,
    config: EmksConfig,
}

impl Emks {
    /// An EMKS over the in-memory stores with their default policies.
    pub fn in_memory(config: EmksConfig) -> Self {
        Self::in_memory_with(
            config,
            RetentionPolicy::DEFAULT,
            SessionPolicy::DEFAULT,
            SubscriptionPolicy::DEFAULT,
        )
    }

    /// An EMKS over the in-memory stores with these policies.
    pub fn in_memory_with(
        config: EmksConfig,
        retention: RetentionPolicy,
        sessions: SessionPolicy,
        subscriptions: SubscriptionPolicy,
    ) -> Self {
        let subscriptions = MemorySubscriptionStore::new(subscriptions);
        Emks::new(
            config,
            // Linked, so that a push records its notifications in the key store's outbox.
            MemoryIntKeyStore::with_subscriptions(retention, &subscriptions),
            MemoryIdentityMap::new(),
            MemorySessionStore::new(sessions),
            subscriptions,
        )
    }
}

impl<K, M, S, B> core::fmt::Debug for Emks<K, M, S, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Emks")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<K, M, S, B> Emks<K, M, S, B>
where
    K: IntKeyStore,
    M: IdentityMap,
    S: SessionStore,
    B: SubscriptionStore,
{
    /// An EMKS over these stores.
    ///
    /// Any [`IntKeyStore`] will do: the core never reads an outbox. Notifications are the
    /// key store's work: a store that is also a [`NotificationOutbox`] records them with
    /// each push or sweep (the in-memory store does once linked to the subscriptions, see
    /// [`Emks::in_memory_with`]), and the transport's deliverer takes them from there. Over
    /// a key store without an outbox this is the EMKS **without notifications**:
    /// [`Emks::subscribe`] and [`Emks::unsubscribe`] need the outbox and are not available
    /// (so a transport cannot accept subscriptions that would never be served), and
    /// [`Effects::notifications_recorded`] has no deliverer to wake.
    pub fn new(config: EmksConfig, keys: K, identities: M, sessions: S, subscriptions: B) -> Self {
        Emks {
            keys,
            identities,
            sessions,
            subscriptions,
            config,
        }
    }

    /// The intermediate key store (and, if it keeps one, the outbox of the notifications
    /// its pushes and sweeps record: the transport's deliverer claims and settles them
    /// there).
    pub fn keys(&self) -> &K {
        &self.keys
    }

    /// The identity map (the operator provisions `(EMSE_Id, application identity) → IMSI`
    /// through it).
    pub fn identities(&self) -> &M {
        &self.identities
    }

    /// The session store.
    pub fn sessions(&self) -> &S {
        &self.sessions
    }

    /// The subscription store.
    pub fn subscriptions(&self) -> &B {
        &self.subscriptions
    }

    /// The configuration.
    pub fn config(&self) -> &EmksConfig {
        &self.config
    }

    /// Only an EMSE may register, fetch, subscribe and notify.
    fn emse_peer(peer: &Peer) -> Result<&EmseId, Refusal> {
        match peer {
            Peer::Emse(emse) => Ok(emse.id()),
            _ => Err(refuse(
                ProblemCause::EmseNotAuthorized,
                "peer is not an EMSE",
            )),
        }
    }

    /// A callback is accepted only for a host that the EMSE's certificate names, on a port
    /// the operator lets such hosts use (443 unless configured), or for a host and port the
    /// operator's allow-list names (issue 9 item 5, issue 16 item 4): refused here, it is
    /// never connected to.
    fn check_callback(&self, peer: &Peer, callback: &CallbackUri) -> Result<(), Refusal> {
        let Peer::Emse(emse) = peer else {
            return Err(refuse(
                ProblemCause::EmseNotAuthorized,
                "peer is not an EMSE",
            ));
        };
        let (host, port) = callback_target(callback).ok_or_else(|| {
            refuse(
                ProblemCause::EmseNotAuthorized,
                "callback host is not a DNS name or IP address",
            )
        })?;
        if self.config.callback_allowed(emse.hosts(), &host, port) {
            return Ok(());
        }
        let named = emse.hosts().iter().any(|named| named.covers(&host));
        Err(refuse(
            ProblemCause::EmseNotAuthorized,
            if named {
                "callback port not allowed for certificate-named hosts, nor on the allow-list"
            } else {
                "callback host neither named by the EMSE's certificate nor allowed"
            },
        ))
    }

    /// The live session named by `id`, which must be bound to the peer's identity.
    async fn session_of(
        &self,
        emse: &EmseId,
        id: &SessionId,
        now: Timestamp,
        record: &mut AuditRecord,
    ) -> Result<SessionInfo, Refusal> {
        let info = self
            .sessions
            .get(id, now)
            .await
            .map_err(store_failed)?
            .ok_or_else(|| refuse(ProblemCause::UnknownSession, "no such session"))?;
        record.session = Some(info.session);
        // A session id presented over another EMSE's certificate is refused, whatever the
        // request says: the session is bound to the identity that registered it. The peer
        // gets the answer a made-up id gets (issue 9 item 6: no oracle of which ids exist);
        // the audit record keeps the real reason and the session it named.
        if info.emse != *emse {
            return Err(refuse(
                ProblemCause::UnknownSession,
                "session bound to another EMSE",
            ));
        }
        Ok(info)
    }

    /// Resolves how the EMSE named the UE to an IMSI (seed 6.x.2.1, "Considerations on the
    /// user identity": case 2 through the identity map; case 1 only where allowed).
    async fn resolve_ue(&self, emse: &EmseId, ue: &UeRef) -> Result<Imsi, Refusal> {
        match ue {
            UeRef::AppIdentity(app) => self
                .identities
                .resolve(emse, app)
                .await
                .map_err(store_failed)?
                .ok_or_else(identity_not_provisioned),
            UeRef::Imsi(imsi) if self.config.imsi_allowed(emse) => Ok(imsi.clone()),
            UeRef::Imsi(_) => Err(refuse(
                ProblemCause::EmseNotAuthorized,
                "EMSE may not name UEs by IMSI",
            )),
        }
    }

    /// Initial registration by EMSE (seed 6.x.2.2.2.1): `POST /e2m/v1/sessions`.
    ///
    /// The EMSE_Id in the message must equal the certificate's, octet for octet (no case
    /// folding, trimming or Unicode normalisation: two spellings are two identities). The
    /// session is bound to that identity; every key fetched in it is derived for it. A
    /// callback, if given, is checked as a subscription's is (see [`Self::subscribe`]).
    ///
    /// An EMSE at its per-EMSE session limit ([`SessionPolicy::max_per_emse`]) is not
    /// refused: its oldest session ends (with its subscriptions, audited as
    /// `session-expired`, reason "replaced") and the new one takes its place. Only the
    /// EMSE's own certificate can register for it, so no one else can end its sessions
    /// this way; the limit on all sessions together still refuses with `rate-limited`.
    ///
    /// The transport answers 201 Created with `Location:
    /// e2m_msg::rest::session_path(&result.session_id)` and the result as the body.
    pub async fn register(
        &self,
        peer: &Peer,
        registration: &Registration,
        now: Timestamp,
    ) -> Outcome<RegistrationResult> {
        let mut record = AuditRecord::new(now, Action::Register, Some(peer));
        let mut effects = Effects::default();
        let result = self
            .try_register(peer, registration, now, &mut record, &mut effects)
            .await;
        finish(record, effects, result)
    }

    /// Ends the EMSE's oldest session and its subscriptions, with an audit record of its
    /// own (action `session-expired`, reason: replaced).
    async fn replace_oldest_session(
        &self,
        emse: &EmseId,
        now: Timestamp,
        effects: &mut Effects,
    ) -> Result<(), Refusal> {
        let evicted = self
            .sessions
            .evict_oldest(emse)
            .await
            .map_err(store_failed)?;
        if let Some(old) = evicted {
            let mut ended = AuditRecord::new(now, Action::SessionExpired, None);
            ended.session = Some(old.session);
            ended.verdict = Verdict::Granted;
            ended.reason = "replaced by a new registration of its EMSE (session limit)";
            if self
                .subscriptions
                .remove_session(old.session)
                .await
                .is_err()
            {
                ended.verdict = Verdict::Refused(ProblemCause::Unavailable);
                ended.reason =
                    "replaced by a new registration; subscriptions not removed: store unavailable";
            }
            effects.audit.push(ended);
        }
        Ok(())
    }

    async fn try_register(
        &self,
        peer: &Peer,
        registration: &Registration,
        now: Timestamp,
        record: &mut AuditRecord,
        effects: &mut Effects,
    ) -> Result<RegistrationResult, Refusal> {
        let emse = Self::emse_peer(peer)?;
        if registration.emse_id.as_bytes() != emse.as_bytes() {
            return Err(refuse(
                ProblemCause::EmseNotAuthorized,
                "EMSE_Id differs from the certificate identity",
            ));
        }
        if let Some(callback) = &registration.callback {
            self.check_callback(peer, callback)?;
        }
        let (id, info) = match self.sessions.create(emse, now).await {
            Err(StoreError::LimitReached(ks::Limit::SessionsPerEmse)) => {
                // The EMSE is at its own limit: its oldest session makes way, so that an
                // EMSE that lost its session ids (crash loop, restart without
                // deregistering) is never locked out (issue 9 item 11). It is the EMSE's
                // own certificate asking; the oldest session's subscriptions end with it.
                self.replace_oldest_session(emse, now, effects).await?;
                self.sessions
                    .create(emse, now)
                    .await
                    .map_err(store_failed)?
            }
            created => created.map_err(store_failed)?,
        };
        record.session = Some(info.session);
        Ok(RegistrationResult {
            session_id: id,
            expires: info.expires,
        })
    }

    /// Obtaining a UE-specific `e2m_key` (seed 6.x.2.2.2.2; 6.x.2.3 steps 5 and 6):
    /// `GET /e2m/v1/sessions/{session}/keys?…`.
    ///
    /// The EMKS "selects the right e2m_int_key with the help of the key identifier and
    /// computes e2m_key using the EMSE_Id as input" — the EMSE_Id bound to the session, never
    /// one from the request. A key id not held (never pushed, evicted, expired) gives
    /// [`ProblemCause::KeyNotAvailable`]: the UE must re-authenticate. The key's expiry is
    /// the intermediate key's: a derived key never outlives the key it came from.
    ///
    /// The transport answers 200 with `Cache-Control: no-store`.
    pub async fn fetch_key(
        &self,
        peer: &Peer,
        request: &KeyRequest,
        now: Timestamp,
    ) -> Outcome<KeyResponse> {
        let mut record = AuditRecord::new(now, Action::FetchKey, Some(peer));
        record.ue = Some(request.ue.clone());
        record.key_id = Some(request.key_id);
        let result = self.try_fetch_key(peer, request, now, &mut record).await;
        finish(record, Effects::default(), result)
    }

    async fn try_fetch_key(
        &self,
        peer: &Peer,
        request: &KeyRequest,
        now: Timestamp,
        record: &mut AuditRecord,
    ) -> Result<KeyResponse, Refusal> {
        let emse = Self::emse_peer(peer)?;
        let session = self
            .session_of(emse, &request.session_id, now, record)
            .await?;
        let held = self
            .held_key_of(&session.emse, &request.ue, request.key_id, now, record)
            .await?;
        // The profile was validated when the configuration was built.
        let key = e2m_keyid::e2m_key(&held.key, &session.emse, self.config.profile())
            .map_err(|_| refuse(ProblemCause::Internal, "derivation failed"))?;
        Ok(KeyResponse {
            ue: request.ue.clone(),
            key_id: request.key_id,
            key,
            expires: held.info.expires,
        })
    }

    /// The UE's live key `key_id`, the UE named as the EMSE named it (seed 6.x.2.3 step 7:
    /// resolve, then select by key id). By application identity this is one call of
    /// [`IdentityMap::resolve_key`], which a backend holding the map and the keys in one
    /// database answers with one query; by IMSI (where allowed) one key read. Either way
    /// `record.imsi` names the UE once it is resolved, also when the key read fails.
    async fn held_key_of(
        &self,
        emse: &EmseId,
        ue: &UeRef,
        key_id: KeyId,
        now: Timestamp,
        record: &mut AuditRecord,
    ) -> Result<HeldKey, Refusal> {
        let not_held = || refuse(ProblemCause::KeyNotAvailable, "key id not held");
        let UeRef::AppIdentity(app) = ue else {
            let imsi = self.resolve_ue(emse, ue).await?;
            let held = self.keys.get(&imsi, key_id, now).await;
            record.imsi = Some(imsi);
            return held.map_err(store_failed)?.ok_or_else(not_held);
        };
        match self
            .identities
            .resolve_key(&self.keys, emse, app, key_id, now)
            .await
        {
            Ok(IdentityKey::Held { imsi, key }) => {
                record.imsi = Some(imsi);
                Ok(key)
            }
            Ok(IdentityKey::NotHeld { imsi }) => {
                record.imsi = Some(imsi);
                Err(not_held())
            }
            Ok(IdentityKey::UnknownIdentity) => Err(identity_not_provisioned()),
            Err(failed) => {
                record.imsi = failed.imsi;
                Err(store_failed(failed.error))
            }
        }
    }

    /// Deregistration by EMSE (seed 6.x.2.2.2.3): `DELETE /e2m/v1/sessions/{session}`.
    /// Ends the session and its subscriptions. The transport answers 204.
    pub async fn deregister(
        &self,
        peer: &Peer,
        request: &Deregistration,
        now: Timestamp,
    ) -> Outcome<()> {
        let mut record = AuditRecord::new(now, Action::Deregister, Some(peer));
        let result = self.try_deregister(peer, request, now, &mut record).await;
        finish(record, Effects::default(), result)
    }

    async fn try_deregister(
        &self,
        peer: &Peer,
        request: &Deregistration,
        now: Timestamp,
        record: &mut AuditRecord,
    ) -> Result<(), Refusal> {
        let emse = Self::emse_peer(peer)?;
        self.session_of(emse, &request.session_id, now, record)
            .await?;
        let info = self
            .sessions
            .remove(&request.session_id)
            .await
            .map_err(store_failed)?
            .ok_or_else(|| refuse(ProblemCause::UnknownSession, "no such session"))?;
        self.subscriptions
            .remove_session(info.session)
            .await
            .map_err(store_failed)?;
        Ok(())
    }

    /// The subscriber's newest live session (subscriptions and notifications name none).
    async fn newest_session(&self, emse: &EmseId, now: Timestamp) -> Result<SessionInfo, Refusal> {
        self.sessions
            .of_emse(emse, now)
            .await
            .map_err(store_failed)?
            .pop()
            .ok_or_else(|| refuse(ProblemCause::UnknownSession, "EMSE has no live session"))
    }

    /// Subscription to notification by the EMKS (seed 6.x.2.2.2, its editor's note leaves
    /// the events ffs): `POST /e2m/v1/subscriptions`.
    ///
    /// The message names no session, so the subscription belongs to the subscriber's newest
    /// live session (found by its certificate identity) and ends with it; without a live
    /// session the answer is [`ProblemCause::UnknownSession`]. A UE filter by application
    /// identity must resolve for this EMSE; a filter by IMSI, or no filter at all (whose
    /// notifications must then name UEs by IMSI), needs the EMSE's IMSI permission.
    /// `key-in-use` is an EMSE → EMKS event and cannot be subscribed to here. The callback
    /// must name a host the EMSE's certificate names on a port the operator lets such hosts
    /// use (443 unless [`EmksConfig::allow_certificate_callback_ports`] says more), or a
    /// host and port on the operator's allow-list ([`EmksConfig::allow_callback`]);
    /// otherwise [`ProblemCause::EmseNotAuthorized`], and the EMKS never connects to it.
    ///
    /// One push's fan-out is bounded (issue 16 item 4): an EMSE holds at most
    /// [`SubscriptionPolicy::max_per_ue`] subscriptions for one UE (and as many without a
    /// filter). An EMSE at that limit is not refused: its oldest subscription for that UE
    /// ends (audited as `unsubscribe`, reason "replaced") and the new one takes its place,
    /// so an EMSE that restarted without unsubscribing is never locked out of its UEs.
    ///
    /// The transport answers 201 with `Location: e2m_msg::rest::subscription_path(&id)`.
    ///
    /// Only over a key store that records notifications (a [`NotificationOutbox`]): see
    /// [`Emks::new`].
    pub async fn subscribe(
        &self,
        peer: &Peer,
        subscription: &Subscription,
        now: Timestamp,
    ) -> Outcome<SubscriptionResult>
    where
        K: NotificationOutbox,
    {
        let mut record = AuditRecord::new(now, Action::Subscribe, Some(peer));
        record.ue = subscription.ue.clone();
        let mut effects = Effects::default();
        let result = self
            .try_subscribe(peer, subscription, now, &mut record, &mut effects)
            .await;
        finish(record, effects, result)
    }

    /// Ends `emse`'s oldest subscription with the UE filter `imsi` (none: unfiltered), with
    /// an audit record of its own (action `unsubscribe`, reason: replaced).
    async fn replace_oldest_subscription(
        &self,
        emse: &EmseId,
        imsi: Option<&Imsi>,
        now: Timestamp,
        effects: &mut Effects,
    ) -> Result<(), Refusal> {
        let held = self
            .subscriptions
            .of_emse_for_ue(emse, imsi)
            .await
            .map_err(store_failed)?;
        if let Some((id, oldest)) = held.into_iter().next() {
            let removed = self
                .subscriptions
                .remove(oldest.session, id)
                .await
                .map_err(store_failed)?;
            if removed.is_some() {
                let mut ended = AuditRecord::new(now, Action::Unsubscribe, None);
                ended.session = Some(oldest.session);
                ended.subscription = Some(id);
                ended.imsi = imsi.cloned();
                ended.verdict = Verdict::Granted;
                ended.reason = "replaced by a new subscription of its EMSE (per-UE limit)";
                effects.audit.push(ended);
            }
        }
        Ok(())
    }

    async fn try_subscribe(
        &self,
        peer: &Peer,
        subscription: &Subscription,
        now: Timestamp,
        record: &mut AuditRecord,
        effects: &mut Effects,
    ) -> Result<SubscriptionResult, Refusal> {
        let emse = Self::emse_peer(peer)?;
        if subscription.events.contains(EventType::KeyInUse) {
            return Err(refuse(
                ProblemCause::Malformed,
                "key-in-use is reported by EMSEs, not subscribed to",
            ));
        }
        self.check_callback(peer, &subscription.callback)?;
        let session = self.newest_session(emse, now).await?;
        record.session = Some(session.session);
        let ue = match &subscription.ue {
            Some(ue) => {
                let imsi = self.resolve_ue(emse, ue).await?;
                record.imsi = Some(imsi.clone());
                Some(UeFilter {
                    imsi,
                    name: ue.clone(),
                })
            }
            None if self.config.imsi_allowed(emse) => None,
            None => {
                return Err(refuse(
                    ProblemCause::EmseNotAuthorized,
                    "a subscription to every UE needs IMSI permission",
                ));
            }
        };
        let imsi = ue.as_ref().map(|filter| filter.imsi.clone());
        let new = SubscriptionRecord {
            session: session.session,
            emse: emse.clone(),
            events: subscription.events,
            ue,
            callback: subscription.callback.as_str().to_owned(),
        };
        let id = match self.subscriptions.add(new.clone()).await {
            Err(StoreError::LimitReached(ks::Limit::SubscriptionsPerUe)) => {
                // The EMSE holds its limit of subscriptions for this UE (the bound on one
                // push's fan-out, issue 16 item 4): its oldest one makes way, so that an
                // EMSE that restarted without unsubscribing is never locked out of its
                // UEs' events. Only its own certificate can do this to its subscriptions.
                self.replace_oldest_subscription(emse, imsi.as_ref(), now, effects)
                    .await?;
                self.subscriptions.add(new).await.map_err(store_failed)?
            }
            added => added.map_err(store_failed)?,
        };
        record.subscription = Some(id);
        Ok(SubscriptionResult {
            subscription_id: id,
            expires: session.expires,
        })
    }

    /// Removes a subscription: `DELETE /e2m/v1/subscriptions/{id}`. Only a session of the
    /// EMSE that made it may; to anyone else it does not exist. The transport answers 204.
    /// Only over a key store that records notifications, as [`Emks::subscribe`].
    pub async fn unsubscribe(&self, peer: &Peer, id: &SubscriptionId, now: Timestamp) -> Outcome<()>
    where
        K: NotificationOutbox,
    {
        let mut record = AuditRecord::new(now, Action::Unsubscribe, Some(peer));
        record.subscription = Some(*id);
        let result = self.try_unsubscribe(peer, *id, now, &mut record).await;
        finish(record, Effects::default(), result)
    }

    async fn try_unsubscribe(
        &self,
        peer: &Peer,
        id: SubscriptionId,
        now: Timestamp,
        record: &mut AuditRecord,
    ) -> Result<(), Refusal> {
        let emse = Self::emse_peer(peer)?;
        let sessions = self
            .sessions
            .of_emse(emse, now)
            .await
            .map_err(store_failed)?;
        for session in sessions {
            if self
                .subscriptions
                .remove(session.session, id)
                .await
                .map_err(store_failed)?
                .is_some()
            {
                record.session = Some(session.session);
                return Ok(());
            }
        }
        Err(refuse(
            ProblemCause::UnknownSubscription,
            "no such subscription",
        ))
    }

    /// A notification from an EMSE (seed 6.x.2.2.2, "Notification by EMSE"): `POST
    /// /e2m/v1/notifications`, e.g. the key id a UE is now using (`key-in-use`, which tells
    /// the EMKS that the seed's race cases a and b are resolved for that UE).
    ///
    /// Accepted only from an EMSE with a live session, only for `key-in-use`, and only
    /// about a UE that EMSE may name; it is recorded in the audit (the EMKS keeps its
    /// retention unchanged: a later push or the maximum age retires older keys). The
    /// transport answers 204.
    pub async fn notify(
        &self,
        peer: &Peer,
        notification: &Notification,
        now: Timestamp,
    ) -> Outcome<()> {
        let mut record = AuditRecord::new(now, Action::Notify, Some(peer));
        record.ue = Some(notification.ue.clone());
        record.key_id = Some(notification.key_id);
        let result = self.try_notify(peer, notification, now, &mut record).await;
        finish(record, Effects::default(), result)
    }

    async fn try_notify(
        &self,
        peer: &Peer,
        notification: &Notification,
        now: Timestamp,
        record: &mut AuditRecord,
    ) -> Result<(), Refusal> {
        let emse = Self::emse_peer(peer)?;
        let session = self.newest_session(emse, now).await?;
        record.session = Some(session.session);
        if notification.event != EventType::KeyInUse {
            return Err(refuse(
                ProblemCause::Malformed,
                "an EMSE may only report key-in-use",
            ));
        }
        let imsi = self.resolve_ue(emse, &notification.ue).await?;
        record.imsi = Some(imsi);
        record.reason = "key in use reported";
        Ok(())
    }

    /// The HSS pushes an intermediate key (seed 6.x.2.1 step 1: "The HSS then pushes the
    /// e2m_int_key to the EMKS"): `POST /e2m/v1/intermediate-keys`. The transport answers
    /// 204 and delivers the notifications (`key-available` for the new key, `key-retired`
    /// for one evicted or replaced) to the matching subscribers.
    ///
    /// The key id is RAND-LSB32 from the HSS (alternative 1) or computed here, once, as the
    /// short hash (alternative 2). A creation time in the future is taken as `now`, so that
    /// no push can stretch a key's life past the maximum age. A key that is already expired
    /// or older than every retained key is acknowledged but not stored (the audit says so).
    ///
    /// The push is borrowed: its key stays where the transport decoded it and is zeroized
    /// once, when the transport drops the message, rather than being moved through (and
    /// left behind in) the decision's future.
    pub async fn push_intermediate_key(
        &self,
        peer: &Peer,
        push: &IntermediateKeyPush,
        now: Timestamp,
    ) -> Outcome<()> {
        let mut record = AuditRecord::new(now, Action::PushIntermediateKey, Some(peer));
        record.imsi = Some(push.imsi.clone());
        let mut effects = Effects::default();
        let result = self
            .try_push_intermediate_key(peer, push, now, &mut record, &mut effects)
            .await;
        finish(record, effects, result)
    }

    async fn try_push_intermediate_key(
        &self,
        peer: &Peer,
        push: &IntermediateKeyPush,
        now: Timestamp,
        record: &mut AuditRecord,
        effects: &mut Effects,
    ) -> Result<(), Refusal> {
        if !matches!(peer, Peer::Hss(_)) {
            return Err(refuse(
                ProblemCause::EmseNotAuthorized,
                "peer is not the HSS",
            ));
        }
        let key_id = match push.key_id {
            KeyIdSource::RandLsb32(id) => id,
            KeyIdSource::ShortHash => KeyId::short_hash(&push.int_key, self.config.profile())
                .map_err(|_| refuse(ProblemCause::Internal, "short hash failed"))?,
            // A key id scheme a later e2m-msg defines and this core does not implement.
            _ => {
                return Err(refuse(
                    ProblemCause::Malformed,
                    "key id scheme not supported",
                ));
            }
        };
        record.key_id = Some(key_id);
        let created = push.created.min(now);
        let outcome = self
            .keys
            .push(&push.imsi, key_id, &push.int_key, created, now)
            .await
            .map_err(store_failed)?;
        record.reason = match outcome {
            PushOutcome::Stored { evicted: None } => "stored",
            PushOutcome::Stored { evicted: Some(_) } => "stored, oldest evicted",
            PushOutcome::Replaced => "replaced the key with this id",
            PushOutcome::Unchanged => "already held",
            PushOutcome::Stale => "older than every retained key: not stored",
            PushOutcome::Expired => "already expired: not stored",
            _ => "not stored",
        };
        // The store recorded the notifications this push causes (`key-retired` for a key
        // evicted or replaced, `key-available` for the new one) in the push's own
        // transaction: the transport's deliverer takes them from its outbox.
        effects.notifications_recorded = ks::events_of_push(&outcome, key_id)
            .iter()
            .any(Option::is_some);
        Ok(())
    }

    /// Time-driven upkeep: ends expired sessions (and their subscriptions, whose pending
    /// notifications go with them) and removes expired intermediate keys (the store records
    /// `key-retired` notifications in the same transaction). The transport calls it
    /// periodically (e.g. every minute); correctness does not depend on it (nothing expired
    /// is ever served), only memory does.
    pub async fn expire(&self, now: Timestamp) -> Effects {
        let mut effects = Effects::default();
        self.expire_sessions(now, &mut effects).await;
        self.expire_keys(now, &mut effects).await;
        effects
    }

    async fn expire_sessions(&self, now: Timestamp, effects: &mut Effects) {
        match self.sessions.sweep(now).await {
            Ok(expired) => {
                for s in expired {
                    let mut record = AuditRecord::new(now, Action::SessionExpired, None);
                    record.session = Some(s.session);
                    if self.subscriptions.remove_session(s.session).await.is_err() {
                        record.verdict = Verdict::Refused(ProblemCause::Unavailable);
                        record.reason = "subscriptions not removed: store unavailable";
                    }
                    effects.audit.push(record);
                }
            }
            Err(_) => {
                let mut record = AuditRecord::new(now, Action::SessionExpired, None);
                record.verdict = Verdict::Refused(ProblemCause::Unavailable);
                record.reason = "session sweep failed: store unavailable";
                effects.audit.push(record);
            }
        }
    }

    async fn expire_keys(&self, now: Timestamp, effects: &mut Effects) {
        let mut record = AuditRecord::new(now, Action::KeysExpired, None);
        let retired = match self.keys.sweep(now).await {
            Ok(retired) => {
                record.count = retired.len();
                retired
            }
            Err(_) => {
                record.verdict = Verdict::Refused(ProblemCause::Unavailable);
                record.reason = "key sweep failed: store unavailable";
                Vec::new()
            }
        };
        effects.notifications_recorded |= !retired.is_empty();
        effects.audit.push(record);
    }

    /// What to send for an entry claimed from the store's outbox
    /// ([`NotificationOutbox::claim_due`]): the notification, with the entry's stable id,
    /// naming the UE as that subscriber named it, for the subscriber's EMSE at its callback.
    ///
    /// `None` for an entry that must not be sent (the transport settles it as done): an
    /// unfiltered subscription of an EMSE no longer allowed to see IMSIs (the permission
    /// was withdrawn since it subscribed), a callback that no longer validates or whose
    /// port the configuration no longer allows (neither a certificate port nor on the
    /// allow-list), or an event that is not an EMKS → EMSE event.
    pub fn outbound(&self, pending: &PendingNotification) -> Option<OutboundNotification> {
        if !matches!(
            pending.event,
            EventType::KeyAvailable | EventType::KeyRetired
        ) {
            return None;
        }
        let sub = &pending.record;
        let ue = match &sub.ue {
            Some(filter) => filter.name.clone(),
            None if self.config.imsi_allowed(&sub.emse) => UeRef::Imsi(pending.imsi.clone()),
            None => return None,
        };
        // The store keeps the callback as the text the subscription carried (validated
        // then); one that no longer validates names nowhere to deliver to, and one whose
        // port this configuration no longer allows (a subscription stored before the port
        // rule, or before the operator narrowed it) is not connected to. (The host was
        // checked against the certificate at subscription time; the notifier's TLS check
        // demands that EMSE's certificate again on every connection.)
        let callback = e2m_msg::CallbackUri::new(&sub.callback).ok()?;
        let (host, port) = callback_target(&callback)?;
        if !(self.config.certificate_port_allowed(port)
            || self.config.allow_list_covers(&host, port))
        {
            return None;
        }
        Some(OutboundNotification {
            callback,
            notification: Notification {
                subscription_id: pending.subscription,
                event: pending.event,
                ue,
                key_id: pending.key_id,
                time: pending.time,
                id: Some(NotificationId::from_u64(pending.id)),
            },
            session: sub.session,
            emse: sub.emse.clone(),
        })
    }
}
