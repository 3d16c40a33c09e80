//! The EMSE's DTLS-PSK server: many UEs at once, the PSK of each fetched asynchronously.
//!
//! # How the key fetch avoids blocking the runtime
//!
//! `dimpl` asks for the PSK through a *synchronous* callback in the middle of processing
//! the ClientKeyExchange, but the EMSE's key comes from the EMKS over HTTPS (seed 6.x.2.3
//! steps 5–6), which takes a network round trip. Blocking inside the callback would stall
//! a runtime worker, and with it every other UE scheduled there.
//!
//! So the EMSE **peeks** first. Every peer has its own tokio task that owns its `dimpl`
//! state machine; the socket's dispatcher task only routes datagrams by source address.
//! Before a datagram is fed to the state machine, the peer task looks for a plaintext
//! (epoch 0) ClientKeyExchange in it and reads its `psk_identity` (RFC 4279 §2; under PSK
//! the ClientKeyExchange precedes ChangeCipherSpec, RFC 5246 §7.3, so it is never
//! encrypted). It then awaits the [`PskResolver`] — only this peer's task waits, and the
//! datagrams that arrive meanwhile queue in its channel — stores the answer in the peer's
//! slot, and only then hands the datagram to `dimpl`, whose callback reads the slot
//! without waiting. The alternative, running each state machine on a blocking thread, would
//! cost a thread per handshake in flight; peeking costs a few bounds-checked reads.
//!
//! The callback also **records the identity**: `dimpl` has no accessor for the peer's
//! identity after the handshake, so the slot remembers which identity `dimpl` asked for and
//! gives the key only for exactly the octets that were peeked. The identity reported in
//! [`ServerEvent::Connected`] is therefore the one whose key completed the Finished check.
//!
//! An identity that does not parse, a fragmented ClientKeyExchange, or a resolver error
//! makes the callback answer "no key": `dimpl` then continues with a random key and the
//! handshake fails at Finished exactly as for a wrong PSK (seed: an evicted key id "fails
//! like a wrong PSK"), with the reason reported in [`ServerEvent`].
//!
//! # Cookie first, then state (RFC 6347 §4.2.1)
//! The socket's dispatcher answers a ClientHello from an address it has no peer for
//! **statelessly**: a HelloVerifyRequest with a cookie that is a MAC over the client's
//! address, port and ClientHello parameters (see the `cookie` module). Only a ClientHello
//! that returns a valid cookie creates a peer task, and only a peer task ever peeks a
//! ClientKeyExchange or asks the resolver for a key; any other datagram from an unknown
//! address (a bare ClientKeyExchange, a forged or replayed cookie) is dropped. A spoofed
//! source address therefore costs the EMSE one MAC and one small datagram, never a task,
//! a slot or a key fetch. Peers are bounded globally ([`ServerConfig::max_peers`]) and per
//! source IP address ([`ServerConfig::max_peers_per_ip`]), both counted only for sources
//! that proved they receive at their address; a peer that sends nothing for
//! [`ServerConfig::idle_timeout`] is dropped.
//!
//! # A fetch budget per source address
//! A source that does return cookies could still name a made-up identity in every
//! handshake, and each would cost a key fetch from the EMKS. So before a fetch the peer
//! task takes a token from its source IP address's bucket
//! ([`ServerConfig::fetch_budget`], the terms of the OSCORE endpoint's budget), and a fetch
//! that found a key gives its token back: a source spends its budget only on fetches that
//! found nothing. An answer the resolver has at hand ([`PskResolver::resolve_local`]: a
//! cached key, or a cached "unknown") costs no token. Without a token the task waits for
//! one until [`ServerConfig::resolve_timeout`]; then the handshake ends with
//! `internal_error` (try again later) and [`ServerEvent::FetchRefused`], and the key server
//! is not asked. Tokens are counted per IPv4 address or IPv6 /64, not per port (ports,
//! and the addresses of one's own /64, are free to a sender), and UEs behind one NAT
//! address share the bucket: the default lets 16 fetches run at once per source and 30
//! fetches that found nothing per minute.
//!
//! # Alerts
//! A handshake that fails ends with a fatal alert to the client (RFC 5246 §7.2), so a UE
//! fails fast instead of waiting for its own deadline: `handshake_failure` when the client
//! offers no suite we serve (answered by the dispatcher, again without state), and on a
//! PSK failure `decrypt_error` (wrong key, unknown identity, key id no longer held,
//! malformed identity: one answer for all, RFC 4279 §2) or, if configured
//! ([`PskFailureAlert::UnknownPskIdentity`]), `unknown_psk_identity` as soon as the key
//! source says it has no key. A key source that cannot be reached gives `internal_error`
//! (try again later, not re-authenticate). `dimpl` sends no alert when its handshake fails,
//! so the server sends it: a plaintext epoch-0 alert record, built by the `record` module,
//! numbered after the last epoch-0 record sent to that client. The EMSE has not sent its
//! ChangeCipherSpec at any of these points, so epoch 0 is its current write state, the
//! one RFC 5246 §7.2 says alerts use.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dimpl::{Dtls, Output};
use e2m_oscore::e2m::FetchBudgetConfig;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use zeroize::Zeroize;

