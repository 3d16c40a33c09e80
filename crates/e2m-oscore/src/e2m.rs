//! The e2m profile of OSCORE: a security context keyed from `e2m_key`, found by the EMSE from
//! the UE's application identity and key id, and the EMSE's admission of unknown contexts.
//! The decisions and their reasons are in the crate README ("The e2m profile").

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::borrow::Borrow;
use core::time::Duration;

use e2m_coap::{Code, Message, OptionNumber};
use e2m_kdf::{E2mKey, E2mProfile, Fc, KdfError, KdfKey, kdf, text_param};
use e2m_keyid::{AppIdentity, KeyId};
use subtle::ConstantTimeEq;

use crate::protect::{oscore_option, piggyback, unprotected_error};
use crate::{ContextInput, MasterSecret, OscoreError, SecurityContext, SenderSequence};

/// The derivation of the OSCORE Master Secret from `e2m_key` (the e2m profile's one key
/// parameter; everything else is in the README).
///
/// `Master Secret = KDF(e2m_key, master_secret_fc, master_secret_label)` with the TS 33.220
/// Annex B.2 KDF of `e2m-kdf`: a derivation of its own, so the OSCORE master secret is never
/// the DTLS PSK (`e2m_key` itself) and a key that leaks from one protocol says nothing about
/// the other.
///
/// Like [`E2mProfile`], the FC is not allocated by 3GPP: [`Self::PROVISIONAL`] uses 0xE3,
/// which collides with no FC allocated in TS 33.220 Annex B (0x01, 0x10–0x3F, 0x50–0x52,
/// 0x63–0x64, 0x69–0x84, 0x8C–0x8E; 0xFF is the escape) nor with e2m's own provisional 0xE0–0xE2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E2mOscoreProfile<'a> {
    /// FC of the Master Secret derivation.
    pub master_secret_fc: Fc,
    /// P0 of the Master Secret derivation.
    pub master_secret_label: &'a str,
}

impl E2mOscoreProfile<'static> {
    /// This project's provisional profile: FC 0xE3, P0 `"e2m_OSCORE"`.
    pub const PROVISIONAL: E2mOscoreProfile<'static> = E2mOscoreProfile {
        master_secret_fc: FC_OSCORE_MASTER_SECRET_PROVISIONAL,
        master_secret_label: "e2m_OSCORE",
    };
}

/// The provisional FC 0xE3 of the Master Secret derivation (not allocated by 3GPP).
pub const FC_OSCORE_MASTER_SECRET_PROVISIONAL: Fc = match Fc::new(0xE3) {
    Ok(fc) => fc,
    // 0xE3 is not the escape octet 0xFF, so this arm is never taken.
    Err(_) => Fc::extended(0xE3),
};

/// Why an e2m OSCORE context could not be made, or a request not classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum E2mOscoreError {
    /// The KDF refused its input, or the profile is invalid.
    #[error("KDF: {0}")]
    Kdf(KdfError),
    /// The OSCORE context could not be derived.
    #[error("OSCORE: {0}")]
    Oscore(OscoreError),
    /// The profile's FC is one of the e2m derivation FCs.
    #[error("OSCORE master secret FC collides with an e2m FC")]
    FcCollision,
    /// An ID Context that is not a version-1 e2m ID Context.
    #[error("not an e2m OSCORE ID Context")]
    IdContext,
    /// A kid that is not a 4-octet key id.
    #[error("kid is not an e2m key id")]
    Kid,
}

impl From<KdfError> for E2mOscoreError {
    fn from(e: KdfError) -> Self {
        E2mOscoreError::Kdf(e)
    }
}

impl From<OscoreError> for E2mOscoreError {
    fn from(e: OscoreError) -> Self {
        E2mOscoreError::Oscore(e)
    }
}

/// The version octet that starts an e2m ID Context.
const ID_CONTEXT_V1: u8 = 0x01;
/// The EMSE's Sender ID (the UE's Recipient ID): empty, the shortest.
pub const EMSE_SENDER_ID: &[u8] = &[];

