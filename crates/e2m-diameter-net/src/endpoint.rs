//! The driver: one task owns the [`Node`]; connection tasks feed it octets; the
//! application talks to it through an [`Endpoint`] handle and receives requests from
//! [`Incoming`].

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2m_diameter::{
    AnswerError, ConfigError, ConnectionId, DisconnectCause, DownReason, Event, IncomingId, Node,
    PeerConfig, PeerId, ProtocolError, RequestFailure, RequestId, ResultCode, SendError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use zeroize::Zeroizing;

use crate::tls::{BoxStream, ClientTls, peer_names};

/// The driver's bounds and timers (defaults in parentheses).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// Transport connections at once, accepted and initiated (256). An accepted connection
    /// over the limit is closed at once; an initiated one fails (the node retries later).
    pub max_connections: usize,
    /// TCP connect plus TLS handshake, in either direction (10 s).
    pub handshake_timeout: Duration,
    /// Requests delivered to the application and not yet taken from [`Incoming`] (1,024);
    /// past it a request is answered DIAMETER_TOO_BUSY by the driver.
    pub incoming_queue: usize,
    /// Messages queued for writing on one connection (1,024); a peer that does not read
    /// them is disconnected rather than buffered without bound.
    pub write_queue: usize,
    /// Octets read from a socket at once (16 KiB).
    pub read_chunk: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            incoming_queue: 1024,
            write_queue: 1024,
            read_chunk: 16 * 1024,
        }
    }
}

/// Where and how to reach a peer this node connects to.
#[derive(Clone, Debug)]
pub struct Remote {
    /// Its address.
    pub addr: SocketAddr,
    /// TLS from the first octet (RFC 6733 §13), or plain TCP when `None`.
    pub tls: Option<ClientTls>,
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not a well-formed request.
    #[error("not a well-formed Diameter request")]
    Invalid,
    /// No route for it.
    #[error("no route for the request")]
    NoRoute,
    /// Too many requests pending towards every usable peer, or waiting for one: back off.
    #[error("too many pending requests")]
    TooBusy,
    /// No answer within the node's request timeout (failovers included).
    #[error("no answer in time")]
    Timeout,
    /// The endpoint stopped.
    #[error("the Diameter endpoint stopped")]
    Stopped,
}

impl From<SendError> for RequestError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::TooBusy => RequestError::TooBusy,
            SendError::NoRoute => RequestError::NoRoute,
            _ => RequestError::Invalid,
        }
    }
}

/// A change of a peer's state, for the application (and logs).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// The peer takes requests (capabilities exchanged, watchdog OKAY).
    Up {
        /// The peer.
        peer: PeerId,
        /// Its Origin-Host.
        host: Arc<str>,
    },
    /// The peer stopped taking requests.
    Down {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: DownReason,
    },
    /// A capabilities exchange failed.
    CapabilitiesExchangeFailed {
        /// The peer.
        peer: PeerId,
        /// The CEA's Result-Code, if a CEA came.
        result_code: Option<ResultCode>,
    },
}

/// A request for the local application: answer it with [`Endpoint::answer`] or
/// [`Endpoint::refuse`].
pub struct IncomingRequest {
    /// The node's id for it.
    pub id: IncomingId,
    /// The peer it came from.
    pub peer: PeerId,
    /// That peer's Origin-Host (the identity its CER stated, bound to its TLS certificate
    /// when it came over TLS).
    pub peer_host: Arc<str>,
    /// The whole request, checked against the dictionary; wiped when dropped.
    pub message: Zeroizing<Vec<u8>>,
    /// The T flag.
    pub retransmitted: bool,
}

impl fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("peer_host", &self.peer_host)
            .field("len", &self.message.len())
            .field("retransmitted", &self.retransmitted)
            .finish()
    }
}

/// The requests for the local application, in arrival order.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<IncomingRequest>,
}

impl Incoming {
    /// The next request; `None` once the endpoint stopped.
    pub async fn recv(&mut self) -> Option<IncomingRequest> {
        self.rx.recv().await
    }
}

