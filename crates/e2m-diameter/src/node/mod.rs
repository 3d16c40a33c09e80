//! A sans-IO Diameter node (quinn-proto's `Endpoint` shape): peers with the RFC 6733 §5.6
//! state machine and the RFC 3539 watchdog, routing by Destination-Host/Realm with relaying,
//! failover of pending requests with the T flag, duplicate detection, and every protocol
//! error answered.
//!
//! The node owns no socket and reads no clock. A driver feeds it transport events and octets
//! with the current time, and takes from it octets to write ([`Node::poll_transmit`]),
//! events ([`Node::poll_event`]) and the next time it wants to be woken
//! ([`Node::poll_timeout`], then [`Node::handle_timeout`]).

mod caps;
mod dedup;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::avp::AvpHeader;
use crate::check::{Limits, ProtocolError, check_answer, check_request, error_answer};
use crate::codes::{ApplicationId, AvpCode, CommandCode, DisconnectCause, ResultCode};
use crate::dictionary::{ApplicationKind, Dictionary};
use crate::header::{CommandFlags, HEADER_LEN, Header, frame_len};
use crate::message::{MessageBuilder, MessageView};
use crate::value::{identity_cmp, validate_identity};
use dedup::{DedupCache, Seen};
use zeroize::{Zeroize, Zeroizing};

/// A peer of the node (configured with [`Node::add_peer`], or accepted from an unknown host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// A transport connection, named by the node ([`Node::accept`], [`Event::Connect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// A request this node originated ([`Node::send_request`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A received request handed to the application ([`Event::Request`]), to be answered with
/// [`Node::answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncomingId(pub u64);

/// An application this node serves, as advertised in CER/CEA (§5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AdvertisedApplication {
    /// Application id.
    pub id: ApplicationId,
    /// Auth-Application-Id or Acct-Application-Id.
    pub kind: ApplicationKind,
    /// For a vendor-specific application, the Vendor-Id of its Vendor-Specific-Application-Id.
    pub vendor_id: Option<u32>,
}

impl AdvertisedApplication {
    /// An authentication/authorization application.
    pub const fn auth(id: ApplicationId) -> Self {
        Self {
            id,
            kind: ApplicationKind::Auth,
            vendor_id: None,
        }
    }

    /// An accounting application.
    pub const fn acct(id: ApplicationId) -> Self {
        Self {
            id,
            kind: ApplicationKind::Acct,
            vendor_id: None,
        }
    }

    /// A vendor-specific authentication/authorization application.
    pub const fn vendor_auth(id: ApplicationId, vendor_id: u32) -> Self {
        Self {
            id,
            kind: ApplicationKind::Auth,
            vendor_id: Some(vendor_id),
        }
    }
}

/// The node's identity, capabilities, timers and limits.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Origin-Host: this node's DiameterIdentity (FQDN).
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Host-IP-Address values of CER/CEA (at least one, §5.3.1).
    pub host_ip_addresses: Vec<IpAddr>,
    /// Vendor-Id of CER/CEA (0: none, §5.3.3).
    pub vendor_id: u32,
    /// Product-Name of CER/CEA.
    pub product_name: String,
    /// Firmware-Revision of CER/CEA, if any.
    pub firmware_revision: Option<u32>,
    /// Origin-State-Id: must increase each time the node restarts with lost state (§8.16).
    pub origin_state_id: u32,
    /// Supported-Vendor-Id values (those of vendor-specific applications are added).
    pub supported_vendor_ids: Vec<u32>,
    /// The applications served locally.
    pub applications: Vec<AdvertisedApplication>,
    /// A relay agent (§2.8.1): advertises the relay application and forwards requests not
    /// for it, adding Route-Record.
    pub relay: bool,
    /// Accept a CER from a host not added with [`Node::add_peer`] (§5.3: the peer then lives
    /// as long as its connection); otherwise it is answered DIAMETER_UNKNOWN_PEER.
    pub accept_unknown_peers: bool,
    /// The watchdog's Tw (RFC 3539 §3.4.1: default 30 s, at least 6 s; ±2 s of jitter is
    /// added each time it is set). Also the interval between connection attempts.
    pub watchdog_interval: Duration,
    /// How long to wait for a connection, a CEA, or the CER on an accepted connection.
    pub cea_timeout: Duration,
    /// How long to wait for a DPA, or for the peer to close after our DPA.
    pub dpa_timeout: Duration,
    /// How long a request may wait for its answer, failovers and reconnections included
    /// (default 120 s: long enough for a reconnection and the watchdog's REOPEN with the
    /// default Tw).
    pub request_timeout: Duration,
    /// DWAs needed in the watchdog's REOPEN state before a reconnected peer takes requests
    /// again (RFC 3539 §3.4.1: 3; at least 1). With Tw = 30 s, 3 DWAs take about a minute.
    pub reopen_watchdogs: u32,
    /// Message size, AVP count and nesting limits.
    pub limits: Limits,
    /// Requests sent to one peer and not yet answered; past it a request goes to another
    /// peer or is refused (DIAMETER_TOO_BUSY, [`SendError::TooBusy`]).
    pub max_pending_per_peer: usize,
    /// Requests from one peer handed to the application and not yet answered; past it they
    /// are answered DIAMETER_TOO_BUSY.
    pub max_incoming_per_peer: usize,
    /// Requests originated here waiting for a peer to come up.
    pub max_parked: usize,
    /// Connections accepted and still waiting for their CER.
    pub max_unbound_connections: usize,
    /// Entries of the duplicate detection cache.
    pub dedup_capacity: usize,
    /// Octets of answers the duplicate detection cache keeps.
    pub dedup_max_bytes: usize,
    /// How long a request is remembered (§3: End-to-End ids stay unique at least 4 minutes).
    pub dedup_lifetime: Duration,
    /// Seed of the node's pseudo-random numbers (watchdog jitter, first Hop-by-Hop and
    /// End-to-End ids): give it fresh randomness in production, a constant in tests.
    pub seed: u64,
}

impl NodeConfig {
    /// A configuration with the documented defaults.
    pub fn new(
        origin_host: impl Into<String>,
        origin_realm: impl Into<String>,
        host_ip_addresses: Vec<IpAddr>,
    ) -> Self {
        Self {
            origin_host: origin_host.into(),
            origin_realm: origin_realm.into(),
            host_ip_addresses,
            vendor_id: 0,
            product_name: "e2m-diameter".to_owned(),
            firmware_revision: None,
            origin_state_id: 0,
            supported_vendor_ids: Vec::new(),
            applications: Vec::new(),
            relay: false,
            accept_unknown_peers: false,
            watchdog_interval: Duration::from_secs(30),
            cea_timeout: Duration::from_secs(10),
            dpa_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            reopen_watchdogs: 3,
            limits: Limits::default(),
            max_pending_per_peer: 1024,
            max_incoming_per_peer: 1024,
            max_parked: 1024,
            max_unbound_connections: 64,
            dedup_capacity: 8192,
            dedup_max_bytes: 8 << 20,
            dedup_lifetime: Duration::from_secs(240),
            seed: 0,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        validate_identity(self.origin_host.as_bytes()).map_err(|_| ConfigError::OriginHost)?;
        validate_identity(self.origin_realm.as_bytes()).map_err(|_| ConfigError::OriginRealm)?;
        if self.host_ip_addresses.is_empty() {
            return Err(ConfigError::NoHostIpAddress);
        }
        if self.watchdog_interval < Duration::from_secs(6) {
            return Err(ConfigError::WatchdogInterval);
        }
        let day = Duration::from_secs(86_400);
        let timers = [
            self.watchdog_interval,
            self.cea_timeout,
            self.dpa_timeout,
            self.request_timeout,
            self.dedup_lifetime,
        ];
        if timers.iter().any(|t| *t > day) {
            return Err(ConfigError::Timer);
        }
        if self.reopen_watchdogs == 0 {
            return Err(ConfigError::ReopenWatchdogs);
        }
        if !self.relay && self.applications.is_empty() {
            return Err(ConfigError::NoApplication);
        }
        if self.limits.max_message_len < HEADER_LEN
            || self.limits.max_message_len > crate::header::MAX_LENGTH
        {
            return Err(ConfigError::MessageLimit);
        }
        Ok(())
    }
}

/// Why a configuration is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Origin-Host is not a DiameterIdentity.
    #[error("Origin-Host is not a DiameterIdentity")]
    OriginHost,
    /// Origin-Realm is not a DiameterIdentity.
    #[error("Origin-Realm is not a DiameterIdentity")]
    OriginRealm,
    /// CER/CEA need at least one Host-IP-Address.
    #[error("no Host-IP-Address")]
    NoHostIpAddress,
    /// Tw below RFC 3539's 6 seconds.
    #[error("watchdog interval below 6 s")]
    WatchdogInterval,
    /// Neither an application nor relaying: no peer would have a common application.
    #[error("no application and not a relay")]
    NoApplication,
    /// The message size limit is below the header or above 2^24 - 1.
    #[error("message size limit out of range")]
    MessageLimit,
    /// A peer's host is not a DiameterIdentity.
    #[error("peer host is not a DiameterIdentity")]
    PeerHost,
    /// No DWA required to reopen a peer (RFC 3539 asks for 3).
    #[error("reopen_watchdogs is 0")]
    ReopenWatchdogs,
    /// A timer or lifetime above one day (time arithmetic stays far from overflow).
    #[error("timer above one day")]
    Timer,
}

/// A peer to talk to: its DiameterIdentity and whether this node connects to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's Origin-Host (compared case-insensitively).
    pub host: String,
    /// Connect to it ([`Event::Connect`]) and reconnect after failures; otherwise only wait
    /// for its connections.
    pub initiate: bool,
}

/// The peer state of RFC 6733 §5.6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// No connection.
    Closed,
    /// Connecting (Wait-Conn-Ack).
    WaitConnAck,
    /// CER sent, waiting for the CEA (Wait-I-CEA).
    WaitICea,
    /// Connecting, and the peer's CER arrived on its own connection (Wait-Conn-Ack/Elect).
    WaitConnAckElect,
    /// Both connections up, election lost so far (Wait-Returns).
    WaitReturns,
    /// Open on the connection the peer made (R-Open).
    ROpen,
    /// Open on the connection this node made (I-Open).
    IOpen,
    /// DPR sent or received (Closing).
    Closing,
}

