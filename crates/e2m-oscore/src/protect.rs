//! Protecting and verifying requests and responses (RFC 8613 §4, §5, §8).

use alloc::vec::Vec;

use e2m_coap::{Code, Message, MessageType, OptionNumber, Options};

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
    if message.options.contains(OptionNumber::PROXY_URI) {
        return Err(OscoreError::ProxyUri);
    }
    let mut outer = Options::new();
    for (number, value) in message.options.iter() {
        // Observe is both inner and outer (§4.1.3.5). Values were accepted by
        // `Options::push` once, so they are not too long.
        if is_class_u(number) || number == OptionNumber::OBSERVE {
            let _ = outer.push(number, value);
        }
    }
    let mut plaintext = Vec::with_capacity(1 + message.payload.len() + 40 + AEAD_TAG_LEN);
    plaintext.push(message.code.0);
    message.options.encode_subset_with_payload(
        |n| !is_class_u(n),
        &message.payload,
        &mut plaintext,
    );
    Ok((plaintext, outer))
}

const AEAD_TAG_LEN: usize = 8;

/// Rebuilds the message from the outer message and the decrypted plaintext (§8.2 step 7):
/// outer Class U options plus the inner options; outer Class E options are discarded.
fn join_inner_outer(outer: &Message, mut plaintext: Vec<u8>) -> Result<Message, OscoreError> {
    let (&code, rest) = plaintext
        .split_first()
        .ok_or(OscoreError::Plaintext(e2m_coap::CoapError::Truncated))?;
    let (mut options, payload) =
        Options::decode_with_payload(rest).map_err(OscoreError::Plaintext)?;
    let payload_start = plaintext.len() - payload.len();
    options.retain(|n| !is_class_u(n));
    for (number, value) in outer.options.iter() {
        if is_class_u(number) && number != OptionNumber::OSCORE {
            let _ = options.push(number, value);
        }
    }
    Ok(Message {
        mtype: outer.mtype,
        code: Code(code),
        message_id: outer.message_id,
        token: outer.token,
        options,
        // The payload is the plaintext's tail: keep the buffer rather than copy it.
        payload: {
            plaintext.drain(..payload_start);
            plaintext
        },
    })
}

fn option_view(message: &Message) -> Result<OptionView<'_>, OscoreError> {
    let mut values = message.options.get_all(OptionNumber::OSCORE);
    let value = values.next().ok_or(OscoreError::NotOscore)?;
    if values.next().is_some() {
        return Err(OscoreError::RepeatedOption);
    }
    OptionView::parse(value).map_err(OscoreError::Option)
}

/// The one OSCORE option of a message, decoded.
///
/// # Errors
/// [`OscoreError::NotOscore`], [`OscoreError::RepeatedOption`] or
/// [`OscoreError::Option`].
pub fn oscore_option(message: &Message) -> Result<OscoreOption, OscoreError> {
    let view = option_view(message)?;
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

    /// Verifies a request (RFC 8613 §8.2): the kid (and kid context, if sent) must name this
    /// context, the Partial IV must be fresh (§7.4), and the AEAD must verify. Only then is
    /// the replay window moved.
    ///
    /// # Errors
    /// An [`OscoreError`]; [`OscoreError::response_code`] says how to answer it.
    pub fn verify_request(&mut self, protected: &Message) -> Result<VerifiedRequest, OscoreError> {
        if !protected.code.is_request() {
            return Err(OscoreError::WrongKind);
        }
        let option = option_view(protected)?;
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
        let mut buffer = protected.payload.clone();
        self.recipient_key
            .open(&nonce, aad(kid, &piv).as_bytes(), &mut buffer)?;
        let message = join_inner_outer(protected, buffer)?;
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
        let option = option_view(protected)?;
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
        let mut buffer = protected.payload.clone();
        self.recipient_key.open(
            &nonce,
            aad(request.kid(), &request.piv).as_bytes(),
            &mut buffer,
        )?;
        let message = join_inner_outer(protected, buffer)?;
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