type NodeCall = Box<dyn FnOnce(&mut Node, Instant) + Send>;
type Reply<T> = oneshot::Sender<T>;
/// Where the answer to a request goes.
type AnswerReply = Reply<Result<Zeroizing<Vec<u8>>, RequestError>>;

enum Command {
    Input {
        conn: ConnectionId,
        data: Zeroizing<Vec<u8>>,
    },
    Lost {
        conn: ConnectionId,
    },
    Accepted {
        stream: BoxStream,
        identities: Option<Vec<String>>,
        permit: OwnedSemaphorePermit,
    },
    Connected {
        conn: ConnectionId,
        stream: BoxStream,
        identities: Option<Vec<String>>,
        permit: OwnedSemaphorePermit,
    },
    ConnectFailed {
        conn: ConnectionId,
    },
    AddPeer {
        peer: PeerConfig,
        remote: Option<Remote>,
        reply: Reply<Result<PeerId, ConfigError>>,
    },
    Request {
        message: Zeroizing<Vec<u8>>,
        reply: AnswerReply,
    },
    Answer {
        id: IncomingId,
        message: Zeroizing<Vec<u8>>,
        reply: Reply<Result<(), AnswerError>>,
    },
    Refuse {
        id: IncomingId,
        request: Zeroizing<Vec<u8>>,
        error: ProtocolError,
        reply: Reply<Result<(), AnswerError>>,
    },
    Call(NodeCall),
    Listening(JoinHandle<()>),
    Shutdown {
        grace: Duration,
        reply: Reply<()>,
    },
}

/// The handle of a running driver: cheap to clone, usable from any task.
#[derive(Clone)]
pub struct Endpoint {
    commands: mpsc::Sender<Command>,
    peer_events: broadcast::Sender<PeerEvent>,
    permits: Arc<Semaphore>,
    config: Arc<EndpointConfig>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Starts the driver task for `node` on the current tokio runtime; returns its handle
    /// and the application's request queue. The driver runs until [`Endpoint::shutdown`]
    /// (or until its runtime ends): its listeners and connections keep it alive, so call
    /// `shutdown` to leave peers cleanly and release them.
    pub fn start(node: Node, config: EndpointConfig) -> (Endpoint, Incoming) {
        let (commands, rx) = mpsc::channel(1024);
        let (incoming_tx, incoming_rx) = mpsc::channel(config.incoming_queue.max(1));
        let (peer_events, _) = broadcast::channel(256);
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let config = Arc::new(config);
        let driver = Driver {
            node,
            rx,
            commands: commands.downgrade(),
            incoming: incoming_tx,
            peer_events: peer_events.clone(),
            permits: permits.clone(),
            config: config.clone(),
            conns: HashMap::new(),
            remotes: HashMap::new(),
            pending: HashMap::new(),
            listeners: Vec::new(),
            max_peer: None,
            stopping: None,
        };
        tokio::spawn(driver.run());
        (
            Endpoint {
                commands,
                peer_events,
                permits,
                config,
            },
            Incoming { rx: incoming_rx },
        )
    }

    async fn send(&self, command: Command) -> bool {
        self.commands.send(command).await.is_ok()
    }

    /// Accepts connections on `listener`, with TLS from the first octet when `tls` is given
    /// (the peer's certificate names are then bound to its Origin-Host: a TLS peer without
    /// a certificate naming its CER's Origin-Host is refused with DIAMETER_UNKNOWN_PEER).
    ///
    /// # Errors
    ///
    /// The listener's address cannot be read, or the endpoint stopped.
    pub async fn listen(
        &self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let commands = self.commands.clone();
        let permits = self.permits.clone();
        let timeout = self.config.handshake_timeout;
        let acceptor = tls.map(TlsAcceptor::from);
        let task = tokio::spawn(accept_loop(listener, acceptor, commands, permits, timeout));
        if !self.send(Command::Listening(task)).await {
            return Err(std::io::Error::other("the Diameter endpoint stopped"));
        }
        Ok(addr)
    }

