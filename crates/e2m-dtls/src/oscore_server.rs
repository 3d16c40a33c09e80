//! The EMSE's OSCORE endpoint: CoAP protected with OSCORE (RFC 8613, e2m profile of
//! `e2m-oscore`) over UDP, beside the DTLS-PSK server, on the same keys and the same
//! [`PskResolver`] (in the EMSE: `emks_source::EmksKeySource` with its cache, feature `emks`).
//!
//! The decisions are the sans-IO crate's; this module owns the socket, the clock and the
//! tasks:
//!
//! 1. every datagram that decodes as a CoAP request goes through
//!    [`EmseGate::classify`](e2m_oscore::e2m::EmseGate::classify) with the **source IP
//!    address** (not the port: a spoofer varies ports for free, so a budget per port would
//!    multiply by 65 536);
//! 2. `Verify`: the held contexts under the request's key id are tried (exactly one when
//!    the request names its application identity) and the answer is protected with the
//!    request's nonce (RFC 8613 §8.3);
//! 3. `Fetch`: the key is fetched on a task of its own (other peers carry on; requests for
//!    the same (identity, key id) wait behind the one fetch), the context is derived with
//!    [`E2mOscoreProfile::emse_context`], and the waiting requests are verified with it. A
//!    key the EMKS no longer holds is answered with
//!    [`context_not_found`], which tells the UE to
//!    re-authenticate;
//! 4. `Answer`: the unprotected answer is sent, nothing is fetched.
//!
//! # Spoofed sources: bounded fetches, then Echo
//!
//! A request that names an identity and key id the EMSE does not hold costs an EMKS fetch.
//! With the default guard, [`FetchGuard::BudgetThenEcho`], each source address may cause
//! [`FetchBudgetConfig::burst`] fetches at once and [`FetchBudgetConfig::per_minute`] more
//! per minute **without** a challenge (so first contact costs one round trip); past that
//! budget a request gets an unprotected 4.01 with an outer Echo option (RFC 9175) instead
//! of a fetch, and only a request that repeats the Echo — its source receives at its
//! address — draws on a second bucket of the same size. A spoofer can thus spend only the
//! budget of the addresses it spoofs (and only for (identity, key id) pairs it names; the
//! EMKS answers a wrong pair like a wrong PSK), and a UE whose budget a spoofer spent
//! still gets through by answering the Echo. At most
//! [`OscoreServerConfig::max_fetches_in_flight`] fetches run at once, whatever the sources
//! (more get 5.03). A request whose key the resolver has at hand
//! ([`PskResolver::resolve_local`]: `EmksKeySource`'s cache, positive or negative) spends
//! no token and meets no challenge ([`ContextLookup::KeyAtHand`]): it costs the key server
//! nothing, as on the DTLS server. [`FetchGuard::Budget`] answers 5.03 past the budget instead;
//! [`FetchGuard::EchoThenBudget`] challenges before every fetch (two round trips on first
//! contact). Unmodified OSCORE clients such as aiocoap cannot answer an unprotected Echo
//! (see the `e2m-oscore` README): within the budget they are served like e2m UEs.
//!
//! # Replay after a (re-)derivation: the derived-context record, else Appendix B.1.2
//!
//! Answering a replayed request again would reuse the request's AEAD nonce for a different
//! response. A context this EMSE has **never** derived before has answered nothing, so its
//! first request can be answered at once (its replay window starts at that request). The
//! EMSE knows "never" from its derived-context record ([`OscoreServer::bind_with_record`] with
//! [`crate::derived_record::FileDerivedRecord`]; the reasoning is `e2m_oscore::derived`'s):
//! after the key fetch it records (application identity, key id) durably — the file is
//! synced — **before** it answers under the new context. A context found in the record
//! (derived before a restart, or before its context was evicted or expired), a record that
//! could not be written, and every context of an endpoint bound without a record
//! ([`OscoreServer::bind`]) start with the replay window **forgotten**: the first request
//! is answered with a protected 4.01 + Echo (RFC 8613 Appendix B.1.2; the UE — ours or
//! aiocoap — repeats the request with the Echo value and is answered). So a request
//! replayed after a restart is challenged, never answered.
//!
//! Several EMSE instances sharing one EMSE_Id must share one record (or all be bound
//! without one): an instance-local record would answer at once a request another instance
//! already answered.
//!
//! The challenge carries the EMSE's own Partial IV, which must never repeat under one key,
//! also across restarts. The EMSE takes it from one counter for all contexts, bound to the
//! wall clock (Appendix B.1.1 with the clock as the persisted value): numbers of second `s`
//! (counted from 2026-01-01) lie in `[s·1024, (s+1)·1024)`; a server starts at the next
//! second's first number ([`OscoreServer::bind`] waits for that second to begin) and drops
//! a request that would need a number ahead of the clock (the client retransmits). So a
//! restarted EMSE always starts above every number it used before, as long as the wall
//! clock does not step back. 2^40 numbers last 34 years at this rate.
//!
//! # Message layer
//!
//! A retransmitted Confirmable request (same source and message ID, RFC 7252 §4.5) gets the
//! answer sent the first time, from a bounded cache, instead of a "Replay detected" error.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2m_coap::{Code, Message, MessageType, OptionNumber};
use e2m_kdf::E2mKey;
use e2m_keyid::{AppIdentity, KeyId, PskIdentity};
use e2m_oscore::derived::{Derivation, DerivedContextRecord};
use e2m_oscore::e2m::{
    Classified, ContextLookup, E2mOscoreProfile, EmseGate, FetchBudgetConfig, FetchGuard,
    RequestHint, context_not_found,
};
use e2m_oscore::{
    OscoreError, SecurityContext, SenderSequence, VerifiedRequest, unprotected_error,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::{MAX_DATAGRAM, PskResolver, ResolveError};

/// Limits and policy of the OSCORE endpoint.
#[derive(Debug, Clone)]
pub struct OscoreServerConfig {
    /// The e2m OSCORE profile (must match the UEs').
    pub profile: E2mOscoreProfile<'static>,
    /// How spoofed sources are kept from causing EMKS fetches.
    pub guard: FetchGuard,
    /// Key fetches running at once, over all sources; a request that would start one more
    /// gets 5.03.
    pub max_fetches_in_flight: usize,
    /// Requests that may wait behind one fetch (more are dropped; CoAP retransmits).
    pub max_waiting_per_fetch: usize,
    /// How long one key fetch may take.
    pub resolve_timeout: Duration,
    /// Contexts held at most; the least recently used goes first.
    pub max_contexts: usize,
    /// How long a derived context is used before its key is resolved again (the EMSE's
    /// key cache bounds a key's life the same way, `KeyCache::MAX_TTL`): a key the EMKS
    /// stops holding stops being accepted within this time even without a notification.
    pub context_lifetime: Duration,
    /// Answers kept for retransmitted requests (RFC 7252 §4.5 deduplication).
    pub dedup_entries: usize,
    /// How long a kept answer serves retransmissions (RFC 7252 EXCHANGE_LIFETIME is 247 s;
    /// shorter is enough for clients with the default transmission parameters).
    pub dedup_lifetime: Duration,
}

impl Default for OscoreServerConfig {
    fn default() -> Self {
        OscoreServerConfig {
            profile: E2mOscoreProfile::PROVISIONAL,
            guard: FetchGuard::BudgetThenEcho(FetchBudgetConfig::default()),
            max_fetches_in_flight: 64,
            max_waiting_per_fetch: 8,
            resolve_timeout: Duration::from_secs(5),
            max_contexts: 100_000,
            context_lifetime: Duration::from_secs(300),
            dedup_entries: 4096,
            dedup_lifetime: Duration::from_secs(60),
        }
    }
}

/// The UE a verified request came from, as the application handler sees it.
#[derive(Debug, Clone)]
pub struct OscorePeer {
    /// The UE's UDP address.
    pub addr: SocketAddr,
    /// The application identity of the context that verified the request.
    pub identity: AppIdentity,
    /// Its key id.
    pub key_id: KeyId,
}

/// The application: a verified CoAP request in, the CoAP response out (it is protected
/// before it is sent).
pub type OscoreHandler = Arc<dyn Fn(&OscorePeer, &Message) -> Message + Send + Sync>;

/// What happened (for narration and tests). Carries no key material.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum OscoreEvent {
    /// A request named a context the EMSE does not hold: fetching its key (seed step 5).
    Fetching {
        /// The source.
        peer: SocketAddr,
        /// The UE's identity and key id.
        identity: PskIdentity,
    },
    /// The resolver had no key: the waiting requests were answered "context not found"
    /// (KeyNotHeld, UnknownIdentity) or 5.03 (Unavailable).
    KeyUnavailable {
        /// The source of the request that started the fetch.
        peer: SocketAddr,
        /// The identity and key id.
        identity: PskIdentity,
        /// Why.
        error: ResolveError,
    },
    /// A context was derived and is held.
    ContextDerived {
        /// The identity and key id.
        identity: PskIdentity,
    },
    /// The context had never been derived by this EMSE (its derived-context record says
    /// so, durably): its first request is answered at once, without the Echo challenge.
    FirstDerivation {
        /// The identity and key id.
        identity: PskIdentity,
    },
    /// The derived-context record could not be written: the context is treated as derived
    /// before (its first request gets the Echo challenge).
    RecordFailed {
        /// The identity and key id.
        identity: PskIdentity,
        /// Why (no key material).
        error: String,
    },
    /// The first request in a derived context was answered with a protected Echo challenge.
    EchoChallenge {
        /// The source.
        peer: SocketAddr,
    },
    /// A request verified and was answered.
    Exchanged {
        /// The source.
        peer: SocketAddr,
        /// The context's identity and key id.
        identity: PskIdentity,
        /// The inner response code.
        code: Code,
    },
    /// An unprotected answer was sent (context not found, decode error, budget spent).
    Refused {
        /// The source.
        peer: SocketAddr,
        /// The unprotected response code.
        code: Code,
    },
}