/// The ID Context of an e2m OSCORE context: `0x01 || application identity (UTF-8)`.
///
/// It plays the role of `psk_identity`'s identity part; the key id travels as the kid (the
/// UE's Sender ID), so the pair (kid context, kid) that the EMSE reads from a request is
/// exactly (application identity, key id).
pub fn id_context(identity: &AppIdentity) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + identity.as_bytes().len());
    out.push(ID_CONTEXT_V1);
    out.extend_from_slice(identity.as_bytes());
    out
}

/// Parses an e2m ID Context.
///
/// # Errors
/// [`E2mOscoreError::IdContext`] unless it is `0x01` followed by a valid application identity.
pub fn parse_id_context(bytes: &[u8]) -> Result<AppIdentity, E2mOscoreError> {
    match bytes.split_first() {
        Some((&ID_CONTEXT_V1, identity)) => {
            AppIdentity::from_utf8(identity).map_err(|_| E2mOscoreError::IdContext)
        }
        _ => Err(E2mOscoreError::IdContext),
    }
}

/// The UE's Sender ID: the key id, 4 octets big-endian.
pub fn ue_sender_id(key_id: KeyId) -> [u8; 4] {
    key_id.to_be_bytes()
}

impl E2mOscoreProfile<'_> {
    /// Checks the label and that the FC is not one of `e2m`'s.
    ///
    /// # Errors
    /// [`E2mOscoreError::FcCollision`], or [`E2mOscoreError::Kdf`] for an empty or
    /// non-NFKC label.
    pub fn validate(&self, e2m: &E2mProfile<'_>) -> Result<(), E2mOscoreError> {
        if [e2m.int_key_fc, e2m.key_fc, e2m.key_id_fc].contains(&self.master_secret_fc) {
            return Err(E2mOscoreError::FcCollision);
        }
        if self.master_secret_label.is_empty() {
            return Err(E2mOscoreError::Kdf(KdfError::EmptyText));
        }
        text_param(self.master_secret_label)?;
        Ok(())
    }

    /// The OSCORE Master Secret for `e2m_key` (32 octets).
    ///
    /// # Errors
    /// [`E2mOscoreError::Kdf`] for a label the KDF refuses.
    pub fn master_secret(&self, e2m_key: &E2mKey) -> Result<MasterSecret, E2mOscoreError> {
        let label = text_param(self.master_secret_label)?;
        let out = kdf(e2m_key.expose_secret(), self.master_secret_fc, &[label])?;
        Ok(MasterSecret::new(out.expose_secret())?)
    }

    fn context(
        &self,
        e2m_key: &E2mKey,
        identity: &AppIdentity,
        key_id: KeyId,
        ue: bool,
        sequence: SenderSequence,
    ) -> Result<SecurityContext, E2mOscoreError> {
        let master_secret = self.master_secret(e2m_key)?;
        let id_context = id_context(identity);
        let ue_id = ue_sender_id(key_id);
        let (sender_id, recipient_id) = if ue {
            (&ue_id[..], EMSE_SENDER_ID)
        } else {
            (EMSE_SENDER_ID, &ue_id[..])
        };
        let input = ContextInput {
            master_secret: &master_secret,
            master_salt: &[],
            id_context: Some(&id_context),
            sender_id,
            recipient_id,
        };
        Ok(SecurityContext::derive(&input, sequence)?)
    }

    /// The UE's context for the `e2m_key` of `key_id` (Sender ID = key id, Recipient ID =
    /// empty, ID Context = [`id_context`]).
    ///
    /// # Errors
    /// As [`Self::master_secret`].
    pub fn ue_context(
        &self,
        e2m_key: &E2mKey,
        identity: &AppIdentity,
        key_id: KeyId,
        sequence: SenderSequence,
    ) -> Result<SecurityContext, E2mOscoreError> {
        self.context(e2m_key, identity, key_id, true, sequence)
    }

    /// The EMSE's context for the same key (the mirror image of [`Self::ue_context`]).
    ///
    /// # Errors
    /// As [`Self::master_secret`].
    pub fn emse_context(
        &self,
        e2m_key: &E2mKey,
        identity: &AppIdentity,
        key_id: KeyId,
        sequence: SenderSequence,
    ) -> Result<SecurityContext, E2mOscoreError> {
        self.context(e2m_key, identity, key_id, false, sequence)
    }
}