use super::akma::{self, AkmaResolver, DynAkmaResolver};
use super::budget::FetchBudget;
use super::cookie::{self, COOKIE_LEN, CookieJar};
use super::crypto;
use super::record::{
    self, CkePeek, ClientHello, RANDOM_LEN, as_first_client_hello, parse_client_hello,
    peek_psk_identity,
};
use super::udp::Udp;
use super::{
    AlertDescription, DtlsError, DtlsLimits, MAX_DATAGRAM, PeerIdentity, PskKey, PskResolver,
    ResolveError, builder,
};

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Handshake limits (deadline, retransmission, MTU).
    pub limits: DtlsLimits,
    /// Most peers (handshaking or connected) at once; further ClientHellos (with a valid
    /// cookie) are dropped, and the client's retransmission tries again.
    pub max_peers: usize,
    /// Most peers at once from one source IP address (all ports). UEs behind one
    /// carrier-grade NAT share an address, so this is well above one; it keeps a single
    /// host that can receive at its address from taking every slot.
    pub max_peers_per_ip: usize,
    /// How often the cookie secret changes; a cookie is accepted for one to two periods.
    pub cookie_rotation: Duration,
    /// Which alert a PSK failure gets (RFC 4279 §2).
    pub psk_failure_alert: PskFailureAlert,
    /// How long one key fetch may take, waiting for a token of the fetch budget included,
    /// before the handshake is failed.
    pub resolve_timeout: Duration,
    /// Key fetches per source, an IPv4 address or an IPv6 /64 (module docs, "A fetch
    /// budget per source address"): `burst` at once, and `per_minute` fetches that found no key; a fetch
    /// that found a key costs nothing. `max_sources` bounds the addresses tracked.
    pub fetch_budget: FetchBudgetConfig,
    /// A connected peer that sends nothing for this long is dropped.
    pub idle_timeout: Duration,
    /// Datagrams queued per peer while it waits (more are dropped, as UDP may).
    pub queue_per_peer: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: DtlsLimits::default(),
            max_peers: 10_000,
            max_peers_per_ip: 256,
            cookie_rotation: Duration::from_secs(30),
            psk_failure_alert: PskFailureAlert::DecryptError,
            resolve_timeout: Duration::from_secs(5),
            fetch_budget: FetchBudgetConfig {
                burst: 16,
                per_minute: 30,
                max_sources: 65_536,
            },
            idle_timeout: Duration::from_secs(60),
            queue_per_peer: 32,
        }
    }
}

/// The alert a PSK failure (no key for the identity, or a wrong key) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PskFailureAlert {
    /// `decrypt_error` after the client's Finished, whatever the cause, so that a prober
    /// cannot tell an unknown identity from a wrong key (RFC 4279 §2, second option; the
    /// e2m default: "a key id that is no longer held fails like a wrong PSK").
    #[default]
    DecryptError,
    /// `unknown_psk_identity` as soon as the key source has no key for the identity (or
    /// the identity is not an e2m one), so that a UE learns at once that it must
    /// re-authenticate (RFC 4279 §2, first option). A wrong key still gets
    /// `decrypt_error`.
    UnknownPskIdentity,
}

/// A connected UE as the application handler sees it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The UE's UDP address.
    pub addr: SocketAddr,
    /// The `psk_identity` whose key completed the handshake.
    pub identity: PeerIdentity,
}

