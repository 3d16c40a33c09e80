//! Protecting and verifying requests and responses (RFC 8613 §4, §5, §8).

use alloc::vec::Vec;

use e2m_coap::{
    Code, Message, MessageType, MessageView, OptionNumber, Options, Token, encode_parts,
};

use crate::context::{MAX_ID_LEN, aad};
use crate::option::OptionView;
use crate::replay::{EchoValue, Freshness};
use crate::{OscoreError, OscoreOption, PartialIv, SecurityContext};

/// What the response to a request is bound to (RFC 8613 §7.1): the request's kid and
/// Partial IV. A client keeps it from [`SecurityContext::protect_request`] until the response
/// arrives; a server gets it from [`SecurityContext::verify_request`]. Holds no secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    kid: [u8; MAX_ID_LEN],
    kid_len: u8,
    piv: PartialIv,
}

impl RequestId {
    fn new(kid: &[u8], piv: PartialIv) -> Option<RequestId> {
        let mut id = RequestId {
            kid: [0; MAX_ID_LEN],
            kid_len: kid.len() as u8,
            piv,
        };
        id.kid.get_mut(..kid.len())?.copy_from_slice(kid);
        Some(id)
    }

    /// The request's kid (its sender's Sender ID).
    pub fn kid(&self) -> &[u8] {
        &self.kid[..usize::from(self.kid_len)]
    }

    /// The request's Partial IV.
    pub fn partial_iv(&self) -> PartialIv {
        self.piv
    }
}

impl core::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RequestId")
            .field("kid", &self.kid())
            .field("piv", &self.piv)
            .finish()
    }
}

/// The outcome of verifying a request.
#[derive(Debug)]
#[must_use]
pub enum VerifiedRequest {
    /// Authentic and fresh: process `message` and protect the response with `request`.
    Fresh {
        /// The decrypted request (outer Class U options and inner options merged).
        message: Message,
        /// What the response is bound to.
        request: RequestId,
    },
    /// Authentic, but this server lost its replay window and cannot tell whether it is a
    /// replay (Appendix B.1.2): do **not** process it; answer with
    /// [`SecurityContext::echo_challenge`].
    EchoRequired {
        /// What the challenge response is bound to.
        request: RequestId,
    },
}

/// Options that stay outside the encryption (Class U, RFC 8613 §4.1, Figure 5). Observe is
/// both inner and outer (§4.1.3.5).
fn is_class_u(number: OptionNumber) -> bool {
    matches!(
        number,
        OptionNumber::URI_HOST
            | OptionNumber::URI_PORT
            | OptionNumber::OSCORE
            | OptionNumber::PROXY_URI
            | OptionNumber::PROXY_SCHEME
    )
}

/// Splits `message` into the plaintext (code, Class E options, payload; RFC 8613 §5.3),
/// with room for the tag, and the outer options.
fn split_inner_outer(message: &Message) -> Result<(Vec<u8>, Options), OscoreError> {
    let plaintext = plaintext(message)?;
    let mut outer = Options::new();
    for (number, value) in message.options.iter() {
        // Observe is both inner and outer (§4.1.3.5). Values were accepted by
        // `Options::push` once, so they are not too long.
        if is_class_u(number) || number == OptionNumber::OBSERVE {
            let _ = outer.push(number, value);
        }
    }
    Ok((plaintext, outer))
}

/// The plaintext of `message` (code, Class E options, payload; RFC 8613 §5.3), with room
/// for the tag.
fn plaintext(message: &Message) -> Result<Vec<u8>, OscoreError> {
    if message.options.contains(OptionNumber::PROXY_URI) {
        return Err(OscoreError::ProxyUri);
    }
    let mut plaintext = Vec::with_capacity(1 + message.payload.len() + 40 + AEAD_TAG_LEN);
    plaintext.push(message.code.0);
    message.options.encode_subset_with_payload(
        |n| !is_class_u(n),
        &message.payload,
        &mut plaintext,
    );
    Ok(plaintext)
}

/// The outer code (RFC 8613 §4.2): POST/2.04, or FETCH/2.05 with Observe.
fn outer_code(message: &Message) -> Code {
    match (
        message.code.is_request(),
        message.options.contains(OptionNumber::OBSERVE),
    ) {
        (true, false) => Code::POST,
        (true, true) => Code::FETCH,
        (false, false) => Code::CHANGED,
        (false, true) => Code::CONTENT,
    }
}

const AEAD_TAG_LEN: usize = 8;

