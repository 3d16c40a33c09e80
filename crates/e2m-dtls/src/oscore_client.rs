//! The UE's OSCORE client over UDP: protects CoAP requests with the e2m context and reads
//! the answers, including the unprotected ones the e2m profile gives meaning to.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use e2m_coap::{Code, Message, MessageType, Token};
//! use e2m_dtls::oscore_client::OscoreClient;
//! use e2m_kdf::E2mKey;
//! use e2m_keyid::{AppIdentity, KeyId};
//! use e2m_oscore::SenderSequence;
//! use e2m_oscore::e2m::E2mOscoreProfile;
//! use std::time::Duration;
//!
//! let e2m_key = E2mKey::from_array([0x42; 32]); // in the demo: e2m_kdf::e2m_key(...)
//! let identity = AppIdentity::new("sensor-17@iot.example.com")?;
//! let context = E2mOscoreProfile::PROVISIONAL.ue_context(
//!     &e2m_key, &identity, KeyId::from_u32(0xae47bf35), SenderSequence::volatile())?;
//! let mut ue = OscoreClient::connect("127.0.0.1:5683".parse()?, context).await?;
//! let mut get = Message::new(MessageType::Confirmable, Code::GET, 1, Token::new(b"t1")?);
//! get.set_uri_path("hello")?;
//! let answer = ue.request(&get, Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```
//!
//! One exchange ([`OscoreClient::request`]):
//! - the request is protected with the next sender sequence number, with the ID Context
//!   (kid context) until one response has verified, so that the EMSE can find the key;
//! - it is retransmitted unchanged (same octets, RFC 7252 §4.2) until an answer with its
//!   token arrives or the time is up;
//! - a protected 4.01 with an Echo option (RFC 8613 Appendix B.1.2: the EMSE derived the
//!   context afresh) is answered once: the same request, protected again with the Echo value
//!   inside;
//! - an unprotected answer is read with [`e2m::ue_action`]: send again with the ID Context,
//!   send again once with a new Partial IV ("Replay detected"), answer an outer Echo,
//!   re-authenticate ([`OscoreClientError::Reauthenticate`], only on "Security context not
//!   found" to a request with the ID Context), retry later, or an error. It is
//!   never taken as the response: the UE does not fall back to plain CoAP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use e2m_coap::{Code, Message, OptionNumber};
use e2m_oscore::e2m::{self, UeAction};
use e2m_oscore::{OscoreError, RequestId, SecurityContext};
use tokio::net::UdpSocket;

use crate::MAX_DATAGRAM;

/// Why an OSCORE exchange did not give a verified response. No variant carries key
/// material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OscoreClientError {
    /// Socket error.
    #[error("UDP: {0}")]
    Io(#[from] std::io::Error),
    /// No answer within the time allowed.
    #[error("timed out")]
    Timeout,
    /// The EMSE cannot get the key of this key id (evicted at the EMKS, or the UE is
    /// unknown): run AKA again for a new key id. (Unauthenticated: rate-limit acting on it.)
    #[error("the EMSE does not hold this key id: re-authenticate")]
    Reauthenticate,
    /// The EMSE's key-fetch budget for this source is spent: try again after the seconds.
    #[error("the EMSE asks to retry after {0} s")]
    RetryAfter(u32),
    /// An unprotected error answer that asks for nothing (its code).
    #[error("unprotected error answer {0}")]
    Refused(Code),
    /// The request could not be protected (sequence exhausted, a Proxy-Uri, …).
    #[error("OSCORE: {0}")]
    Oscore(#[from] OscoreError),
}

/// An OSCORE client for one security context and one server.
pub struct OscoreClient {
    socket: UdpSocket,
    context: SecurityContext,
    /// A response verified: the EMSE holds the context, the ID Context may be left out.
    confirmed: bool,
    /// First retransmission timeout (RFC 7252 §4.8 ACK_TIMEOUT: 2 s).
    retransmit: Duration,
    /// Datagrams sent and received, with their sizes (for the byte-count benchmark).
    wire: Vec<(Direction, usize)>,
    /// The next message ID (randomly seeded, RFC 7252 §4.4).
    next_message_id: u16,
}

/// Which way a datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// UE to EMSE.
    Sent,
    /// EMSE to UE.
    Received,
}

impl core::fmt::Debug for OscoreClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OscoreClient")
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

impl OscoreClient {
    /// A client bound to an ephemeral port, sending to `server`.
    ///
    /// # Errors
    /// [`OscoreClientError::Io`].
    pub async fn connect(
        server: SocketAddr,
        context: SecurityContext,
    ) -> Result<Self, OscoreClientError> {
        let local: IpAddr = if server.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
        socket.connect(server).await?;
        let mut seed = [0u8; 2];
        getrandom::fill(&mut seed).map_err(std::io::Error::other)?;
        Ok(OscoreClient {
            next_message_id: u16::from_be_bytes(seed),
            socket,
            context,
            confirmed: false,
            retransmit: Duration::from_secs(2),
            wire: Vec::new(),
        })
    }

    /// Sets the first retransmission timeout (doubled after each retransmission).
    pub fn set_retransmit(&mut self, first: Duration) {
        self.retransmit = first.max(Duration::from_millis(10));
    }