/// The application: plaintext in, optional plaintext reply out.
pub type AppHandler = Arc<dyn Fn(&PeerInfo, &[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// What happened to a peer (for narration and tests). Carries no key material.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The EMSE read a `psk_identity` and is fetching its key (seed step 5).
    Fetching {
        /// The UE's address.
        peer: SocketAddr,
        /// The identity.
        identity: PeerIdentity,
    },
    /// The handshake completed (seed step 8).
    Connected {
        /// The UE's address.
        peer: SocketAddr,
        /// The authenticated identity.
        identity: PeerIdentity,
    },
    /// The source's fetch budget was spent and no token came back in time: the key
    /// server was not asked, and the handshake ends with `internal_error`.
    FetchRefused {
        /// The UE's address.
        peer: SocketAddr,
        /// The identity.
        identity: PeerIdentity,
    },
    /// The resolver had no key; the handshake will fail.
    KeyUnavailable {
        /// The UE's address.
        peer: SocketAddr,
        /// The identity.
        identity: PeerIdentity,
        /// Why.
        error: ResolveError,
    },
    /// The handshake failed or the connection ended with an error.
    Failed {
        /// The UE's address.
        peer: SocketAddr,
        /// The identity, if one was read.
        identity: Option<PeerIdentity>,
        /// Why (no key material).
        reason: String,
    },
    /// The application handled a message.
    Exchanged {
        /// The UE's address.
        peer: SocketAddr,
        /// Octets received.
        request_len: usize,
        /// Octets answered.
        response_len: usize,
    },
    /// The peer closed the connection (close_notify) or went idle.
    Closed {
        /// The UE's address.
        peer: SocketAddr,
    },
    /// The EMSE ended a handshake with this fatal alert.
    AlertSent {
        /// The UE's address.
        peer: SocketAddr,
        /// The alert.
        alert: AlertDescription,
    },
}

/// A running server. Dropping it stops the server and every peer task.
pub struct ServerHandle {
    local_addr: SocketAddr,
    events: Option<mpsc::Receiver<ServerEvent>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The event stream (once). Events are dropped, not queued without bound, when the
    /// receiver falls behind.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<ServerEvent>> {
        self.events.take()
    }

    /// Stops the server.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The EMSE's DTLS-PSK server.
pub struct DtlsServer;

impl DtlsServer {
    /// Binds `addr` and serves DTLS 1.2 with TLS_PSK_WITH_AES_128_CCM_8, fetching each
    /// identity's key from `resolver` and answering application data with `handler`.
    ///
    /// # Errors
    /// [`DtlsError::Io`] if the socket cannot be bound, [`DtlsError::Config`] if `dimpl`
    /// refuses the configuration or the system's random source fails.
    pub async fn bind<R: PskResolver>(
        addr: SocketAddr,
        resolver: R,
        handler: AppHandler,
        config: ServerConfig,
    ) -> Result<ServerHandle, DtlsError> {
        Self::serve(addr, resolver, None, handler, config).await
    }

    /// As [`Self::bind`], serving the AKMA Ua* profile beside the e2m one (TS 24.109
    /// K.3.2; see the [`akma`] module): the ServerKeyExchange carries the
    /// `psk_identity_hint` `"3GPP-AKMA"`, and a `psk_identity` that starts with
    /// `"3GPP-AKMA"` names an A-KID whose K_AF `akma` resolves, under the same fetch
    /// budget per source as e2m keys. Every other identity takes the e2m path of
    /// [`Self::bind`] (`resolver`; [`NoPsk`](crate::NoPsk) for an AF without e2m).
    ///
    /// # Errors
    /// As [`Self::bind`].
    pub async fn bind_with_akma<R: PskResolver, A: AkmaResolver>(
        addr: SocketAddr,
        resolver: R,
        akma: A,
        handler: AppHandler,
        config: ServerConfig,
    ) -> Result<ServerHandle, DtlsError> {
        Self::serve(addr, resolver, Some(Box::new(akma)), handler, config).await
    }

    async fn serve<R: PskResolver>(
        addr: SocketAddr,
        resolver: R,
        akma: Option<Box<dyn DynAkmaResolver>>,
        handler: AppHandler,
        config: ServerConfig,
    ) -> Result<ServerHandle, DtlsError> {
        let socket = Udp::bind(addr)?;
        let local_addr = socket.local_addr()?;
        let dimpl_config = Arc::new(
            builder(&config.limits)
                // dimpl's own cookie check stays on: it is how dimpl reaches the state
                // "HelloVerifyRequest sent", and the provider defers it to ours (see the
                // `cookie` module).
                .use_server_cookie(true)
                .with_crypto_provider(cookie::server_crypto_provider())
                .with_psk_server(
                    akma.is_some()
                        .then(|| akma::AKMA_PSK_IDENTITY_HINT.to_vec()),
                    Arc::new(SlotResolver),
                )
                .build()
                .map_err(|e| DtlsError::Config(format!("{e:?}")))?,
        );
        let cookies = CookieJar::new(config.cookie_rotation, Instant::now())
            .map_err(|e| DtlsError::Config(format!("random source: {e}")))?;
        let (events_tx, events_rx) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            socket,
            resolver,
            akma,
            handler,
            budget: Mutex::new(FetchBudget::new(config.fetch_budget)),
            budget_freed: Notify::new(),
            started: Instant::now(),
            config,
            dimpl_config,
            events: events_tx,
        });
        let task = tokio::spawn(dispatch(shared, cookies));
        Ok(ServerHandle {
            local_addr,
            events: Some(events_rx),
            task,
        })
    }
}

struct Shared<R> {
    socket: Udp,
    resolver: R,
    /// The AKMA profile's resolver, if served ([`DtlsServer::bind_with_akma`]).
    akma: Option<Box<dyn DynAkmaResolver>>,
    handler: AppHandler,
    /// The fetch budget per source address, and the wake-up of tasks waiting for a token
    /// when one is given back.
    budget: Mutex<FetchBudget>,
    budget_freed: Notify,
    /// The budget's time origin.
    started: Instant,
    config: ServerConfig,
    dimpl_config: Arc<dimpl::Config>,
    events: mpsc::Sender<ServerEvent>,
}

impl<R> Shared<R> {
    fn emit(&self, event: ServerEvent) {
        // Never wait on a slow observer: drop the event instead.
        let _ = self.events.try_send(event);
    }