/// What an EMSE reads from a request before it has any key: the UE's key id (the kid) and,
/// when sent, its application identity (the kid context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHint {
    /// The key id the UE protected the request with.
    pub key_id: KeyId,
    /// The application identity, when the request carries the ID Context.
    pub identity: Option<AppIdentity>,
}

impl RequestHint {
    /// Reads the hint from an OSCORE request.
    ///
    /// # Errors
    /// [`E2mOscoreError::Oscore`] for a missing or malformed OSCORE option or a request
    /// without kid/Partial IV; [`E2mOscoreError::Kid`] or [`E2mOscoreError::IdContext`] for
    /// values that are not e2m's.
    pub fn from_request(request: &Message) -> Result<RequestHint, E2mOscoreError> {
        let option = oscore_option(request)?;
        let (Some(_), Some(kid)) = (option.partial_iv, option.kid.as_deref()) else {
            return Err(OscoreError::MissingRequestFields.into());
        };
        let kid: [u8; 4] = kid.try_into().map_err(|_| E2mOscoreError::Kid)?;
        let identity = option
            .kid_context
            .as_deref()
            .map(parse_id_context)
            .transpose()?;
        Ok(RequestHint {
            key_id: KeyId::from_u32(u32::from_be_bytes(kid)),
            identity,
        })
    }
}

/// The unprotected answer to a request whose context the EMSE does not have and cannot get:
/// 4.01 Unauthorized, Max-Age 0, diagnostic "Security context not found" (RFC 8613 §8.2).
///
/// The EMSE sends it when a request has no ID Context and no context matches its kid, and
/// when the EMKS no longer holds the key id (evicted or expired). The UE tells the two apart
/// by what it sent; see [`UeAction`].
pub fn context_not_found(request: &Message) -> Message {
    unprotected_error(request, OscoreError::ContextNotFound)
        .unwrap_or_else(|| piggyback(request, Code::UNAUTHORIZED))
}

/// What a UE does with an **unprotected** response to one of its OSCORE requests (matched by
/// token; anyone on the path can forge one, so none of these may weaken protection).
///
/// Only the answers the profile defines are acted upon, told apart by code, outer Echo and
/// the RFC 8613 §8.2 diagnostic payload; any other unprotected 4.01 (a bare one, one with
/// another diagnostic) is an [`UeAction::Error`], never a reason to re-authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum UeAction {
    /// "Security context not found" (4.01, [`context_not_found`]) to a request sent without
    /// the ID Context: the EMSE lost or never had the context. Protect the request again
    /// *with* the ID Context.
    RetryWithIdContext,
    /// "Security context not found" (4.01, [`context_not_found`]) to a request that carried
    /// the ID Context: the EMSE cannot get this key id (evicted at the EMKS, or the UE is
    /// unknown). Run AKA again for a new key id; do it at most once per back-off interval,
    /// because this answer is unauthenticated.
    Reauthenticate,
    /// "Replay detected" (4.01, RFC 8613 §8.2): the EMSE has seen this Partial IV (a
    /// duplicate on the path, or a retransmission after its answer was lost). Protect the
    /// request again — it takes a new Partial IV — at most once; the context is fine.
    SendAgain,
    /// 4.01 with an outer Echo option: the EMSE asks for return routability before it
    /// fetches a key. Protect the request again and add this value as an outer Echo (see
    /// [`add_outer_echo`]).
    AnswerEcho(Vec<u8>),
    /// 5.03 Service Unavailable: the EMSE's fetch budget for this source is spent; retry
    /// after the given seconds (Max-Age).
    RetryAfter(u32),
    /// Anything else: an error the application sees as such (never acted upon).
    Error(Code),
}

