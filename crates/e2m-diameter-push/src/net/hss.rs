//! The HSS's Diameter client: connects to its peers (an EMKS, or an agent in front of one),
//! pushes keys, and keeps at it until each push is acknowledged or finally refused.
//!
//! Retransmission (RFC 6733 §5.5.4, SPEC.md "Semantics" 3): a push keeps its End-to-End id
//! and Session-Id for its whole life. The node resends a pending push with the T flag on
//! another connection when its peer fails, or on the same peer once it is back; this client
//! sends it again with the T flag, after a backoff, when the answer is
//! DIAMETER_UNABLE_TO_DELIVER (3002, e.g. a relay whose next hop is not up yet) or
//! DIAMETER_TOO_BUSY (3004, the EMKS's backpressure), and when the node gave up waiting.
//! The EMKS answers a duplicate it remembers with its first answer and stores nothing twice.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use e2m_diameter::{
    CommandFlags, DiameterUri, MessageView, Node, NodeConfig, PeerConfig, PeerId, ResultCode, Time,
};
use e2m_diameter_net::{ClientTls, Endpoint, EndpointConfig, Remote, RequestError};
use e2m_msg::IntermediateKeyPush;
use rustls::pki_types::ServerName;
use tokio::time::Instant;

use super::tls::{DiameterTls, hss_client_config};
use super::{DiameterStartError, PRODUCT_NAME};
use crate::{PushEncodeError, PushProfile, PushStatus, Refusal, Routing};

/// The first End-to-End id of this client: the low 12 bits of the Unix time in the high 12
/// bits (RFC 6733 §3's suggestion), random low 20 bits.
fn first_end_to_end() -> u32 {
    let time = super::unix_now_u32() & 0xfff;
    (time << 20) | (super::seed() as u32 & 0x000f_ffff)
}

/// A peer the HSS connects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HssPeer {
    /// Its Diameter identity (over TLS, a dNSName of its certificate).
    pub host: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// TLS from the first octet (an `aaas://` URI).
    pub tls: bool,
}

impl HssPeer {
    /// A peer from a DiameterURI (`aaa://HOST[:PORT]` for TCP, `aaas://HOST[:PORT]` for TLS;
    /// default ports 3868 and 5658) and the address to reach it at (`None`: the host name
    /// resolved by the system).
    ///
    /// # Errors
    ///
    /// A message for a URI that does not parse, names a transport other than TCP, or a host
    /// that does not resolve.
    pub async fn from_uri(uri: &str, addr: Option<SocketAddr>) -> Result<HssPeer, String> {
        let parsed = DiameterUri::parse(uri).map_err(|_| format!("{uri}: not a DiameterURI"))?;
        if parsed.transport() != e2m_diameter::Transport::Tcp {
            return Err(format!(
                "{uri}: only TCP is supported (see the crate README on SCTP)"
            ));
        }
        let port = parsed.port_or_default();
        let addr = match addr {
            Some(addr) => addr,
            None => tokio::net::lookup_host((parsed.fqdn, port))
                .await
                .map_err(|e| format!("{}: {e}", parsed.fqdn))?
                .next()
                .ok_or_else(|| format!("{}: no address", parsed.fqdn))?,
        };
        Ok(HssPeer {
            host: parsed.fqdn.to_owned(),
            addr,
            tls: parsed.secure,
        })
    }
}

/// How long and how often a push is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The first wait after a retryable answer (doubled each time, with jitter).
    pub first_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
    /// How long a push is tried in all.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            deadline: Duration::from_secs(300),
        }
    }
}

/// How the HSS's Diameter client runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HssDiameterConfig {
    /// Origin-Host: the HSS's Diameter identity (over TLS, a dNSName of its certificate).
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Destination-Realm of the pushes: the EMKS's realm.
    pub destination_realm: String,
    /// Destination-Host, to pin one EMKS (usually `None`).
    pub destination_host: Option<String>,
    /// The peers, primary first (RFC 3539 failover goes down the list).
    pub peers: Vec<HssPeer>,
    /// Host-IP-Address values of the CER.
    pub host_ip_addresses: Vec<IpAddr>,
    /// The code points.
    pub profile: PushProfile,
    /// The watchdog's Tw (at least 6 s); also the interval between reconnection attempts.
    pub watchdog_interval: Duration,
    /// How long the node keeps one sending of a push (failovers and reconnections included)
    /// before this client sends it again.
    pub request_timeout: Duration,
    /// Retries of a push.
    pub retry: RetryPolicy,
    /// Pushes sent to one peer and not yet answered; past it (on every peer) a push waits
    /// and is tried again (backpressure).
    pub max_pending_per_peer: usize,
    /// DWAs needed before a peer reconnected after a failure takes pushes again (RFC 3539
    /// REOPEN: 3).
    pub reopen_watchdogs: u32,
    /// The driver's bounds.
    pub endpoint: EndpointConfig,
    /// Origin-State-Id, also in every Session-Id (default: the Unix time at start, so that
    /// Session-Ids stay unique across restarts).
    pub origin_state_id: u32,
}