/// A running OSCORE endpoint. Dropping it stops it.
pub struct OscoreServerHandle {
    local_addr: SocketAddr,
    state: Arc<Mutex<State>>,
    events: Option<mpsc::Receiver<OscoreEvent>>,
    task: tokio::task::JoinHandle<()>,
}

impl OscoreServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The event stream (once). Events are dropped when the receiver falls behind.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<OscoreEvent>> {
        self.events.take()
    }

    /// Stops the endpoint.
    pub fn shutdown(self) {
        self.task.abort();
    }

    /// Drops every context of `identity` (on an EMKS notification about the UE: a new key,
    /// a retired key), so that its next request resolves the key again. Returns how many.
    pub fn forget_ue(&self, identity: &AppIdentity) -> usize {
        lock(&self.state).contexts.forget_ue(identity)
    }

    /// Contexts held now.
    pub fn contexts(&self) -> usize {
        lock(&self.state).contexts.len
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every state of the maps is valid; a panic elsewhere must not stop the endpoint.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for OscoreServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The EMSE's OSCORE endpoint.
pub struct OscoreServer;

impl OscoreServer {
    /// Binds `addr` and serves OSCORE-protected CoAP, resolving unknown contexts' keys with
    /// `resolver` and answering verified requests with `handler`. Waits up to one second
    /// before it returns (the challenge sequence starts at the next second; module docs).
    ///
    /// # Errors
    /// [`std::io::Error`] if the socket cannot be bound.
    ///
    /// Without a derived-context record every derived context starts with its replay window
    /// forgotten (module docs): first contact takes two round trips.
    /// [`Self::bind_with_record`] makes it one.
    pub async fn bind<R: PskResolver>(
        addr: SocketAddr,
        resolver: R,
        handler: OscoreHandler,
        config: OscoreServerConfig,
    ) -> Result<OscoreServerHandle, std::io::Error> {
        Self::bind_inner(addr, resolver, handler, config, None).await
    }

    /// [`Self::bind`] with the EMSE's durable record of the contexts it has derived (e.g.
    /// [`crate::derived_record::FileDerivedRecord`]): a context never derived before answers
    /// its first request at once (module docs, "Replay after a (re-)derivation").
    ///
    /// # Errors
    /// [`std::io::Error`] if the socket cannot be bound.
    pub async fn bind_with_record<R, D>(
        addr: SocketAddr,
        resolver: R,
        handler: OscoreHandler,
        config: OscoreServerConfig,
        record: D,
    ) -> Result<OscoreServerHandle, std::io::Error>
    where
        R: PskResolver,
        D: DerivedContextRecord + Send + 'static,
        D::Error: std::fmt::Display,
    {
        let record: SharedRecord = Arc::new(Mutex::new(record));
        Self::bind_inner(addr, resolver, handler, config, Some(record)).await
    }

    async fn bind_inner<R: PskResolver>(
        addr: SocketAddr,
        resolver: R,
        handler: OscoreHandler,
        config: OscoreServerConfig,
        record: Option<SharedRecord>,
    ) -> Result<OscoreServerHandle, std::io::Error> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let local_addr = socket.local_addr()?;
        let mut echo_secret = [0u8; 32];
        getrandom::fill(&mut echo_secret).map_err(std::io::Error::other)?;
        let gate = EmseGate::new(config.guard, &echo_secret, 30_000);
        let sequence = ChallengeSequence::starting_after(unix_now());
        // Wait until the clock admits the first number (at most one second).
        let wait = sequence.wait_until_usable(SystemTime::now());
        tokio::time::sleep(wait).await;
        let (events_tx, events_rx) = mpsc::channel(1024);
        let state = Arc::new(Mutex::new(State {
            gate,
            contexts: ContextStore::default(),
            in_flight: HashMap::new(),
            sequence,
            dedup: Dedup::default(),
        }));
        let shared = Arc::new(Shared {
            socket,
            resolver,
            handler,
            started: Instant::now(),
            state: Arc::clone(&state),
            config,
            events: events_tx,
            record,
        });
        let task = tokio::spawn(dispatch(shared));
        Ok(OscoreServerHandle {
            local_addr,
            state,
            events: Some(events_rx),
            task,
        })
    }
}