/// Classifies an unprotected response (see [`UeAction`]).
pub fn ue_action(response: &Message, request_had_id_context: bool) -> UeAction {
    match response.code {
        Code::UNAUTHORIZED => {
            let diagnostic = response.payload.as_slice();
            match response.options.get(OptionNumber::ECHO) {
                Some(echo) => UeAction::AnswerEcho(echo.to_vec()),
                None if diagnostic == OscoreError::ContextNotFound.diagnostic().as_bytes() => {
                    if request_had_id_context {
                        UeAction::Reauthenticate
                    } else {
                        UeAction::RetryWithIdContext
                    }
                }
                None if diagnostic == OscoreError::Replay.diagnostic().as_bytes() => {
                    UeAction::SendAgain
                }
                None => UeAction::Error(Code::UNAUTHORIZED),
            }
        }
        Code::SERVICE_UNAVAILABLE => {
            UeAction::RetryAfter(response.options.get(OptionNumber::MAX_AGE).map_or(60, |v| {
                v.iter().fold(0u32, |a, b| {
                    a.saturating_mul(256).saturating_add(u32::from(*b))
                })
            }))
        }
        other => UeAction::Error(other),
    }
}

/// Adds an Echo value as an outer (unencrypted) option of a protected request, to answer
/// the EMSE's return-routability challenge. It is not integrity-protected and need not be:
/// it only proves that the requester receives datagrams at its source address.
pub fn add_outer_echo(protected_request: &mut Message, echo: &[u8]) {
    // 40 octets at most by construction of the challenge; a longer one is refused by the
    // codec and then simply absent.
    let _ = protected_request.options.set(OptionNumber::ECHO, echo);
}

/// How an EMSE keeps a spoofed source from making it fetch keys (see README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchGuard {
    /// Bounded fetches per source (token bucket per source address); an exhausted source
    /// gets 5.03 with Max-Age. Works with every OSCORE client.
    Budget(FetchBudgetConfig),
    /// Bounded fetches per source at once, and **the Echo challenge when over budget**: a
    /// request within its source's budget causes a fetch at once (first contact in one
    /// round trip); past it, the request is answered with an unprotected 4.01 and an outer
    /// Echo (as [`FetchGuard::EchoThenBudget`]) instead of 5.03, and a request that repeats
    /// a valid Echo — its source has shown it receives at its address — draws on a second
    /// bucket of the same size kept for routable requests from that source. So a spoofer
    /// that spends a victim's budget does not lock the victim out (an e2m UE answers the
    /// Echo), and a source that does receive at its address gets at most twice the budget.
    /// The recommended guard for an EMSE with e2m UEs; unmodified OSCORE clients (aiocoap)
    /// see the challenge as a failed request, as they would see 5.03.
    BudgetThenEcho(FetchBudgetConfig),
    /// Return routability first: an unknown context is answered with an unprotected 4.01
    /// carrying an outer Echo option; only a request that repeats it (as an outer option)
    /// causes a fetch. Only e2m UEs answer it (unmodified OSCORE clients such as aiocoap
    /// reject unprotected responses). The budget still applies after the challenge.
    EchoThenBudget(FetchBudgetConfig),
}

/// The token bucket of [`FetchGuard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchBudgetConfig {
    /// Fetches a source may make at once.
    pub burst: u32,
    /// Fetches a source regains per minute.
    pub per_minute: u32,
    /// Sources tracked at most (memory bound); when full and none is idle, fetches for new
    /// sources are refused until buckets refill.
    pub max_sources: usize,
}

impl Default for FetchBudgetConfig {
    /// 4 at once, 4 per minute, 65536 sources (a few MiB at most).
    fn default() -> Self {
        FetchBudgetConfig {
            burst: 4,
            per_minute: 4,
            max_sources: 65_536,
        }
    }
}

impl FetchGuard {
    /// The budget terms of every guard.
    fn budget(&self) -> FetchBudgetConfig {
        match *self {
            FetchGuard::Budget(budget)
            | FetchGuard::BudgetThenEcho(budget)
            | FetchGuard::EchoThenBudget(budget) => budget,
        }
    }
}

/// One token in bucket units: a token per minute refills one unit per millisecond, so that
/// refills are exact integers (`elapsed_ms × per_minute`).
const TOKEN: u64 = 60_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens in units of 1/60000 ([`TOKEN`]).
    units: u64,
    last_ms: u64,
}

