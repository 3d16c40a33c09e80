//! The EMKS's Diameter listener: every push goes to the same core decision as an HTTPS
//! push ([`Emks::push_intermediate_key`]) and is answered only after it (so 2001 only once
//! the store acknowledged the push durably).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2m_diameter::{MessageView, Node, NodeConfig, PeerConfig, ProtocolError, ResultCode};
use e2m_diameter_net::{Endpoint, EndpointConfig, Incoming, IncomingRequest};
use e2m_emks::{Effects, Emks, Outcome, Peer};
use e2m_https::metrics::EmksObserver;
use e2m_keystore::{IdentityMap, IntKeyStore, SessionStore, SubscriptionStore};
use e2m_msg::{ProblemCause, Timestamp};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use super::tls::{DiameterTls, emks_server_config};
use super::{DiameterStartError, PRODUCT_NAME, same_host};
use crate::{PushAnswer, PushProfile, key_expiry};

/// How the EMKS's Diameter interface runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmksDiameterConfig {
    /// Where to listen (3868 for TCP, 5658 for TLS are the registered ports).
    pub listen: SocketAddr,
    /// Origin-Host: the EMKS's Diameter identity (over TLS, a dNSName of its certificate).
    pub origin_host: String,
    /// Origin-Realm: the realm HSSs send their pushes to (Destination-Realm).
    pub origin_realm: String,
    /// Host-IP-Address values of the CEA (default: the listening address, or 127.0.0.1
    /// when it is unspecified).
    pub host_ip_addresses: Vec<IpAddr>,
    /// The Diameter identities of the HSSs allowed to push, directly or through a trusted
    /// agent (their pushes carry `Peer::Hss(origin_host)` to the core; any other sender
    /// is not an HSS, and the core refuses it).
    pub hss: Vec<String>,
    /// Agents (relays, DRAs) trusted to forward the Origin-Host of an HSS. Through an agent
    /// the transport authenticates the agent, not the HSS (SPEC.md, "Authorization through
    /// agents").
    pub relays: Vec<String>,
    /// The code points.
    pub profile: PushProfile,
    /// The watchdog's Tw (RFC 3539: at least 6 s).
    pub watchdog_interval: Duration,
    /// Pushes in the core at once (store commits in flight); past it a push is answered
    /// DIAMETER_TOO_BUSY at once (backpressure, never a dropped push).
    pub max_in_flight: usize,
    /// The driver's bounds (connections, queues).
    pub endpoint: EndpointConfig,
    /// The node's limits (message size, pending requests per peer, ...): see
    /// [`NodeConfig`]; its identity and application fields are set from the fields above.
    pub node: Option<NodeConfig>,
    /// Origin-State-Id (RFC 6733 §8.16): a value that increases at each restart (default:
    /// the Unix time at start).
    pub origin_state_id: u32,
}

impl EmksDiameterConfig {
    /// A configuration with the defaults.
    pub fn new(
        listen: SocketAddr,
        origin_host: impl Into<String>,
        origin_realm: impl Into<String>,
    ) -> Self {
        let ip = match listen.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        Self {
            listen,
            origin_host: origin_host.into(),
            origin_realm: origin_realm.into(),
            host_ip_addresses: vec![ip],
            hss: Vec::new(),
            relays: Vec::new(),
            profile: PushProfile::PROVISIONAL,
            watchdog_interval: Duration::from_secs(30),
            max_in_flight: 256,
            endpoint: EndpointConfig::default(),
            node: None,
            origin_state_id: super::unix_now_u32(),
        }
    }

    fn node_config(&self) -> NodeConfig {
        let mut c = self.node.clone().unwrap_or_else(|| {
            NodeConfig::new(
                self.origin_host.clone(),
                self.origin_realm.clone(),
                Vec::new(),
            )
        });
        c.origin_host.clone_from(&self.origin_host);
        c.origin_realm.clone_from(&self.origin_realm);
        c.host_ip_addresses.clone_from(&self.host_ip_addresses);
        c.vendor_id = self.profile.vendor_id();
        c.product_name = PRODUCT_NAME.to_owned();
        c.origin_state_id = self.origin_state_id;
        c.supported_vendor_ids = vec![self.profile.vendor_id()];
        c.applications = vec![self.profile.advertised()];
        c.relay = false;
        c.accept_unknown_peers = false;
        c.watchdog_interval = self.watchdog_interval;
        c.seed = super::seed();
        c
    }
}

/// Where the EMKS's Diameter pushes are reported besides the audit log.
#[derive(Clone, Debug, Default)]
pub struct EmksDiameterOptions {
    /// Metrics: each answer (`diameter_push`) and each refusal by cause (`refused`), like
    /// HTTPS pushes.
    pub observer: Option<Arc<dyn EmksObserver>>,
    /// Woken when a push recorded notifications (the deliverer of `e2m-https` waits on
    /// it: give it the same handle as `EmksServerOptions::outbox_wake`).
    pub wake: Option<Arc<Notify>>,
}

/// A running Diameter interface of the EMKS.
#[derive(Debug)]
pub struct EmksDiameter {
    endpoint: Endpoint,
    addr: SocketAddr,
    worker: tokio::task::JoinHandle<()>,
}

impl EmksDiameter {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The driver (e.g. to watch peer events, or inspect the node).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Disconnects every peer (DPR, REBOOTING), waits up to `grace`, and stops.
    pub async fn shutdown(self, grace: Duration) {
        self.endpoint.shutdown(grace).await;
        let _ = self.worker.await;
    }
}