/// The outer message as verification needs it, from a [`Message`] or a datagram.
struct Outer<'a, I> {
    mtype: MessageType,
    code: Code,
    message_id: u16,
    token: Token,
    options: I,
    payload: &'a [u8],
}

impl<'a, I: Iterator<Item = (OptionNumber, &'a [u8])> + Clone> Outer<'a, I> {
    fn oscore_option(&self) -> Result<OptionView<'a>, OscoreError> {
        let mut values = self
            .options
            .clone()
            .filter(|(n, _)| *n == OptionNumber::OSCORE);
        let (_, value) = values.next().ok_or(OscoreError::NotOscore)?;
        if values.next().is_some() {
            return Err(OscoreError::RepeatedOption);
        }
        OptionView::parse(value).map_err(OscoreError::Option)
    }

    /// Rebuilds the message from the outer message and the decrypted plaintext (§8.2 step
    /// 7): outer Class U options plus the inner options; outer Class E options are discarded.
    fn join(self, mut plaintext: Vec<u8>) -> Result<Message, OscoreError> {
        let (&code, rest) = plaintext
            .split_first()
            .ok_or(OscoreError::Plaintext(e2m_coap::CoapError::Truncated))?;
        let (mut options, payload) =
            Options::decode_with_payload(rest).map_err(OscoreError::Plaintext)?;
        let payload_start = plaintext.len() - payload.len();
        options.retain(|n| !is_class_u(n));
        for (number, value) in self.options {
            if is_class_u(number) && number != OptionNumber::OSCORE {
                let _ = options.push(number, value);
            }
        }
        Ok(Message {
            mtype: self.mtype,
            code: Code(code),
            message_id: self.message_id,
            token: self.token,
            options,
            // The payload is the plaintext's tail: keep the buffer rather than copy it.
            payload: {
                plaintext.drain(..payload_start);
                plaintext
            },
        })
    }
}

fn outer_of(message: &Message) -> Outer<'_, impl Iterator<Item = (OptionNumber, &[u8])> + Clone> {
    Outer {
        mtype: message.mtype,
        code: message.code,
        message_id: message.message_id,
        token: message.token,
        options: message.options.iter(),
        payload: &message.payload,
    }
}

fn outer_of_datagram(
    datagram: &[u8],
) -> Result<Outer<'_, impl Iterator<Item = (OptionNumber, &[u8])> + Clone>, OscoreError> {
    let view = MessageView::parse(datagram).map_err(OscoreError::Coap)?;
    Ok(Outer {
        mtype: view.mtype,
        code: view.code,
        message_id: view.message_id,
        token: view.token,
        options: view.options(),
        payload: view.payload,
    })
}

/// Writes the outer message: header, Class U options and Observe with the OSCORE option in
/// its place (number 9), and the ciphertext (RFC 8613 §4.1, §4.2).
fn write_outer(message: &Message, code: Code, oscore: &[u8], ciphertext: &[u8], out: &mut Vec<u8>) {
    let outer = |n: OptionNumber| {
        n != OptionNumber::OSCORE && (is_class_u(n) || n == OptionNumber::OBSERVE)
    };
    let options = message
        .options
        .iter()
        .filter(move |(n, _)| outer(*n) && *n < OptionNumber::OSCORE)
        .chain(core::iter::once((OptionNumber::OSCORE, oscore)))
        .chain(
            message
                .options
                .iter()
                .filter(move |(n, _)| outer(*n) && *n > OptionNumber::OSCORE),
        );
    // Sorted by construction, and every value passed `Options::push` or is an OSCORE
    // option value (at most 269 octets), so this cannot fail.
    let _ = encode_parts(
        message.mtype,
        code,
        message.message_id,
        &message.token,
        options,
        ciphertext,
        out,
    );
}

/// The one OSCORE option of a message, decoded.
///
/// # Errors
/// [`OscoreError::NotOscore`], [`OscoreError::RepeatedOption`] or
/// [`OscoreError::Option`].
pub fn oscore_option(message: &Message) -> Result<OscoreOption, OscoreError> {
    let view = outer_of(message).oscore_option()?;
    Ok(OscoreOption {
        partial_iv: view.partial_iv,
        kid_context: view.kid_context.map(<[u8]>::to_vec),
        kid: view.kid.map(<[u8]>::to_vec),
    })
}