/// The token buckets of a [`FetchBudgetConfig`], one per source: the arithmetic that
/// [`EmseGate`] and the `e2m-dtls` DTLS server share.
///
/// A source starts with [`FetchBudgetConfig::burst`] tokens and regains
/// [`FetchBudgetConfig::per_minute`] per minute, up to the burst; a fetch takes one
/// ([`Self::take`]), and a caller whose fetches that found a key should cost nothing gives
/// it back ([`Self::give_back`]). At most [`FetchBudgetConfig::max_sources`] sources are
/// tracked: when the table is full, sources whose bucket has refilled (indistinguishable
/// from new ones) are forgotten to make room, and a new source is refused while none has.
/// Time is an argument, in milliseconds from any fixed origin; the caller chooses what a
/// source is (the gate: address octets; the DTLS server: an IPv4 address or IPv6 /64).
///
/// ```
/// use core::time::Duration;
/// use e2m_oscore::e2m::{FetchBuckets, FetchBudgetConfig};
///
/// let mut buckets = FetchBuckets::new(FetchBudgetConfig { burst: 2, per_minute: 30, max_sources: 16 });
/// assert_eq!(buckets.take(&[10, 0, 0, 1][..], 0), Ok(()));
/// assert_eq!(buckets.take(&[10, 0, 0, 1][..], 0), Ok(()));
/// // 30 per minute: the next token in 2 s.
/// assert_eq!(buckets.take(&[10, 0, 0, 1][..], 0), Err(Some(Duration::from_secs(2))));
/// buckets.give_back(&[10, 0, 0, 1][..], 0);
/// assert_eq!(buckets.take(&[10, 0, 0, 1][..], 0), Ok(()));
/// # let _: &FetchBuckets<Vec<u8>> = &buckets;
/// ```
#[derive(Debug, Clone)]
pub struct FetchBuckets<K> {
    config: FetchBudgetConfig,
    buckets: BTreeMap<K, Bucket>,
}

impl<K: Ord> FetchBuckets<K> {
    /// No source seen yet.
    pub fn new(config: FetchBudgetConfig) -> Self {
        FetchBuckets {
            config,
            buckets: BTreeMap::new(),
        }
    }

    /// The terms.
    pub fn config(&self) -> FetchBudgetConfig {
        self.config
    }

    /// How many sources are tracked now.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }

    fn full(&self) -> u64 {
        u64::from(self.config.burst) * TOKEN
    }

    fn refill(bucket: &mut Bucket, per_minute: u32, full: u64, now_ms: u64) {
        let gained = now_ms
            .saturating_sub(bucket.last_ms)
            .saturating_mul(u64::from(per_minute));
        bucket.units = bucket.units.saturating_add(gained).min(full);
        bucket.last_ms = now_ms.max(bucket.last_ms);
    }

    /// Takes a token for a fetch from `source` at `now_ms`.
    ///
    /// # Errors
    /// How long until the refill brings a token (`None`: no refill will, as with
    /// `per_minute` 0, or while the table of sources is full); a token given back may come
    /// sooner.
    pub fn take<Q>(&mut self, source: &Q, now_ms: u64) -> Result<(), Option<Duration>>
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        let (full, per_minute) = (self.full(), self.config.per_minute);
        if !self.buckets.contains_key(source) && self.buckets.len() >= self.config.max_sources {
            self.buckets.retain(|_, b| {
                Self::refill(b, per_minute, full, now_ms);
                b.units < full
            });
            if self.buckets.len() >= self.config.max_sources {
                return Err(None);
            }
        }
        if !self.buckets.contains_key(source) {
            self.buckets.insert(
                source.to_owned(),
                Bucket {
                    units: full,
                    last_ms: now_ms,
                },
            );
        }
        let Some(bucket) = self.buckets.get_mut(source) else {
            // Just inserted: not reached.
            return Err(None);
        };
        Self::refill(bucket, per_minute, full, now_ms);
        if bucket.units >= TOKEN {
            bucket.units -= TOKEN;
            return Ok(());
        }
        if per_minute == 0 {
            return Err(None);
        }
        let missing = TOKEN - bucket.units;
        Err(Some(Duration::from_millis(
            missing.div_ceil(u64::from(per_minute)),
        )))
    }

    /// Gives back a token of `source` (never past the burst); nothing for a source not
    /// tracked.
    pub fn give_back<Q>(&mut self, source: &Q, now_ms: u64)
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let (full, per_minute) = (self.full(), self.config.per_minute);
        if let Some(bucket) = self.buckets.get_mut(source) {
            Self::refill(bucket, per_minute, full, now_ms);
            bucket.units = bucket.units.saturating_add(TOKEN).min(full);
        }
    }
}