/// The watchdog state of RFC 3539 Appendix A.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchdogState {
    /// Never opened.
    Initial,
    /// Up and answering.
    Okay,
    /// A watchdog went unanswered: traffic fails over, the connection stays.
    Suspect,
    /// Closed after a failure.
    Down,
    /// Reconnected after a failure: three DWAs are needed before traffic returns.
    Reopen,
}

/// A peer's capabilities as its CER or CEA stated them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Host-IP-Address values (IPv4/IPv6 ones).
    pub host_ip_addresses: Vec<IpAddr>,
    /// Vendor-Id.
    pub vendor_id: u32,
    /// Product-Name.
    pub product_name: String,
    /// Origin-State-Id, if sent.
    pub origin_state_id: Option<u32>,
    /// Firmware-Revision, if sent.
    pub firmware_revision: Option<u32>,
    /// Supported-Vendor-Id values.
    pub supported_vendor_ids: Vec<u32>,
    /// Advertised application ids (from Auth-, Acct- and Vendor-Specific-Application-Id),
    /// without the relay id.
    pub applications: Vec<ApplicationId>,
    /// The peer advertised the relay application.
    pub relay: bool,
}

impl PeerInfo {
    /// Whether requests of `app` may be sent to this peer (§5.3).
    pub fn supports(&self, app: ApplicationId) -> bool {
        self.relay || self.applications.contains(&app)
    }
}

/// Octets to write on a connection, then close it if `close` is set.
///
/// The octets may carry key material (an application's messages): `Debug` prints their
/// length only; wipe the buffer once written where that matters.
#[derive(Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The connection.
    pub conn: ConnectionId,
    /// One or more whole messages (may be empty when only closing).
    pub data: Vec<u8>,
    /// Close the connection after writing `data`.
    pub close: bool,
}

/// Why a request this node originated got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestFailure {
    /// No answer within [`NodeConfig::request_timeout`], failovers included.
    Timeout,
}

/// Why a peer stopped being usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownReason {
    /// The connection closed or failed.
    ConnectionLost,
    /// A watchdog went unanswered (RFC 3539 SUSPECT); the connection is kept for now.
    WatchdogSuspect,
    /// The watchdog closed the connection (SUSPECT timed out).
    WatchdogTimeout,
    /// A DPR was sent or received.
    Disconnected,
}

/// Something the driver or the application must know or do.
///
/// `Debug` prints the length of a message, never its octets (they may carry key material).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Open a transport connection to `peer` and report it with [`Node::connected`] or
    /// [`Node::connect_failed`] under this id.
    Connect {
        /// The peer.
        peer: PeerId,
        /// The id the node gave the connection.
        conn: ConnectionId,
    },
    /// The peer is usable for requests (capabilities exchanged, watchdog OKAY).
    PeerUp {
        /// The peer.
        peer: PeerId,
    },
    /// The peer is no longer usable; its pending requests failed over.
    PeerDown {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: DownReason,
    },
    /// The capabilities exchange failed: a CEA with an error, no common application, an
    /// unexpected Origin-Host, or a timeout.
    CapabilitiesExchangeFailed {
        /// The peer.
        peer: PeerId,
        /// The CEA's Result-Code, when a CEA arrived.
        result_code: Option<ResultCode>,
    },
    /// A request for the local application: answer it with [`Node::answer`].
    Request {
        /// Its id.
        id: IncomingId,
        /// The peer it came from.
        peer: PeerId,
        /// The whole request, checked against the dictionary.
        message: Vec<u8>,
        /// The T flag: a possible duplicate the node could not recognise (e.g. from before a
        /// restart); the application must not apply it twice.
        retransmitted: bool,
    },
    /// The answer to a request this node sent.
    Answer {
        /// The request.
        request: RequestId,
        /// The whole answer.
        message: Vec<u8>,
    },
    /// A request this node sent will get no answer.
    RequestFailed {
        /// The request.
        request: RequestId,
        /// Why.
        reason: RequestFailure,
    },
    /// A message was thrown away (for logs): an answer to no pending request, a malformed
    /// answer, a message in a state that does not take it.
    Discarded {
        /// The connection.
        conn: ConnectionId,
        /// Why.
        reason: &'static str,
    },
}

impl core::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Transmit")
            .field("conn", &self.conn)
            .field("len", &self.data.len())
            .field("close", &self.close)
            .finish()
    }
}

impl core::fmt::Debug for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Connect { peer, conn } => f
                .debug_struct("Connect")
                .field("peer", peer)
                .field("conn", conn)
                .finish(),
            Self::PeerUp { peer } => f.debug_struct("PeerUp").field("peer", peer).finish(),
            Self::PeerDown { peer, reason } => f
                .debug_struct("PeerDown")
                .field("peer", peer)
                .field("reason", reason)
                .finish(),
            Self::CapabilitiesExchangeFailed { peer, result_code } => f
                .debug_struct("CapabilitiesExchangeFailed")
                .field("peer", peer)
                .field("result_code", result_code)
                .finish(),
            Self::Request {
                id,
                peer,
                message,
                retransmitted,
            } => f
                .debug_struct("Request")
                .field("id", id)
                .field("peer", peer)
                .field("len", &message.len())
                .field("retransmitted", retransmitted)
                .finish(),
            Self::Answer { request, message } => f
                .debug_struct("Answer")
                .field("request", request)
                .field("len", &message.len())
                .finish(),
            Self::RequestFailed { request, reason } => f
                .debug_struct("RequestFailed")
                .field("request", request)
                .field("reason", reason)
                .finish(),
            Self::Discarded { conn, reason } => f
                .debug_struct("Discarded")
                .field("conn", conn)
                .field("reason", reason)
                .finish(),
        }
    }
}

/// Why [`Node::send_request`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Not a well-formed request.
    #[error("not a well-formed Diameter request")]
    Invalid,
    /// No peer could ever take it (no route for its realm and application).
    #[error("no route for the request")]
    NoRoute,
    /// Every usable peer has too many pending requests, or too many requests wait for a
    /// peer: back off.
    #[error("too many pending requests")]
    TooBusy,
}

/// Why [`Node::answer`] refused an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// No such pending request (already answered, or never delivered).
    #[error("no such pending request")]
    UnknownRequest,
    /// Not a well-formed answer.
    #[error("not a well-formed Diameter answer")]
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Initiator: waiting for the transport.
    Connecting,
    /// Responder: waiting for the CER.
    AwaitCer,
    /// Bound to a peer.
    Bound,
}

struct Conn {
    peer: Option<PeerId>,
    phase: Phase,
    inbuf: Vec<u8>,
    identities: Option<Vec<String>>,
    deadline: Option<Instant>,
    /// Requests sent on this connection: Hop-by-Hop id to transaction.
    out: HashMap<u32, u64>,
}

#[derive(Clone, Copy, Debug)]
struct Watchdog {
    state: WatchdogState,
    pending: bool,
    num_dwa: i32,
    deadline: Option<Instant>,
    /// The earliest timer entry queued for this watchdog: a deadline pushed later (every
    /// received message pushes it) is queued only when this one fires early.
    armed: Option<Instant>,
}

struct Peer {
    host: String,
    initiate: bool,
    dynamic: bool,
    removed: bool,
    state: PeerState,
    i_conn: Option<ConnectionId>,
    r_conn: Option<ConnectionId>,
    /// The CEA prepared for the responder connection while an election is pending.
    r_cea: Option<Vec<u8>>,
    r_info: Option<PeerInfo>,
    info: Option<PeerInfo>,
    deadline: Option<Instant>,
    wd: Watchdog,
    usable: bool,
    outstanding: usize,
    incoming: usize,
    reconnect: bool,
}

impl Peer {
    fn open_conn(&self) -> Option<ConnectionId> {
        match self.state {
            PeerState::ROpen => self.r_conn,
            PeerState::IOpen => self.i_conn,
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Local(RequestId),
    Relayed { conn: ConnectionId, hop_by_hop: u32 },
}

struct Tx {
    origin: Origin,
    /// The request as sent, kept for resending; wiped when the transaction ends.
    message: Zeroizing<Vec<u8>>,
    application: ApplicationId,
    peer: Option<PeerId>,
    conn: Option<ConnectionId>,
    hop_by_hop: u32,
    sent: bool,
    deadline: Instant,
}

struct Incoming {
    peer: PeerId,
    conn: ConnectionId,
    hop_by_hop: u32,
    end_to_end: u32,
    key: dedup::Key,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Conn(ConnectionId),
    PeerState(PeerId),
    Watchdog(PeerId),
    Request(u64),
}

/// How a request can be routed now.
enum Selection {
    Peer(PeerId),
    Busy,
    NotUsable,
    NoRoute { realm_known: bool },
}

/// A route: requests for `realm` (and `application`, if set) go to the first usable of
/// `peers`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Route {
    realm: Option<String>,
    application: Option<ApplicationId>,
    peers: Vec<PeerId>,
}

/// A sans-IO Diameter node: see the module documentation and the crate README.
pub struct Node {
    config: NodeConfig,
    dict: Dictionary,
    peers: Vec<Peer>,
    conns: HashMap<ConnectionId, Conn>,
    txs: HashMap<u64, Tx>,
    parked: VecDeque<u64>,
    incoming: HashMap<IncomingId, Incoming>,
    dedup: DedupCache,
    routes: Vec<Route>,
    events: VecDeque<Event>,
    transmits: VecDeque<Transmit>,
    timers: BinaryHeap<Reverse<(Instant, TimerKey)>>,
    rng: u64,
    next_id: u64,
    next_hop_by_hop: u32,
    next_end_to_end: u32,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("origin_host", &self.config.origin_host)
            .field("peers", &self.peers.len())
            .field("connections", &self.conns.len())
            .field("pending", &self.txs.len())
            .finish_non_exhaustive()
    }
}

fn m(code: AvpCode) -> AvpHeader {
    AvpHeader::mandatory(code)
}

