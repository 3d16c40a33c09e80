//! Protecting and verifying requests and responses (RFC 8613 §4, §5, §8).

use alloc::vec::Vec;

use e2m_coap::{
    Code, Message, MessageType, MessageView, MessageWriter, OptionNumber, Options, OptionsView,
    Token,
};

use crate::context::{MAX_ID_LEN, NONCE_LEN, aad};
use crate::option::{OptionValue, OptionView};
use crate::replay::{EchoValue, Freshness};
use crate::secret::AeadKey;
use crate::{OscoreError, OscoreOption, PartialIv, SecurityContext};

/// What the response to a request is bound to (RFC 8613 §7.1): the request's kid and
/// Partial IV. A client keeps it from [`SecurityContext::protect_request`] until the response
/// arrives; a server gets it from [`SecurityContext::verify_request`]. Holds no secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// The kid in the first octets (at most `MAX_ID_LEN` = 7), its length in the last:
    /// built as one word in a register and stored whole (see [`PartialIv`]).
    kid: [u8; MAX_ID_LEN + 1],
    piv: PartialIv,
}

impl RequestId {
    fn new(kid: &[u8], piv: PartialIv) -> Option<RequestId> {
        if kid.len() > MAX_ID_LEN {
            return None;
        }
        let value = kid.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        // kid ‖ zero padding ‖ length: the kid's first octet is the word's top octet (an
        // empty kid shifts by 64: nothing is left of it).
        let shift = 8 * (MAX_ID_LEN - kid.len()) as u32 + 8;
        let word = value.checked_shl(shift).unwrap_or(0) | kid.len() as u64;
        Some(RequestId {
            kid: word.to_be_bytes(),
            piv,
        })
    }