/// What the caller's lookup in [`EmseGate::classify_lookup`] found for a request. A `bool`
/// (the lookup of [`EmseGate::classify`]) converts to it (`true`: [`Held`](Self::Held),
/// `false`: [`Absent`](Self::Absent)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextLookup {
    /// A context is held: verify with it.
    Held,
    /// No context is held, but the key is at hand (the EMSE's key cache answers, positively
    /// or negatively, without asking the key server): the request goes to
    /// [`Classified::Fetch`] without spending a fetch token or an Echo round trip, since
    /// resolving it costs the key server nothing.
    KeyAtHand,
    /// Neither: a fetch, within the guard.
    Absent,
}

impl From<bool> for ContextLookup {
    fn from(held: bool) -> Self {
        if held {
            ContextLookup::Held
        } else {
            ContextLookup::Absent
        }
    }
}

/// What an EMSE does with an incoming datagram that parsed as a CoAP request.
#[derive(Debug)]
#[must_use]
pub enum Classified {
    /// A context for `(identity, key_id)` is held (per the caller's lookup): verify with it.
    Verify(RequestHint),
    /// No context: fetch `e2m_key` for this identity and key id from the EMKS (as the DTLS
    /// resolver does for `psk_identity`), derive [`E2mOscoreProfile::emse_context`] and verify.
    /// If the EMKS does not hold the key id, answer [`context_not_found`].
    Fetch {
        /// The UE's application identity.
        identity: AppIdentity,
        /// The key id to fetch.
        key_id: KeyId,
    },
    /// Send this unprotected answer and do nothing else.
    Answer(Message),
}

/// The EMSE's front door for OSCORE requests: decides, before any key is fetched, whether a
/// request is verified, causes a fetch, or is answered unprotected. Time and the
/// challenge secret come from the caller.
pub struct EmseGate {
    guard: FetchGuard,
    buckets: FetchBuckets<Vec<u8>>,
    echo_key: KdfKey,
    echo_slot_ms: u64,
}

impl core::fmt::Debug for EmseGate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EmseGate")
            .field("guard", &self.guard)
            .field("sources", &self.buckets.sources())
            .finish_non_exhaustive()
    }
}

const ECHO_LABEL: &[u8] = b"e2m-oscore-echo-v1";

/// Prefixes a source's octets for its bucket of routable requests
/// ([`FetchGuard::BudgetThenEcho`]).
const ROUTABLE_MARKER: u8 = 0xec;

/// 5.03 Service Unavailable with a Max-Age of the time one fetch token takes to come back.
fn service_unavailable(request: &Message, budget: &FetchBudgetConfig) -> Message {
    let mut answer = piggyback(request, Code::SERVICE_UNAVAILABLE);
    let wait_s = 60 / budget.per_minute.max(1) + 1;
    let _ = answer
        .options
        .push(OptionNumber::MAX_AGE, &minimal_uint(wait_s));
    answer
}

impl EmseGate {
    /// A gate. `echo_secret` keys the stateless Echo values (32 random octets from the
    /// caller; only used with [`FetchGuard::EchoThenBudget`]); an Echo value is valid for one
    /// to two periods of `echo_slot_ms`.
    pub fn new(guard: FetchGuard, echo_secret: &[u8; 32], echo_slot_ms: u64) -> EmseGate {
        EmseGate {
            guard,
            buckets: FetchBuckets::new(guard.budget()),
            echo_key: KdfKey::new(echo_secret),
            echo_slot_ms: echo_slot_ms.max(1),
        }
    }

    /// Classifies a request from `source` (the transport's address bytes) at `now_ms`.
    /// `have_context(hint)` is the caller's context lookup: by (identity, key id) when the
    /// hint has an identity, else by key id alone.
    pub fn classify(
        &mut self,
        request: &Message,
        source: &[u8],
        now_ms: u64,
        have_context: impl FnOnce(&RequestHint) -> bool,
    ) -> Classified {
        self.classify_lookup(request, source, now_ms, |hint| {
            ContextLookup::from(have_context(hint))
        })
    }

