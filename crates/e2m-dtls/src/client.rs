//! The UE's DTLS-PSK client (seed 6.x.2.3 steps 1, 3, 4 and 8).
//!
//! ```no_run
//! # async fn demo() -> Result<(), e2m_dtls::DtlsError> {
//! use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
//! use e2m_coap::{Code, Message, MessageType, Token};
//! use e2m_dtls::DtlsLimits;
//! use e2m_kdf::E2mKey;
//! use e2m_keyid::{AppIdentity, KeyId, PskIdentity};
//! use std::time::Duration;
//!
//! let identity = PskIdentity::new(
//!     AppIdentity::new("sensor-17@iot.example.com").map_err(|e| e2m_dtls::DtlsError::Config(e.to_string()))?,
//!     KeyId::from_u32(0xae47bf35),
//! );
//! let psk = E2mKey::from_array([0x42; 32]); // in the demo: e2m_kdf::e2m_key(...)
//! let config = UeDtlsConfig::new(&identity, &psk, DtlsLimits::default())?;
//! let mut ue = DtlsClient::connect("127.0.0.1:5684".parse().unwrap(), &config).await?;
//! let token = Token::new(b"t1").map_err(|e| e2m_dtls::DtlsError::Protocol(e.to_string()))?;
//! let mut get = Message::new(MessageType::Confirmable, Code::GET, 1, token);
//! get.set_uri_path("hello").map_err(|e| e2m_dtls::DtlsError::Protocol(e.to_string()))?;
//! let answer = ue.request(&get, Duration::from_secs(2)).await?;
//! ue.close().await?;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dimpl::{Dtls, Output};
use e2m_kdf::{E2mKey, Kaf};
use e2m_keyid::PskIdentity;
use e2m_keyid::akma::AKid;
use tokio::time::Sleep;

use super::akma::{AkmaIdentityForm, akma_psk_identity};
use super::crypto;
use super::record::peek_psk_identity_hint;
use super::udp::Udp;
use super::{DtlsError, DtlsLimits, MAX_DATAGRAM, PskKey, builder};
use e2m_coap::{CoapError, Message};

/// The client's key, handed to `dimpl` on request.
struct ClientKey(PskKey);

impl dimpl::PskResolver for ClientKey {
    fn resolve(&self, _identity: &[u8]) -> Option<Vec<u8>> {
        Some(self.0.expose_secret().to_vec())
    }
}

/// A prepared client configuration: one `psk_identity` and its `e2m_key`. Building it runs
/// `dimpl`'s crypto provider self-check once, so reuse it across connections.
pub struct UeDtlsConfig {
    config: Arc<dimpl::Config>,
    limits: DtlsLimits,
}

impl core::fmt::Debug for UeDtlsConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UeDtlsConfig")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl UeDtlsConfig {
    /// psk_identity = `identity` as text (seed step 4), PSK = `psk` (seed step 3).
    ///
    /// # Errors
    /// [`DtlsError::Config`] if `dimpl` refuses the configuration.
    pub fn new(
        identity: &PskIdentity,
        psk: &E2mKey,
        limits: DtlsLimits,
    ) -> Result<UeDtlsConfig, DtlsError> {
        let mut buf = [0u8; PskIdentity::MAX_LEN];
        let text = identity.encode(&mut buf).as_bytes().to_vec();
        Self::with_raw_identity(text, psk, limits)
    }

    /// Any identity octets (for interop tests with peers that are not e2m EMSEs).
    ///
    /// # Errors
    /// [`DtlsError::Config`] if `dimpl` refuses the configuration.
    pub fn with_raw_identity(
        identity: Vec<u8>,
        psk: &E2mKey,
        limits: DtlsLimits,
    ) -> Result<UeDtlsConfig, DtlsError> {
        Self::build(identity, PskKey::E2m(psk.copy_secret()), limits)
    }

    /// The AKMA Ua* profile (TS 24.109 K.3.2; the [`akma`](crate::akma) module):
    /// psk_identity = `"3GPP-AKMA"` and `a_kid` (K.3.2 e), [`AkmaIdentityForm::Prefixed`]),
    /// PSK = `kaf`, the K_AF the UE derived for the AF's FQDN and
    /// [`AKMA_UA_PROTOCOL`](crate::akma::AKMA_UA_PROTOCOL).
    ///
    /// # Errors
    /// [`DtlsError::Config`] if `dimpl` refuses the configuration.
    pub fn akma(a_kid: &AKid, kaf: &Kaf, limits: DtlsLimits) -> Result<UeDtlsConfig, DtlsError> {
        Self::akma_in_form(a_kid, kaf, AkmaIdentityForm::Prefixed, limits)
    }

    /// As [`Self::akma`], with the `psk_identity` written in `form`.
    ///
    /// # Errors
    /// [`DtlsError::Config`] if `dimpl` refuses the configuration.
    pub fn akma_in_form(
        a_kid: &AKid,
        kaf: &Kaf,
        form: AkmaIdentityForm,
        limits: DtlsLimits,
    ) -> Result<UeDtlsConfig, DtlsError> {
        let identity = akma_psk_identity(a_kid, form).into_bytes();
        Self::build(identity, PskKey::Af(kaf.copy_secret()), limits)
    }

    fn build(
        identity: Vec<u8>,
        psk: PskKey,
        limits: DtlsLimits,
    ) -> Result<UeDtlsConfig, DtlsError> {
        let config = builder(&limits)
            .with_psk_client(identity, Arc::new(ClientKey(psk)))
            .build()
            .map_err(|e| DtlsError::Config(format!("{e:?}")))?;
        Ok(UeDtlsConfig {
            config: Arc::new(config),
            limits,
        })
    }
}

