//! The AAnF's decisions: one entry point per operation of Naanf_AKMA (TS 29.535) and of the
//! NEF's AKMA API (TS 29.522), over an [`AkmaContexts`] store.

use e2m_akma::{
    AkmaAfKeyData, AkmaAfKeyRequest, AkmaKeyInfo, CtxRemove, DecodeError, NefAkmaAfKeyData,
    NotifUri, Operation, ServiceDisableNotif, UeId, cause,
};
use e2m_kdf::Kaf;
use e2m_keyid::akma::{AKid, AfId, Fqdn, kaf};
use e2m_keystore::{
    AkmaContext, AkmaContexts, AkmaOutbox, AkmaPendingNotification, AkmaPolicy, AkmaRegistered,
    Limit, MemoryAkmaContexts, NotifyTarget, StoreError,
};
use e2m_types::Timestamp;

use crate::audit::{Action, AuditRecord, Effects, Outcome, Problem, Role, Verdict};
use crate::{AanfConfig, AfPolicy, Caller, Host, Scope};

/// A refusal: the problem the peer is told, and the reason the audit records.
struct Refusal {
    problem: Problem,
    reason: &'static str,
}

const fn refuse(problem: Problem, reason: &'static str) -> Refusal {
    Refusal { problem, reason }
}

fn store_failed(e: &StoreError) -> Refusal {
    match e {
        StoreError::LimitReached(Limit::NotifyTargetsPerUe) => refuse(
            Problem::INSUFFICIENT_RESOURCES,
            "notification targets of this UE at their limit",
        ),
        _ => refuse(Problem::SYSTEM_FAILURE, "store failed"),
    }
}

/// Completes the decision's audit record with its verdict and builds the [`Outcome`].
/// `Ok(None)` is a retrieval's "no context" (204).
fn finish<T>(mut audit: AuditRecord, result: Result<T, Refusal>, notified: bool) -> Outcome<T> {
    let result = match result {
        Ok(v) => Ok(v),
        Err(r) => {
            audit.verdict = Verdict::Refused(r.problem);
            audit.reason = r.reason;
            Err(r.problem)
        }
    };
    Outcome {
        result,
        effects: Effects {
            audit,
            notifications_recorded: notified,
        },
    }
}

/// The K_AF of a retrieval, and what the context it came from says.
struct Derived {
    kaf: Kaf,
    expiry: Timestamp,
    ue: UeId,
}

/// A service-disablement notification for the binding to POST (TS 29.535 §5.1.5.2): the
/// body to `uri`, a server whose certificate must name the URI's host (the host was checked
/// against the requester's certificate when the `notifUri` was given). The AF answers 204;
/// the binding then settles entry `id` ([`AkmaOutbox::delivered`]), or on a failure
/// retries it later ([`AkmaOutbox::retry_at`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundNotification {
    /// The outbox entry (the same on every attempt).
    pub id: u64,
    /// The AF the notification is about (the key for per-AF delivery lanes).
    pub af: Fqdn,
    /// Where to POST it.
    pub uri: NotifUri,
    /// What to POST (`application/json`).
    pub body: ServiceDisableNotif,
}

/// The AAnF: its decisions over an AKMA context store, with no I/O of its own.
///
/// Every entry point takes the [`Caller`] the binding authenticated (certificate names and,
/// where validated, the token's scopes), the decoded body and `now`, and returns an
/// [`Outcome`]: the body or [`Problem`] to answer with, and [`Effects`] (one audit record;
/// whether notifications were recorded). Like [`e2m_keystore`]'s traits the entry points
/// are `async` (a networked store awaits its I/O); over the in-memory store every future is
/// ready at once ([`e2m_keystore::block_on`] waits for one in synchronous code).
///
/// The store is a type parameter, not an `Arc<dyn …>`: a trait object's async methods would
/// box a future per store call.
pub struct Aanf<C = MemoryAkmaContexts> {
    contexts: C,
    config: AanfConfig,
}