    /// As [`Self::classify`], with a lookup that may also find the key at hand
    /// ([`ContextLookup::KeyAtHand`]: the EMSE's key cache answers): such a request goes to
    /// [`Classified::Fetch`] without spending its source's fetch token or an Echo round
    /// trip, since resolving it costs the key server nothing.
    pub fn classify_lookup(
        &mut self,
        request: &Message,
        source: &[u8],
        now_ms: u64,
        lookup: impl FnOnce(&RequestHint) -> ContextLookup,
    ) -> Classified {
        let hint = match RequestHint::from_request(request) {
            Ok(hint) => hint,
            Err(E2mOscoreError::Oscore(e)) => {
                return Classified::Answer(
                    unprotected_error(request, e).unwrap_or_else(|| context_not_found(request)),
                );
            }
            Err(_) => return Classified::Answer(context_not_found(request)),
        };
        let lookup = lookup(&hint);
        if lookup == ContextLookup::Held {
            return Classified::Verify(hint);
        }
        let Some(identity) = hint.identity else {
            return Classified::Answer(context_not_found(request));
        };
        if lookup == ContextLookup::KeyAtHand {
            return Classified::Fetch {
                identity,
                key_id: hint.key_id,
            };
        }
        let budget = match self.guard {
            FetchGuard::Budget(budget) => budget,
            FetchGuard::BudgetThenEcho(budget) => {
                if self.take_token(source, now_ms) {
                    return Classified::Fetch {
                        identity,
                        key_id: hint.key_id,
                    };
                }
                let routable = request
                    .options
                    .get(OptionNumber::ECHO)
                    .is_some_and(|echo| self.echo_valid(echo, source, now_ms));
                if !routable {
                    return Classified::Answer(self.echo_challenge(request, source, now_ms));
                }
                // The routable requests' own bucket: the source octets behind a marker
                // octet (5 or 17 octets: never a plain IPv4 or IPv6 source).
                let mut routable_source = Vec::with_capacity(1 + source.len());
                routable_source.push(ROUTABLE_MARKER);
                routable_source.extend_from_slice(source);
                if self.take_token(&routable_source, now_ms) {
                    return Classified::Fetch {
                        identity,
                        key_id: hint.key_id,
                    };
                }
                return Classified::Answer(service_unavailable(request, &budget));
            }
            FetchGuard::EchoThenBudget(budget) => {
                let answered = request
                    .options
                    .get(OptionNumber::ECHO)
                    .is_some_and(|echo| self.echo_valid(echo, source, now_ms));
                if !answered {
                    return Classified::Answer(self.echo_challenge(request, source, now_ms));
                }
                budget
            }
        };
        if !self.take_token(source, now_ms) {
            return Classified::Answer(service_unavailable(request, &budget));
        }
        Classified::Fetch {
            identity,
            key_id: hint.key_id,
        }
    }

    fn echo_value(&self, slot: u32, source: &[u8]) -> [u8; 12] {
        let slot = slot.to_be_bytes();
        let mac = self.echo_key.mac(&[ECHO_LABEL, &slot, source]);
        let mut value = [0u8; 12];
        value[..4].copy_from_slice(&slot);
        value[4..].copy_from_slice(&mac.expose_secret()[..8]);
        value
    }

    fn slot(&self, now_ms: u64) -> u32 {
        (now_ms / self.echo_slot_ms) as u32
    }

    fn echo_valid(&self, echo: &[u8], source: &[u8], now_ms: u64) -> bool {
        let Ok(bytes) = <[u8; 12]>::try_from(echo) else {
            return false;
        };
        let slot = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let now = self.slot(now_ms);
        (slot == now || slot.wrapping_add(1) == now)
            && bool::from(self.echo_value(slot, source).ct_eq(&bytes))
    }

    fn echo_challenge(&self, request: &Message, source: &[u8], now_ms: u64) -> Message {
        let mut answer = context_not_found(request);
        answer.payload.clear();
        let _ = answer.options.push(
            OptionNumber::ECHO,
            &self.echo_value(self.slot(now_ms), source),
        );
        answer
    }

    fn take_token(&mut self, source: &[u8], now_ms: u64) -> bool {
        self.buckets.take(source, now_ms).is_ok()
    }
}

fn minimal_uint(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}