fn outer_message(
    inner: &Message,
    code: Code,
    mut options: Options,
    oscore: &OptionView<'_>,
    ciphertext: Vec<u8>,
) -> Message {
    // At most 1 + 5 + 1 + 255 + 7 octets (flags, Partial IV, s, kid context, kid).
    let mut value = Vec::with_capacity(16 + oscore.kid_context.map_or(0, <[u8]>::len));
    oscore.encode(&mut value);
    // Never too long for a CoAP option (see above).
    let _ = options.push(OptionNumber::OSCORE, &value);
    Message {
        mtype: inner.mtype,
        code,
        message_id: inner.message_id,
        token: inner.token,
        options,
        payload: ciphertext,
    }
}

impl SecurityContext {
    /// Protects a request (RFC 8613 §8.1) with the next sender sequence number. The kid is
    /// always sent; the kid context only when `with_kid_context` (so the server can find the
    /// context by it, §6.1).
    ///
    /// Returns the OSCORE message (outer code POST, or FETCH with Observe; §4.2) and the
    /// [`RequestId`] to verify its response with.
    ///
    /// # Errors
    /// [`OscoreError::WrongKind`] for a non-request, [`OscoreError::ProxyUri`],
    /// [`OscoreError::SequenceExhausted`], [`OscoreError::ReservationNeeded`].
    pub fn protect_request(
        &mut self,
        request: &Message,
        with_kid_context: bool,
    ) -> Result<(Message, RequestId), OscoreError> {
        if !request.code.is_request() {
            return Err(OscoreError::WrongKind);
        }
        let (mut buffer, outer_options) = split_inner_outer(request)?;
        let piv = self.sequence.take()?;
        let request_id = RequestId::new(&self.sender_id, piv).ok_or(OscoreError::InvalidId)?;
        let nonce = self.nonce(&self.sender_id, &piv);
        self.sender_key
            .seal(&nonce, aad(&self.sender_id, &piv).as_bytes(), &mut buffer);
        let option = OptionView {
            partial_iv: Some(piv),
            kid_context: self.id_context.as_deref().filter(|_| with_kid_context),
            kid: Some(&self.sender_id),
        };
        let code = if request.options.contains(OptionNumber::OBSERVE) {
            Code::FETCH
        } else {
            Code::POST
        };
        Ok((
            outer_message(request, code, outer_options, &option, buffer),
            request_id,
        ))
    }

    /// [`Self::protect_request`] straight into a datagram: appends the OSCORE message's
    /// octets to `out` (the transport's hot path; no outer [`Message`] is built).
    ///
    /// # Errors
    /// As [`Self::protect_request`]; `out` is then unchanged.
    pub fn protect_request_datagram(
        &mut self,
        request: &Message,
        with_kid_context: bool,
        out: &mut Vec<u8>,
    ) -> Result<RequestId, OscoreError> {
        if !request.code.is_request() {
            return Err(OscoreError::WrongKind);
        }
        let mut buffer = plaintext(request)?;
        let piv = self.sequence.take()?;
        let request_id = RequestId::new(&self.sender_id, piv).ok_or(OscoreError::InvalidId)?;
        let nonce = self.nonce(&self.sender_id, &piv);
        self.sender_key
            .seal(&nonce, aad(&self.sender_id, &piv).as_bytes(), &mut buffer);
        let option = OptionView {
            partial_iv: Some(piv),
            kid_context: self.id_context.as_deref().filter(|_| with_kid_context),
            kid: Some(&self.sender_id),
        };
        let mut value = Vec::with_capacity(16 + option.kid_context.map_or(0, <[u8]>::len));
        option.encode(&mut value);
        write_outer(request, outer_code(request), &value, &buffer, out);
        Ok(request_id)
    }

    /// Verifies a request (RFC 8613 §8.2): the kid (and kid context, if sent) must name this
    /// context, the Partial IV must be fresh (§7.4), and the AEAD must verify. Only then is
    /// the replay window moved.
    ///
    /// # Errors
    /// An [`OscoreError`]; [`OscoreError::response_code`] says how to answer it.
    pub fn verify_request(&mut self, protected: &Message) -> Result<VerifiedRequest, OscoreError> {
        self.verify_request_outer(outer_of(protected))
    }

    /// [`Self::verify_request`] straight from a received datagram, without building the outer
    /// [`Message`] (the transport's hot path).
    ///
    /// # Errors
    /// [`OscoreError::Coap`] if the datagram is not a CoAP message; else as
    /// [`Self::verify_request`].
    pub fn verify_request_datagram(
        &mut self,
        datagram: &[u8],
    ) -> Result<VerifiedRequest, OscoreError> {
        self.verify_request_outer(outer_of_datagram(datagram)?)
    }