impl Aanf {
    /// An AAnF over an in-memory store applying `policy`.
    pub fn in_memory(config: AanfConfig, policy: AkmaPolicy) -> Aanf {
        Aanf::new(config, MemoryAkmaContexts::new(policy))
    }
}

impl<C> core::fmt::Debug for Aanf<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Aanf")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C: AkmaContexts + AkmaOutbox> Aanf<C> {
    /// An AAnF over `contexts`.
    pub fn new(config: AanfConfig, contexts: C) -> Aanf<C> {
        Aanf { contexts, config }
    }

    /// The store (and its outbox, which the binding's deliverer claims from).
    pub fn contexts(&self) -> &C {
        &self.contexts
    }

    /// The configuration.
    pub fn config(&self) -> &AanfConfig {
        &self.config
    }

    /// Where tokens are required, the token must be there and carry every scope in `needed`.
    fn check_token(&self, caller: &Caller, needed: &[Scope]) -> Result<(), Refusal> {
        if !self.config.tokens_required() {
            return Ok(());
        }
        let Some(scopes) = caller.token() else {
            return Err(refuse(Problem::UNAUTHENTICATED, "no access token"));
        };
        if needed.iter().all(|s| scopes.contains(*s)) {
            Ok(())
        } else {
            Err(refuse(
                Problem::SCOPE_MISSING,
                "access token lacks the operation's scope",
            ))
        }
    }

    /// Whether the token (where tokens are required) carries `scope`; without required
    /// tokens, mutual TLS and the AF's policy decide alone.
    fn token_allows(&self, caller: &Caller, scope: Scope) -> bool {
        !self.config.tokens_required() || caller.token().is_some_and(|s| s.contains(scope))
    }

    /// Only a configured AUSF registers and removes contexts.
    fn check_ausf(&self, caller: &Caller, audit: &mut AuditRecord) -> Result<(), Refusal> {
        if !self.config.is_ausf(caller.peer().names()) {
            return Err(refuse(Problem::FORBIDDEN, "peer is not a configured AUSF"));
        }
        audit.role = Some(Role::Ausf);
        self.check_token(caller, &[Scope::NaanfAkma, Scope::AnchorKey])
    }

    /// The notification target of a request's `notifUri`, for AF `af`: its host must be
    /// one the caller's certificate names, or one the operator allows, so that the AAnF
    /// never connects where the caller could not have it connect otherwise.
    fn notify_target(
        &self,
        caller: &Caller,
        af: &Fqdn,
        uri: Option<&NotifUri>,
    ) -> Result<Option<NotifyTarget>, Refusal> {
        let Some(uri) = uri else { return Ok(None) };
        let host = Host::of_uri(uri).ok_or(refuse(
            Problem::FORBIDDEN,
            "notifUri host is not a DNS name or IP address",
        ))?;
        if !caller.peer().covers(&host) && !self.config.notify_host_allowed(&host) {
            return Err(refuse(
                Problem::FORBIDDEN,
                "notifUri host neither named by the caller's certificate nor allowed",
            ));
        }
        NotifyTarget::new(*af, uri.as_str())
            .map(Some)
            .map_err(|_| refuse(Problem::FORBIDDEN, "notifUri not storable"))
    }

    /// The context of `a_kid` (storing `notify` with it) and K_AF for `af_id`, expiring at
    /// `min(K_AKMA expiry, now + K_AF lifetime)`; `None` without a live context.
    async fn derive(
        &self,
        a_kid: &AKid,
        af_id: &AfId,
        notify: Option<&NotifyTarget>,
        now: Timestamp,
        audit: &mut AuditRecord,
    ) -> Result<Option<Derived>, Refusal> {
        let found = self
            .contexts
            .retrieve(a_kid, notify, now)
            .await
            .map_err(|e| store_failed(&e))?;
        let Some(AkmaContext {
            ue,
            k_akma,
            expires,
            ..
        }) = found
        else {
            return Ok(None);
        };
        audit.ue = Some(ue);
        let kaf = kaf(&k_akma, af_id)
            .map_err(|_| refuse(Problem::SYSTEM_FAILURE, "K_AF derivation failed"))?;
        // K_AF never outlives the K_AKMA it comes from.
        let expiry = expires.min(now.saturating_add(self.config.kaf_lifetime()));
        audit.kaf_expiry = Some(expiry);
        Ok(Some(Derived { kaf, expiry, ue }))
    }

    /// `Naanf_AKMA_AnchorKey_Register` (TS 33.535 §6.1 steps 4–5, §7.1.2; TS 29.535
    /// §4.2.2.2, §5.1.4.2): `POST /naanf-akma/v1/register-anchorkey` from a configured AUSF.
    ///
    /// The context replaces the UE's previous one and its A-KID ("the AAnF shall store the
    /// latest information"): from the moment this returns, the old A-KID gets the "no
    /// context" answer. An A-KID that another UE's live context holds is refused (400
    /// `MANDATORY_IE_INCORRECT` on `/aKId`) and changes nothing.
    ///
    /// The binding answers 200 with the result (the schema's `AkmaKeyInfo`, as registered).
    pub async fn register_anchor_key(
        &self,
        caller: &Caller,
        info: &AkmaKeyInfo,
        now: Timestamp,
    ) -> Outcome<AkmaKeyInfo> {
        let mut audit = AuditRecord::new(
            now,
            Action::Request(Operation::RegisterAnchorKey),
            Some(caller.peer()),
        );
        audit.ue = Some(info.ue);
        audit.a_kid = Some(info.a_kid);
        let result = self.try_register(caller, info, now, &mut audit).await;
        finish(audit, result, false)
    }

    async fn try_register(
        &self,
        caller: &Caller,
        info: &AkmaKeyInfo,
        now: Timestamp,
        audit: &mut AuditRecord,
    ) -> Result<AkmaKeyInfo, Refusal> {
        self.check_ausf(caller, audit)?;
        let registered = self
            .contexts
            .register(&info.ue, &info.a_kid, &info.k_akma, now)
            .await
            .map_err(|e| store_failed(&e))?;
        audit.reason = match registered {
            AkmaRegistered::Stored => "stored",
            AkmaRegistered::Replaced { .. } => "replaced the UE's context",
            AkmaRegistered::AKidTaken => {
                let mut problem = Problem::new(400, Some(cause::MANDATORY_IE_INCORRECT));
                problem.invalid_param = Some(("/aKId", "A-KID of another UE's context"));
                return Err(refuse(problem, "A-KID held by another UE's live context"));
            }
            _ => "stored",
        };
        Ok(AkmaKeyInfo {
            ue: info.ue,
            a_kid: info.a_kid,
            k_akma: info.k_akma.copy_secret(),
            supp_feat: None,
        })
    }

    /// `Naanf_AKMA_ApplicationKey_Get` and its anonymous variant
    /// `Naanf_AKMA_ApplicationKey_AnonUser_Get` (TS 33.535 §6.2, §7.1.3, §7.1.5; TS 29.535
    /// §4.2.2.3, §5.1.4.3): `POST /naanf-akma/v1/retrieve-applicationkey`.
    ///
    /// From an AF: the `afId`'s FQDN must be a DNS name of the AF's certificate (exactly,
    /// not through a wildcard) and a configured AF inside the operator's domain; a body
    /// naming another FQDN is refused (403), never served for the name it gives. From a
    /// configured NEF: as [`Self::nef_retrieve`] (the NEF names the AF; never the SUPI).
    ///
    /// `Ok(Some(data))`: 200 with K_AF for the AF_ID, expiring at
    /// `min(K_AKMA expiry, now + K_AF lifetime)`, the SUPI where the AF's policy (and
    /// where tokens are required, the scope `…:supi-access`) allows it and the context was
    /// registered by SUPI, the GPSI where the policy allows and the context was registered
    /// by GPSI; neither for `anonInd`. `Ok(None)`: 204, for an A-KID never registered,
    /// expired, removed or replaced alike. A `notifUri` is kept for the UE's service
    /// disablement (its host must be one the certificate names or the operator allows).
    pub async fn retrieve_application_key(
        &self,
        caller: &Caller,
        request: &AkmaAfKeyRequest,
        now: Timestamp,
    ) -> Outcome<Option<AkmaAfKeyData>> {
        let mut audit = AuditRecord::new(
            now,
            Action::Request(Operation::RetrieveApplicationKey),
            Some(caller.peer()),
        );
        audit.a_kid = Some(request.a_kid);
        audit.af_id = Some(request.af_id);
        let result = if self.config.is_nef(caller.peer().names()) {
            self.try_nef_as_consumer(caller, request, now, &mut audit)
                .await
                .map(|data| {
                    data.map(|d| AkmaAfKeyData {
                        kaf: d.kaf,
                        expiry: d.expiry,
                        supi: None,
                        gpsi: d.gpsi,
                        supp_feat: None,
                    })
                })
        } else {
            self.try_retrieve(caller, request, now, &mut audit).await
        };
        if matches!(result, Ok(None)) {
            audit.verdict = Verdict::NoContext;
            audit.reason = "no live context for this A-KID";
        }
        finish(audit, result, false)
    }

    /// The AF named by the certificate and the body alike, and its policy.
    fn af_of(&self, caller: &Caller, af_id: &AfId) -> Result<AfPolicy, Refusal> {
        let fqdn = af_id.fqdn();
        if !caller.peer().has_fqdn(fqdn) {
            return Err(refuse(
                Problem::FORBIDDEN,
                "afId names an FQDN the certificate does not",
            ));
        }
        self.config
            .af(fqdn)
            .ok_or(refuse(Problem::FORBIDDEN, "AF not allowed AKMA"))
    }

    async fn try_retrieve(
        &self,
        caller: &Caller,
        request: &AkmaAfKeyRequest,
        now: Timestamp,
        audit: &mut AuditRecord,
    ) -> Result<Option<AkmaAfKeyData>, Refusal> {
        let policy = self.af_of(caller, &request.af_id)?;
        audit.role = Some(Role::Af);
        if !policy.inside_domain() {
            return Err(refuse(
                Problem::FORBIDDEN,
                "AF outside the operator's domain: only through the NEF",
            ));
        }
        self.check_token(caller, &[Scope::NaanfAkma, Scope::ApplicationKeyGet])?;
        // The AF_ID's FQDN is the certificate's (checked above); the Ua* protocol can only
        // come from the body, and a K_AF for another protocol of the same AF is a key that
        // AF may have anyway.
        let af_id = AfId::new(*request.af_id.fqdn(), request.af_id.ua_protocol());
        let notify = self.notify_target(caller, af_id.fqdn(), request.notif_uri.as_ref())?;
        let Some(d) = self
            .derive(&request.a_kid, &af_id, notify.as_ref(), now, audit)
            .await?
        else {
            return Ok(None);
        };
        let named = !request.anon_ind;
        let supi =
            d.ue.supi()
                .filter(|_| named && policy.supi() && self.token_allows(caller, Scope::SupiAccess))
                .copied();
        let gpsi = d.ue.gpsi().filter(|_| named && policy.gpsi()).copied();
        audit.supi_disclosed = supi.is_some();
        audit.gpsi_disclosed = gpsi.is_some();
        audit.reason = if request.anon_ind { "anonymous" } else { "" };
        Ok(Some(AkmaAfKeyData {
            kaf: d.kaf,
            expiry: d.expiry,
            supi,
            gpsi,
            supp_feat: None,
        }))
    }

    /// AKMA through the NEF (TS 33.535 §6.3; TS 29.522 §5.14): the answer has no SUPI, by
    /// type.
    ///
    /// Two callers: a configured NEF consuming Naanf_AKMA for an AF outside the operator's
    /// domain (it names the AF in `afId` and has authenticated it; the AF must be a
    /// configured one; tokens: `naanf-akma:applicationkeyget`), or, where e2m serves
    /// `POST /3gpp-akma/v1/retrieve` itself, the AF (its certificate names the `afId`'s
    /// FQDN, as for [`Self::retrieve_application_key`]; tokens: the GPSI needs
    /// `nnef-akma:gpsi-access`). The GPSI of a context registered by GPSI where the AF's
    /// policy allows it; never for `anonInd`. `Ok(None)`: 204.
    pub async fn nef_retrieve(
        &self,
        caller: &Caller,
        request: &AkmaAfKeyRequest,
        now: Timestamp,
    ) -> Outcome<Option<NefAkmaAfKeyData>> {
        let mut audit = AuditRecord::new(
            now,
            Action::Request(Operation::NefRetrieve),
            Some(caller.peer()),
        );
        audit.a_kid = Some(request.a_kid);
        audit.af_id = Some(request.af_id);
        let result = if self.config.is_nef(caller.peer().names()) {
            self.try_nef_as_consumer(caller, request, now, &mut audit)
                .await
        } else {
            self.try_nef_for_af(caller, request, now, &mut audit).await
        };
        if matches!(result, Ok(None)) {
            audit.verdict = Verdict::NoContext;
            audit.reason = "no live context for this A-KID";
        }
        finish(audit, result, false)
    }

    /// A configured NEF asks on behalf of the AF its request names.
    async fn try_nef_as_consumer(
        &self,
        caller: &Caller,
        request: &AkmaAfKeyRequest,
        now: Timestamp,
        audit: &mut AuditRecord,
    ) -> Result<Option<NefAkmaAfKeyData>, Refusal> {
        audit.role = Some(Role::Nef);
        self.check_token(caller, &[Scope::NaanfAkma, Scope::ApplicationKeyGet])?;
        let policy = self
            .config
            .af(request.af_id.fqdn())
            .ok_or(refuse(Problem::FORBIDDEN, "AF not allowed AKMA"))?;
        let notify =
            self.notify_target(caller, request.af_id.fqdn(), request.notif_uri.as_ref())?;
        self.nef_answer(request, policy, true, notify, now, audit)
            .await
    }

    /// The AF itself on the NEF's API.
    async fn try_nef_for_af(
        &self,
        caller: &Caller,
        request: &AkmaAfKeyRequest,
        now: Timestamp,
        audit: &mut AuditRecord,
    ) -> Result<Option<NefAkmaAfKeyData>, Refusal> {
        let policy = self.af_of(caller, &request.af_id)?;
        audit.role = Some(Role::Af);
        // TS29522_AKMA.yaml requires no scope for the operation itself.
        self.check_token(caller, &[])?;
        let gpsi_scope = self.token_allows(caller, Scope::NefGpsiAccess);
        let notify =
            self.notify_target(caller, request.af_id.fqdn(), request.notif_uri.as_ref())?;
        self.nef_answer(request, policy, gpsi_scope, notify, now, audit)
            .await
    }

    async fn nef_answer(
        &self,
        request: &AkmaAfKeyRequest,
        policy: AfPolicy,
        gpsi_scope: bool,
        notify: Option<NotifyTarget>,
        now: Timestamp,
        audit: &mut AuditRecord,
    ) -> Result<Option<NefAkmaAfKeyData>, Refusal> {
        let Some(d) = self
            .derive(&request.a_kid, &request.af_id, notify.as_ref(), now, audit)
            .await?
        else {
            return Ok(None);
        };
        let gpsi =
            d.ue.gpsi()
                .filter(|_| !request.anon_ind && policy.gpsi() && gpsi_scope)
                .copied();
        audit.gpsi_disclosed = gpsi.is_some();
        audit.reason = if request.anon_ind { "anonymous" } else { "" };
        Ok(Some(NefAkmaAfKeyData {
            kaf: d.kaf,
            expiry: d.expiry,
            gpsi,
            supp_feat: None,
        }))
    }

    /// `Naanf_AKMA_ContextRemove` (TS 33.535 §7.1.4; TS 29.535 §4.2.2.4, §5.1.4.4): `POST
    /// /naanf-akma/v1/remove-context` from a configured AUSF.
    ///
    /// Removes the SUPI's context (K_AKMA gone; its A-KID gets the "no context" answer) and
    /// records, in the same store transaction, one service-disablement notification per AF
    /// that gave a `notifUri` for an A-KID of this UE whose K_AF may still be live (TS
    /// 29.535 §4.2.2.5, §5.1.5.2), which the binding's deliverer sends at least once.
    /// `Ok(())`: 204, also when there was no context (a repeated removal, e.g. after a lost
    /// answer, is not an error; the audit record says which).
    pub async fn remove_context(
        &self,
        caller: &Caller,
        request: &CtxRemove,
        now: Timestamp,
    ) -> Outcome<()> {
        let mut audit = AuditRecord::new(
            now,
            Action::Request(Operation::RemoveContext),
            Some(caller.peer()),
        );
        let ue = UeId::Supi(request.supi);
        audit.ue = Some(ue);
        let result = self.try_remove(caller, &ue, now, &mut audit).await;
        let notified = audit.notifications > 0;
        finish(audit, result, notified)
    }

    async fn try_remove(
        &self,
        caller: &Caller,
        ue: &UeId,
        now: Timestamp,
        audit: &mut AuditRecord,
    ) -> Result<(), Refusal> {
        self.check_ausf(caller, audit)?;
        let removed = self
            .contexts
            .remove(ue, now)
            .await
            .map_err(|e| store_failed(&e))?;
        audit.a_kid = removed.a_kid;
        audit.notifications = removed.notifications;
        audit.reason = if removed.a_kid.is_some() {
            "removed"
        } else {
            "no live context"
        };
        Ok(())
    }

    /// A request whose body did not decode (the binding read it with
    /// [`JsonBody::from_json`](e2m_akma::JsonBody::from_json)): the problem to answer with
    /// (400 with the TS 29.500 cause and attribute, or 413), and its audit record.
    pub fn undecodable(
        &self,
        caller: &Caller,
        operation: Operation,
        error: &DecodeError,
        now: Timestamp,
    ) -> Outcome<()> {
        let audit = AuditRecord::new(now, Action::Request(operation), Some(caller.peer()));
        finish(
            audit,
            Err(refuse(Problem::from(error), "body did not decode")),
            false,
        )
    }

    /// Time-driven upkeep: removes expired contexts (their K_AKMA zeroized or deleted) and
    /// notification targets. The binding calls it periodically; correctness does not
    /// depend on it (nothing expired is ever served), only storage does.
    pub async fn expire(&self, now: Timestamp) -> Effects {
        let mut audit = AuditRecord::new(now, Action::Expire, None);
        match self.contexts.sweep(now).await {
            Ok(n) => audit.count = n,
            Err(_) => {
                audit.verdict = Verdict::Refused(Problem::SYSTEM_FAILURE);
                audit.reason = "sweep failed: store failed";
            }
        }
        Effects {
            audit,
            notifications_recorded: false,
        }
    }

    /// What to send for an entry claimed from the store's outbox
    /// ([`AkmaOutbox::claim_due`]). `None` for an entry that must not be sent (the binding
    /// settles it as delivered): its AF is no longer a configured one, or its URI no longer
    /// reads as one.
    pub fn outbound(&self, pending: &AkmaPendingNotification) -> Option<OutboundNotification> {
        self.config.af(&pending.af)?;
        let uri = NotifUri::parse(&pending.notif_uri).ok()?;
        Some(OutboundNotification {
            id: pending.id,
            af: pending.af,
            uri,
            body: ServiceDisableNotif {
                a_kid: pending.a_kid,
            },
        })
    }
}