/// The EMSE-wide sequence of its own Partial IVs (module docs, "Replay after a
/// (re-)derivation").
#[derive(Debug)]
struct ChallengeSequence {
    next: u64,
}

/// 2026-01-01T00:00:00Z: the origin of the challenge sequence's clock.
const SEQUENCE_EPOCH_UNIX: u64 = 1_767_225_600;
/// Challenge numbers per second of wall clock.
const SEQUENCE_PER_SECOND: u64 = 1024;

impl ChallengeSequence {
    fn slot(unix: Duration) -> u64 {
        unix.as_secs()
            .saturating_sub(SEQUENCE_EPOCH_UNIX)
            .saturating_mul(SEQUENCE_PER_SECOND)
    }

    /// Starts at the first number of the next second: above every number a previous run
    /// can have used (it never ran ahead of its clock).
    fn starting_after(now: Duration) -> Self {
        ChallengeSequence {
            next: Self::slot(now) + SEQUENCE_PER_SECOND,
        }
    }

    fn wait_until_usable(&self, now: SystemTime) -> Duration {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let next_second = Duration::from_secs(now.as_secs() + 1);
        next_second.saturating_sub(now) + Duration::from_millis(5)
    }

    /// The next number, unless it is ahead of the clock.
    fn take(&mut self, now: Duration) -> Option<u64> {
        (self.next < Self::slot(now) + SEQUENCE_PER_SECOND).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

struct HeldContext {
    identity: AppIdentity,
    context: SecurityContext,
    last_used: u64,
    derived_at: Instant,
}

/// The held contexts, indexed by key id (key ids of different UEs may collide, so a key id
/// names a short list; the application identity or the AEAD tag picks one).
#[derive(Default)]
struct ContextStore {
    by_key_id: HashMap<KeyId, Vec<HeldContext>>,
    len: usize,
    clock: u64,
}

impl ContextStore {
    /// Whether a live context matches `hint` (expired ones are dropped here).
    fn has(&mut self, hint: &RequestHint, lifetime: Duration) -> bool {
        let Some(list) = self.by_key_id.get_mut(&hint.key_id) else {
            return false;
        };
        let before = list.len();
        list.retain(|c| c.derived_at.elapsed() < lifetime);
        self.len -= before - list.len();
        let found = hint.identity.as_ref().map_or(!list.is_empty(), |id| {
            list.iter().any(|c| &c.identity == id)
        });
        if list.is_empty() {
            self.by_key_id.remove(&hint.key_id);
        }
        found
    }

    fn forget_ue(&mut self, identity: &AppIdentity) -> usize {
        let before = self.len;
        self.by_key_id.retain(|_, list| {
            list.retain(|c| &c.identity != identity);
            !list.is_empty()
        });
        self.len = self.by_key_id.values().map(Vec::len).sum();
        before - self.len
    }

    fn insert(
        &mut self,
        identity: AppIdentity,
        key_id: KeyId,
        context: SecurityContext,
        max: usize,
    ) {
        self.clock += 1;
        let list = self.by_key_id.entry(key_id).or_default();
        if let Some(held) = list.iter_mut().find(|c| c.identity == identity) {
            // Another fetch for the same key finished first: keep its state.
            held.last_used = self.clock;
            return;
        }
        list.push(HeldContext {
            identity,
            context,
            last_used: self.clock,
            derived_at: Instant::now(),
        });
        self.len += 1;
        if self.len > max {
            self.evict_least_recent();
        }
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .by_key_id
            .iter()
            .flat_map(|(k, list)| {
                list.iter()
                    .enumerate()
                    .map(move |(i, c)| (c.last_used, *k, i))
            })
            .min();
        if let Some((_, key_id, index)) = oldest
            && let Some(list) = self.by_key_id.get_mut(&key_id)
        {
            list.swap_remove(index);
            self.len -= 1;
            if list.is_empty() {
                self.by_key_id.remove(&key_id);
            }
        }
    }
}

struct Pending {
    request: Message,
    from: SocketAddr,
}

/// Answers kept for retransmitted Confirmable requests: (source, message ID) → answer.
#[derive(Default)]
struct Dedup {
    answers: HashMap<(SocketAddr, u16), Vec<u8>>,
    order: VecDeque<(Instant, SocketAddr, u16)>,
}

impl Dedup {
    fn get(&self, from: SocketAddr, message_id: u16) -> Option<&Vec<u8>> {
        self.answers.get(&(from, message_id))
    }

    fn insert(
        &mut self,
        from: SocketAddr,
        message_id: u16,
        answer: &[u8],
        config: &OscoreServerConfig,
    ) {
        let now = Instant::now();
        while let Some(&(at, addr, mid)) = self.order.front() {
            if now.duration_since(at) < config.dedup_lifetime
                && self.order.len() < config.dedup_entries
            {
                break;
            }
            self.order.pop_front();
            self.answers.remove(&(addr, mid));
        }
        if config.dedup_entries > 0
            && self
                .answers
                .insert((from, message_id), answer.to_vec())
                .is_none()
        {
            self.order.push_back((now, from, message_id));
        }
    }
}

struct State {
    gate: EmseGate,
    contexts: ContextStore,
    in_flight: HashMap<(AppIdentity, KeyId), Vec<Pending>>,
    sequence: ChallengeSequence,
    dedup: Dedup,
}

/// A [`DerivedContextRecord`] with its error as text, behind one lock (it is written from
/// a blocking thread).
trait ErasedRecord: Send {
    fn record(
        &mut self,
        identity: &AppIdentity,
        key_id: KeyId,
        now_unix_s: u64,
    ) -> Result<Derivation, String>;
}

impl<D> ErasedRecord for D
where
    D: DerivedContextRecord + Send,
    D::Error: std::fmt::Display,
{
    fn record(
        &mut self,
        identity: &AppIdentity,
        key_id: KeyId,
        now_unix_s: u64,
    ) -> Result<Derivation, String> {
        DerivedContextRecord::record(self, identity, key_id, now_unix_s).map_err(|e| e.to_string())
    }
}

type SharedRecord = Arc<Mutex<dyn ErasedRecord>>;

struct Shared<R> {
    record: Option<SharedRecord>,
    socket: Arc<UdpSocket>,
    resolver: R,
    handler: OscoreHandler,
    started: Instant,
    state: Arc<Mutex<State>>,
    config: OscoreServerConfig,
    events: mpsc::Sender<OscoreEvent>,
}

impl<R> Shared<R> {
    fn emit(&self, event: OscoreEvent) {
        let _ = self.events.try_send(event);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn send(&self, datagram: &[u8], to: SocketAddr) {
        // UDP: a failed send is a lost datagram; the client retransmits.
        let _ = self.socket.send_to(datagram, to).await;
    }
}

/// The source address octets the fetch budget is kept for (module docs, item 1).
fn budget_source(addr: SocketAddr) -> Vec<u8> {
    match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    }
}

/// What the dispatcher does with one datagram after deciding under the lock.
enum Step {
    Send(Vec<u8>),
    Fetch(AppIdentity, KeyId),
    Nothing,
}

async fn dispatch<R: PskResolver>(shared: Arc<Shared<R>>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((n, from)) = shared.socket.recv_from(&mut buf).await else {
            // ICMP errors surface on UDP receives on some systems; keep serving.
            continue;
        };
        // Not CoAP, or not a request (responses, empty ACK/RST): nothing to answer.
        let Ok(request) = Message::decode(&buf[..n]) else {
            continue;
        };
        if !request.code.is_request() {
            continue;
        }
        match decide(&shared, request, from) {
            Step::Send(answer) => shared.send(&answer, from).await,
            Step::Fetch(identity, key_id) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move { fetch(&shared, identity, key_id, from).await });
            }
            Step::Nothing => {}
        }
    }
}