    /// Adds a peer ([`Node::add_peer`]); `remote` is where to connect when it
    /// [`PeerConfig::initiate`]s.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] from the node ([`ConfigError::PeerHost`] also when stopped).
    pub async fn add_peer(
        &self,
        peer: PeerConfig,
        remote: Option<Remote>,
    ) -> Result<PeerId, ConfigError> {
        let (reply, answer) = oneshot::channel();
        if !self
            .send(Command::AddPeer {
                peer,
                remote,
                reply,
            })
            .await
        {
            return Err(ConfigError::PeerHost);
        }
        answer.await.unwrap_or(Err(ConfigError::PeerHost))
    }

    /// Sends a request ([`Node::send_request`]) and waits for its answer. The node resends
    /// it with the T flag after a failover or a reconnection, until its request timeout.
    ///
    /// # Errors
    ///
    /// [`RequestError`]; [`RequestError::TooBusy`] is backpressure: try again later.
    pub async fn request(&self, message: Vec<u8>) -> Result<Zeroizing<Vec<u8>>, RequestError> {
        let (reply, answer) = oneshot::channel();
        if !self
            .send(Command::Request {
                message: Zeroizing::new(message),
                reply,
            })
            .await
        {
            return Err(RequestError::Stopped);
        }
        answer.await.unwrap_or(Err(RequestError::Stopped))
    }

    /// Answers a request of [`Incoming`] ([`Node::answer`]).
    ///
    /// # Errors
    ///
    /// [`AnswerError`] from the node ([`AnswerError::UnknownRequest`] also when stopped).
    pub async fn answer(&self, id: IncomingId, message: Vec<u8>) -> Result<(), AnswerError> {
        let (reply, answer) = oneshot::channel();
        if !self
            .send(Command::Answer {
                id,
                message: Zeroizing::new(message),
                reply,
            })
            .await
        {
            return Err(AnswerError::UnknownRequest);
        }
        answer.await.unwrap_or(Err(AnswerError::UnknownRequest))
    }

    /// Refuses a request of [`Incoming`] with a protocol error ([`Node::refuse`]), e.g.
    /// DIAMETER_TOO_BUSY.
    ///
    /// # Errors
    ///
    /// As [`Endpoint::answer`].
    pub async fn refuse(
        &self,
        request: IncomingRequest,
        error: ProtocolError,
    ) -> Result<(), AnswerError> {
        let (reply, answer) = oneshot::channel();
        if !self
            .send(Command::Refuse {
                id: request.id,
                request: request.message,
                error,
                reply,
            })
            .await
        {
            return Err(AnswerError::UnknownRequest);
        }
        answer.await.unwrap_or(Err(AnswerError::UnknownRequest))
    }

    /// Runs `f` on the node in the driver task (e.g. [`Node::next_end_to_end`],
    /// [`Node::peer_state`], [`Node::add_route`]); its transmits and events are handled
    /// afterwards as after any other call. `None` when the endpoint stopped.
    pub async fn with_node<R, F>(&self, f: F) -> Option<R>
    where
        F: FnOnce(&mut Node, Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let call: NodeCall = Box::new(move |node, now| {
            let _ = reply.send(f(node, now));
        });
        if !self.send(Command::Call(call)).await {
            return None;
        }
        answer.await.ok()
    }

    /// Peer state changes from now on.
    pub fn peer_events(&self) -> broadcast::Receiver<PeerEvent> {
        self.peer_events.subscribe()
    }

