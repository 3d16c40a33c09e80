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
//! # Limits
//! The cookie exchange (HelloVerifyRequest, RFC 6347 §4.2.1) runs inside the per-peer state
//! machine, so each new source address costs one task until its handshake deadline; the
//! number of peers is capped ([`ServerConfig::max_peers`]) and a peer that sends nothing
//! for [`ServerConfig::idle_timeout`] is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dimpl::{Dtls, Output};
use e2m_kdf::E2mKey;
use e2m_keyid::PskIdentity;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use zeroize::Zeroize;

use super::record::{CkePeek, has_client_hello, peek_psk_identity};
use super::{DtlsError, DtlsLimits, MAX_DATAGRAM, PskResolver, ResolveError, builder};

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Handshake limits (deadline, retransmission, MTU).
    pub limits: DtlsLimits,
    /// Most peers (handshaking or connected) at once; further ClientHellos are dropped.
    pub max_peers: usize,
    /// How long one key fetch may take before the handshake is failed.
    pub resolve_timeout: Duration,
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
            resolve_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            queue_per_peer: 32,
        }
    }
}

/// A connected UE as the application handler sees it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The UE's UDP address.
    pub addr: SocketAddr,
    /// The `psk_identity` whose key completed the handshake.
    pub identity: PskIdentity,
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
        identity: PskIdentity,
    },
    /// The handshake completed (seed step 8).
    Connected {
        /// The UE's address.
        peer: SocketAddr,
        /// The authenticated identity.
        identity: PskIdentity,
    },
    /// The resolver had no key; the handshake will fail.
    KeyUnavailable {
        /// The UE's address.
        peer: SocketAddr,
        /// The identity.
        identity: PskIdentity,
        /// Why.
        error: ResolveError,
    },
    /// The handshake failed or the connection ended with an error.
    Failed {
        /// The UE's address.
        peer: SocketAddr,
        /// The identity, if one was read.
        identity: Option<PskIdentity>,
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
    /// refuses the configuration.
    pub async fn bind<R: PskResolver>(
        addr: SocketAddr,
        resolver: R,
        handler: AppHandler,
        config: ServerConfig,
    ) -> Result<ServerHandle, DtlsError> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let local_addr = socket.local_addr()?;
        let dimpl_config = Arc::new(
            builder(&config.limits)
                .with_psk_server(None, Arc::new(SlotResolver))
                .build()
                .map_err(|e| DtlsError::Config(format!("{e:?}")))?,
        );
        let (events_tx, events_rx) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            socket,
            resolver,
            handler,
            config,
            dimpl_config,
            events: events_tx,
        });
        let task = tokio::spawn(dispatch(shared));
        Ok(ServerHandle {
            local_addr,
            events: Some(events_rx),
            task,
        })
    }
}

struct Shared<R> {
    socket: Arc<UdpSocket>,
    resolver: R,
    handler: AppHandler,
    config: ServerConfig,
    dimpl_config: Arc<dimpl::Config>,
    events: mpsc::Sender<ServerEvent>,
}

impl<R> Shared<R> {
    fn emit(&self, event: ServerEvent) {
        // Never wait on a slow observer: drop the event instead.
        let _ = self.events.try_send(event);
    }
}

/// The socket loop: routes each datagram to its peer's task, starts a task for a new peer
/// only on a ClientHello, and forgets peers whose task ended.
async fn dispatch<R: PskResolver>(shared: Arc<Shared<R>>) {
    let mut peers: HashMap<SocketAddr, (u64, mpsc::Sender<Vec<u8>>)> = HashMap::new();
    let mut tasks: JoinSet<(SocketAddr, u64)> = JoinSet::new();
    let mut generation: u64 = 0;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            received = shared.socket.recv_from(&mut buf) => {
                let Ok((n, from)) = received else {
                    // ICMP errors surface on UDP receives on some systems; keep serving.
                    continue;
                };
                let mut datagram = buf[..n].to_vec();
                if let Some((_, tx)) = peers.get(&from) {
                    match tx.try_send(datagram) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => continue,
                        Err(mpsc::error::TrySendError::Closed(d)) => {
                            peers.remove(&from);
                            datagram = d;
                        }
                    }
                }
                if !has_client_hello(&datagram) || peers.len() >= shared.config.max_peers {
                    continue;
                }
                generation += 1;
                let (tx, rx) = mpsc::channel(shared.config.queue_per_peer.max(1));
                peers.insert(from, (generation, tx));
                let shared = Arc::clone(&shared);
                let this_generation = generation;
                tasks.spawn(async move {
                    run_peer(&shared, from, rx, datagram).await;
                    (from, this_generation)
                });
            }
            Some(done) = tasks.join_next() => {
                if let Ok((addr, generation)) = done
                    && peers.get(&addr).is_some_and(|(g, _)| *g == generation)
                {
                    peers.remove(&addr);
                }
            }
        }
    }
}