    /// Milliseconds since the server started: the budget's clock.
    fn budget_now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, FetchBudget> {
        // A poisoned lock only means a task panicked while holding a map whose every state
        // is valid; keep serving.
        self.budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a fetch token for `source`, waiting until `deadline` for one to come back or
    /// refill. `false`: none came.
    async fn take_fetch_token(&self, source: IpAddr, deadline: tokio::time::Instant) -> bool {
        loop {
            // Registered before the check, so that a token given back between the check and
            // the wait is not missed.
            let freed = self.budget_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let refill = match self.budget().take(source, self.budget_now_ms()) {
                Ok(()) => return true,
                Err(refill) => refill,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let until = refill.map_or(deadline, |wait| (now + wait).min(deadline));
            tokio::select! {
                () = &mut freed => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Gives back the token of a fetch from `source` that found a key.
    fn give_back_fetch_token(&self, source: IpAddr) {
        self.budget().give_back(source, self.budget_now_ms());
        self.budget_freed.notify_waiters();
    }
}

/// A peer task as the dispatcher knows it.
struct PeerEntry {
    generation: u64,
    tx: mpsc::Sender<Vec<u8>>,
}

/// The dispatcher's state: who has a task, how many per source address, the cookies.
struct Dispatcher<R> {
    shared: Arc<Shared<R>>,
    cookies: CookieJar,
    peers: HashMap<SocketAddr, PeerEntry>,
    /// Live peer tasks per source IP address (a task counts until it has ended).
    per_ip: HashMap<IpAddr, usize>,
    tasks: JoinSet<(SocketAddr, u64)>,
    generation: u64,
}

/// The socket loop: routes each datagram to its peer's task, answers a new address
/// statelessly until it returns a valid cookie (then starts its task), and forgets peers
/// whose task ended.
async fn dispatch<R: PskResolver>(shared: Arc<Shared<R>>, cookies: CookieJar) {
    let mut dispatcher = Dispatcher {
        shared: Arc::clone(&shared),
        cookies,
        peers: HashMap::new(),
        per_ip: HashMap::new(),
        tasks: JoinSet::new(),
        generation: 0,
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            received = shared.socket.recv_from(&mut buf) => {
                let Ok((n, from)) = received else {
                    // ICMP errors surface on UDP receives on some systems; keep serving.
                    continue;
                };
                dispatcher.route(from, &buf[..n]);
            }
            Some(done) = dispatcher.tasks.join_next() => {
                if let Ok((addr, generation)) = done {
                    dispatcher.ended(addr, generation);
                }
            }
        }
    }
}

impl<R: PskResolver> Dispatcher<R> {
    /// One datagram from `from`.
    fn route(&mut self, from: SocketAddr, datagram: &[u8]) {
        if let Some(entry) = self.peers.get(&from) {
            match entry.tx.try_send(datagram.to_vec()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => return,
                // The task is ending: treat the datagram as from a new address.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.peers.remove(&from);
                }
            }
        }
        // RFC 6347 §4.2.1: a new address gets nothing but a stateless answer until it
        // returns a cookie. A bare ClientKeyExchange, anything unparsable: dropped.
        let Some(hello) = parse_client_hello(datagram) else {
            return;
        };
        self.cookies.rotate_if_due(Instant::now());
        if !self.cookies.verify(from, &hello) {
            let cookie = self.cookies.cookie(from, &hello);
            self.send_stateless(&record::hello_verify_request(&hello, &cookie), from);
            return;
        }
        if !hello.offers_our_suite() {
            // RFC 5246 §7.4.1.3: no acceptable suite → handshake_failure.
            let alert = AlertDescription::HANDSHAKE_FAILURE;
            self.send_stateless(&record::fatal_alert(alert.0, record_sequence(&hello)), from);
            self.shared
                .emit(ServerEvent::AlertSent { peer: from, alert });
            return;
        }
        let from_ip = self.per_ip.get(&from.ip()).copied().unwrap_or(0);
        if self.tasks.len() >= self.shared.config.max_peers
            || from_ip >= self.shared.config.max_peers_per_ip
        {
            // Full: drop, and the client's retransmission tries again.
            return;
        }
        self.start_peer(from, &hello, datagram.to_vec());
    }

    /// Sends a stateless answer; a full socket buffer drops it, as UDP may.
    fn send_stateless(&self, datagram: &[u8], to: SocketAddr) {
        let _ = self.shared.socket.send_to(datagram, to);
    }

    fn start_peer(&mut self, from: SocketAddr, hello: &ClientHello<'_>, datagram: Vec<u8>) {
        let mut cookie = [0u8; COOKIE_LEN];
        cookie.copy_from_slice(hello.cookie);
        let verified = VerifiedHello {
            random: *hello.random,
            cookie,
            record_sequence: record_sequence(hello),
            datagram,
        };
        self.generation += 1;
        let generation = self.generation;
        let (tx, rx) = mpsc::channel(self.shared.config.queue_per_peer.max(1));
        self.peers.insert(from, PeerEntry { generation, tx });
        *self.per_ip.entry(from.ip()).or_insert(0) += 1;
        let shared = Arc::clone(&self.shared);
        self.tasks.spawn(async move {
            run_peer(&shared, from, rx, verified).await;
            (from, generation)
        });
    }

    /// A peer task ended: release its slot and forget its route (unless a newer task
    /// already serves the address).
    fn ended(&mut self, addr: SocketAddr, generation: u64) {
        if let Entry::Occupied(mut count) = self.per_ip.entry(addr.ip()) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
        if self
            .peers
            .get(&addr)
            .is_some_and(|entry| entry.generation == generation)
        {
            self.peers.remove(&addr);
        }
    }
}

/// The 48-bit record sequence number of a ClientHello (its epoch is 0).
fn record_sequence(hello: &ClientHello<'_>) -> u64 {
    u64::from_be_bytes(hello.record_sequence)
}

/// A ClientHello whose cookie the dispatcher verified: what its peer task starts from.
struct VerifiedHello {
    random: [u8; RANDOM_LEN],
    cookie: [u8; COOKIE_LEN],
    record_sequence: u64,
    datagram: Vec<u8>,
}

/// The PSK slot of one handshake: the identity octets that were peeked and the key the
/// resolver returned for them.
#[derive(Default)]
struct SlotState {
    identity: Option<Vec<u8>>,
    key: Option<PskKey>,
    /// Set when `dimpl` asked for exactly `identity` (the "record the identity" rule).
    asked: bool,
}

tokio::task_local! {
    static SLOT: Arc<Mutex<SlotState>>;
}

/// `dimpl`'s synchronous resolver: reads the slot of the peer whose state machine is being
/// driven (set around every call into `dimpl` with `SLOT.sync_scope`). Never waits.
struct SlotResolver;

impl dimpl::PskResolver for SlotResolver {
    fn resolve(&self, identity: &[u8]) -> Option<Vec<u8>> {
        SLOT.try_with(|slot| {
            let mut state = slot.lock().ok()?;
            if state.identity.as_deref() != Some(identity) {
                return None;
            }
            state.asked = true;
            state.key.as_ref().map(|k| k.expose_secret().to_vec())
        })
        .ok()
        .flatten()
    }
}

fn tokio_deadline(at: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(at)
}

/// One peer: owns its state machine; ends on close, error, deadline or idleness.
async fn run_peer<R: PskResolver>(
    shared: &Shared<R>,
    peer: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    hello: VerifiedHello,
) {
    let started = Instant::now();
    let mut task = PeerTask {
        shared,
        peer,
        slot: Arc::new(Mutex::new(SlotState::default())),
        dtls: Box::new(Dtls::new_12_psk(Arc::clone(&shared.dimpl_config), started)),
        identity: None,
        connected: None,
        peeked: false,
        started,
        last_activity: started,
        next_timer: None,
        out: vec![0u8; MAX_DATAGRAM],
        // The last epoch-0 record the client saw from us is at most the
        // HelloVerifyRequest, which reused the sequence number of the client's first
        // ClientHello (below this one).
        alerts: Alerter {
            next_sequence: hello.record_sequence,
        },
    };
    if task.start(&hello).await == Step::End {
        return;
    }
    loop {
        match task.drain().await {
            Step::End => return,
            // Replies were queued: send them before waiting.
            Step::Again => continue,
            Step::Wait => {}
        }
        let Some(datagram) = task.wait(&mut rx).await else {
            return;
        };
        if let Some(datagram) = datagram
            && task.receive(&datagram).await == Step::End
        {
            return;
        }
    }
}

/// What a peer task does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Drain the state machine again.
    Again,
    /// Wait for a datagram or a timer.
    Wait,
    /// The peer is done.
    End,
}

/// The state of one peer's task.
struct PeerTask<'s, R> {
    shared: &'s Shared<R>,
    peer: SocketAddr,
    slot: Arc<Mutex<SlotState>>,
    /// Boxed: `dimpl`'s state is over 3 KiB, and the task's future is moved when spawned.
    dtls: Box<Dtls>,
    identity: Option<PeerIdentity>,
    connected: Option<PeerInfo>,
    /// Whether the ClientKeyExchange has been peeked (and its key fetched).
    peeked: bool,
    started: Instant,
    last_activity: Instant,
    next_timer: Option<Instant>,
    out: Vec<u8>,
    alerts: Alerter,
}

impl<R: PskResolver> PeerTask<'_, R> {
    fn fail(&self, reason: String) {
        self.shared.emit(ServerEvent::Failed {
            peer: self.peer,
            identity: self.identity.clone(),
            reason,
        });
    }