    /// Waits until `peer` takes requests, at most `timeout`; whether it does.
    pub async fn wait_usable(&self, peer: PeerId, timeout: Duration) -> bool {
        let mut events = self.peer_events();
        let wait = async {
            if self
                .with_node(move |node, _| node.is_usable(peer))
                .await
                .unwrap_or(false)
            {
                return true;
            }
            loop {
                match events.recv().await {
                    Ok(PeerEvent::Up { peer: p, .. }) if p == peer => return true,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if self
                            .with_node(move |node, _| node.is_usable(peer))
                            .await
                            .unwrap_or(false)
                        {
                            return true;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Disconnects every open peer with DPR (Disconnect-Cause REBOOTING, so that peers may
    /// come back: RFC 6733 §5.4.3), waits up to `grace` for the DPAs and the connections to
    /// close, then stops every task. Requests still waiting fail with
    /// [`RequestError::Stopped`].
    pub async fn shutdown(&self, grace: Duration) {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Shutdown { grace, reply }).await {
            let _ = done.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    commands: mpsc::Sender<Command>,
    permits: Arc<Semaphore>,
    timeout: Duration,
) {
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                tracing::warn!(error = %e, "Diameter accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%from, "Diameter connection refused: connection limit reached");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let commands = commands.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let accepted = match tls {
                None => Some((Box::new(tcp) as BoxStream, None)),
                Some(acceptor) => match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let names = peer_names(stream.get_ref().1.peer_certificates());
                        Some((Box::new(stream) as BoxStream, Some(names)))
                    }
                    Ok(Err(e)) => {
                        tracing::info!(%from, error = %e, "Diameter TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        tracing::info!(%from, "Diameter TLS handshake timed out");
                        None
                    }
                },
            };
            if let Some((stream, identities)) = accepted {
                let _ = commands
                    .send(Command::Accepted {
                        stream,
                        identities,
                        permit,
                    })
                    .await;
            }
        });
    }
}

async fn connect(
    conn: ConnectionId,
    remote: Remote,
    permit: OwnedSemaphorePermit,
    timeout: Duration,
    commands: mpsc::Sender<Command>,
) {
    let attempt = async {
        let tcp = TcpStream::connect(remote.addr).await?;
        let _ = tcp.set_nodelay(true);
        match remote.tls {
            None => Ok::<_, std::io::Error>((Box::new(tcp) as BoxStream, None)),
            Some(tls) => {
                let stream = TlsConnector::from(tls.config)
                    .connect(tls.server_name, tcp)
                    .await?;
                let names = peer_names(stream.get_ref().1.peer_certificates());
                Ok((Box::new(stream) as BoxStream, Some(names)))
            }
        }
    };
    let command = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok((stream, identities))) => Command::Connected {
            conn,
            stream,
            identities,
            permit,
        },
        Ok(Err(e)) => {
            tracing::info!(addr = %remote.addr, error = %e, "Diameter connection failed");
            Command::ConnectFailed { conn }
        }
        Err(_) => {
            tracing::info!(addr = %remote.addr, "Diameter connection timed out");
            Command::ConnectFailed { conn }
        }
    };
    let _ = commands.send(command).await;
}

async fn read_loop(
    conn: ConnectionId,
    mut reader: tokio::io::ReadHalf<BoxStream>,
    chunk: usize,
    commands: mpsc::Sender<Command>,
) {
    loop {
        let mut buf = Zeroizing::new(vec![0u8; chunk]);
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.truncate(n);
                if commands
                    .send(Command::Input { conn, data: buf })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = commands.send(Command::Lost { conn }).await;
}

struct WriteOp {
    data: Zeroizing<Vec<u8>>,
    close: bool,
}

async fn write_loop(
    conn: ConnectionId,
    mut writer: tokio::io::WriteHalf<BoxStream>,
    mut queue: mpsc::Receiver<WriteOp>,
    commands: mpsc::WeakSender<Command>,
) {
    while let Some(op) = queue.recv().await {
        if !op.data.is_empty() && writer.write_all(&op.data).await.is_err() {
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(Command::Lost { conn }).await;
            }
            return;
        }
        if op.close {
            let _ = writer.shutdown().await;
            return;
        }
    }
    // The driver dropped the queue: the connection is gone.
    let _ = writer.shutdown().await;
}

struct ConnHandle {
    writer: mpsc::Sender<WriteOp>,
    reader: AbortHandle,
    _permit: OwnedSemaphorePermit,
}

struct Driver {
    node: Node,
    rx: mpsc::Receiver<Command>,
    commands: mpsc::WeakSender<Command>,
    incoming: mpsc::Sender<IncomingRequest>,
    peer_events: broadcast::Sender<PeerEvent>,
    permits: Arc<Semaphore>,
    config: Arc<EndpointConfig>,
    conns: HashMap<ConnectionId, ConnHandle>,
    remotes: HashMap<PeerId, Remote>,
    pending: HashMap<RequestId, AnswerReply>,
    listeners: Vec<JoinHandle<()>>,
    max_peer: Option<u32>,
    stopping: Option<(Instant, Reply<()>)>,
}

impl Driver {
    async fn run(mut self) {
        loop {
            let timeout = self.node.poll_timeout();
            let stop_at = self.stopping.as_ref().map(|(at, _)| *at);
            let wake = match (timeout, stop_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = self.rx.recv() => match command {
                    Some(command) => self.handle(command),
                    // Every handle and connection task is gone.
                    None => break,
                },
                () = sleep => {
                    let now = Instant::now();
                    self.node.handle_timeout(now);
                }
            }
            self.flush();
            if let Some((at, _)) = &self.stopping
                && (self.conns.is_empty() || Instant::now() >= *at)
            {
                break;
            }
        }
        self.stop();
    }