/// The PSK slot of one handshake: the identity octets that were peeked and the key the
/// resolver returned for them.
#[derive(Default)]
struct SlotState {
    identity: Option<Vec<u8>>,
    key: Option<E2mKey>,
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
    first: Vec<u8>,
) {
    let slot = Arc::new(Mutex::new(SlotState::default()));
    let started = Instant::now();
    let mut dtls = Dtls::new_12_psk(Arc::clone(&shared.dimpl_config), started);
    let mut identity: Option<PskIdentity> = None;
    let mut connected: Option<PeerInfo> = None;
    let mut peeked = false;
    let mut next_timer: Option<Instant>;
    let mut last_activity = started;
    let mut pending = Some(first);
    let mut out = vec![0u8; MAX_DATAGRAM];
    let fail = |identity: &Option<PskIdentity>, reason: String| {
        shared.emit(ServerEvent::Failed {
            peer,
            identity: identity.clone(),
            reason,
        });
    };

    loop {
        if let Some(datagram) = pending.take() {
            last_activity = Instant::now();
            if !peeked {
                match peek_psk_identity(&datagram) {
                    CkePeek::Absent => {}
                    CkePeek::Fragmented => {
                        peeked = true;
                        fail(&None, "fragmented ClientKeyExchange".into());
                    }
                    CkePeek::Identity(octets) => {
                        peeked = true;
                        identity = resolve_into_slot(shared, peer, octets, &slot).await;
                    }
                }
            }
            let fed = SLOT.sync_scope(Arc::clone(&slot), || {
                dtls.handle_timeout(Instant::now())?;
                dtls.handle_packet(&datagram)
            });
            if let Err(e) = fed {
                fail(&identity, handshake_failure(&slot, &e));
                return;
            }
        }

        // Drain the state machine: records to send, events, application data.
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let mut closed = false;
        loop {
            match dtls.poll_output(&mut out) {
                Output::Packet(p) => {
                    let _ = shared.socket.send_to(p, peer).await;
                }
                Output::BufferTooSmall { needed } => out.resize(needed, 0),
                Output::Timeout(t) => {
                    next_timer = Some(t);
                    break;
                }
                Output::Connected => {
                    let asked = slot.lock().map(|s| s.asked).unwrap_or(false);
                    match (&identity, asked) {
                        (Some(id), true) => {
                            shared.emit(ServerEvent::Connected {
                                peer,
                                identity: id.clone(),
                            });
                            connected = Some(PeerInfo {
                                addr: peer,
                                identity: id.clone(),
                            });
                        }
                        // Cannot happen with dimpl's PSK server (it must have asked), but
                        // an unattributed connection must never serve the application.
                        _ => {
                            fail(&identity, "connected without a recorded identity".into());
                            return;
                        }
                    }
                }
                Output::ApplicationData(data) => {
                    if let Some(info) = &connected {
                        let reply = (shared.handler)(info, data);
                        shared.emit(ServerEvent::Exchanged {
                            peer,
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
            shared.emit(ServerEvent::Closed { peer });
            return;
        }
        if !replies.is_empty() {
            for reply in &replies {
                if let Err(e) = dtls.send_application_data(reply) {
                    fail(&identity, format!("{e:?}"));
                    return;
                }
            }
            continue;
        }

        let deadline = if connected.is_some() {
            last_activity + shared.config.idle_timeout
        } else {
            started + shared.config.limits.handshake_timeout
        };
        let timer = next_timer.unwrap_or(deadline).min(deadline);
        tokio::select! {
            datagram = rx.recv() => match datagram {
                Some(d) => pending = Some(d),
                None => return,
            },
            _ = tokio::time::sleep_until(tokio_deadline(timer)) => {
                let now = Instant::now();
                if now >= deadline {
                    if connected.is_some() {
                        shared.emit(ServerEvent::Closed { peer });
                    } else {
                        fail(&identity, "handshake deadline".into());
                    }
                    return;
                }
                if let Err(e) = SLOT.sync_scope(Arc::clone(&slot), || dtls.handle_timeout(now)) {
                    fail(&identity, handshake_failure(&slot, &e));
                    return;
                }
            }
        }
    }
}

/// Seed steps 5–7: parse the peeked identity, await the key, fill the slot.
async fn resolve_into_slot<R: PskResolver>(
    shared: &Shared<R>,
    peer: SocketAddr,
    octets: &[u8],
    slot: &Mutex<SlotState>,
) -> Option<PskIdentity> {
    let parsed = PskIdentity::parse(octets);
    let (identity, key) = match parsed {
        Err(e) => {
            shared.emit(ServerEvent::Failed {
                peer,
                identity: None,
                reason: format!("psk_identity: {e}"),
            });
            (None, None)
        }
        Ok(id) => {
            shared.emit(ServerEvent::Fetching {
                peer,
                identity: id.clone(),
            });
            let fetched =
                tokio::time::timeout(shared.config.resolve_timeout, shared.resolver.resolve(&id))
                    .await
                    .unwrap_or_else(|_| Err(ResolveError::Unavailable("timed out".into())));
            match fetched {
                Ok(key) => (Some(id), Some(key)),
                Err(error) => {
                    shared.emit(ServerEvent::KeyUnavailable {
                        peer,
                        identity: id.clone(),
                        error,
                    });
                    (Some(id), None)
                }
            }
        }
    };
    if let Ok(mut state) = slot.lock() {
        state.identity = Some(octets.to_vec());
        state.key = key;
    }
    identity
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
                            "hello {} (key id {}), you asked for /{}",
                            peer.identity.identity,
                            peer.identity.key_id,
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
                    peer.identity.identity
                )
                .into_bytes(),
            ),
        }
    })
}