impl HssDiameterConfig {
    /// A configuration with the defaults.
    pub fn new(
        origin_host: impl Into<String>,
        origin_realm: impl Into<String>,
        destination_realm: impl Into<String>,
        peers: Vec<HssPeer>,
    ) -> Self {
        Self {
            origin_host: origin_host.into(),
            origin_realm: origin_realm.into(),
            destination_realm: destination_realm.into(),
            destination_host: None,
            peers,
            host_ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            profile: PushProfile::PROVISIONAL,
            watchdog_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_pending_per_peer: 1024,
            reopen_watchdogs: 3,
            endpoint: EndpointConfig::default(),
            origin_state_id: super::unix_now_u32(),
        }
    }
}

/// A push the EMKS acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushAck {
    /// E2M-Key-Expiry-Time: the last second the EMKS serves the key, when it said.
    pub expiry: Option<Time>,
    /// Sendings it took (1: the first; more: retransmissions with the T flag).
    pub attempts: u32,
}

/// Why a push was not acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The EMKS refused it for good (do not retry it).
    #[error("push refused: {0:?}")]
    Refused(Refusal),
    /// Not acknowledged before the retry deadline (the last try's outcome).
    #[error("push not acknowledged in time after {attempts} sendings ({last})")]
    GaveUp {
        /// Sendings made.
        attempts: u32,
        /// What the last one got.
        last: &'static str,
    },
    /// The push cannot be written.
    #[error(transparent)]
    Encode(#[from] PushEncodeError),
    /// An answer that is not an E2M-Key-Push-Answer.
    #[error("malformed answer")]
    MalformedAnswer,
    /// The node refused the request as malformed (a bug: the encoder writes valid ones).
    #[error("the node refused the request as malformed")]
    Invalid,
    /// The client stopped.
    #[error("the Diameter client stopped")]
    Stopped,
}

/// The HSS's Diameter client.
#[derive(Debug)]
pub struct HssDiameter {
    endpoint: Endpoint,
    peers: Vec<PeerId>,
    config: HssDiameterConfig,
    sessions: AtomicU64,
    end_to_end: AtomicU32,
    jitter: AtomicU64,
}

impl HssDiameter {
    /// Starts the client and connects to every peer (plain TCP, or TLS for the peers that
    /// ask for it, with `tls`'s certificate and trust anchors).
    ///
    /// # Errors
    ///
    /// [`DiameterStartError`]: bad identities, a TLS peer without `tls`, unusable TLS
    /// material.
    pub async fn start(
        config: HssDiameterConfig,
        tls: Option<&DiameterTls>,
    ) -> Result<HssDiameter, DiameterStartError> {
        let client_tls = tls.map(hss_client_config).transpose()?;
        let mut node_config = NodeConfig::new(
            config.origin_host.clone(),
            config.origin_realm.clone(),
            config.host_ip_addresses.clone(),
        );
        node_config.vendor_id = config.profile.vendor_id();
        node_config.product_name = PRODUCT_NAME.to_owned();
        node_config.origin_state_id = config.origin_state_id;
        node_config.supported_vendor_ids = vec![config.profile.vendor_id()];
        node_config.applications = vec![config.profile.advertised()];
        node_config.watchdog_interval = config.watchdog_interval;
        node_config.request_timeout = config.request_timeout;
        node_config.max_pending_per_peer = config.max_pending_per_peer;
        node_config.reopen_watchdogs = config.reopen_watchdogs;
        node_config.seed = super::seed();
        let node = Node::new(node_config, config.profile.dictionary()?)?;
        let (endpoint, _incoming) = Endpoint::start(node, config.endpoint.clone());
        let mut peers = Vec::new();
        for peer in &config.peers {
            let tls = match (&client_tls, peer.tls) {
                (_, false) => None,
                (Some(client), true) => Some(ClientTls {
                    config: client.clone(),
                    server_name: ServerName::try_from(peer.host.clone())
                        .map_err(|_| DiameterStartError::Identity(peer.host.clone()))?,
                }),
                (None, true) => return Err(DiameterStartError::TlsMissing(peer.host.clone())),
            };
            let id = endpoint
                .add_peer(
                    PeerConfig {
                        host: peer.host.clone(),
                        initiate: true,
                    },
                    Some(Remote {
                        addr: peer.addr,
                        tls,
                    }),
                )
                .await?;
            // Pushes for the EMKS realm go to the peers in order, whatever their own realm
            // (an agent's realm is its own).
            let realm = config.destination_realm.clone();
            let app = config.profile.application_id();
            endpoint
                .with_node(move |node, _| node.add_route(Some(&realm), Some(app), id))
                .await;
            peers.push(id);
        }
        Ok(HssDiameter {
            endpoint,
            peers,
            sessions: AtomicU64::new(0),
            end_to_end: AtomicU32::new(first_end_to_end()),
            jitter: AtomicU64::new(super::seed() | 1),
            config,
        })
    }