/// Starts the EMKS's Diameter interface over `core`: plain TCP when `tls` is `None`,
/// otherwise TLS from the first octet with mutual certificates (the peer's certificate must
/// name its Origin-Host).
///
/// # Errors
///
/// [`DiameterStartError`] for a bad identity, TLS material or socket.
pub async fn start_emks_diameter<K, M, S, B>(
    core: Arc<Emks<K, M, S, B>>,
    config: EmksDiameterConfig,
    tls: Option<&DiameterTls>,
    options: EmksDiameterOptions,
) -> Result<EmksDiameter, DiameterStartError>
where
    K: IntKeyStore + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    let dictionary = config.profile.dictionary()?;
    let node = Node::new(config.node_config(), dictionary)?;
    let server_tls = tls.map(emks_server_config).transpose()?;
    let (endpoint, incoming) = Endpoint::start(node, config.endpoint.clone());
    for host in config.hss.iter().chain(&config.relays) {
        endpoint
            .add_peer(
                PeerConfig {
                    host: host.clone(),
                    initiate: false,
                },
                None,
            )
            .await?;
    }
    let listener = TcpListener::bind(config.listen).await?;
    let addr = endpoint.listen(listener, server_tls).await?;
    let service = Arc::new(Service {
        core,
        endpoint: endpoint.clone(),
        in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
        observer: options.observer,
        wake: options.wake,
        config,
    });
    let worker = tokio::spawn(service.run(incoming));
    tracing::info!(%addr, tls = tls.is_some(), "EMKS listening (Diameter)");
    Ok(EmksDiameter {
        endpoint,
        addr,
        worker,
    })
}

struct Service<K, M, S, B> {
    core: Arc<Emks<K, M, S, B>>,
    endpoint: Endpoint,
    in_flight: Arc<Semaphore>,
    observer: Option<Arc<dyn EmksObserver>>,
    wake: Option<Arc<Notify>>,
    config: EmksDiameterConfig,
}

impl<K, M, S, B> Service<K, M, S, B>
where
    K: IntKeyStore + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    async fn run(self: Arc<Self>, mut incoming: Incoming) {
        while let Some(request) = incoming.recv().await {
            let started = Instant::now();
            match self.in_flight.clone().try_acquire_owned() {
                Ok(permit) => {
                    let service = self.clone();
                    tokio::spawn(async move {
                        service.handle(request, started).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    // Backpressure: the store has enough commits in flight.
                    let error =
                        ProtocolError::new(ResultCode::TOO_BUSY, "too many pushes in flight");
                    let _ = self.endpoint.refuse(request, error).await;
                    self.observe(
                        ResultCode::TOO_BUSY.0,
                        Some(ProblemCause::RateLimited),
                        started,
                    );
                }
            }
        }
    }

    /// The peer the core sees: the HSS named by the request's Origin-Host when it came
    /// from that HSS itself or through a trusted agent, and it is a configured HSS;
    /// anything else is not an HSS (the core refuses it: DIAMETER_AUTHORIZATION_REJECTED).
    fn peer(&self, connection_peer: &str, origin_host: &str) -> Peer {
        let direct = same_host(connection_peer, origin_host);
        let via_agent = self
            .config
            .relays
            .iter()
            .any(|r| same_host(r, connection_peer));
        let is_hss = self.config.hss.iter().any(|h| same_host(h, origin_host));
        if (direct || via_agent) && is_hss {
            Peer::hss(origin_host)
        } else {
            Peer::Other(origin_host.into())
        }
    }

    async fn handle(&self, request: IncomingRequest, started: Instant) {
        let profile = &self.config.profile;
        let Ok(view) = MessageView::parse(&request.message) else {
            return;
        };
        let answer = match profile.decode_request(&view) {
            Err(error) => PushAnswer::Refused(error),
            Ok(push) => {
                let peer = self.peer(&request.peer_host, push.origin_host);
                let now = Timestamp::now_from_system_clock();
                let Outcome { result, effects } = self
                    .core
                    .push_intermediate_key(&peer, &push.push, now)
                    .await;
                self.run_effects(effects);
                let max_age = self.core.keys().retention().max_age();
                let expiry = key_expiry(push.push.created, now, max_age);
                PushAnswer::for_outcome(result.map_err(|p| p.cause), expiry, &push)
            }
        };
        let octets = profile.encode_answer(
            &view,
            &self.config.origin_host,
            &self.config.origin_realm,
            &answer,
        );
        match octets {
            Ok(octets) => {
                if let Err(e) = self.endpoint.answer(request.id, octets).await {
                    tracing::debug!(error = %e, "Diameter answer not sent");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Diameter answer could not be written");
                let error = ProtocolError::new(ResultCode::UNABLE_TO_COMPLY, "answer not written");
                let _ = self.endpoint.refuse(request, error).await;
            }
        }
        self.observe(answer.code(), answer.cause(), started);
    }

    fn run_effects(&self, effects: Effects) {
        for record in &effects.audit {
            // No key bytes, no session ids in an audit record's Display form (the core
            // guarantees it).
            tracing::info!(target: "e2m::audit", "{record} (diameter)");
        }
        if effects.notifications_recorded
            && let Some(wake) = &self.wake
        {
            wake.notify_one();
        }
    }

    fn observe(&self, code: u32, cause: Option<ProblemCause>, started: Instant) {
        if let Some(observer) = &self.observer {
            observer.diameter_push(code, started.elapsed());
            if let Some(cause) = cause {
                observer.refused(cause);
            }
        }
    }
}