/// Classifies one request and does everything that needs no waiting.
fn decide<R: PskResolver>(shared: &Shared<R>, request: Message, from: SocketAddr) -> Step {
    let now_ms = shared.now_ms();
    let mut guard = shared.lock();
    let state = &mut *guard;
    if request.mtype == MessageType::Confirmable
        && let Some(answer) = state.dedup.get(from, request.message_id)
    {
        return Step::Send(answer.clone());
    }
    let contexts = &mut state.contexts;
    let lifetime = shared.config.context_lifetime;
    let resolver = &shared.resolver;
    let classified = state
        .gate
        .classify_lookup(&request, &budget_source(from), now_ms, |hint| {
            lookup(contexts, resolver, hint, lifetime)
        });
    match classified {
        Classified::Answer(answer) => {
            shared.emit(OscoreEvent::Refused {
                peer: from,
                code: answer.code,
            });
            Step::Send(answer.encode())
        }
        Classified::Verify(hint) => match verify_and_answer(shared, state, &request, from, &hint) {
            Some(answer) => Step::Send(answer),
            None => Step::Nothing,
        },
        Classified::Fetch { identity, key_id } => {
            let slot = (identity.clone(), key_id);
            if let Some(waiting) = state.in_flight.get_mut(&slot) {
                if waiting.len() < shared.config.max_waiting_per_fetch {
                    waiting.push(Pending { request, from });
                }
                return Step::Nothing;
            }
            if state.in_flight.len() >= shared.config.max_fetches_in_flight {
                let answer = service_unavailable(&request, 1);
                shared.emit(OscoreEvent::Refused {
                    peer: from,
                    code: answer.code,
                });
                return Step::Send(answer.encode());
            }
            state
                .in_flight
                .insert(slot, vec![Pending { request, from }]);
            Step::Fetch(identity, key_id)
        }
    }
}