    /// The request's kid (its sender's Sender ID).
    pub fn kid(&self) -> &[u8] {
        &self.kid[..usize::from(self.kid[MAX_ID_LEN]).min(MAX_ID_LEN)]
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

/// The outcome of verifying a request: with the request as an owned [`Message`]
/// ([`SecurityContext::verify_request`], [`SecurityContext::verify_request_datagram`]), or
/// as a [`DecryptedView`] of the datagram it was decrypted in
/// ([`SecurityContext::verify_request_in_place`]).
#[derive(Debug)]
#[must_use]
pub enum VerifiedRequest<M = Message> {
    /// Authentic and fresh: process `message` and protect the response with `request`.
    Fresh {
        /// The decrypted request (outer Class U options and inner options merged).
        message: M,
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

/// A verified message as its handler reads it, borrowed from the datagram it was decrypted
/// in (RFC 8613 §8.2 step 7, §8.4 step 7, without a copy): the outer header, the inner code,
/// the outer Class U options merged with the inner options, and the payload. What
/// [`SecurityContext::verify_request_in_place`] and
/// [`SecurityContext::verify_response_in_place`] return; [`Self::to_message`] gives the same
/// [`Message`] as the owned API.
///
/// The inner options were walked once to find the payload (and validated then), so reading
/// them does not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptedView<'a> {
    /// The message type (outer header).
    pub mtype: MessageType,
    /// The inner code: the request's method or the response's code (RFC 8613 §4.2).
    pub code: Code,
    /// The message ID (outer header).
    pub message_id: u16,
    /// The token (outer header).
    pub token: Token,
    outer: OptionsView<'a>,
    inner: OptionsView<'a>,
    /// The decrypted payload; empty means none.
    pub payload: &'a [u8],
}

impl<'a> DecryptedView<'a> {
    /// The options in ascending number order, as the owned API's message holds them: the
    /// outer Class U options (without OSCORE) and the inner options other than Class U
    /// (§8.2 step 7: outer Class E and inner Class U options are discarded).
    pub fn options(&self) -> impl Iterator<Item = (OptionNumber, &'a [u8])> + Clone + use<'a> {
        MergedOptions {
            outer: self
                .outer
                .iter()
                .filter(|&(n, _)| is_class_u(n) && n != OptionNumber::OSCORE)
                .peekable(),
            inner: self
                .inner
                .iter()
                .filter(|&(n, _)| !is_class_u(n))
                .peekable(),
        }
    }

    /// The value of the first option `number`.
    pub fn option(&self, number: OptionNumber) -> Option<&'a [u8]> {
        self.option_values(number).next()
    }

    /// The values of every option `number`, in order (Uri-Path segments, say).
    pub fn option_values(&self, number: OptionNumber) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        // Options are in number order: stop at the first one past `number`.
        self.options()
            .skip_while(move |&(n, _)| n < number)
            .take_while(move |&(n, _)| n == number)
            .map(|(_, value)| value)
    }

    /// The piggybacked response to this request (as [`Message::piggybacked_response`]).
    pub fn piggybacked_response(&self, code: Code, payload: Vec<u8>) -> Message {
        let mut response = Message::new(
            MessageType::Acknowledgement,
            code,
            self.message_id,
            self.token,
        );
        response.payload = payload;
        response
    }

    /// The owned message: the one [`SecurityContext::verify_request`] or
    /// [`SecurityContext::verify_response`] returns for the same datagram.
    pub fn to_message(&self) -> Message {
        let (count, octets) = self.options().fold((0, 0), |(count, octets), (_, value)| {
            (count + 1, octets + value.len())
        });
        let mut options = Options::with_capacity(count, octets);
        for (number, value) in self.options() {
            // Read from a CoAP encoding, so never too long for `push`.
            let _ = options.push(number, value);
        }
        Message {
            mtype: self.mtype,
            code: self.code,
            message_id: self.message_id,
            token: self.token,
            options,
            payload: self.payload.to_vec(),
        }
    }

    /// The Echo option's value, if the inner options carry one (it is Class E, RFC 9175 §2.2).
    fn echo(&self) -> Option<&'a [u8]> {
        self.inner
            .iter()
            .take_while(|&(n, _)| n <= OptionNumber::ECHO)
            .find(|&(n, _)| n == OptionNumber::ECHO)
            .map(|(_, value)| value)
    }
}

/// Two option lists in number order, merged (they never hold the same number: one keeps
/// only Class U options, the other none).
struct MergedOptions<A: Iterator, B: Iterator> {
    outer: core::iter::Peekable<A>,
    inner: core::iter::Peekable<B>,
}

impl<A: Iterator + Clone, B: Iterator + Clone> Clone for MergedOptions<A, B>
where
    A::Item: Clone,
    B::Item: Clone,
{
    fn clone(&self) -> Self {
        MergedOptions {
            outer: self.outer.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<'a, A, B> Iterator for MergedOptions<A, B>
where
    A: Iterator<Item = (OptionNumber, &'a [u8])>,
    B: Iterator<Item = (OptionNumber, &'a [u8])>,
{
    type Item = (OptionNumber, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.outer.peek(), self.inner.peek()) {
            (Some(&(outer, _)), Some(&(inner, _))) if inner < outer => self.inner.next(),
            (Some(_), _) => self.outer.next(),
            (None, _) => self.inner.next(),
        }
    }
}

/// The outer options of `message` (Class U and Observe, RFC 8613 §4.1), without the OSCORE
/// option.
fn outer_options(message: &Message) -> Options {
    let mut outer = Options::new();
    for (number, value) in message.options.iter() {
        // Observe is both inner and outer (§4.1.3.5). Values were accepted by
        // `Options::push` once, so they are not too long.
        if (is_class_u(number) || number == OptionNumber::OBSERVE) && number != OptionNumber::OSCORE
        {
            let _ = outer.push(number, value);
        }
    }
    outer
}

/// Appends the plaintext of `message` (code, Class E options, payload; RFC 8613 §5.3).
fn write_plaintext(message: &Message, out: &mut Vec<u8>) {
    out.push(message.code.0);
    message
        .options
        .encode_subset_with_payload(|n| !is_class_u(n), &message.payload, out);
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

/// The one OSCORE option among `options`, parsed. Options come in ascending number order
/// (from a `Message` or a validated view), so the walk ends at the first number past
/// OSCORE's. A plain loop over an iterator taken by value: this runs for every message, an
/// adapter chain costs several times more, and a copy of an iterator held in memory stalls
/// (see `PartialIv`).
#[inline]
fn find_oscore_option<'a>(
    options: impl Iterator<Item = (OptionNumber, &'a [u8])>,
) -> Result<OptionView<'a>, OscoreError> {
    let mut found = None;
    for (number, value) in options {
        if number > OptionNumber::OSCORE {
            break;
        }
        if number == OptionNumber::OSCORE {
            if found.is_some() {
                return Err(OscoreError::RepeatedOption);
            }
            found = Some(value);
        }
    }
    OptionView::parse(found.ok_or(OscoreError::NotOscore)?).map_err(OscoreError::Option)
}

impl<'a, I: Iterator<Item = (OptionNumber, &'a [u8])> + Clone> Outer<'a, I> {
    fn oscore_option(&self) -> Result<OptionView<'a>, OscoreError> {
        find_oscore_option(self.options.clone())
    }

    /// Rebuilds the message from the outer message and the decrypted plaintext (§8.2 step
    /// 7): outer Class U options plus the inner options; outer Class E options and inner
    /// Class U ones are discarded. The inner options stay in the plaintext buffer (it
    /// becomes the options' storage), and the outer ones are added in number order.
    fn join(self, plaintext: Vec<u8>) -> Result<Message, OscoreError> {
        let &code = plaintext
            .first()
            .ok_or(OscoreError::Plaintext(e2m_coap::CoapError::Truncated))?;
        let (mut options, payload) = Options::decode_in_place(plaintext, 1, |n| !is_class_u(n))
            .map_err(OscoreError::Plaintext)?;
        for (number, value) in self.options {
            if is_class_u(number) && number != OptionNumber::OSCORE {
                // Read from a CoAP encoding, so never too long for `push`.
                let _ = options.push(number, value);
            }
        }
        Ok(Message {
            mtype: self.mtype,
            code: Code(code),
            message_id: self.message_id,
            token: self.token,
            options,
            payload,
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

/// Writes the OSCORE message straight into `out` (RFC 8613 §4.1, §4.2, §5.3): header,
/// Class U options and Observe with the OSCORE option in its place (number 9), the payload
/// marker, and the plaintext of `message`, encrypted in place, then the tag. Nothing is
/// built on the heap. On error `out` is as it was.
fn write_protected(
    message: &Message,
    oscore: &OptionView<'_>,
    key: &AeadKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), OscoreError> {
    let start = out.len();
    let mut writer = MessageWriter::new(
        message.mtype,
        outer_code(message),
        message.message_id,
        &message.token,
        out,
    );
    let outer = |n: OptionNumber| {
        n != OptionNumber::OSCORE && (is_class_u(n) || n == OptionNumber::OBSERVE)
    };
    // Sorted by construction, and every value passed `Options::push` or is an OSCORE
    // option value (at most 269 octets), so none of these can fail.
    for (number, value) in message.options.iter() {
        if number > OptionNumber::OSCORE {
            break;
        }
        if outer(number) {
            let _ = writer.option(number, value);
        }
    }
    let _ = writer.option_head(OptionNumber::OSCORE, oscore.encoded_len());
    oscore.encode(writer.buffer());
    for (number, value) in message.options.iter() {
        if number > OptionNumber::OSCORE && outer(number) {
            let _ = writer.option(number, value);
        }
    }
    // The ciphertext is never empty (code octet and tag), so the marker always belongs.
    let out = writer.payload_marker();
    let plaintext_start = out.len();
    write_plaintext(message, out);
    match key.seal_in_place(nonce, aad, &mut out[plaintext_start..]) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Decrypts the ciphertext into the buffer that becomes the message's option storage, and
/// rebuilds the message with [`Outer::join`].
fn open_and_join<'a>(
    protected: Outer<'a, impl Iterator<Item = (OptionNumber, &'a [u8])> + Clone>,
    key: &AeadKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
) -> Result<Message, OscoreError> {
    // Room for the outer Class U options joined in later (usually none).
    let mut buffer = Vec::with_capacity(protected.payload.len() + 16);
    buffer.extend_from_slice(protected.payload);
    let len = key.open_in_place(nonce, aad, &mut buffer)?;
    buffer.truncate(len);
    protected.join(buffer)
}

/// Decrypts the ciphertext where it lies in the datagram and reads the plaintext's code,
/// inner options and payload in one walk (RFC 8613 §5.3, §8.2 steps 6–7).
fn open_in_place<'d>(
    ciphertext: &'d mut [u8],
    key: &AeadKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
) -> Result<(Code, OptionsView<'d>, &'d [u8]), OscoreError> {
    let len = key.open_in_place(nonce, aad, ciphertext)?;
    let plaintext: &'d [u8] = ciphertext;
    let (&code, options) = plaintext
        .get(..len)
        .and_then(<[u8]>::split_first)
        .ok_or(OscoreError::Plaintext(e2m_coap::CoapError::Truncated))?;
    let (options, payload) =
        OptionsView::parse_with_payload(options).map_err(OscoreError::Plaintext)?;
    Ok((Code(code), options, payload))
}

/// Splits a received datagram into its outer message (header, token, options; read in
/// place) and its ciphertext, writable so that it can be decrypted where it lies.
fn outer_of_datagram_mut(datagram: &mut [u8]) -> Result<(MessageView<'_>, &mut [u8]), OscoreError> {
    MessageView::parse_with_payload_mut(datagram).map_err(OscoreError::Coap)
}

/// What a request's verification has established before decrypting (RFC 8613 §8.2 steps
/// 1–3): its kid and Partial IV name this context and are fresh.
struct RequestCheck {
    request: RequestId,
    freshness: Freshness,
    nonce: [u8; NONCE_LEN],
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

/// The outer message of `inner` (RFC 8613 §4.1, §4.2): its outer options with the OSCORE
/// option, the outer code, and as payload the plaintext of `inner` encrypted in place.
fn protected_message(
    inner: &Message,
    oscore: &OptionValue,
    key: &AeadKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
) -> Result<Message, OscoreError> {
    let mut payload = Vec::with_capacity(1 + inner.payload.len() + 40 + AEAD_TAG_LEN);
    write_plaintext(inner, &mut payload);
    key.seal(nonce, aad, &mut payload)?;
    let mut options = outer_options(inner);
    // At most 1 + 5 + 1 + 255 + 7 octets: never too long for a CoAP option.
    let _ = options.push(OptionNumber::OSCORE, oscore.as_bytes());
    Ok(Message {
        mtype: inner.mtype,
        code: outer_code(inner),
        message_id: inner.message_id,
        token: inner.token,
        options,
        payload,
    })
}

impl SecurityContext {
    /// Checks a request and takes the next sender sequence number for it (RFC 8613 §8.1
    /// steps 1–2).
    fn request_sequence(&mut self, request: &Message) -> Result<PartialIv, OscoreError> {
        if !request.code.is_request() {
            return Err(OscoreError::WrongKind);
        }
        if request.options.contains(OptionNumber::PROXY_URI) {
            return Err(OscoreError::ProxyUri);
        }
        let piv = self.sequence.take()?;
        if self.sender_id.len() > MAX_ID_LEN {
            return Err(OscoreError::InvalidId);
        }
        Ok(piv)
    }

    /// The OSCORE option of a request (RFC 8613 §6.1).
    fn request_option(&self, piv: PartialIv, with_kid_context: bool) -> OptionView<'_> {
        OptionView {
            partial_iv: Some(piv),
            kid_context: self.id_context.as_deref().filter(|_| with_kid_context),
            kid: Some(&self.sender_id),
        }
    }

    /// Checks a response and returns its nonce and Partial IV (RFC 8613 §8.3 steps 1–4),
    /// taking this endpoint's next sequence number `with_partial_iv`.
    fn response_parameters(
        &mut self,
        response: &Message,
        request: &RequestId,
        with_partial_iv: bool,
    ) -> Result<([u8; NONCE_LEN], Option<PartialIv>), OscoreError> {
        if !response.code.is_response() {
            return Err(OscoreError::WrongKind);
        }
        if response.options.contains(OptionNumber::PROXY_URI) {
            return Err(OscoreError::ProxyUri);
        }
        Ok(if with_partial_iv {
            let piv = self.sequence.take()?;
            (self.nonce(&self.sender_id, &piv), Some(piv))
        } else {
            (self.nonce(request.kid(), &request.piv), None)
        })
    }

    /// Protects a request (RFC 8613 §8.1) with the next sender sequence number. The kid is
    /// always sent; the kid context only when `with_kid_context` (so the server can find the
    /// context by it, §6.1).
    ///
    /// Returns the OSCORE message (outer code POST, or FETCH with Observe; §4.2) and the
    /// [`RequestId`] to verify its response with. [`Self::protect_request_datagram`] is
    /// the faster shape of the same operation (no outer [`Message`] is built).
    ///
    /// # Errors
    /// [`OscoreError::WrongKind`] for a non-request, [`OscoreError::ProxyUri`],
    /// [`OscoreError::SequenceExhausted`], [`OscoreError::ReservationNeeded`],
    /// [`OscoreError::MessageTooLong`].
    pub fn protect_request(
        &mut self,
        request: &Message,
        with_kid_context: bool,
    ) -> Result<(Message, RequestId), OscoreError> {
        let piv = self.request_sequence(request)?;
        let request_id = RequestId::new(&self.sender_id, piv).ok_or(OscoreError::InvalidId)?;
        let option = self.request_option(piv, with_kid_context).to_value();
        let protected = protected_message(
            request,
            &option,
            &self.sender_key,
            &self.nonce(&self.sender_id, &piv),
            aad(&self.sender_id, &piv).as_bytes(),
        )?;
        Ok((protected, request_id))
    }

    /// [`Self::protect_request`] straight into a datagram: appends the OSCORE message's
    /// octets to `out` (the transport's hot path: the plaintext is written and encrypted in
    /// place in `out`; nothing is allocated but `out`'s growth).
    ///
    /// # Errors
    /// As [`Self::protect_request`]; `out` is then unchanged.
    pub fn protect_request_datagram(
        &mut self,
        request: &Message,
        with_kid_context: bool,
        out: &mut Vec<u8>,
    ) -> Result<RequestId, OscoreError> {
        let piv = self.request_sequence(request)?;
        let request_id = RequestId::new(&self.sender_id, piv).ok_or(OscoreError::InvalidId)?;
        write_protected(
            request,
            &self.request_option(piv, with_kid_context),
            &self.sender_key,
            &self.nonce(&self.sender_id, &piv),
            aad(&self.sender_id, &piv).as_bytes(),
            out,
        )?;
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
    /// [`Message`] (the datagram is read in place and decrypted into the one buffer that
    /// becomes the returned message's option storage). [`Self::verify_request_in_place`]
    /// is faster still: it builds no message at all.
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

    /// [`Self::verify_request`] on a received datagram, decrypted **in place**: the
    /// ciphertext is replaced by the plaintext where it lies, and the request is returned as
    /// a [`DecryptedView`] borrowed from `datagram` (nothing is allocated or copied; the
    /// inner options are walked once). The server's hot path: a handler reads the view's
    /// code, options and payload, and [`DecryptedView::to_message`] gives the owned
    /// message where one is wanted.
    ///
    /// On an error the datagram's header, token and options are left as received (so an
    /// answer can be built from them, [`unprotected_error`] on `Message::decode` of it),
    /// but its payload may not be: a ciphertext that fails its tag is overwritten (with
    /// zeros, by the AEAD, so that no unauthenticated plaintext is left). A caller that
    /// may try a second context on the same datagram verifies a copy.
    ///
    /// # Errors
    /// As [`Self::verify_request_datagram`].
    pub fn verify_request_in_place<'d>(
        &mut self,
        datagram: &'d mut [u8],
    ) -> Result<VerifiedRequest<DecryptedView<'d>>, OscoreError> {
        let (head, ciphertext) = outer_of_datagram_mut(datagram)?;
        let check = self.check_request(head.code, head.options())?;
        let (code, inner, payload) = open_in_place(
            ciphertext,
            &self.recipient_key,
            &check.nonce,
            aad(check.request.kid(), &check.request.piv).as_bytes(),
        )?;
        let message = DecryptedView {
            mtype: head.mtype,
            code,
            message_id: head.message_id,
            token: head.token,
            outer: head.options_view(),
            inner,
            payload,
        };
        Ok(if self.accept_request(&check, code, || message.echo())? {
            VerifiedRequest::Fresh {
                message,
                request: check.request,
            }
        } else {
            VerifiedRequest::EchoRequired {
                request: check.request,
            }
        })
    }

    fn verify_request_outer<'a>(
        &mut self,
        protected: Outer<'a, impl Iterator<Item = (OptionNumber, &'a [u8])> + Clone>,
    ) -> Result<VerifiedRequest, OscoreError> {
        let check = self.check_request(protected.code, protected.options.clone())?;
        let message = open_and_join(
            protected,
            &self.recipient_key,
            &check.nonce,
            aad(check.request.kid(), &check.request.piv).as_bytes(),
        )?;
        let echo = || message.options.get(OptionNumber::ECHO);
        Ok(if self.accept_request(&check, message.code, echo)? {
            VerifiedRequest::Fresh {
                message,
                request: check.request,
            }
        } else {
            VerifiedRequest::EchoRequired {
                request: check.request,
            }
        })
    }

    /// RFC 8613 §8.2 steps 1–3: a request whose OSCORE option has a Partial IV and a kid
    /// naming this context (and its kid context, if sent), not seen before.
    #[inline]
    fn check_request<'a>(
        &self,
        code: Code,
        outer_options: impl Iterator<Item = (OptionNumber, &'a [u8])>,
    ) -> Result<RequestCheck, OscoreError> {
        if !code.is_request() {
            return Err(OscoreError::WrongKind);
        }
        let option = find_oscore_option(outer_options)?;
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
        Ok(RequestCheck {
            request: RequestId::new(kid, piv).ok_or(OscoreError::ContextNotFound)?,
            freshness,
            nonce: self.nonce(kid, &piv),
        })
    }

    /// RFC 8613 §8.2 after decryption: the inner code must be a request; then the replay
    /// window moves, or, when it was lost (Appendix B.1.2), is initialized by a request
    /// that answers the Echo challenge. `Ok(false)`: authentic but not answering the
    /// challenge; do not process it.
    fn accept_request<'e>(
        &mut self,
        check: &RequestCheck,
        code: Code,
        echo: impl FnOnce() -> Option<&'e [u8]>,
    ) -> Result<bool, OscoreError> {
        if !code.is_request() {
            return Err(OscoreError::WrongKind);
        }
        let sequence = check.request.piv.sequence();
        if check.freshness == Freshness::EchoRequired {
            if !echo().is_some_and(|echo| self.replay.echo_answers(echo)) {
                return Ok(false);
            }
            self.replay.initialize_at(sequence);
        } else {
            self.replay.mark(sequence);
        }
        Ok(true)
    }