    /// Waits until a peer takes pushes, at most `timeout`; whether one does.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            for peer in &self.peers {
                let peer = *peer;
                if self
                    .endpoint
                    .with_node(move |node, _| node.is_usable(peer))
                    .await
                    .unwrap_or(false)
                {
                    return true;
                }
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            let first = self.peers.first().copied().unwrap_or(PeerId(0));
            if self
                .endpoint
                .wait_usable(first, left.min(Duration::from_millis(200)))
                .await
            {
                return true;
            }
        }
    }

    /// The driver (peer events, node state).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The peers, in the configured order.
    pub fn peers(&self) -> &[PeerId] {
        &self.peers
    }

    fn backoff(&self, base: Duration) -> Duration {
        // xorshift: a little jitter so that many pushes do not retry in step.
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter.store(x, Ordering::Relaxed);
        let millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
        base + Duration::from_millis(x % (millis / 2 + 1))
    }

    /// Pushes a key and waits until the EMKS acknowledged it (2001, after its store
    /// committed it durably) or refused it for good; tries again meanwhile as the module
    /// docs say, until the retry deadline.
    ///
    /// # Errors
    ///
    /// [`PushError`].
    pub async fn push(&self, push: &IntermediateKeyPush) -> Result<PushAck, PushError> {
        let end_to_end = loop {
            // RFC 6733 §3: locally unique; the first one from the clock (high 12 bits) and
            // randomness, so that ids do not repeat soon across restarts either.
            let e2e = self.end_to_end.fetch_add(1, Ordering::Relaxed);
            if e2e != 0 {
                break e2e;
            }
        };
        let n = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let session_id = format!(
            "{};{};{n};e2m",
            self.config.origin_host, self.config.origin_state_id
        );
        let routing = Routing {
            session_id: &session_id,
            origin_host: &self.config.origin_host,
            origin_realm: &self.config.origin_realm,
            destination_realm: &self.config.destination_realm,
            destination_host: self.config.destination_host.as_deref(),
        };
        let message = zeroize::Zeroizing::new(
            self.config
                .profile
                .encode_request(&routing, push, end_to_end)?,
        );
        let retry = self.config.retry;
        let deadline = Instant::now() + retry.deadline;
        let mut backoff = retry.first_backoff;
        let mut attempts = 0u32;
        let mut sent = false;
        loop {
            let mut octets = message.to_vec();
            if sent {
                octets[4] |= CommandFlags::RETRANSMITTED.bits();
            }
            attempts += 1;
            let last = match self.endpoint.request(octets).await {
                Ok(answer) => {
                    sent = true;
                    let view =
                        MessageView::parse(&answer).map_err(|_| PushError::MalformedAnswer)?;
                    let info = match self.config.profile.decode_answer(&view) {
                        Ok(info) => info,
                        // A protocol error answered by an agent or the base protocol (no
                        // Result-Code we know as the application's): read the Result-Code.
                        Err(_) => match view.result_code() {
                            Some(rc)
                                if rc == ResultCode::UNABLE_TO_DELIVER
                                    || rc == ResultCode::TOO_BUSY =>
                            {
                                tracing::debug!(%rc, "push answered with a retryable protocol error");
                                self.wait(&mut backoff, deadline, attempts, "retryable error")
                                    .await?;
                                continue;
                            }
                            Some(rc) => return Err(PushError::Refused(Refusal::Result(rc))),
                            None => return Err(PushError::MalformedAnswer),
                        },
                    };
                    match info.status() {
                        PushStatus::Acknowledged { expiry } => {
                            return Ok(PushAck { expiry, attempts });
                        }
                        PushStatus::Refused(refusal) => return Err(PushError::Refused(refusal)),
                        PushStatus::Retry(rc) if rc == ResultCode::TOO_BUSY => "DIAMETER_TOO_BUSY",
                        PushStatus::Retry(_) => "DIAMETER_UNABLE_TO_DELIVER",
                    }
                }
                // Not sent: too many pushes pending on every peer.
                Err(RequestError::TooBusy) => "local backpressure",
                Err(RequestError::NoRoute) => "no route",
                // The node gave up after failovers and reconnections: it may have arrived.
                Err(RequestError::Timeout) => {
                    sent = true;
                    "no answer"
                }
                Err(RequestError::Stopped) => return Err(PushError::Stopped),
                Err(_) => return Err(PushError::Invalid),
            };
            tracing::debug!(attempts, last, "push to be sent again");
            self.wait(&mut backoff, deadline, attempts, last).await?;
        }
    }

    async fn wait(
        &self,
        backoff: &mut Duration,
        deadline: Instant,
        attempts: u32,
        last: &'static str,
    ) -> Result<(), PushError> {
        let pause = self.backoff(*backoff);
        if Instant::now() + pause >= deadline {
            return Err(PushError::GaveUp { attempts, last });
        }
        tokio::time::sleep(pause).await;
        *backoff = (*backoff * 2).min(self.config.retry.max_backoff);
        Ok(())
    }

    /// Leaves every peer with DPR/DPA (REBOOTING), waiting up to `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.endpoint.shutdown(grace).await;
    }
}