/// A held context, else the resolver's answer at hand ([`PskResolver::resolve_local`]: a
/// cached key or a cached "unknown"), which the gate lets through without a fetch token
/// (as the DTLS server asks `resolve_local` before it spends the source's budget); the
/// fetch task then gets that answer from the resolver without asking the key server.
fn lookup<R: PskResolver>(
    contexts: &mut ContextStore,
    resolver: &R,
    hint: &RequestHint,
    lifetime: Duration,
) -> ContextLookup {
    if contexts.has(hint, lifetime) {
        return ContextLookup::Held;
    }
    match &hint.identity {
        Some(identity)
            if resolver
                .resolve_local(&PskIdentity::new(identity.clone(), hint.key_id))
                .is_some() =>
        {
            ContextLookup::KeyAtHand
        }
        _ => ContextLookup::Absent,
    }
}

/// 5.03 Service Unavailable with Max-Age (seconds).
fn service_unavailable(request: &Message, max_age: u8) -> Message {
    let mut answer = request.piggybacked_response(Code::SERVICE_UNAVAILABLE, Vec::new());
    if request.mtype != MessageType::Confirmable {
        answer.mtype = MessageType::NonConfirmable;
    }
    let _ = answer.options.push(OptionNumber::MAX_AGE, &[max_age]);
    answer
}