    /// Reports a failed handshake and sends its alert.
    async fn handshake_failed(&mut self, e: &dimpl::Error) -> Step {
        self.fail(handshake_failure(&self.slot, e));
        if self.connected.is_none() {
            self.alerts.send_for_error(self.shared, self.peer, e).await;
        }
        Step::End
    }

    /// The verified ClientHello, handed to `dimpl` (see [`start_after_cookie`]).
    async fn start(&mut self, hello: &VerifiedHello) -> Step {
        let (dtls, out) = (&mut self.dtls, &mut self.out);
        match SLOT.sync_scope(Arc::clone(&self.slot), || {
            crypto::scope(|| start_after_cookie(dtls, hello, out))
        }) {
            Ok(()) => Step::Wait,
            Err(e) => self.handshake_failed(&e).await,
        }
    }

    /// One datagram from the peer: first the ClientKeyExchange peek and key fetch (seed
    /// steps 5–7), then the state machine.
    async fn receive(&mut self, datagram: &[u8]) -> Step {
        self.last_activity = Instant::now();
        if !self.peeked
            && let Some(outcome) = self.peek_and_resolve(datagram).await
        {
            self.peeked = true;
            if let Some(alert) = early_alert(self.shared.config.psk_failure_alert, outcome) {
                self.alerts.send(self.shared, self.peer, alert).await;
                return Step::End;
            }
        }
        let dtls = &mut self.dtls;
        let fed = SLOT.sync_scope(Arc::clone(&self.slot), || {
            crypto::scope(|| {
                dtls.handle_timeout(Instant::now())?;
                dtls.handle_packet(datagram)
            })
        });
        match fed {
            Ok(()) => Step::Again,
            Err(e) => self.handshake_failed(&e).await,
        }
    }