/// A DTLS-PSK connection from the UE to an EMSE.
///
/// A datagram that finds the socket's send buffer full for 100 ms is dropped, as UDP may
/// (DTLS retransmits its handshake flights; an application on it, such as CoAP,
/// retransmits its messages).
pub struct DtlsClient {
    socket: Udp,
    /// Boxed: `dimpl`'s state is over 3 KiB, and a connection is moved by value.
    dtls: Box<Dtls>,
    out: Vec<u8>,
    inbox: VecDeque<Vec<u8>>,
    next_timer: Option<Instant>,
    /// The one timer of the connection (the retransmission timer or the deadline), moved
    /// rather than made anew at every wait.
    timer: Pin<Box<Sleep>>,
    connected: bool,
    closed: bool,
    /// The server's `psk_identity_hint`, as its ServerKeyExchange carried it.
    hint: Option<Vec<u8>>,
}

impl core::fmt::Debug for DtlsClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DtlsClient")
            .field("connected", &self.connected)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl DtlsClient {
    /// Runs the handshake with `server` (a ClientHello, the cookie round trip, then
    /// ClientKeyExchange + ChangeCipherSpec + Finished) within the configured deadline.
    ///
    /// # Errors
    /// [`DtlsError::Timeout`] if the server does not complete the handshake in time (a
    /// wrong PSK shows up this way or as [`DtlsError::Protocol`]), [`DtlsError::Io`].
    pub async fn connect(server: SocketAddr, config: &UeDtlsConfig) -> Result<Self, DtlsError> {
        let local: IpAddr = if server.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        Self::connect_from(SocketAddr::new(local, 0), server, config).await
    }

    /// As [`Self::connect`], from the local address `local` (a UE with several addresses;
    /// tests that play UEs on several loopback addresses).
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub async fn connect_from(
        local: SocketAddr,
        server: SocketAddr,
        config: &UeDtlsConfig,
    ) -> Result<Self, DtlsError> {
        let socket = std::net::UdpSocket::bind(local)?;
        socket.connect(server)?;
        let socket = Udp::new(socket)?;
        let now = Instant::now();
        let mut dtls = Box::new(Dtls::new_12_psk(Arc::clone(&config.config), now));
        dtls.set_active(true);
        crypto::scope(|| dtls.handle_timeout(now))?;
        let deadline = now + config.limits.handshake_timeout;
        let mut client = DtlsClient {
            socket,
            dtls,
            out: vec![0u8; MAX_DATAGRAM],
            inbox: VecDeque::new(),
            next_timer: None,
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                deadline,
            ))),
            connected: false,
            closed: false,
            hint: None,
        };
        while !client.connected {
            if client.closed {
                return Err(DtlsError::Closed);
            }
            client.step(deadline, |c| c.connected).await?;
        }
        Ok(client)
    }

    /// The `psk_identity_hint` the server sent in its ServerKeyExchange (RFC 4279 §2), if
    /// any: `"3GPP-AKMA"` from an AKMA AF (TS 24.109 K.3.2 d)); none from a server
    /// without a hint, which omits the message.
    pub fn psk_identity_hint(&self) -> Option<&[u8]> {
        self.hint.as_deref()
    }

    /// The local UDP address.
    ///
    /// # Errors
    /// [`DtlsError::Io`].
    pub fn local_addr(&self) -> Result<SocketAddr, DtlsError> {
        Ok(self.socket.local_addr()?)
    }

    /// Sends one application record.
    ///
    /// # Errors
    /// [`DtlsError::Protocol`] or [`DtlsError::Io`].
    pub async fn send(&mut self, data: &[u8]) -> Result<(), DtlsError> {
        self.dtls.send_application_data(data)?;
        self.flush().await
    }

    /// Waits up to `timeout` for the next application record.
    ///
    /// # Errors
    /// [`DtlsError::Timeout`], [`DtlsError::Closed`], [`DtlsError::Protocol`].
    pub async fn recv(&mut self, timeout: Duration) -> Result<Vec<u8>, DtlsError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(data) = self.inbox.pop_front() {
                return Ok(data);
            }
            if self.closed {
                return Err(DtlsError::Closed);
            }
            self.step(deadline, |c| !c.inbox.is_empty()).await?;
        }
    }

    /// Sends a CoAP request and waits for the response with the same token.
    ///
    /// # Errors
    /// As [`Self::send`] and [`Self::recv`]; [`DtlsError::Protocol`] if the answer is not
    /// CoAP.
    pub async fn request(
        &mut self,
        request: &Message,
        timeout: Duration,
    ) -> Result<Message, DtlsError> {
        let bytes = request.encode();
        self.send(&bytes).await?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = Message::decode(&self.recv(left).await?).map_err(coap_error)?;
            if answer.token == request.token {
                return Ok(answer);
            }
        }
    }

    /// Sends close_notify (RFC 5246 §7.2.1) and drops the connection.
    ///
    /// # Errors
    /// [`DtlsError::Io`] if the alert cannot be sent.
    pub async fn close(mut self) -> Result<(), DtlsError> {
        self.dtls.close()?;
        self.flush().await
    }

    /// Sends whatever the state machine has queued and collects its events.
    async fn flush(&mut self) -> Result<(), DtlsError> {
        loop {
            match self.dtls.poll_output(&mut self.out) {
                Output::Packet(p) => match self.socket.send_waiting(p).await {
                    // Dropped, as UDP may (see the type's docs).
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    sent => {
                        sent?;
                    }
                },
                Output::BufferTooSmall { needed } => self.out.resize(needed, 0),
                Output::Timeout(t) => {
                    self.next_timer = Some(t);
                    return Ok(());
                }
                Output::Connected => self.connected = true,
                Output::ApplicationData(d) => self.inbox.push_back(d.to_vec()),
                Output::CloseNotify => self.closed = true,
                _ => {}
            }
        }
    }

    /// One turn: flush; unless `done` now holds, wait for a datagram or the
    /// retransmission timer, bounded by `deadline`.
    async fn step(&mut self, deadline: Instant, done: fn(&Self) -> bool) -> Result<(), DtlsError> {
        self.flush().await?;
        if done(self) || self.closed {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(DtlsError::Timeout);
        }
        let wake =
            tokio::time::Instant::from_std(self.next_timer.unwrap_or(deadline).min(deadline));
        if self.timer.deadline() != wake {
            self.timer.as_mut().reset(wake);
        }
        let mut buf = [0u8; MAX_DATAGRAM];
        tokio::select! {
            received = self.socket.recv(&mut buf) => {
                let n = match received {
                    Ok(n) => n,
                    // An ICMP port unreachable from a server that is not (yet) there:
                    // keep waiting, the retransmission timer retries.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                if !self.connected
                    && let Some(hint) = peek_psk_identity_hint(&buf[..n])
                {
                    self.hint = Some(hint.to_vec());
                }
                let dtls = &mut self.dtls;
                crypto::scope(|| {
                    dtls.handle_timeout(Instant::now())?;
                    dtls.handle_packet(&buf[..n])
                })?;
            }
            () = self.timer.as_mut() => {
                crypto::scope(|| self.dtls.handle_timeout(Instant::now()))?;
            }
        }
        Ok(())
    }
}

fn coap_error(e: CoapError) -> DtlsError {
    DtlsError::Protocol(format!("CoAP: {e}"))
}