    /// The security context (e.g. to persist its sender sequence).
    pub fn context(&self) -> &SecurityContext {
        &self.context
    }

    /// Every datagram sent and received so far, in order, with its UDP payload size.
    pub fn wire_log(&self) -> &[(Direction, usize)] {
        &self.wire
    }

    /// The local address.
    ///
    /// # Errors
    /// [`OscoreClientError::Io`].
    pub fn local_addr(&self) -> Result<SocketAddr, OscoreClientError> {
        Ok(self.socket.local_addr()?)
    }

    /// Sends `request` protected and returns the verified response (module docs). The
    /// client sets the message ID; the token is the caller's.
    ///
    /// # Errors
    /// [`OscoreClientError`]: [`OscoreClientError::Reauthenticate`] when the EMSE answers
    /// that it cannot get this key id.
    pub async fn request(
        &mut self,
        request: &Message,
        timeout: Duration,
    ) -> Result<Message, OscoreClientError> {
        let deadline = Instant::now() + timeout;
        let mut request = request.clone();
        let mut outer_echo: Option<Vec<u8>> = None;
        let mut echo_answered = false;
        let mut retried_with_context = false;
        let mut sent_again = false;
        loop {
            let with_context = !self.confirmed;
            // The message layer owns message IDs (RFC 7252 §4.4): every new message gets
            // the next one, so that the EMSE's deduplication never mistakes it for an
            // earlier one.
            request.message_id = self.next_message_id;
            self.next_message_id = self.next_message_id.wrapping_add(1);
            let (datagram, id) = self.protect(&request, with_context, outer_echo.as_deref())?;
            let answer = self.exchange(&datagram, &request, deadline).await?;
            match self.context.verify_response_datagram(&answer, &id) {
                Ok(response) => {
                    if response.code == Code::UNAUTHORIZED
                        && !echo_answered
                        && let Some(echo) = response.options.get(OptionNumber::ECHO)
                    {
                        // Appendix B.1.2: repeat the request with the Echo value
                        // (encrypted, Class E).
                        let _ = request.options.set(OptionNumber::ECHO, echo);
                        echo_answered = true;
                        continue;
                    }
                    self.confirmed = true;
                    return Ok(response);
                }
                Err(OscoreError::NotOscore) => {
                    let Ok(unprotected) = Message::decode(&answer) else {
                        return Err(OscoreClientError::Refused(Code::BAD_REQUEST));
                    };
                    match e2m::ue_action(&unprotected, with_context) {
                        UeAction::RetryWithIdContext if !retried_with_context => {
                            self.confirmed = false;
                            retried_with_context = true;
                        }
                        UeAction::AnswerEcho(value) if outer_echo.is_none() => {
                            outer_echo = Some(value);
                        }
                        UeAction::SendAgain if !sent_again => sent_again = true,
                        UeAction::Reauthenticate => return Err(OscoreClientError::Reauthenticate),
                        UeAction::RetryAfter(seconds) => {
                            return Err(OscoreClientError::RetryAfter(seconds));
                        }
                        UeAction::Error(code) => return Err(OscoreClientError::Refused(code)),
                        _ => return Err(OscoreClientError::Refused(unprotected.code)),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn protect(
        &mut self,
        request: &Message,
        with_context: bool,
        outer_echo: Option<&[u8]>,
    ) -> Result<(Vec<u8>, RequestId), OscoreClientError> {
        match outer_echo {
            None => {
                let mut out = Vec::with_capacity(128);
                let id = self
                    .context
                    .protect_request_datagram(request, with_context, &mut out)?;
                Ok((out, id))
            }
            Some(echo) => {
                let (mut protected, id) = self.context.protect_request(request, with_context)?;
                e2m::add_outer_echo(&mut protected, echo);
                Ok((protected.encode(), id))
            }
        }
    }

    /// Sends `datagram` (retransmitting with exponential back-off) until a datagram with
    /// the request's token arrives.
    async fn exchange(
        &mut self,
        datagram: &[u8],
        request: &Message,
        deadline: Instant,
    ) -> Result<Vec<u8>, OscoreClientError> {
        let mut rto = self.retransmit;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            self.socket.send(datagram).await?;
            self.wire.push((Direction::Sent, datagram.len()));
            let resend_at = (Instant::now() + rto).min(deadline);
            loop {
                let wait = resend_at.saturating_duration_since(Instant::now());
                match tokio::time::timeout(wait, self.socket.recv(&mut buf)).await {
                    Ok(Ok(n)) => {
                        let octets = &buf[..n];
                        // Match by token (RFC 7252 §5.3.2); ignore anything else.
                        if let Ok(view) = Message::decode(octets)
                            && view.token == request.token
                            && view.code.is_response()
                        {
                            self.wire.push((Direction::Received, n));
                            return Ok(octets.to_vec());
                        }
                    }
                    // ICMP port unreachable: the server is not there (yet); retransmit.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => break,
                }
            }
            if Instant::now() >= deadline {
                return Err(OscoreClientError::Timeout);
            }
            rto = rto.saturating_mul(2);
        }
    }
}