    /// The key outcome if `datagram` carries the ClientKeyExchange.
    async fn peek_and_resolve(&mut self, datagram: &[u8]) -> Option<KeyOutcome> {
        match peek_psk_identity(datagram) {
            CkePeek::Absent => None,
            CkePeek::Fragmented => {
                self.fail("fragmented ClientKeyExchange".into());
                Some(KeyOutcome::NoKey)
            }
            CkePeek::Identity(octets) => {
                let (identity, outcome) =
                    resolve_into_slot(self.shared, self.peer, octets, &self.slot).await;
                self.identity = identity;
                Some(outcome)
            }
        }
    }

    /// Drains the state machine: records to send, events, application data (answered by
    /// the handler).
    async fn drain(&mut self) -> Step {
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let mut closed = false;
        loop {
            match self.dtls.poll_output(&mut self.out) {
                Output::Packet(p) => {
                    self.alerts.saw(p);
                    // A send buffer full for long drops the datagram (see the `udp` module).
                    let _ = self.shared.socket.send_to_waiting(p, self.peer).await;
                }
                Output::BufferTooSmall { needed } => self.out.resize(needed, 0),
                Output::Timeout(t) => {
                    self.next_timer = Some(t);
                    break;
                }
                Output::Connected => {
                    match attribute(self.shared, self.peer, &self.slot, &self.identity) {
                        Some(info) => self.connected = Some(info),
                        None => return Step::End,
                    }
                }
                Output::ApplicationData(data) => {
                    if let Some(info) = &self.connected {
                        let reply = (self.shared.handler)(info, data);
                        self.shared.emit(ServerEvent::Exchanged {
                            peer: self.peer,
                            request_len: data.len(),
                            response_len: reply.as_ref().map_or(0, Vec::len),
                        });
                        replies.extend(reply);
                    }
                }
                Output::CloseNotify => closed = true,
                _ => {}
            }
        }
        if closed {
            self.shared.emit(ServerEvent::Closed { peer: self.peer });
            return Step::End;
        }
        if replies.is_empty() {
            return Step::Wait;
        }
        for reply in &replies {
            if let Err(e) = self.dtls.send_application_data(reply) {
                self.fail(format!("{e:?}"));
                return Step::End;
            }
        }
        Step::Again
    }

    /// Waits for the next datagram (`Some(Some(_))`) or the next timer (`Some(None)`,
    /// already handled); `None` when the peer is done (deadline, idleness, error, or the
    /// dispatcher gone).
    async fn wait(&mut self, rx: &mut mpsc::Receiver<Vec<u8>>) -> Option<Option<Vec<u8>>> {
        let deadline = if self.connected.is_some() {
            self.last_activity + self.shared.config.idle_timeout
        } else {
            self.started + self.shared.config.limits.handshake_timeout
        };
        let timer = self.next_timer.unwrap_or(deadline).min(deadline);
        tokio::select! {
            datagram = rx.recv() => datagram.map(Some),
            _ = tokio::time::sleep_until(tokio_deadline(timer)) => {
                let now = Instant::now();
                if now >= deadline {
                    if self.connected.is_some() {
                        self.shared.emit(ServerEvent::Closed { peer: self.peer });
                    } else {
                        self.fail("handshake deadline".into());
                    }
                    return None;
                }
                let dtls = &mut self.dtls;
                if let Err(e) = SLOT.sync_scope(Arc::clone(&self.slot), || {
                    crypto::scope(|| dtls.handle_timeout(now))
                }) {
                    self.fail(handshake_failure(&self.slot, &e));
                    return None;
                }
                Some(None)
            }
        }
    }
}

/// Seed step 8: the handshake completed; attributes it to the identity whose key `dimpl`
/// asked for. `None` (and a failure reported) if it cannot be attributed.
fn attribute<R>(
    shared: &Shared<R>,
    peer: SocketAddr,
    slot: &Mutex<SlotState>,
    identity: &Option<PeerIdentity>,
) -> Option<PeerInfo> {
    let asked = slot.lock().map(|s| s.asked).unwrap_or(false);
    match (identity, asked) {
        (Some(id), true) => {
            shared.emit(ServerEvent::Connected {
                peer,
                identity: id.clone(),
            });
            Some(PeerInfo {
                addr: peer,
                identity: id.clone(),
            })
        }
        // Cannot happen with dimpl's PSK server (it must have asked), but an unattributed
        // connection must never serve the application.
        _ => {
            shared.emit(ServerEvent::Failed {
                peer,
                identity: identity.clone(),
                reason: "connected without a recorded identity".into(),
            });
            None
        }
    }
}