/// Tries the held contexts that match `hint`; answers with the first that verifies, or
/// with the unprotected error of the last failure. `None`: drop the request (the challenge
/// sequence is ahead of the clock; the client retransmits).
fn verify_and_answer<R>(
    shared: &Shared<R>,
    state: &mut State,
    request: &Message,
    from: SocketAddr,
    hint: &RequestHint,
) -> Option<Vec<u8>> {
    let mut failure = OscoreError::ContextNotFound;
    state.contexts.clock += 1;
    let clock = state.contexts.clock;
    let candidates = state.contexts.by_key_id.get_mut(&hint.key_id);
    for held in candidates.into_iter().flatten() {
        if hint
            .identity
            .as_ref()
            .is_some_and(|id| id != &held.identity)
        {
            continue;
        }
        let verified = match held.context.verify_request(request) {
            Ok(verified) => verified,
            Err(e) => {
                failure = e;
                continue;
            }
        };
        held.last_used = clock;
        let identity = PskIdentity::new(held.identity.clone(), hint.key_id);
        let mut out = Vec::with_capacity(128);
        match verified {
            VerifiedRequest::Fresh {
                message,
                request: id,
            } => {
                let peer = OscorePeer {
                    addr: from,
                    identity: held.identity.clone(),
                    key_id: hint.key_id,
                };
                let response = (shared.handler)(&peer, &message);
                let code = response.code;
                held.context
                    .protect_response_datagram(&response, &id, false, &mut out)
                    .ok()?;
                shared.emit(OscoreEvent::Exchanged {
                    peer: from,
                    identity,
                    code,
                });
            }
            VerifiedRequest::EchoRequired { request: id } => {
                let number = state.sequence.take(unix_now())?;
                *held.context.sequence_mut() = SenderSequence::volatile_from(number);
                let mut echo = [0u8; 8];
                getrandom::fill(&mut echo).ok()?;
                let challenge = held.context.echo_challenge(request, &id, &echo).ok()?;
                challenge.encode_into(&mut out);
                shared.emit(OscoreEvent::EchoChallenge { peer: from });
            }
        }
        if request.mtype == MessageType::Confirmable {
            state
                .dedup
                .insert(from, request.message_id, &out, &shared.config);
        }
        return Some(out);
    }
    let answer = unprotected_error(request, failure).unwrap_or_else(|| context_not_found(request));
    shared.emit(OscoreEvent::Refused {
        peer: from,
        code: answer.code,
    });
    Some(answer.encode())
}