    fn verify_request_outer<'a>(
        &mut self,
        protected: Outer<'a, impl Iterator<Item = (OptionNumber, &'a [u8])> + Clone>,
    ) -> Result<VerifiedRequest, OscoreError> {
        if !protected.code.is_request() {
            return Err(OscoreError::WrongKind);
        }
        let option = protected.oscore_option()?;
        let (Some(piv), Some(kid)) = (option.partial_iv, option.kid) else {
            return Err(OscoreError::MissingRequestFields);
        };
        if kid != self.recipient_id.as_slice()
            || option
                .kid_context
                .is_some_and(|c| Some(c) != self.id_context.as_deref())
        {
            return Err(OscoreError::ContextNotFound);
        }
        let freshness = self.replay.check(piv.sequence());
        if freshness == Freshness::Replay {
            return Err(OscoreError::Replay);
        }
        let request = RequestId::new(kid, piv).ok_or(OscoreError::ContextNotFound)?;
        let nonce = self.nonce(kid, &piv);
        let mut buffer = protected.payload.to_vec();
        self.recipient_key
            .open(&nonce, aad(kid, &piv).as_bytes(), &mut buffer)?;
        let message = protected.join(buffer)?;
        if !message.code.is_request() {
            return Err(OscoreError::WrongKind);
        }
        if freshness == Freshness::EchoRequired {
            let answered = message
                .options
                .get(OptionNumber::ECHO)
                .is_some_and(|echo| self.replay.echo_answers(echo));
            if !answered {
                return Ok(VerifiedRequest::EchoRequired { request });
            }
            self.replay.initialize_at(piv.sequence());
        } else {
            self.replay.mark(piv.sequence());
        }
        Ok(VerifiedRequest::Fresh { message, request })
    }

    /// Protects a response to `request` (RFC 8613 §8.3). Without `with_partial_iv` it reuses
    /// the request's nonce, which is safe only for the one response to a fresh request; with
    /// it, it takes this endpoint's next sequence number (required for Observe notifications
    /// and for the Echo challenge of Appendix B.1.2).
    ///
    /// # Errors
    /// [`OscoreError::WrongKind`] for a non-response, [`OscoreError::ProxyUri`], and with a
    /// Partial IV [`OscoreError::SequenceExhausted`] or [`OscoreError::ReservationNeeded`].
    pub fn protect_response(
        &mut self,
        response: &Message,
        request: &RequestId,
        with_partial_iv: bool,
    ) -> Result<Message, OscoreError> {
        if !response.code.is_response() {
            return Err(OscoreError::WrongKind);
        }
        let (mut buffer, outer_options) = split_inner_outer(response)?;
        let (nonce, option) = if with_partial_iv {
            let piv = self.sequence.take()?;
            let option = OptionView {
                partial_iv: Some(piv),
                ..OptionView::default()
            };
            (self.nonce(&self.sender_id, &piv), option)
        } else {
            (
                self.nonce(request.kid(), &request.piv),
                OptionView::default(),
            )
        };
        self.sender_key.seal(
            &nonce,
            aad(request.kid(), &request.piv).as_bytes(),
            &mut buffer,
        );
        let code = if response.options.contains(OptionNumber::OBSERVE) {
            Code::CONTENT
        } else {
            Code::CHANGED
        };
        Ok(outer_message(
            response,
            code,
            outer_options,
            &option,
            buffer,
        ))
    }

    /// [`Self::protect_response`] straight into a datagram appended to `out`.
    ///
    /// # Errors
    /// As [`Self::protect_response`]; `out` is then unchanged.
    pub fn protect_response_datagram(
        &mut self,
        response: &Message,
        request: &RequestId,
        with_partial_iv: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), OscoreError> {
        if !response.code.is_response() {
            return Err(OscoreError::WrongKind);
        }
        let mut buffer = plaintext(response)?;
        let (nonce, piv) = if with_partial_iv {
            let piv = self.sequence.take()?;
            (self.nonce(&self.sender_id, &piv), Some(piv))
        } else {
            (self.nonce(request.kid(), &request.piv), None)
        };
        self.sender_key.seal(
            &nonce,
            aad(request.kid(), &request.piv).as_bytes(),
            &mut buffer,
        );
        // Flags and at most 5 octets of Partial IV.
        let mut value = [0u8; 6];
        let len = match piv {
            Some(piv) => {
                let bytes = piv.as_bytes();
                value[0] = bytes.len() as u8;
                value[1..=bytes.len()].copy_from_slice(bytes);
                1 + bytes.len()
            }
            None => 0,
        };
        write_outer(response, outer_code(response), &value[..len], &buffer, out);
        Ok(())
    }

    /// Verifies a response to the request identified by `request` (RFC 8613 §8.4).
    ///
    /// Observe notifications are not ordered here (a client that observes must compare their
    /// Partial IVs itself, §8.4.2).
    ///
    /// # Errors
    /// An [`OscoreError`]: [`OscoreError::NotOscore`] for an unprotected response (see
    /// [`crate::e2m`] for the one the e2m profile gives meaning to).
    pub fn verify_response(
        &self,
        protected: &Message,
        request: &RequestId,
    ) -> Result<Message, OscoreError> {
        self.verify_response_outer(outer_of(protected), request)
    }

    /// [`Self::verify_response`] straight from a received datagram.
    ///
    /// # Errors
    /// [`OscoreError::Coap`] if the datagram is not a CoAP message; else as
    /// [`Self::verify_response`].
    pub fn verify_response_datagram(
        &self,
        datagram: &[u8],
        request: &RequestId,
    ) -> Result<Message, OscoreError> {
        self.verify_response_outer(outer_of_datagram(datagram)?, request)
    }

    fn verify_response_outer<'a>(
        &self,
        protected: Outer<'a, impl Iterator<Item = (OptionNumber, &'a [u8])> + Clone>,
        request: &RequestId,
    ) -> Result<Message, OscoreError> {
        let option = protected.oscore_option()?;
        if option
            .kid
            .is_some_and(|kid| kid != self.recipient_id.as_slice())
        {
            return Err(OscoreError::ContextNotFound);
        }
        let nonce = match &option.partial_iv {
            Some(piv) => self.nonce(&self.recipient_id, piv),
            None => self.nonce(request.kid(), &request.piv),
        };
        let mut buffer = protected.payload.to_vec();
        self.recipient_key.open(
            &nonce,
            aad(request.kid(), &request.piv).as_bytes(),
            &mut buffer,
        )?;
        let message = protected.join(buffer)?;
        if !message.code.is_response() {
            return Err(OscoreError::WrongKind);
        }
        Ok(message)
    }

    /// The Appendix B.1.2 challenge: a protected 4.01 Unauthorized with an Echo option,
    /// carrying this endpoint's own Partial IV (the request's nonce must not be reused: the
    /// request may be a replay). `echo` is an unpredictable value the caller supplies (at most
    /// 40 octets, RFC 9175 §2.2; 8 random octets are plenty); the request that repeats it in
    /// its (encrypted) Echo option initializes the replay window.
    ///
    /// # Errors
    /// [`OscoreError::EchoMismatch`] for an empty or over-long `echo`; the errors of
    /// [`Self::protect_response`].
    pub fn echo_challenge(
        &mut self,
        protected_request: &Message,
        request: &RequestId,
        echo: &[u8],
    ) -> Result<Message, OscoreError> {
        let value = EchoValue::new(echo)
            .filter(|_| !echo.is_empty())
            .ok_or(OscoreError::EchoMismatch)?;
        let mut inner = piggyback(protected_request, Code::UNAUTHORIZED);
        let _ = inner.options.push(OptionNumber::ECHO, echo);
        let response = self.protect_response(&inner, request, true)?;
        self.replay.set_challenge(value);
        Ok(response)
    }
}

/// A response skeleton to `request`: piggybacked (ACK) for a Confirmable request, else
/// Non-confirmable with the same message ID (the transport may renumber it).
pub(crate) fn piggyback(request: &Message, code: Code) -> Message {
    let mut response = request.piggybacked_response(code, Vec::new());
    if request.mtype != MessageType::Confirmable {
        response.mtype = MessageType::NonConfirmable;
    }
    response
}

/// The unprotected error response RFC 8613 §8.2 prescribes for a request that failed
/// verification with `error`: its code, Max-Age 0 (so that no proxy caches it) and the
/// diagnostic payload. `None` for errors that do not arise from verifying a request.
pub fn unprotected_error(request: &Message, error: OscoreError) -> Option<Message> {
    let code = error.response_code()?;
    let mut response = piggyback(request, code);
    let _ = response.options.push(OptionNumber::MAX_AGE, &[]);
    response.payload = error.diagnostic().as_bytes().to_vec();
    Some(response)
}