    /// Protects a response to `request` (RFC 8613 §8.3). Without `with_partial_iv` it reuses
    /// the request's nonce, which is safe only for the one response to a fresh request; with
    /// it, it takes this endpoint's next sequence number (required for Observe notifications
    /// and for the Echo challenge of Appendix B.1.2).
    ///
    /// # Errors
    /// [`OscoreError::WrongKind`] for a non-response, [`OscoreError::ProxyUri`],
    /// [`OscoreError::MessageTooLong`], and with a Partial IV
    /// [`OscoreError::SequenceExhausted`] or [`OscoreError::ReservationNeeded`].
    pub fn protect_response(
        &mut self,
        response: &Message,
        request: &RequestId,
        with_partial_iv: bool,
    ) -> Result<Message, OscoreError> {
        let (nonce, piv) = self.response_parameters(response, request, with_partial_iv)?;
        let option = OptionView {
            partial_iv: piv,
            ..OptionView::default()
        };
        protected_message(
            response,
            &option.to_value(),
            &self.sender_key,
            &nonce,
            aad(request.kid(), &request.piv).as_bytes(),
        )
    }

    /// [`Self::protect_response`] straight into a datagram appended to `out` (encrypted in
    /// place there, as [`Self::protect_request_datagram`]).
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
        let (nonce, piv) = self.response_parameters(response, request, with_partial_iv)?;
        let option = OptionView {
            partial_iv: piv,
            ..OptionView::default()
        };
        write_protected(
            response,
            &option,
            &self.sender_key,
            &nonce,
            aad(request.kid(), &request.piv).as_bytes(),
            out,
        )
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