/// Seed steps 5–7 for OSCORE: fetch the key on this task, derive the context, answer the
/// requests that waited for it.
async fn fetch<R: PskResolver>(
    shared: &Shared<R>,
    identity: AppIdentity,
    key_id: KeyId,
    first_from: SocketAddr,
) {
    let psk_identity = PskIdentity::new(identity.clone(), key_id);
    shared.emit(OscoreEvent::Fetching {
        peer: first_from,
        identity: psk_identity.clone(),
    });
    let fetched = tokio::time::timeout(
        shared.config.resolve_timeout,
        shared.resolver.resolve(&psk_identity),
    )
    .await
    .unwrap_or_else(|_| Err(ResolveError::Unavailable("timed out".into())));
    let context = fetched.and_then(|key: E2mKey| {
        shared
            .config
            .profile
            .emse_context(&key, &identity, key_id, SenderSequence::volatile())
            .map_err(|e| ResolveError::Unavailable(format!("context: {e}")))
    });
    // Durably record the derivation before anything is answered under the context
    // (module docs): on a blocking thread, the record syncs a file.
    let derivation = match (&context, &shared.record) {
        (Ok(_), Some(record)) => {
            let record = Arc::clone(record);
            let id = identity.clone();
            let now = unix_now().as_secs();
            let written = tokio::task::spawn_blocking(move || {
                record
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(&id, key_id, now)
            })
            .await
            .unwrap_or_else(|e| Err(format!("record task: {e}")));
            match written {
                Ok(derivation) => Some(derivation),
                Err(error) => {
                    shared.emit(OscoreEvent::RecordFailed {
                        identity: psk_identity.clone(),
                        error,
                    });
                    None
                }
            }
        }
        _ => None,
    };
    let mut answers: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
    {
        let mut guard = shared.lock();
        let state = &mut *guard;
        let waiting = state
            .in_flight
            .remove(&(identity.clone(), key_id))
            .unwrap_or_default();
        match context {
            Ok(mut context) => {
                // Appendix B.1.2 unless the record says this EMSE never derived this
                // context before (module docs).
                Derivation::apply(derivation, &mut context);
                if derivation == Some(Derivation::First) {
                    shared.emit(OscoreEvent::FirstDerivation {
                        identity: psk_identity.clone(),
                    });
                }
                state.contexts.insert(
                    identity.clone(),
                    key_id,
                    context,
                    shared.config.max_contexts.max(1),
                );
                shared.emit(OscoreEvent::ContextDerived {
                    identity: psk_identity.clone(),
                });
                let hint = RequestHint {
                    key_id,
                    identity: Some(identity.clone()),
                };
                for pending in waiting {
                    // A retransmission that waited behind the fetch gets the first answer.
                    let answered = (pending.request.mtype == MessageType::Confirmable)
                        .then(|| state.dedup.get(pending.from, pending.request.message_id))
                        .flatten()
                        .cloned();
                    if let Some(answer) = answered.or_else(|| {
                        verify_and_answer(shared, state, &pending.request, pending.from, &hint)
                    }) {
                        answers.push((answer, pending.from));
                    }
                }
            }
            Err(error) => {
                for pending in waiting {
                    let answer = match error {
                        ResolveError::Unavailable(_) => service_unavailable(&pending.request, 5),
                        _ => context_not_found(&pending.request),
                    };
                    shared.emit(OscoreEvent::Refused {
                        peer: pending.from,
                        code: answer.code,
                    });
                    answers.push((answer.encode(), pending.from));
                }
                shared.emit(OscoreEvent::KeyUnavailable {
                    peer: first_from,
                    identity: psk_identity,
                    error,
                });
            }
        }
    }
    for (answer, to) in answers {
        shared.send(&answer, to).await;
    }
}