fn same_host(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn set_hop_by_hop(message: &mut [u8], hop_by_hop: u32) {
    message[12..16].copy_from_slice(&hop_by_hop.to_be_bytes());
}

impl Node {
    /// A node with this configuration and dictionary (which must hold the base protocol and
    /// the applications served).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an invalid configuration.
    pub fn new(config: NodeConfig, dictionary: Dictionary) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = config.seed ^ 0x9e37_79b9_7f4a_7c15;
        let first = splitmix(&mut rng);
        Ok(Self {
            dedup: DedupCache::new(
                config.dedup_capacity,
                config.dedup_max_bytes,
                config.dedup_lifetime,
            ),
            config,
            dict: dictionary,
            peers: Vec::new(),
            conns: HashMap::new(),
            txs: HashMap::new(),
            parked: VecDeque::new(),
            incoming: HashMap::new(),
            routes: Vec::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            timers: BinaryHeap::new(),
            rng,
            next_id: 1,
            next_hop_by_hop: first as u32,
            next_end_to_end: (first >> 32) as u32,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The dictionary.
    pub fn dictionary(&self) -> &Dictionary {
        &self.dict
    }

    // ----- peers and routes -----

    /// Adds a peer. One that [`PeerConfig::initiate`]s is connected at once (an
    /// [`Event::Connect`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::PeerHost`] if the host is not a DiameterIdentity.
    pub fn add_peer(&mut self, peer: PeerConfig, now: Instant) -> Result<PeerId, ConfigError> {
        validate_identity(peer.host.as_bytes()).map_err(|_| ConfigError::PeerHost)?;
        let id = self.push_peer(peer.host, peer.initiate, false);
        if peer.initiate {
            self.connect(id, now);
        }
        Ok(id)
    }

    fn push_peer(&mut self, host: String, initiate: bool, dynamic: bool) -> PeerId {
        // Reuse the slot of a peer accepted from an unknown host and gone, so that a server
        // accepting unknown peers does not grow with every connection it ever had.
        let free = self
            .peers
            .iter()
            .position(|p| p.removed && p.incoming == 0 && p.outstanding == 0);
        let id = PeerId(free.unwrap_or(self.peers.len()) as u32);
        let peer = Peer {
            host,
            initiate,
            dynamic,
            removed: false,
            state: PeerState::Closed,
            i_conn: None,
            r_conn: None,
            r_cea: None,
            r_info: None,
            info: None,
            deadline: None,
            wd: Watchdog {
                state: WatchdogState::Initial,
                pending: false,
                num_dwa: 0,
                deadline: None,
                armed: None,
            },
            usable: false,
            outstanding: 0,
            incoming: 0,
            reconnect: initiate,
        };
        match free {
            Some(i) => self.peers[i] = peer,
            None => self.peers.push(peer),
        }
        id
    }

    /// The peer whose Origin-Host is `host`.
    pub fn peer_by_host(&self, host: &str) -> Option<PeerId> {
        self.peers
            .iter()
            .position(|p| !p.removed && same_host(&p.host, host))
            .map(|i| PeerId(i as u32))
    }

    /// A peer's state (§5.6).
    pub fn peer_state(&self, peer: PeerId) -> Option<PeerState> {
        self.peer(peer).map(|p| p.state)
    }

    /// A peer's watchdog state (RFC 3539).
    pub fn watchdog_state(&self, peer: PeerId) -> Option<WatchdogState> {
        self.peer(peer).map(|p| p.wd.state)
    }

    /// A peer's capabilities, once exchanged.
    pub fn peer_info(&self, peer: PeerId) -> Option<&PeerInfo> {
        self.peer(peer).and_then(|p| p.info.as_ref())
    }

    /// Whether requests are sent to the peer now (open, watchdog OKAY).
    pub fn is_usable(&self, peer: PeerId) -> bool {
        self.peer(peer).is_some_and(|p| p.usable)
    }

    /// Requests sent to the peer and not answered yet.
    pub fn pending_requests(&self, peer: PeerId) -> usize {
        self.peer(peer).map_or(0, |p| p.outstanding)
    }

    /// Requests from the peer handed to the application and not answered yet.
    pub fn incoming_requests(&self, peer: PeerId) -> usize {
        self.peer(peer).map_or(0, |p| p.incoming)
    }

    /// Entries in the duplicate detection cache.
    pub fn duplicate_cache_len(&self) -> usize {
        self.dedup.len()
    }

    /// Routes requests for `realm` (`None`: any realm, a default route) and `application`
    /// (`None`: any) to `peer`; routes are tried in the order added, and within a realm the
    /// first usable peer is taken (primary/secondary, RFC 3539 §3.4.2). Peers whose
    /// Origin-Realm is the Destination-Realm are candidates without a route.
    pub fn add_route(
        &mut self,
        realm: Option<&str>,
        application: Option<ApplicationId>,
        peer: PeerId,
    ) {
        let realm = realm.map(str::to_owned);
        match self
            .routes
            .iter_mut()
            .find(|r| r.realm == realm && r.application == application)
        {
            Some(route) => route.peers.push(peer),
            None => self.routes.push(Route {
                realm,
                application,
                peers: vec![peer],
            }),
        }
    }

    fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(id.0 as usize).filter(|p| !p.removed)
    }

    fn peer_mut(&mut self, id: PeerId) -> &mut Peer {
        &mut self.peers[id.0 as usize]
    }

    // ----- driver interface: output -----

    /// The next octets to write (and whether to close afterwards).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if self.timer_live(at, key) {
                return Some(at);
            }
            self.timers.pop();
            self.rearm_watchdog(at, key);
        }
        None
    }

    fn timer_live(&self, at: Instant, key: TimerKey) -> bool {
        match key {
            TimerKey::Conn(c) => self.conns.get(&c).is_some_and(|c| c.deadline == Some(at)),
            TimerKey::PeerState(p) => self.peer(p).is_some_and(|p| p.deadline == Some(at)),
            TimerKey::Watchdog(p) => self.peer(p).is_some_and(|p| p.wd.deadline == Some(at)),
            TimerKey::Request(t) => self.txs.get(&t).is_some_and(|t| t.deadline == at),
        }
    }

    /// A watchdog entry left the queue: queue the watchdog's current deadline if it is later
    /// and nothing else is queued for it.
    fn rearm_watchdog(&mut self, at: Instant, key: TimerKey) {
        let TimerKey::Watchdog(p) = key else { return };
        let Some(peer) = self.peers.get_mut(p.0 as usize) else {
            return;
        };
        if peer.wd.armed == Some(at) {
            peer.wd.armed = None;
        }
        if peer.removed || peer.wd.armed.is_some() {
            return;
        }
        if let Some(deadline) = peer.wd.deadline.filter(|d| *d > at) {
            peer.wd.armed = Some(deadline);
            self.arm(deadline, key);
        }
    }

    fn arm(&mut self, at: Instant, key: TimerKey) {
        self.timers.push(Reverse((at, key)));
    }

    fn send(&mut self, conn: ConnectionId, data: Vec<u8>) {
        self.transmits.push_back(Transmit {
            conn,
            data,
            close: false,
        });
    }

    fn close(&mut self, conn: ConnectionId) {
        if self.conns.remove(&conn).is_some() {
            self.transmits.push_back(Transmit {
                conn,
                data: Vec::new(),
                close: true,
            });
        }
    }

    fn random(&mut self) -> u64 {
        splitmix(&mut self.rng)
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn hop_by_hop(&mut self) -> u32 {
        self.next_hop_by_hop = self.next_hop_by_hop.wrapping_add(1);
        self.next_hop_by_hop
    }

    /// A fresh End-to-End id (§3: locally unique; the node starts from a random value).
    pub fn next_end_to_end(&mut self) -> u32 {
        self.next_end_to_end = self.next_end_to_end.wrapping_add(1);
        self.next_end_to_end
    }

    /// A new Session-Id (RFC 6733 §8.8): `<Origin-Host>;<Origin-State-Id>;<counter>`, unique
    /// as long as the Origin-State-Id changes across restarts.
    pub fn new_session_id(&mut self) -> String {
        let n = self.next_id();
        format!(
            "{};{};{}",
            self.config.origin_host, self.config.origin_state_id, n
        )
    }

    /// A request of this node: header (R, and P when `proxiable`), then Session-Id when
    /// given (first, as CCFs place it), Origin-Host and Origin-Realm; the caller adds
    /// Destination-Realm (and Destination-Host) and the rest, then [`Node::send_request`]s it.
    pub fn new_request(
        &self,
        command: CommandCode,
        application: ApplicationId,
        proxiable: bool,
        session_id: Option<&str>,
    ) -> MessageBuilder {
        let flags = if proxiable {
            CommandFlags::PROXIABLE
        } else {
            CommandFlags::NONE
        };
        let mut b = MessageBuilder::request(command, application, flags);
        if let Some(session) = session_id {
            b.utf8(m(AvpCode::SESSION_ID), session);
        }
        b.identity(m(AvpCode::ORIGIN_HOST), &self.config.origin_host);
        b.identity(m(AvpCode::ORIGIN_REALM), &self.config.origin_realm);
        b
    }

    /// The answer of this node to `request` (§6.2): [`MessageBuilder::answer_to`] (ids,
    /// Session-Id, Proxy-Info), then Result-Code, Origin-Host and Origin-Realm; the caller
    /// adds the rest, then [`Node::answer`]s it.
    pub fn new_answer(&self, request: &MessageView<'_>, result: ResultCode) -> MessageBuilder {
        let mut b = MessageBuilder::answer_to(request);
        b.u32(m(AvpCode::RESULT_CODE), result.0);
        b.identity(m(AvpCode::ORIGIN_HOST), &self.config.origin_host);
        b.identity(m(AvpCode::ORIGIN_REALM), &self.config.origin_realm);
        b
    }

    /// Answers a request of [`Event::Request`] with an error (e.g. DIAMETER_TOO_BUSY when the
    /// application cannot take it now): the answer of [`error_answer`], E bit for 3xxx.
    /// `request` is the message of the event.
    ///
    /// # Errors
    ///
    /// [`AnswerError`]: unknown id, or `request` is not a message.
    pub fn refuse(
        &mut self,
        id: IncomingId,
        request: &[u8],
        error: &ProtocolError,
    ) -> Result<(), AnswerError> {
        let view = MessageView::parse(request).map_err(|_| AnswerError::Invalid)?;
        let answer = error_answer(
            view.header(),
            Some(&view),
            &self.config.origin_host,
            &self.config.origin_realm,
            error,
        )
        .map_err(|_| AnswerError::Invalid)?;
        self.answer(id, answer)
    }

    // ----- driver interface: transport events -----

    /// The application wants the peer connected (the Start event of §5.6). Emits
    /// [`Event::Connect`] when the peer is closed.
    pub fn connect(&mut self, peer: PeerId, now: Instant) {
        let Some(p) = self.peer(peer) else { return };
        if p.state != PeerState::Closed {
            return;
        }
        self.peer_mut(peer).reconnect = self.peers[peer.0 as usize].initiate;
        let conn = ConnectionId(self.next_id());
        let deadline = now + self.config.cea_timeout;
        self.conns.insert(
            conn,
            Conn {
                peer: Some(peer),
                phase: Phase::Connecting,
                inbuf: Vec::new(),
                identities: None,
                deadline: None,
                out: HashMap::new(),
            },
        );
        let p = self.peer_mut(peer);
        p.i_conn = Some(conn);
        p.state = PeerState::WaitConnAck;
        p.deadline = Some(deadline);
        self.arm(deadline, TimerKey::PeerState(peer));
        self.events.push_back(Event::Connect { peer, conn });
        self.ensure_watchdog(peer, now);
    }

    /// A transport connection was accepted; the node waits for its CER. `None` when too many
    /// accepted connections already wait for theirs: close the socket.
    pub fn accept(&mut self, now: Instant) -> Option<ConnectionId> {
        let unbound = self
            .conns
            .values()
            .filter(|c| c.phase == Phase::AwaitCer)
            .count();
        if unbound >= self.config.max_unbound_connections {
            return None;
        }
        let conn = ConnectionId(self.next_id());
        let deadline = now + self.config.cea_timeout;
        self.conns.insert(
            conn,
            Conn {
                peer: None,
                phase: Phase::AwaitCer,
                inbuf: Vec::new(),
                identities: None,
                deadline: Some(deadline),
                out: HashMap::new(),
            },
        );
        self.arm(deadline, TimerKey::Conn(conn));
        Some(conn)
    }

    /// The identities the transport authenticated for this connection (e.g. the DNS names
    /// of a verified TLS certificate): the peer's Origin-Host in its CER or CEA must be one
    /// of them, or the connection is refused (DIAMETER_UNKNOWN_PEER) and closed.
    pub fn set_transport_identities(&mut self, conn: ConnectionId, names: Vec<String>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.identities = Some(names);
        }
    }

    /// The connection of an [`Event::Connect`] is up: the node sends its CER.
    pub fn connected(&mut self, conn: ConnectionId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.phase != Phase::Connecting {
            return;
        }
        c.phase = Phase::Bound;
        let Some(peer) = c.peer else { return };
        let state = self.peers[peer.0 as usize].state;
        match state {
            PeerState::WaitConnAck => {
                self.send_cer(conn);
                self.set_peer_state(
                    peer,
                    PeerState::WaitICea,
                    Some(now + self.config.cea_timeout),
                );
            }
            PeerState::WaitConnAckElect => {
                self.send_cer(conn);
                self.set_peer_state(
                    peer,
                    PeerState::WaitReturns,
                    Some(now + self.config.cea_timeout),
                );
                if self.wins_election(peer) {
                    self.win_election(peer, now);
                }
            }
            _ => self.close(conn),
        }
    }

    /// The connection of an [`Event::Connect`] could not be made.
    pub fn connect_failed(&mut self, conn: ConnectionId, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.phase != Phase::Connecting {
            return;
        }
        let peer = c.peer;
        self.conns.remove(&conn);
        let Some(peer) = peer else { return };
        if self.peers[peer.0 as usize].i_conn != Some(conn) {
            return;
        }
        self.peer_mut(peer).i_conn = None;
        match self.peers[peer.0 as usize].state {
            PeerState::WaitConnAck => {
                self.set_peer_state(peer, PeerState::Closed, None);
            }
            PeerState::WaitConnAckElect => {
                self.send_r_cea(peer);
                self.open(peer, PeerState::ROpen, now);
            }
            _ => {}
        }
    }

    /// The connection closed or failed (the Peer-Disc event of §5.6).
    pub fn connection_lost(&mut self, conn: ConnectionId, now: Instant) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.transmits.retain(|t| t.conn != conn);
        let Some(peer) = c.peer else { return };
        let outstanding: Vec<u64> = c.out.values().copied().collect();
        let p = &self.peers[peer.0 as usize];
        let is_i = p.i_conn == Some(conn);
        let is_r = p.r_conn == Some(conn);
        match (p.state, is_i, is_r) {
            (PeerState::WaitConnAck | PeerState::WaitICea, true, _) => {
                self.peer_mut(peer).i_conn = None;
                self.set_peer_state(peer, PeerState::Closed, None);
                self.events.push_back(Event::CapabilitiesExchangeFailed {
                    peer,
                    result_code: None,
                });
            }
            (PeerState::WaitConnAckElect, _, true) => {
                let p = self.peer_mut(peer);
                p.r_conn = None;
                p.r_cea = None;
                p.state = PeerState::WaitConnAck;
            }
            (PeerState::WaitReturns, true, _) => {
                self.peer_mut(peer).i_conn = None;
                self.send_r_cea(peer);
                self.open(peer, PeerState::ROpen, now);
            }
            (PeerState::WaitReturns, _, true) => {
                let p = self.peer_mut(peer);
                p.r_conn = None;
                p.r_cea = None;
                p.state = PeerState::WaitICea;
            }
            (PeerState::ROpen, _, true)
            | (PeerState::IOpen, true, _)
            | (PeerState::Closing, _, _)
                if is_i || is_r =>
            {
                self.peer_closed(peer, DownReason::ConnectionLost, now);
            }
            _ => {}
        }
        for tx in outstanding {
            // Those not moved already by the peer's failover.
            if self.txs.get(&tx).is_some_and(|t| t.conn == Some(conn)) {
                self.failover_tx(tx, true, now);
            }
        }
        self.drop_dynamic_peer(peer);
    }

    /// The application wants the peer disconnected (the Stop event of §5.6): a DPR with
    /// this cause; the node closes the connection on the DPA or after
    /// [`NodeConfig::dpa_timeout`]. No reconnection until [`Node::connect`].
    pub fn disconnect(&mut self, peer: PeerId, cause: DisconnectCause, now: Instant) {
        let Some(p) = self.peer(peer) else { return };
        let Some(conn) = p.open_conn() else {
            // Not open: drop whatever is in progress.
            let conns: Vec<_> = [p.i_conn, p.r_conn].into_iter().flatten().collect();
            self.peer_mut(peer).reconnect = false;
            for c in conns {
                self.close(c);
            }
            let p = self.peer_mut(peer);
            p.i_conn = None;
            p.r_conn = None;
            self.set_peer_state(peer, PeerState::Closed, None);
            return;
        };
        self.peer_mut(peer).reconnect = false;
        let hbh = self.hop_by_hop();
        let e2e = self.next_end_to_end();
        let mut b = MessageBuilder::request(
            CommandCode::DISCONNECT_PEER,
            ApplicationId::COMMON,
            CommandFlags::NONE,
        );
        b.set_ids(hbh, e2e);
        b.identity(m(AvpCode::ORIGIN_HOST), &self.config.origin_host);
        b.identity(m(AvpCode::ORIGIN_REALM), &self.config.origin_realm);
        b.i32(m(AvpCode::DISCONNECT_CAUSE), cause.0);
        if let Ok(dpr) = b.finish() {
            self.send(conn, dpr);
        }
        self.set_peer_state(
            peer,
            PeerState::Closing,
            Some(now + self.config.dpa_timeout),
        );
        self.peer_down(peer, DownReason::Disconnected, now);
    }

    // ----- driver interface: octets and time -----

    /// Octets read from a connection (any amount: the node frames messages itself, holding
    /// at most one partial message of at most [`Limits::max_message_len`] octets).
    pub fn handle_input(&mut self, conn: ConnectionId, octets: &[u8], now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.phase == Phase::Connecting {
            return;
        }
        let mut buf = std::mem::take(&mut c.inbuf);
        buf.extend_from_slice(octets);
        let mut start = 0;
        loop {
            let rest = &buf[start..];
            match frame_len(rest, self.config.limits.max_message_len) {
                Ok(Some(len)) if rest.len() >= len => {
                    let msg = &buf[start..start + len];
                    self.handle_message(conn, msg, now);
                    start += len;
                    if !self.conns.contains_key(&conn) {
                        buf.zeroize();
                        return;
                    }
                }
                Ok(_) => break,
                Err(_) => {
                    // The stream cannot be framed any more: close it.
                    self.events.push_back(Event::Discarded {
                        conn,
                        reason: "message length not framable",
                    });
                    self.connection_failed_locally(conn, now);
                    buf.zeroize();
                    return;
                }
            }
        }
        if start > 0 {
            // Keep the partial message only; wipe what was read (messages may carry keys).
            let rest = buf[start..].to_vec();
            buf.zeroize();
            buf = rest;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.inbuf = buf;
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let live = self.timer_live(at, key);
            self.rearm_watchdog(at, key);
            if !live {
                continue;
            }
            match key {
                TimerKey::Conn(c) => {
                    // No CER in time on an accepted connection.
                    self.events.push_back(Event::Discarded {
                        conn: c,
                        reason: "no CER in time",
                    });
                    self.close(c);
                }
                TimerKey::PeerState(p) => self.peer_state_timeout(p, now),
                TimerKey::Watchdog(p) => self.watchdog_timeout(p, now),
                TimerKey::Request(t) => self.request_timeout(t, now),
            }
        }
    }

    /// Closes a connection the node gave up on, with the Peer-Disc handling.
    fn connection_failed_locally(&mut self, conn: ConnectionId, now: Instant) {
        self.connection_lost(conn, now);
        self.transmits.push_back(Transmit {
            conn,
            data: Vec::new(),
            close: true,
        });
    }

    // ----- application interface -----

    /// Sends a request this node originates (with Origin-Host/Realm and, for routing,
    /// Destination-Realm and optionally Destination-Host). The node sets the End-to-End id
    /// (keeping a non-zero one the caller set, e.g. when resending after a restart with the T
    /// flag) and the Hop-by-Hop id, picks a peer, and resends it with the T flag on another
    /// connection if its peer fails, or once a peer comes back up, until
    /// [`NodeConfig::request_timeout`].
    ///
    /// # Errors
    ///
    /// [`SendError`]: not a request, no route, or too many pending requests (back off).
    pub fn send_request(&mut self, message: Vec<u8>, now: Instant) -> Result<RequestId, SendError> {
        let mut message = Zeroizing::new(message);
        let view = MessageView::parse(&message).map_err(|_| SendError::Invalid)?;
        if !view.is_request() || view.check_framing().is_err() {
            return Err(SendError::Invalid);
        }
        let application = view.application();
        let selection = self.select(
            application,
            view.destination_host(),
            view.destination_realm(),
            &view,
            None,
        );
        let e2e = if view.header().end_to_end == 0 {
            self.next_end_to_end()
        } else {
            view.header().end_to_end
        };
        message[16..20].copy_from_slice(&e2e.to_be_bytes());
        let id = RequestId(self.next_id());
        let txid = id.0;
        let deadline = now + self.config.request_timeout;
        let tx = Tx {
            origin: Origin::Local(id),
            message,
            application,
            peer: None,
            conn: None,
            hop_by_hop: 0,
            sent: false,
            deadline,
        };
        match selection {
            Selection::Peer(peer) => {
                self.txs.insert(txid, tx);
                self.dispatch(txid, peer);
            }
            Selection::NotUsable => {
                if self.parked.len() >= self.config.max_parked {
                    return Err(SendError::TooBusy);
                }
                self.txs.insert(txid, tx);
                self.parked.push_back(txid);
            }
            Selection::Busy => return Err(SendError::TooBusy),
            Selection::NoRoute { .. } => return Err(SendError::NoRoute),
        }
        self.arm(deadline, TimerKey::Request(txid));
        Ok(id)
    }

    /// Answers a request of [`Event::Request`]. The node sets the Hop-by-Hop and End-to-End
    /// ids (sending it on the connection the request, or its latest duplicate, came from) and
    /// keeps it for duplicates (§3: a duplicate gets the same answer), except an answer with
    /// the E bit (a protocol error such as DIAMETER_TOO_BUSY: the request was not processed,
    /// so a retransmission is delivered again).
    ///
    /// # Errors
    ///
    /// [`AnswerError`]: unknown id, or not an answer.
    pub fn answer(&mut self, id: IncomingId, message: Vec<u8>) -> Result<(), AnswerError> {
        let mut message = Zeroizing::new(message);
        let view = MessageView::parse(&message).map_err(|_| AnswerError::Invalid)?;
        if view.is_request() {
            return Err(AnswerError::Invalid);
        }
        let protocol_error = view.flags().is_error();
        let incoming = self
            .incoming
            .remove(&id)
            .ok_or(AnswerError::UnknownRequest)?;
        set_hop_by_hop(&mut message, incoming.hop_by_hop);
        message[16..20].copy_from_slice(&incoming.end_to_end.to_be_bytes());
        if let Some(p) = self.peers.get_mut(incoming.peer.0 as usize) {
            p.incoming = p.incoming.saturating_sub(1);
        }
        if protocol_error {
            // A protocol error (3xxx, E bit: DIAMETER_TOO_BUSY, ...) says the request was not
            // processed: a retransmission is processed anew rather than answered with the
            // same error until the cache forgets it (RFC 6733 §7.1.3: the sender tries
            // again, on this or another peer).
            self.dedup.forget(&incoming.key);
        } else {
            self.dedup.answered(&incoming.key, &message);
        }
        if self.conns.contains_key(&incoming.conn) {
            self.send(incoming.conn, core::mem::take(&mut *message));
        }
        Ok(())
    }

    // ----- receiving -----

    fn handle_message(&mut self, conn: ConnectionId, octets: &[u8], now: Instant) {
        let Ok(header) = Header::read(octets) else {
            return;
        };
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let view = MessageView::parse(octets);
        match (c.phase, c.peer) {
            (Phase::AwaitCer, _) => {
                let is_cer = header.flags.is_request()
                    && header.command == CommandCode::CAPABILITIES_EXCHANGE
                    && header.application == ApplicationId::COMMON;
                match view {
                    Ok(view) if is_cer => self.on_r_conn_cer(conn, &view, now),
                    Err(e) if is_cer => {
                        // Answer what can be answered, then close (§5.6.1).
                        let err = ProtocolError::from_decode(e);
                        self.send_error_answer(conn, &header, None, &err);
                        self.close(conn);
                    }
                    _ => {
                        self.events.push_back(Event::Discarded {
                            conn,
                            reason: "not a CER on a new connection",
                        });
                        self.close(conn);
                    }
                }
            }
            (Phase::Bound, Some(peer)) => {
                let view = match view {
                    Ok(v) => v,
                    Err(e) => {
                        if header.flags.is_request() {
                            self.send_error_answer(
                                conn,
                                &header,
                                None,
                                &ProtocolError::from_decode(e),
                            );
                        } else {
                            self.events.push_back(Event::Discarded {
                                conn,
                                reason: "malformed answer",
                            });
                        }
                        return;
                    }
                };
                self.on_bound_message(peer, conn, &view, now);
            }
            _ => {}
        }
    }

    fn on_bound_message(
        &mut self,
        peer: PeerId,
        conn: ConnectionId,
        view: &MessageView<'_>,
        now: Instant,
    ) {
        let state = self.peers[peer.0 as usize].state;
        let base = view.application() == ApplicationId::COMMON;
        let command = view.command();
        let is_open_conn = self.peers[peer.0 as usize].open_conn() == Some(conn);
        // Waiting for the CEA: only the CEA is taken (§5.6: I-Rcv-Non-CEA is an error).
        if matches!(state, PeerState::WaitICea | PeerState::WaitReturns)
            && self.peers[peer.0 as usize].i_conn == Some(conn)
        {
            if !view.is_request() && base && command == CommandCode::CAPABILITIES_EXCHANGE {
                self.on_cea(peer, conn, view, now);
            } else {
                self.events.push_back(Event::Discarded {
                    conn,
                    reason: "message other than CEA before the CEA",
                });
                self.connection_failed_locally(conn, now);
            }
            return;
        }
        if !is_open_conn && state != PeerState::Closing {
            self.events.push_back(Event::Discarded {
                conn,
                reason: "message on a connection not in use",
            });
            return;
        }
        self.watchdog_receive(
            peer,
            base && command == CommandCode::DEVICE_WATCHDOG && !view.is_request(),
            now,
        );
        if view.is_request() {
            if base && command == CommandCode::DEVICE_WATCHDOG {
                self.on_dwr(conn, view);
            } else if base && command == CommandCode::DISCONNECT_PEER {
                self.on_dpr(peer, conn, view, now);
            } else if base && command == CommandCode::CAPABILITIES_EXCHANGE {
                // A CER on an open connection (§5.6 has no such event): refuse it.
                let err =
                    ProtocolError::new(ResultCode::UNABLE_TO_COMPLY, "CER on an open connection");
                self.send_error_answer(conn, view.header(), Some(view), &err);
            } else if state == PeerState::Closing {
                self.events.push_back(Event::Discarded {
                    conn,
                    reason: "request while closing",
                });
            } else {
                self.on_request(peer, conn, view, now);
            }
        } else if base && command == CommandCode::DEVICE_WATCHDOG {
            // Handled by the watchdog above.
        } else if base && command == CommandCode::DISCONNECT_PEER {
            if state == PeerState::Closing {
                self.close(conn);
                self.peer_closed(peer, DownReason::Disconnected, now);
            }
        } else {
            self.on_answer(conn, view, now);
        }
    }

    fn send_error_answer(
        &mut self,
        conn: ConnectionId,
        header: &Header,
        request: Option<&MessageView<'_>>,
        err: &ProtocolError,
    ) {
        if let Ok(answer) = error_answer(
            header,
            request,
            &self.config.origin_host,
            &self.config.origin_realm,
            err,
        ) {
            self.send(conn, answer);
        }
    }

    fn on_dwr(&mut self, conn: ConnectionId, view: &MessageView<'_>) {
        let def = self
            .dict
            .command(ApplicationId::COMMON, CommandCode::DEVICE_WATCHDOG);
        if let Err(err) = check_request(&self.dict, def, view, &self.config.limits) {
            self.send_error_answer(conn, view.header(), Some(view), &err);
            return;
        }
        let mut b = MessageBuilder::answer_to(view);
        b.u32(m(AvpCode::RESULT_CODE), ResultCode::SUCCESS.0);
        b.identity(m(AvpCode::ORIGIN_HOST), &self.config.origin_host);
        b.identity(m(AvpCode::ORIGIN_REALM), &self.config.origin_realm);
        b.u32(m(AvpCode::ORIGIN_STATE_ID), self.config.origin_state_id);
        if let Ok(dwa) = b.finish() {
            self.send(conn, dwa);
        }
    }

    fn on_dpr(&mut self, peer: PeerId, conn: ConnectionId, view: &MessageView<'_>, now: Instant) {
        let def = self
            .dict
            .command(ApplicationId::COMMON, CommandCode::DISCONNECT_PEER);
        if let Err(err) = check_request(&self.dict, def, view, &self.config.limits) {
            self.send_error_answer(conn, view.header(), Some(view), &err);
            return;
        }
        let cause = view
            .find(AvpCode::DISCONNECT_CAUSE)
            .and_then(|a| a.i32().ok())
            .map(DisconnectCause);
        let mut b = MessageBuilder::answer_to(view);
        b.u32(m(AvpCode::RESULT_CODE), ResultCode::SUCCESS.0);
        b.identity(m(AvpCode::ORIGIN_HOST), &self.config.origin_host);
        b.identity(m(AvpCode::ORIGIN_REALM), &self.config.origin_realm);
        if let Ok(dpa) = b.finish() {
            self.send(conn, dpa);
        }
        // §5.4.3: after REBOOTING the peer may be reconnected; after BUSY or
        // DO_NOT_WANT_TO_TALK_TO_YOU it should not be.
        let p = self.peer_mut(peer);
        p.reconnect = p.initiate && cause == Some(DisconnectCause::REBOOTING);
        // The sender of the DPR closes on our DPA (§5.4); wait for it.
        self.set_peer_state(
            peer,
            PeerState::Closing,
            Some(now + self.config.dpa_timeout),
        );
        self.peer_down(peer, DownReason::Disconnected, now);
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        conn: ConnectionId,
        view: &MessageView<'_>,
        now: Instant,
    ) {
        let header = *view.header();
        // §6.1.3: a loop if this node is in Route-Record.
        if view.find_all(AvpCode::ROUTE_RECORD).any(|a| {
            a.identity()
                .is_ok_and(|h| same_host(h, &self.config.origin_host))
        }) {
            let err = ProtocolError::new(ResultCode::LOOP_DETECTED, "this node is in Route-Record");
            self.send_error_answer(conn, &header, Some(view), &err);
            return;
        }
        let dest_host = view.destination_host();
        let dest_realm = view.destination_realm();
        let app = view.application();
        let served = self.config.applications.iter().any(|a| a.id == app);
        let for_us_host = dest_host.is_some_and(|h| same_host(h, &self.config.origin_host));
        let our_realm = dest_realm.is_none_or(|r| same_host(r, &self.config.origin_realm));
        // §6.1.4: local if Destination-Host is us; or no Destination-Host, our realm (or none)
        // and the application served here; or neither AVP.
        let local = for_us_host
            || (dest_host.is_none() && our_realm && (served || !self.config.relay))
            || (dest_host.is_none() && dest_realm.is_none());
        if local {
            self.on_local_request(peer, conn, view, served, now);
        } else {
            self.on_forward_request(peer, conn, view, now);
        }
    }

    fn on_local_request(
        &mut self,
        peer: PeerId,
        conn: ConnectionId,
        view: &MessageView<'_>,
        served: bool,
        now: Instant,
    ) {
        let header = *view.header();
        if !served {
            let err = ProtocolError::new(
                ResultCode::APPLICATION_UNSUPPORTED,
                "application not supported",
            );
            self.send_error_answer(conn, &header, Some(view), &err);
            return;
        }
        let Some(def) = self.dict.command(header.application, header.command) else {
            let err = ProtocolError::new(ResultCode::COMMAND_UNSUPPORTED, "command not supported");
            self.send_error_answer(conn, &header, Some(view), &err);
            return;
        };
        if let Err(err) = check_request(&self.dict, Some(def), view, &self.config.limits) {
            self.send_error_answer(conn, &header, Some(view), &err);
            return;
        }
        // §3, §5.5.4: duplicates by (Origin-Host, End-to-End id).
        let origin = view.origin_host().unwrap_or_default();
        let key = DedupCache::key(origin, header.end_to_end);
        match self.dedup.get(&key) {
            Some(Seen::Answered(answer)) => {
                let mut answer = answer.to_vec();
                set_hop_by_hop(&mut answer, header.hop_by_hop);
                self.send(conn, answer);
                return;
            }
            Some(Seen::Pending(id)) => {
                // Still with the application: answer on the latest path.
                if let Some(inc) = self.incoming.get_mut(id) {
                    inc.conn = conn;
                    inc.hop_by_hop = header.hop_by_hop;
                    inc.peer = peer;
                }
                return;
            }
            None => {}
        }
        if self.peers[peer.0 as usize].incoming >= self.config.max_incoming_per_peer {
            let err = ProtocolError::new(
                ResultCode::TOO_BUSY,
                "too many requests pending from this peer",
            );
            self.send_error_answer(conn, &header, Some(view), &err);
            return;
        }
        let id = IncomingId(self.next_id());
        self.dedup.insert_pending(key.clone(), id, now);
        self.incoming.insert(
            id,
            Incoming {
                peer,
                conn,
                hop_by_hop: header.hop_by_hop,
                end_to_end: header.end_to_end,
                key,
            },
        );
        self.peer_mut(peer).incoming += 1;
        self.events.push_back(Event::Request {
            id,
            peer,
            message: view.octets().to_vec(),
            retransmitted: header.flags.is_retransmitted(),
        });
    }

    fn on_forward_request(
        &mut self,
        peer: PeerId,
        conn: ConnectionId,
        view: &MessageView<'_>,
        now: Instant,
    ) {
        let header = *view.header();
        let refuse = |node: &mut Self, rc: ResultCode, reason: &'static str| {
            node.send_error_answer(conn, &header, Some(view), &ProtocolError::new(rc, reason));
        };
        if !self.config.relay {
            let rc = if view
                .destination_realm()
                .is_some_and(|r| !same_host(r, &self.config.origin_realm))
            {
                ResultCode::REALM_NOT_SERVED
            } else {
                ResultCode::UNABLE_TO_DELIVER
            };
            return refuse(self, rc, "not a relay");
        }
        if !header.flags.is_proxiable() {
            // §3: P clear: the message must be processed locally, and it is not for us.
            return refuse(
                self,
                ResultCode::UNABLE_TO_DELIVER,
                "not proxiable and not for this node",
            );
        }
        // A relay checks the header and the routing AVPs only (§6.1.9); unknown AVPs pass.
        if let Err(err) = check_request(&self.dict, None, view, &self.config.limits) {
            self.send_error_answer(conn, &header, Some(view), &err);
            return;
        }
        let selection = self.select(
            header.application,
            view.destination_host(),
            view.destination_realm(),
            view,
            Some(peer),
        );
        let target = match selection {
            Selection::Peer(p) => p,
            Selection::Busy => return refuse(self, ResultCode::TOO_BUSY, "every route is busy"),
            Selection::NotUsable => {
                return refuse(self, ResultCode::UNABLE_TO_DELIVER, "no usable route");
            }
            Selection::NoRoute { realm_known: false } => {
                return refuse(self, ResultCode::REALM_NOT_SERVED, "realm not served");
            }
            Selection::NoRoute { realm_known: true } => {
                return refuse(self, ResultCode::UNABLE_TO_DELIVER, "no route");
            }
        };
        // §6.1.9: append Route-Record with the identity of the peer it came from.
        let from = self.peers[peer.0 as usize].info.as_ref().map_or_else(
            || self.peers[peer.0 as usize].host.clone(),
            |i| i.origin_host.clone(),
        );
        let mut forwarded =
            MessageBuilder::with_buffer(header, Vec::with_capacity(view.octets().len() + 32));
        forwarded.extend_encoded(&view.octets()[HEADER_LEN..]);
        forwarded.identity(m(AvpCode::ROUTE_RECORD), &from);
        let Ok(message) = forwarded.finish() else {
            return refuse(
                self,
                ResultCode::UNABLE_TO_COMPLY,
                "cannot add Route-Record",
            );
        };
        let message = Zeroizing::new(message);
        let txid = self.next_id();
        let deadline = now + self.config.request_timeout;
        self.txs.insert(
            txid,
            Tx {
                origin: Origin::Relayed {
                    conn,
                    hop_by_hop: header.hop_by_hop,
                },
                message,
                application: header.application,
                peer: None,
                conn: None,
                hop_by_hop: 0,
                // A T flag received stays set in the forwarded request (§3).
                sent: header.flags.is_retransmitted(),
                deadline,
            },
        );
        self.arm(deadline, TimerKey::Request(txid));
        self.dispatch(txid, target);
    }

    fn on_answer(&mut self, conn: ConnectionId, view: &MessageView<'_>, _now: Instant) {
        let hbh = view.header().hop_by_hop;
        let Some(txid) = self.conns.get_mut(&conn).and_then(|c| c.out.remove(&hbh)) else {
            // §3: "An answer message that is received with an unknown Hop-by-Hop Identifier
            // MUST be discarded."
            self.events.push_back(Event::Discarded {
                conn,
                reason: "answer to no pending request",
            });
            return;
        };
        let Some(tx) = self.txs.remove(&txid) else {
            return;
        };
        self.parked.retain(|t| *t != txid);
        if let Some(p) = tx.peer {
            let peer = self.peer_mut(p);
            peer.outstanding = peer.outstanding.saturating_sub(1);
        }
        match tx.origin {
            Origin::Local(request) => {
                self.events.push_back(Event::Answer {
                    request,
                    message: view.octets().to_vec(),
                });
            }
            Origin::Relayed {
                conn: back,
                hop_by_hop,
            } => {
                // §6.2.2: restore the Hop-by-Hop id and send it back where it came from.
                let mut answer = view.octets().to_vec();
                set_hop_by_hop(&mut answer, hop_by_hop);
                if self.conns.contains_key(&back) {
                    self.send(back, answer);
                }
            }
        }
    }

    // ----- routing and failover -----

    fn select(
        &self,
        app: ApplicationId,
        dest_host: Option<&str>,
        dest_realm: Option<&str>,
        view: &MessageView<'_>,
        from: Option<PeerId>,
    ) -> Selection {
        let in_route_record = |host: &str| {
            view.find_all(AvpCode::ROUTE_RECORD)
                .any(|a| a.identity().is_ok_and(|h| same_host(h, host)))
        };
        let eligible = |id: PeerId| -> bool {
            let Some(p) = self.peer(id) else { return false };
            Some(id) != from
                && !in_route_record(&p.host)
                && p.info.as_ref().is_none_or(|i| i.supports(app))
        };
        let mut candidates: Vec<PeerId> = Vec::new();
        let mut realm_known = false;
        // §6.1.5: a Destination-Host in the peer table is forwarded to directly.
        if let Some(host) = dest_host.and_then(|h| self.peer_by_host(h)) {
            candidates.push(host);
            realm_known = true;
        } else {
            for route in &self.routes {
                let realm_ok = match (&route.realm, dest_realm) {
                    (Some(r), Some(d)) => same_host(r, d),
                    (Some(_), None) => false,
                    (None, _) => false,
                };
                if realm_ok && route.application.is_none_or(|a| a == app) {
                    realm_known = true;
                    candidates.extend(route.peers.iter().copied());
                }
            }
            if let Some(d) = dest_realm {
                for (i, p) in self.peers.iter().enumerate() {
                    if !p.removed
                        && p.info
                            .as_ref()
                            .is_some_and(|info| same_host(&info.origin_realm, d))
                    {
                        realm_known = true;
                        candidates.push(PeerId(i as u32));
                    }
                }
            }
            for route in self
                .routes
                .iter()
                .filter(|r| r.realm.is_none() && r.application.is_none_or(|a| a == app))
            {
                realm_known = true;
                candidates.extend(route.peers.iter().copied());
            }
        }
        let candidates: Vec<PeerId> = candidates.into_iter().filter(|id| eligible(*id)).collect();
        if candidates.is_empty() {
            return Selection::NoRoute { realm_known };
        }
        let mut busy = false;
        for id in &candidates {
            let p = &self.peers[id.0 as usize];
            if p.usable {
                if p.outstanding < self.config.max_pending_per_peer {
                    return Selection::Peer(*id);
                }
                busy = true;
            }
        }
        if busy {
            Selection::Busy
        } else {
            Selection::NotUsable
        }
    }

    fn dispatch(&mut self, txid: u64, peer: PeerId) {
        let Some(conn) = self.peers[peer.0 as usize].open_conn() else {
            return;
        };
        let hbh = self.hop_by_hop();
        let Some(tx) = self.txs.get_mut(&txid) else {
            return;
        };
        set_hop_by_hop(&mut tx.message, hbh);
        if tx.sent {
            tx.message[4] |= CommandFlags::RETRANSMITTED.bits();
        }
        tx.sent = true;
        tx.peer = Some(peer);
        tx.conn = Some(conn);
        tx.hop_by_hop = hbh;
        let data = tx.message.to_vec();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.out.insert(hbh, txid);
        }
        self.peer_mut(peer).outstanding += 1;
        self.send(conn, data);
    }

    /// Moves a pending request away from its peer (§5.5.4). `closed`: its connection is gone;
    /// otherwise (watchdog SUSPECT) it stays where it is when there is no alternative.
    fn failover_tx(&mut self, txid: u64, closed: bool, _now: Instant) {
        let Some(tx) = self.txs.get(&txid) else {
            return;
        };
        let (Some(old_peer), Some(old_conn)) = (tx.peer, tx.conn) else {
            return;
        };
        let view_octets = tx.message.clone();
        let Ok(view) = MessageView::parse(&view_octets) else {
            return;
        };
        let selection = self.select(
            tx.application,
            view.destination_host(),
            view.destination_realm(),
            &view,
            Some(old_peer),
        );
        let origin = tx.origin;
        let alternative = match selection {
            Selection::Peer(p) => Some(p),
            _ => None,
        };
        if alternative.is_none() && !closed {
            return;
        }
        // Detach from the old peer and connection.
        let hbh = tx.hop_by_hop;
        if let Some(c) = self.conns.get_mut(&old_conn) {
            c.out.remove(&hbh);
        }
        let p = self.peer_mut(old_peer);
        p.outstanding = p.outstanding.saturating_sub(1);
        if let Some(tx) = self.txs.get_mut(&txid) {
            tx.peer = None;
            tx.conn = None;
        }
        match (alternative, origin) {
            (Some(p), _) => self.dispatch(txid, p),
            (None, Origin::Local(_)) => {
                // Wait for a peer (this one reconnecting, or another) until the deadline; it
                // is then resent with the T flag.
                self.parked.push_back(txid);
            }
            (None, Origin::Relayed { conn, hop_by_hop }) => {
                // §5.5.4: cannot be resent: DIAMETER_UNABLE_TO_DELIVER with the E bit, so that
                // the downstream node can try another route.
                let tx = self.txs.remove(&txid);
                if let Some(tx) = tx {
                    self.answer_relayed_error(
                        &tx.message,
                        conn,
                        hop_by_hop,
                        ResultCode::UNABLE_TO_DELIVER,
                    );
                }
            }
        }
    }

    fn answer_relayed_error(
        &mut self,
        request: &[u8],
        conn: ConnectionId,
        hop_by_hop: u32,
        rc: ResultCode,
    ) {
        let Ok(view) = MessageView::parse(request) else {
            return;
        };
        let mut header = *view.header();
        header.hop_by_hop = hop_by_hop;
        let err = ProtocolError::new(rc, "the request could not be delivered");
        if let Ok(mut answer) = error_answer(
            &header,
            Some(&view),
            &self.config.origin_host,
            &self.config.origin_realm,
            &err,
        ) {
            set_hop_by_hop(&mut answer, hop_by_hop);
            if self.conns.contains_key(&conn) {
                self.send(conn, answer);
            }
        }
    }

    fn failover_peer(&mut self, peer: PeerId, closed: bool, now: Instant) {
        let txs: Vec<u64> = self
            .txs
            .iter()
            .filter(|(_, t)| t.peer == Some(peer))
            .map(|(id, _)| *id)
            .collect();
        for tx in txs {
            self.failover_tx(tx, closed, now);
        }
    }

    fn retry_parked(&mut self) {
        let parked: Vec<u64> = self.parked.drain(..).collect();
        for txid in parked {
            let Some(tx) = self.txs.get(&txid) else {
                continue;
            };
            let octets = tx.message.clone();
            let app = tx.application;
            let Ok(view) = MessageView::parse(&octets) else {
                continue;
            };
            match self.select(
                app,
                view.destination_host(),
                view.destination_realm(),
                &view,
                None,
            ) {
                Selection::Peer(p) => self.dispatch(txid, p),
                _ => self.parked.push_back(txid),
            }
        }
    }

    fn request_timeout(&mut self, txid: u64, _now: Instant) {
        let Some(tx) = self.txs.remove(&txid) else {
            return;
        };
        self.parked.retain(|t| *t != txid);
        if let (Some(p), Some(c)) = (tx.peer, tx.conn) {
            let peer = self.peer_mut(p);
            peer.outstanding = peer.outstanding.saturating_sub(1);
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.out.remove(&tx.hop_by_hop);
            }
        }
        match tx.origin {
            Origin::Local(request) => {
                self.events.push_back(Event::RequestFailed {
                    request,
                    reason: RequestFailure::Timeout,
                });
            }
            Origin::Relayed { conn, hop_by_hop } => {
                self.answer_relayed_error(
                    &tx.message,
                    conn,
                    hop_by_hop,
                    ResultCode::UNABLE_TO_DELIVER,
                );
            }
        }
    }

    // ----- the peer state machine (RFC 6733 §5.6) -----

    fn set_peer_state(&mut self, peer: PeerId, state: PeerState, deadline: Option<Instant>) {
        let p = self.peer_mut(peer);
        p.state = state;
        p.deadline = deadline;
        if let Some(at) = deadline {
            self.arm(at, TimerKey::PeerState(peer));
        }
    }

    fn send_cer(&mut self, conn: ConnectionId) {
        let hbh = self.hop_by_hop();
        let e2e = self.next_end_to_end();
        if let Ok(cer) = caps::cer(&self.config, hbh, e2e) {
            self.send(conn, cer);
        }
    }

    fn send_r_cea(&mut self, peer: PeerId) {
        let p = self.peer_mut(peer);
        let cea = p.r_cea.take();
        if let (Some(cea), Some(conn)) = (cea, p.r_conn) {
            self.send(conn, cea);
        }
    }

    /// §5.6.4: the local node wins if its Origin-Host succeeds the peer's (case-insensitive).
    fn wins_election(&self, peer: PeerId) -> bool {
        let p = &self.peers[peer.0 as usize];
        let theirs = p
            .r_info
            .as_ref()
            .map_or(p.host.as_str(), |i| i.origin_host.as_str());
        identity_cmp(&self.config.origin_host, theirs) == core::cmp::Ordering::Greater
    }

    /// Win-Election: I-Disc, R-Snd-CEA, R-Open.
    fn win_election(&mut self, peer: PeerId, now: Instant) {
        if let Some(i) = self.peer_mut(peer).i_conn.take() {
            self.close(i);
        }
        self.send_r_cea(peer);
        self.open(peer, PeerState::ROpen, now);
    }

    fn refuse_cer(
        &mut self,
        conn: ConnectionId,
        view: &MessageView<'_>,
        rc: ResultCode,
        failed: &[u8],
        text: &str,
    ) {
        if let Ok(cea) = caps::cea(&self.config, view, rc, failed, Some(text)) {
            self.send(conn, cea);
        }
        self.close(conn);
    }

    /// A CER on an accepted connection (§5.6.1): Process-CER, then the R-Conn-CER event.
    fn on_r_conn_cer(&mut self, conn: ConnectionId, view: &MessageView<'_>, now: Instant) {
        let def = self
            .dict
            .command(ApplicationId::COMMON, CommandCode::CAPABILITIES_EXCHANGE);
        if let Err(err) = check_request(&self.dict, def, view, &self.config.limits) {
            return self.refuse_cer(conn, view, err.result_code, &err.failed_avps, err.reason);
        }
        let info = caps::peer_info(view);
        let identities = self.conns.get(&conn).and_then(|c| c.identities.clone());
        if identities.is_some_and(|names| !names.iter().any(|n| same_host(n, &info.origin_host))) {
            return self.refuse_cer(
                conn,
                view,
                ResultCode::UNKNOWN_PEER,
                &[],
                "Origin-Host does not match the transport identity",
            );
        }
        if same_host(&info.origin_host, &self.config.origin_host) {
            return self.refuse_cer(
                conn,
                view,
                ResultCode::UNKNOWN_PEER,
                &[],
                "Origin-Host is this node's",
            );
        }
        let peer = match self.peer_by_host(&info.origin_host) {
            Some(p) => p,
            None if self.config.accept_unknown_peers => {
                self.push_peer(info.origin_host.clone(), false, true)
            }
            None => {
                return self.refuse_cer(conn, view, ResultCode::UNKNOWN_PEER, &[], "unknown peer");
            }
        };
        if !caps::have_common_application(&self.config, &info) {
            self.refuse_cer(
                conn,
                view,
                ResultCode::NO_COMMON_APPLICATION,
                &[],
                "no common application",
            );
            self.drop_dynamic_peer(peer);
            return;
        }
        let state = self.peers[peer.0 as usize].state;
        if !matches!(
            state,
            PeerState::Closed | PeerState::WaitConnAck | PeerState::WaitICea
        ) {
            // R-Reject: a connection is already in use or being elected.
            self.events.push_back(Event::Discarded {
                conn,
                reason: "second connection from the same peer rejected",
            });
            self.close(conn);
            return;
        }
        let Ok(cea) = caps::cea(&self.config, view, ResultCode::SUCCESS, &[], None) else {
            self.close(conn);
            return;
        };
        // R-Accept.
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = Some(peer);
            c.phase = Phase::Bound;
            c.deadline = None;
        }
        let p = self.peer_mut(peer);
        p.r_conn = Some(conn);
        p.r_cea = Some(cea);
        p.r_info = Some(info);
        match state {
            PeerState::Closed => {
                self.send_r_cea(peer);
                self.open(peer, PeerState::ROpen, now);
            }
            PeerState::WaitConnAck => {
                let deadline = self.peers[peer.0 as usize].deadline;
                self.set_peer_state(peer, PeerState::WaitConnAckElect, deadline);
            }
            _ => {
                // Wait-I-CEA: Elect.
                if self.wins_election(peer) {
                    self.win_election(peer, now);
                } else {
                    let deadline = self.peers[peer.0 as usize].deadline;
                    self.set_peer_state(peer, PeerState::WaitReturns, deadline);
                }
            }
        }
    }

    /// The CEA on the connection this node made (Process-CEA).
    fn on_cea(&mut self, peer: PeerId, conn: ConnectionId, view: &MessageView<'_>, now: Instant) {
        let def = self
            .dict
            .command(ApplicationId::COMMON, CommandCode::CAPABILITIES_EXCHANGE);
        let result = view.result_code();
        let checked = check_answer(&self.dict, def, view, &self.config.limits);
        let info = caps::peer_info(view);
        let expected = &self.peers[peer.0 as usize].host;
        let identities_ok = self
            .conns
            .get(&conn)
            .and_then(|c| c.identities.as_ref())
            .is_none_or(|names| names.iter().any(|n| same_host(n, &info.origin_host)));
        let ok = checked.is_ok()
            && result == Some(ResultCode::SUCCESS)
            && same_host(expected, &info.origin_host)
            && identities_ok
            && caps::have_common_application(&self.config, &info);
        if !ok {
            self.events.push_back(Event::CapabilitiesExchangeFailed {
                peer,
                result_code: result,
            });
            self.peer_mut(peer).i_conn = None;
            self.close(conn);
            if self.peers[peer.0 as usize].state == PeerState::WaitReturns {
                // The responder connection is still there: I-Peer-Disc handling.
                self.send_r_cea(peer);
                self.open(peer, PeerState::ROpen, now);
            } else {
                self.set_peer_state(peer, PeerState::Closed, None);
            }
            return;
        }
        if self.peers[peer.0 as usize].state == PeerState::WaitReturns {
            // I-Rcv-CEA in Wait-Returns: R-Disc, I-Open.
            let p = self.peer_mut(peer);
            p.r_cea = None;
            p.r_info = None;
            if let Some(r) = p.r_conn.take() {
                self.close(r);
            }
        }
        self.peer_mut(peer).r_info = Some(info);
        self.open(peer, PeerState::IOpen, now);
    }

    /// The peer reached R-Open or I-Open: the watchdog's OnConnectionUp.
    fn open(&mut self, peer: PeerId, state: PeerState, now: Instant) {
        let p = self.peer_mut(peer);
        p.info = p.r_info.take().or_else(|| p.info.clone());
        if state == PeerState::ROpen {
            p.i_conn = None;
        } else {
            p.r_conn = None;
        }
        self.set_peer_state(peer, state, None);
        match self.peers[peer.0 as usize].wd.state {
            WatchdogState::Down => {
                let p = self.peer_mut(peer);
                p.wd.state = WatchdogState::Reopen;
                p.wd.num_dwa = 0;
                p.wd.pending = true;
                self.send_dwr(peer);
                self.set_watchdog(peer, now);
            }
            _ => {
                self.peer_mut(peer).wd.state = WatchdogState::Okay;
                self.set_watchdog(peer, now);
                self.peer_up(peer);
            }
        }
    }

    fn peer_up(&mut self, peer: PeerId) {
        let p = self.peer_mut(peer);
        if !p.usable {
            p.usable = true;
            self.events.push_back(Event::PeerUp { peer });
            self.retry_parked();
        }
    }

    fn peer_down(&mut self, peer: PeerId, reason: DownReason, now: Instant) {
        let p = self.peer_mut(peer);
        if p.usable {
            p.usable = false;
            self.events.push_back(Event::PeerDown { peer, reason });
        }
        let closed = reason != DownReason::WatchdogSuspect;
        self.failover_peer(peer, closed, now);
    }

    /// The peer's connection is gone: Closed, and the watchdog's OnConnectionDown.
    fn peer_closed(&mut self, peer: PeerId, reason: DownReason, now: Instant) {
        let p = self.peer_mut(peer);
        let conns: Vec<_> = [p.i_conn.take(), p.r_conn.take()]
            .into_iter()
            .flatten()
            .collect();
        p.r_cea = None;
        for c in conns {
            self.close(c);
        }
        let was_closing = self.peers[peer.0 as usize].state == PeerState::Closing;
        self.set_peer_state(peer, PeerState::Closed, None);
        let p = self.peer_mut(peer);
        // A clean DPR/DPA close needs no REOPEN validation on the next connection.
        p.wd.state = if was_closing {
            WatchdogState::Initial
        } else {
            WatchdogState::Down
        };
        p.wd.pending = false;
        self.set_watchdog(peer, now);
        self.peer_down(peer, reason, now);
    }

    fn drop_dynamic_peer(&mut self, peer: PeerId) {
        let p = &self.peers[peer.0 as usize];
        if p.dynamic && p.state == PeerState::Closed && p.i_conn.is_none() && p.r_conn.is_none() {
            let p = self.peer_mut(peer);
            p.removed = true;
            p.wd.deadline = None;
            p.deadline = None;
        }
    }

    fn peer_state_timeout(&mut self, peer: PeerId, now: Instant) {
        let state = self.peers[peer.0 as usize].state;
        match state {
            PeerState::Closing => {
                self.peer_closed(peer, DownReason::Disconnected, now);
            }
            PeerState::WaitConnAck
            | PeerState::WaitICea
            | PeerState::WaitConnAckElect
            | PeerState::WaitReturns => {
                // Timeout: Error, Closed.
                let p = self.peer_mut(peer);
                let conns: Vec<_> = [p.i_conn.take(), p.r_conn.take()]
                    .into_iter()
                    .flatten()
                    .collect();
                p.r_cea = None;
                p.r_info = None;
                for c in conns {
                    self.close(c);
                }
                self.set_peer_state(peer, PeerState::Closed, None);
                self.events.push_back(Event::CapabilitiesExchangeFailed {
                    peer,
                    result_code: None,
                });
                self.drop_dynamic_peer(peer);
            }
            _ => {}
        }
    }

    // ----- the watchdog (RFC 3539 Appendix A) -----

    /// SetWatchdog(): Tw = Twinit - 2 s + 4 s * random().
    fn set_watchdog(&mut self, peer: PeerId, now: Instant) {
        let jitter_ms = self.random() % 4001;
        let tw = self.config.watchdog_interval - Duration::from_secs(2)
            + Duration::from_millis(jitter_ms);
        let at = now + tw;
        let wd = &mut self.peer_mut(peer).wd;
        wd.deadline = Some(at);
        if wd.armed.is_none_or(|armed| armed > at) {
            wd.armed = Some(at);
            self.arm(at, TimerKey::Watchdog(peer));
        }
    }

    fn ensure_watchdog(&mut self, peer: PeerId, now: Instant) {
        if self.peers[peer.0 as usize].wd.deadline.is_none() {
            self.set_watchdog(peer, now);
        }
    }

    fn send_dwr(&mut self, peer: PeerId) {
        let Some(conn) = self.peers[peer.0 as usize].open_conn() else {
            return;
        };
        let hbh = self.hop_by_hop();
        let e2e = self.next_end_to_end();
        let mut b = MessageBuilder::request(
            CommandCode::DEVICE_WATCHDOG,
            ApplicationId::COMMON,
            CommandFlags::NONE,
        );
        b.set_ids(hbh, e2e);
        b.identity(m(AvpCode::ORIGIN_HOST), &self.config.origin_host);
        b.identity(m(AvpCode::ORIGIN_REALM), &self.config.origin_realm);
        b.u32(m(AvpCode::ORIGIN_STATE_ID), self.config.origin_state_id);
        if let Ok(dwr) = b.finish() {
            self.send(conn, dwr);
        }
    }

    /// OnReceive(): any message from the peer on its open connection.
    fn watchdog_receive(&mut self, peer: PeerId, is_dwa: bool, now: Instant) {
        if is_dwa {
            self.peer_mut(peer).wd.pending = false;
        }
        match self.peers[peer.0 as usize].wd.state {
            WatchdogState::Okay => self.set_watchdog(peer, now),
            WatchdogState::Suspect => {
                self.peer_mut(peer).wd.state = WatchdogState::Okay;
                self.set_watchdog(peer, now);
                self.peer_up(peer);
            }
            WatchdogState::Reopen if is_dwa => {
                let needed = i32::try_from(self.config.reopen_watchdogs).unwrap_or(i32::MAX);
                let p = self.peer_mut(peer);
                p.wd.num_dwa += 1;
                if p.wd.num_dwa >= needed {
                    p.wd.state = WatchdogState::Okay;
                    self.peer_up(peer);
                }
            }
            _ => {}
        }
    }

    /// OnTimerElapsed().
    fn watchdog_timeout(&mut self, peer: PeerId, now: Instant) {
        let wd = self.peers[peer.0 as usize].wd;
        let state = self.peers[peer.0 as usize].state;
        match wd.state {
            WatchdogState::Okay if matches!(state, PeerState::ROpen | PeerState::IOpen) => {
                if !wd.pending {
                    self.send_dwr(peer);
                    self.peer_mut(peer).wd.pending = true;
                    self.set_watchdog(peer, now);
                } else {
                    self.peer_mut(peer).wd.state = WatchdogState::Suspect;
                    self.set_watchdog(peer, now);
                    self.peer_down(peer, DownReason::WatchdogSuspect, now);
                }
            }
            WatchdogState::Suspect => {
                self.peer_closed(peer, DownReason::WatchdogTimeout, now);
            }
            WatchdogState::Reopen => {
                if !wd.pending {
                    self.send_dwr(peer);
                    self.peer_mut(peer).wd.pending = true;
                    self.set_watchdog(peer, now);
                } else if wd.num_dwa < 0 {
                    self.peer_closed(peer, DownReason::WatchdogTimeout, now);
                } else {
                    self.peer_mut(peer).wd.num_dwa = -1;
                    self.set_watchdog(peer, now);
                }
            }
            WatchdogState::Initial | WatchdogState::Down | WatchdogState::Okay => {
                // AttemptOpen() for peers this node connects to.
                let p = &self.peers[peer.0 as usize];
                if p.initiate && p.reconnect && p.state == PeerState::Closed {
                    self.connect(peer, now);
                }
                if !self.peers[peer.0 as usize].removed {
                    self.set_watchdog(peer, now);
                }
            }
        }
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): the node's small deterministic generator.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