    /// [`Self::verify_response`] straight from a received datagram (read in place,
    /// decrypted into the buffer that becomes the message's option storage).
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

    /// [`Self::verify_response`] on a received datagram, decrypted **in place** and
    /// returned as a [`DecryptedView`] borrowed from `datagram`, as
    /// [`Self::verify_request_in_place`] does for requests (and with the same note on the
    /// payload after an error).
    ///
    /// # Errors
    /// As [`Self::verify_response_datagram`].
    pub fn verify_response_in_place<'d>(
        &self,
        datagram: &'d mut [u8],
        request: &RequestId,
    ) -> Result<DecryptedView<'d>, OscoreError> {
        let (head, ciphertext) = outer_of_datagram_mut(datagram)?;
        let nonce = self.response_nonce(head.options(), request)?;
        let (code, inner, payload) = open_in_place(
            ciphertext,
            &self.recipient_key,
            &nonce,
            aad(request.kid(), &request.piv).as_bytes(),
        )?;
        if !code.is_response() {
            return Err(OscoreError::WrongKind);
        }
        Ok(DecryptedView {
            mtype: head.mtype,
            code,
            message_id: head.message_id,
            token: head.token,
            outer: head.options_view(),
            inner,
            payload,
        })
    }

    fn verify_response_outer<'a>(
        &self,
        protected: Outer<'a, impl Iterator<Item = (OptionNumber, &'a [u8])> + Clone>,
        request: &RequestId,
    ) -> Result<Message, OscoreError> {
        let nonce = self.response_nonce(protected.options.clone(), request)?;
        let message = open_and_join(
            protected,
            &self.recipient_key,
            &nonce,
            aad(request.kid(), &request.piv).as_bytes(),
        )?;
        if !message.code.is_response() {
            return Err(OscoreError::WrongKind);
        }
        Ok(message)
    }

    /// RFC 8613 §8.4 steps 1–3: the response's kid, if sent, names this context; its
    /// nonce is from its own Partial IV, or else the request's.
    fn response_nonce<'a>(
        &self,
        outer_options: impl Iterator<Item = (OptionNumber, &'a [u8])>,
        request: &RequestId,
    ) -> Result<[u8; NONCE_LEN], OscoreError> {
        let option = find_oscore_option(outer_options)?;
        if option
            .kid
            .is_some_and(|kid| kid != self.recipient_id.as_slice())
        {
            return Err(OscoreError::ContextNotFound);
        }
        Ok(match &option.partial_iv {
            Some(piv) => self.nonce(&self.recipient_id, piv),
            None => self.nonce(request.kid(), &request.piv),
        })
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn request_id_keeps_every_kid_length() {
        let piv = PartialIv::from_sequence(0x1234).unwrap();
        for len in 0..=MAX_ID_LEN {
            let kid: Vec<u8> = (0..len as u8).map(|b| 0xff - b).collect();
            let id = RequestId::new(&kid, piv).unwrap();
            assert_eq!((id.kid(), id.partial_iv()), (&kid[..], piv), "{len}");
            // Equal kids, equal ids; a kid that is a prefix of another is another id.
            assert_eq!(id, RequestId::new(&kid, piv).unwrap());
            if len > 0 {
                assert_ne!(id, RequestId::new(&kid[..len - 1], piv).unwrap());
            }
        }
        assert!(RequestId::new(&[0; MAX_ID_LEN + 1], piv).is_none());
    }
}