/// The default application, as the DTLS server's: GET → 2.05 with a greeting naming the
/// UE's identity and key id; other methods → 4.05.
pub fn default_handler() -> OscoreHandler {
    Arc::new(|peer: &OscorePeer, request: &Message| {
        if request.code == Code::GET {
            let body = format!(
                "hello {} (key id {}), you asked for /{}",
                peer.identity,
                peer.key_id,
                request.uri_path()
            );
            request.piggybacked_response(Code::CONTENT, body.into_bytes())
        } else {
            request.piggybacked_response(Code::METHOD_NOT_ALLOWED, Vec::new())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_numbers_never_run_ahead_of_the_clock() {
        let t0 = Duration::from_secs(SEQUENCE_EPOCH_UNIX + 100);
        let mut first = ChallengeSequence::starting_after(t0);
        // Within the starting second nothing may be taken: the next second's numbers.
        assert_eq!(first.take(t0), None);
        let t1 = t0 + Duration::from_secs(1);
        let mut used = Vec::new();
        while let Some(n) = first.take(t1) {
            used.push(n);
        }
        assert_eq!(used.len() as u64, SEQUENCE_PER_SECOND);
        // A restart in the same second starts above every number used.
        let mut second = ChallengeSequence::starting_after(t1);
        let t2 = t1 + Duration::from_secs(1);
        let n = second.take(t2).unwrap_or(0);
        assert!(used.iter().all(|u| *u < n), "{n} repeats a used number");
    }

    #[test]
    fn budget_source_ignores_the_port() {
        let a: SocketAddr = "127.0.0.9:1000"
            .parse()
            .unwrap_or_else(|e| unreachable!("{e}"));
        let b: SocketAddr = "127.0.0.9:2000"
            .parse()
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(budget_source(a), budget_source(b));
    }
}