/// Brings a fresh state machine to where the client is: `dimpl` is led through its own
/// cookie step with a copy of the verified ClientHello as the "first" one (its
/// HelloVerifyRequest is discarded, never sent), then given the client's real ClientHello
/// with its cookie check deferred to the dispatcher's verdict (the `cookie` module says
/// why). Afterwards `dimpl`'s ServerHello flight is queued, with `message_seq` 1 and a
/// transcript that starts at this ClientHello, as on the client.
fn start_after_cookie(
    dtls: &mut Dtls,
    hello: &VerifiedHello,
    out: &mut Vec<u8>,
) -> Result<(), dimpl::Error> {
    dtls.handle_timeout(Instant::now())?;
    let Some(first) = as_first_client_hello(&hello.datagram) else {
        // The dispatcher parsed this datagram; it cannot stop being a ClientHello.
        return Err(dimpl::Error::UnexpectedMessage(
            dimpl::UnexpectedMessageError::UnexpectedEpoch,
        ));
    };
    dtls.handle_packet(&first)?;
    loop {
        match dtls.poll_output(out) {
            Output::BufferTooSmall { needed } => out.resize(needed, 0),
            // dimpl's HelloVerifyRequest: the client already has ours.
            Output::Packet(_) => {}
            _ => break,
        }
    }
    cookie::with_verified_cookie(hello.random, hello.cookie, || {
        dtls.handle_packet(&hello.datagram)
    })
}

/// What the key source said, as far as the alert is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyOutcome {
    /// A key (right or wrong: the Finished check tells).
    Key,
    /// No key for this identity (unknown, not provisioned, key id not held, or not an
    /// e2m identity at all).
    NoKey,
    /// The key source could not be asked.
    Unavailable,
}

/// The alert to send at once, before `dimpl` sees the ClientKeyExchange, if any.
fn early_alert(mode: PskFailureAlert, outcome: KeyOutcome) -> Option<AlertDescription> {
    match (outcome, mode) {
        (KeyOutcome::Key, _) | (KeyOutcome::NoKey, PskFailureAlert::DecryptError) => None,
        (KeyOutcome::NoKey, PskFailureAlert::UnknownPskIdentity) => {
            Some(AlertDescription::UNKNOWN_PSK_IDENTITY)
        }
        // Not the UE's fault, and independent of the identity: "try again later".
        (KeyOutcome::Unavailable, _) => Some(AlertDescription::INTERNAL_ERROR),
    }
}

/// The alert for a handshake that `dimpl` failed, if one is due.
fn alert_for(e: &dimpl::Error) -> Option<AlertDescription> {
    use dimpl::{Error, SecurityError};
    match e {
        // The client gave up first, or went away: nobody to tell.
        Error::SecurityError(SecurityError::FatalAlert { .. })
        | Error::Timeout(_)
        | Error::ConnectionClosed => None,
        // The client's Finished did not decrypt (dimpl: a CCM_8 record that fails its tag
        // check during the handshake is fatal) or its MAC did not verify under our key:
        // the sides do not share the PSK. RFC 4279 §2 names decrypt_error for this, and
        // RFC 5246 §7.2.2 "unable to ... validate a finished message".
        Error::CryptoError(_)
        | Error::SecurityError(SecurityError::ClientFinishedVerificationFailed) => {
            Some(AlertDescription::DECRYPT_ERROR)
        }
        Error::SecurityError(SecurityError::UnsupportedClientVersion(_)) => {
            Some(AlertDescription::PROTOCOL_VERSION)
        }
        Error::UnexpectedMessage(_) => Some(AlertDescription::UNEXPECTED_MESSAGE),
        // No common suite, no extended master secret, no null compression, and any other
        // refusal of the client's parameters.
        _ => Some(AlertDescription::HANDSHAKE_FAILURE),
    }
}

/// Sends the EMSE's plaintext fatal alerts, numbered after every epoch-0 record sent so
/// far (a record numbered below one the client has seen would be dropped as a replay,
/// RFC 6347 §4.1.2.6).
struct Alerter {
    next_sequence: u64,
}

impl Alerter {
    /// Notes a datagram `dimpl` sends.
    fn saw(&mut self, datagram: &[u8]) {
        if let Some(highest) = record::max_epoch0_sequence(datagram) {
            self.next_sequence = self.next_sequence.max(highest.saturating_add(1));
        }
    }

    async fn send<R>(&mut self, shared: &Shared<R>, peer: SocketAddr, alert: AlertDescription) {
        let record = record::fatal_alert(alert.0, self.next_sequence);
        self.next_sequence = self.next_sequence.saturating_add(1);
        let _ = shared.socket.send_to_waiting(&record, peer).await;
        shared.emit(ServerEvent::AlertSent { peer, alert });
    }