    fn stop(&mut self) {
        for listener in self.listeners.drain(..) {
            listener.abort();
        }
        for (_, handle) in self.conns.drain() {
            handle.reader.abort();
        }
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(RequestError::Stopped));
        }
        self.permits.close();
        if let Some((_, reply)) = self.stopping.take() {
            let _ = reply.send(());
        }
    }

    fn note_peer(&mut self, peer: PeerId) {
        self.max_peer = Some(self.max_peer.map_or(peer.0, |m| m.max(peer.0)));
    }

    fn handle(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Input { conn, data } => self.node.handle_input(conn, &data, now),
            Command::Lost { conn } => {
                if let Some(handle) = self.conns.remove(&conn) {
                    handle.reader.abort();
                }
                self.node.connection_lost(conn, now);
            }
            Command::Accepted {
                stream,
                identities,
                permit,
            } => {
                if self.stopping.is_some() {
                    return;
                }
                let Some(conn) = self.node.accept(now) else {
                    tracing::warn!("Diameter connection closed: too many await their CER");
                    return;
                };
                if let Some(names) = identities {
                    self.node.set_transport_identities(conn, names);
                }
                self.spawn_io(conn, stream, permit);
            }
            Command::Connected {
                conn,
                stream,
                identities,
                permit,
            } => {
                if let Some(names) = identities {
                    self.node.set_transport_identities(conn, names);
                }
                self.spawn_io(conn, stream, permit);
                self.node.connected(conn, now);
            }
            Command::ConnectFailed { conn } => self.node.connect_failed(conn, now),
            Command::AddPeer {
                peer,
                remote,
                reply,
            } => {
                let result = self.node.add_peer(peer, now);
                if let Ok(id) = result {
                    self.note_peer(id);
                    if let Some(remote) = remote {
                        self.remotes.insert(id, remote);
                    }
                }
                // Events (the Connect of an initiating peer) are handled after this command:
                // the remote is known by then.
                let _ = reply.send(result);
            }
            Command::Request { message, reply } => {
                if self.stopping.is_some() {
                    let _ = reply.send(Err(RequestError::Stopped));
                    return;
                }
                match self.node.send_request(message.to_vec(), now) {
                    Ok(id) => {
                        self.pending.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Answer { id, message, reply } => {
                let _ = reply.send(self.node.answer(id, message.to_vec()));
            }
            Command::Refuse {
                id,
                request,
                error,
                reply,
            } => {
                let _ = reply.send(self.node.refuse(id, &request, &error));
            }
            Command::Call(call) => call(&mut self.node, now),
            Command::Listening(task) => {
                if self.stopping.is_some() {
                    task.abort();
                } else {
                    self.listeners.push(task);
                }
            }
            Command::Shutdown { grace, reply } => {
                for listener in self.listeners.drain(..) {
                    listener.abort();
                }
                for i in 0..=self.max_peer.unwrap_or(0) {
                    let peer = PeerId(i);
                    if self.node.peer_state(peer).is_some() {
                        self.node.disconnect(peer, DisconnectCause::REBOOTING, now);
                    }
                }
                self.stopping = Some((now + grace, reply));
            }
        }
    }

    fn spawn_io(&mut self, conn: ConnectionId, stream: BoxStream, permit: OwnedSemaphorePermit) {
        let Some(commands) = self.commands.upgrade() else {
            return;
        };
        let (reader, writer) = tokio::io::split(stream);
        let (queue, rx) = mpsc::channel(self.config.write_queue.max(1));
        let reader = tokio::spawn(read_loop(
            conn,
            reader,
            self.config.read_chunk.max(1),
            commands,
        ))
        .abort_handle();
        tokio::spawn(write_loop(conn, writer, rx, self.commands.clone()));
        self.conns.insert(
            conn,
            ConnHandle {
                writer: queue,
                reader,
                _permit: permit,
            },
        );
    }

    /// Writes what the node wants written and handles its events, until neither is left.
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.node.poll_transmit() {
                progressed = true;
                let data = Zeroizing::new(t.data);
                let Some(handle) = self.conns.get(&t.conn) else {
                    continue;
                };
                let sent = handle
                    .writer
                    .try_send(WriteOp {
                        data,
                        close: t.close,
                    })
                    .is_ok();
                if t.close || !sent {
                    if let Some(handle) = self.conns.remove(&t.conn) {
                        handle.reader.abort();
                    }
                    if !sent {
                        tracing::warn!(
                            conn = t.conn.0,
                            "Diameter peer does not read: disconnected"
                        );
                        self.node.connection_lost(t.conn, Instant::now());
                    }
                }
            }
            while let Some(event) = self.node.poll_event() {
                progressed = true;
                self.on_event(event);
            }
            if !progressed {
                return;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Connect { peer, conn } => {
                self.note_peer(peer);
                let remote = self.remotes.get(&peer).cloned();
                let permit = self.permits.clone().try_acquire_owned().ok();
                let commands = self.commands.upgrade();
                match (remote, permit, commands) {
                    (Some(remote), Some(permit), Some(commands)) if self.stopping.is_none() => {
                        tokio::spawn(connect(
                            conn,
                            remote,
                            permit,
                            self.config.handshake_timeout,
                            commands,
                        ));
                    }
                    _ => self.node.connect_failed(conn, now),
                }
            }
            Event::PeerUp { peer } => {
                let host: Arc<str> = self
                    .node
                    .peer_info(peer)
                    .map_or_else(|| Arc::from(""), |i| Arc::from(i.origin_host.as_str()));
                tracing::info!(peer = peer.0, %host, "Diameter peer up");
                let _ = self.peer_events.send(PeerEvent::Up { peer, host });
            }
            Event::PeerDown { peer, reason } => {
                tracing::info!(peer = peer.0, ?reason, "Diameter peer down");
                let _ = self.peer_events.send(PeerEvent::Down { peer, reason });
            }
            Event::CapabilitiesExchangeFailed { peer, result_code } => {
                tracing::info!(
                    peer = peer.0,
                    ?result_code,
                    "Diameter capabilities exchange failed"
                );
                let _ = self
                    .peer_events
                    .send(PeerEvent::CapabilitiesExchangeFailed { peer, result_code });
            }
            Event::Request {
                id,
                peer,
                message,
                retransmitted,
            } => {
                let peer_host: Arc<str> = self
                    .node
                    .peer_info(peer)
                    .map_or_else(|| Arc::from(""), |i| Arc::from(i.origin_host.as_str()));
                let request = IncomingRequest {
                    id,
                    peer,
                    peer_host,
                    message: Zeroizing::new(message),
                    retransmitted,
                };
                if let Err(e) = self.incoming.try_send(request) {
                    let request = match e {
                        mpsc::error::TrySendError::Full(r)
                        | mpsc::error::TrySendError::Closed(r) => r,
                    };
                    // Backpressure: never a silently dropped request.
                    let error = ProtocolError::new(ResultCode::TOO_BUSY, "the application is busy");
                    let _ = self.node.refuse(request.id, &request.message, &error);
                }
            }
            Event::Answer { request, message } => {
                if let Some(reply) = self.pending.remove(&request) {
                    let _ = reply.send(Ok(Zeroizing::new(message)));
                }
            }
            Event::RequestFailed { request, reason } => {
                if let Some(reply) = self.pending.remove(&request) {
                    // Timeout is the only failure the node reports today.
                    let _: RequestFailure = reason;
                    let _ = reply.send(Err(RequestError::Timeout));
                }
            }
            Event::Discarded { conn, reason } => {
                tracing::debug!(conn = conn.0, reason, "Diameter message discarded");
            }
            _ => {}
        }
    }
}