    async fn send_for_error<R>(&mut self, shared: &Shared<R>, peer: SocketAddr, e: &dimpl::Error) {
        if let Some(alert) = alert_for(e) {
            self.send(shared, peer, alert).await;
        }
    }
}

/// Seed steps 5–7: parse the peeked identity, await the key, fill the slot.
async fn resolve_into_slot<R: PskResolver>(
    shared: &Shared<R>,
    peer: SocketAddr,
    octets: &[u8],
    slot: &Mutex<SlotState>,
) -> (Option<PeerIdentity>, KeyOutcome) {
    let parsed = akma::peer_identity(octets, shared.akma.is_some());
    let (identity, key, outcome) = match parsed {
        Err(reason) => {
            shared.emit(ServerEvent::Failed {
                peer,
                identity: None,
                reason,
            });
            (None, None, KeyOutcome::NoKey)
        }
        Ok(id) => {
            let Some(fetched) = fetch_within_budget(shared, peer, &id).await else {
                shared.emit(ServerEvent::FetchRefused {
                    peer,
                    identity: id.clone(),
                });
                if let Ok(mut state) = slot.lock() {
                    state.identity = Some(octets.to_vec());
                    state.key = None;
                }
                return (Some(id), KeyOutcome::Unavailable);
            };
            match fetched {
                Ok(key) => (Some(id), Some(key), KeyOutcome::Key),
                Err(error) => {
                    let outcome = match error {
                        ResolveError::Unavailable(_) => KeyOutcome::Unavailable,
                        ResolveError::UnknownIdentity | ResolveError::KeyNotHeld => {
                            KeyOutcome::NoKey
                        }
                    };
                    shared.emit(ServerEvent::KeyUnavailable {
                        peer,
                        identity: id.clone(),
                        error,
                    });
                    (Some(id), None, outcome)
                }
            }
        }
    };
    if let Ok(mut state) = slot.lock() {
        state.identity = Some(octets.to_vec());
        state.key = key;
    }
    (identity, outcome)
}

/// The resolver's answer for `id`: at hand ([`PskResolver::resolve_local`], no token), or
/// fetched with a token of the source's budget (given back if the fetch found a key).
/// `None` if no token came within the resolve timeout: nothing was fetched.
async fn fetch_within_budget<R: PskResolver>(
    shared: &Shared<R>,
    peer: SocketAddr,
    id: &PeerIdentity,
) -> Option<Result<PskKey, ResolveError>> {
    shared.emit(ServerEvent::Fetching {
        peer,
        identity: id.clone(),
    });
    if let Some(answer) = akma::resolve_local_any(&shared.resolver, shared.akma.as_deref(), id) {
        return Some(answer);
    }
    let deadline = tokio::time::Instant::now() + shared.config.resolve_timeout;
    if !shared.take_fetch_token(peer.ip(), deadline).await {
        return None;
    }
    let fetch = akma::resolve_any(&shared.resolver, shared.akma.as_deref(), id);
    let fetched = tokio::time::timeout_at(deadline, fetch)
        .await
        .unwrap_or_else(|_| Err(ResolveError::Unavailable("timed out".into())));
    if fetched.is_ok() {
        shared.give_back_fetch_token(peer.ip());
    }
    Some(fetched)
}

/// A reason for a failed handshake that says whether the EMSE had a key at all.
fn handshake_failure(slot: &Mutex<SlotState>, e: &dimpl::Error) -> String {
    let had_key = slot.lock().map(|s| s.key.is_some()).unwrap_or(false);
    if had_key {
        format!("handshake failed (PSK mismatch or protocol error): {e:?}")
    } else {
        format!("handshake failed (no key for the identity): {e:?}")
    }
}

impl Drop for SlotState {
    fn drop(&mut self) {
        // The key zeroizes itself; the identity is not secret but need not linger either.
        if let Some(id) = self.identity.as_mut() {
            id.zeroize();
        }
    }
}

/// The default application: CoAP GET → 2.05 Content with a greeting naming the UE's
/// identity and key id; anything that is not CoAP (e.g. a line typed into
/// `openssl s_client`) → a one-line text answer.
pub fn default_handler() -> AppHandler {
    use e2m_coap::{Code, Message};
    Arc::new(|peer: &PeerInfo, data: &[u8]| {
        match Message::decode(data) {
            Ok(req) if req.code.is_request() => {
                let (code, body) = if req.code == Code::GET {
                    (
                        Code::CONTENT,
                        format!(
                            "hello {}, you asked for /{}",
                            akma::describe(&peer.identity),
                            req.uri_path()
                        ),
                    )
                } else {
                    (Code::METHOD_NOT_ALLOWED, String::new())
                };
                Some(req.piggybacked_response(code, body.into_bytes()).encode())
            }
            // A CoAP response or empty message (classes 0, 2, 4, 5): nothing to answer.
            Ok(m) if matches!(m.code.0 >> 5, 0 | 2 | 4 | 5) => None,
            // Not CoAP (or a reserved class, as text usually decodes): a text line.
            _ => Some(
                format!(
                    "e2m EMSE: {} octets from {}\n",
                    data.len(),
                    akma::name(&peer.identity)
                )
                .into_bytes(),
            ),
        }
    })
}
