//! Whole messages: a borrowed view for reading, a builder for writing, and an owned tree for
//! tests, fuzzing and callers that keep a message.

use core::ops::{Deref, DerefMut};

use crate::avp::{Avp, AvpBuf, AvpHeader, AvpIter, AvpKey};
use crate::codes::{ApplicationId, AvpCode, CommandCode, ResultCode};
use crate::error::{AvpError, DecodeError, EncodeError};
use crate::header::{CommandFlags, HEADER_LEN, Header, MAX_LENGTH, VERSION};

/// A Diameter message borrowed from its octets: the header read, the AVPs read lazily.
///
/// [`MessageView::parse`] checks the header only (version, length); the AVPs are framed as
/// they are iterated. Nothing is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageView<'a> {
    header: Header,
    octets: &'a [u8],
}

impl<'a> MessageView<'a> {
    /// Reads the header of one whole message.
    ///
    /// # Errors
    ///
    /// [`DecodeError`]: fewer than 20 octets, a version other than 1, or a Message Length
    /// below 20, not a multiple of 4 or other than `octets.len()`.
    pub fn parse(octets: &'a [u8]) -> Result<Self, DecodeError> {
        let header = Header::read(octets)?;
        if header.version != VERSION {
            return Err(DecodeError::UnsupportedVersion(header.version));
        }
        if (header.length as usize) < HEADER_LEN {
            return Err(DecodeError::LengthTooShort(header.length));
        }
        if header.length as usize != octets.len() {
            return Err(DecodeError::LengthMismatch {
                header: header.length,
                octets: octets.len(),
            });
        }
        if header.length % 4 != 0 {
            return Err(DecodeError::LengthNotAligned(header.length));
        }
        Ok(Self { header, octets })
    }

    /// The header.
    pub const fn header(&self) -> &Header {
        &self.header
    }

    /// The whole message.
    pub const fn octets(&self) -> &'a [u8] {
        self.octets
    }

    /// The Command Flags.
    pub const fn flags(&self) -> CommandFlags {
        self.header.flags
    }

    /// The Command Code.
    pub const fn command(&self) -> CommandCode {
        self.header.command
    }

    /// The Application-ID.
    pub const fn application(&self) -> ApplicationId {
        self.header.application
    }

    /// R is set.
    pub const fn is_request(&self) -> bool {
        self.header.flags.is_request()
    }

    /// The AVPs, read lazily; offsets count from the start of the message.
    pub fn avps(&self) -> AvpIter<'a> {
        AvpIter::with_offset(&self.octets[HEADER_LEN..], HEADER_LEN)
    }

    /// The first AVP with this key, ignoring a malformed tail.
    pub fn find(&self, key: impl Into<AvpKey>) -> Option<Avp<'a>> {
        self.avps().find(key)
    }

    /// Every AVP with this key, ignoring a malformed tail.
    pub fn find_all<K: Into<AvpKey>>(&self, key: K) -> impl Iterator<Item = Avp<'a>> + use<'a, K> {
        let key = key.into();
        self.avps()
            .map_while(Result::ok)
            .filter(move |a| a.key() == key)
    }

    /// Origin-Host, when present and a valid DiameterIdentity.
    pub fn origin_host(&self) -> Option<&'a str> {
        self.find(AvpCode::ORIGIN_HOST)
            .and_then(|a| a.identity().ok())
    }

    /// Origin-Realm, when present and valid.
    pub fn origin_realm(&self) -> Option<&'a str> {
        self.find(AvpCode::ORIGIN_REALM)
            .and_then(|a| a.identity().ok())
    }

    /// Destination-Host, when present and valid.
    pub fn destination_host(&self) -> Option<&'a str> {
        self.find(AvpCode::DESTINATION_HOST)
            .and_then(|a| a.identity().ok())
    }

    /// Destination-Realm, when present and valid.
    pub fn destination_realm(&self) -> Option<&'a str> {
        self.find(AvpCode::DESTINATION_REALM)
            .and_then(|a| a.identity().ok())
    }

    /// Result-Code, when present and valid.
    pub fn result_code(&self) -> Option<ResultCode> {
        self.find(AvpCode::RESULT_CODE)
            .and_then(|a| a.u32().ok())
            .map(ResultCode)
    }

    /// Session-Id, when present and valid UTF-8.
    pub fn session_id(&self) -> Option<&'a str> {
        self.find(AvpCode::SESSION_ID).and_then(|a| a.utf8().ok())
    }

    /// Walks every top-level AVP once and returns the first framing error.
    ///
    /// # Errors
    ///
    /// The first [`AvpError`].
    pub fn check_framing(&self) -> Result<usize, AvpError> {
        let mut n = 0;
        for avp in self.avps() {
            avp?;
            n += 1;
        }
        Ok(n)
    }
}

/// Writes a message: header, then AVPs through [`AvpBuf`]'s methods (the builder derefs to
/// it); the Message Length is filled in by [`MessageBuilder::finish`].
///
/// ```
/// use e2m_diameter::{ApplicationId, AvpCode, AvpHeader, CommandCode, CommandFlags, MessageBuilder, MessageView};
///
/// let mut dwr = MessageBuilder::request(CommandCode::DEVICE_WATCHDOG, ApplicationId::COMMON, CommandFlags::NONE);
/// dwr.set_ids(0x1234, 0x5678);
/// dwr.identity(AvpHeader::mandatory(AvpCode::ORIGIN_HOST), "hss.example.org");
/// dwr.identity(AvpHeader::mandatory(AvpCode::ORIGIN_REALM), "example.org");
/// let octets = dwr.finish()?;
/// let view = MessageView::parse(&octets)?;
/// assert_eq!(view.origin_host(), Some("hss.example.org"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct MessageBuilder {
    body: AvpBuf,
}

impl MessageBuilder {
    /// A message with this header (its length is ignored and filled in at the end).
    pub fn new(header: Header) -> Self {
        Self::with_buffer(header, Vec::new())
    }

    /// A message written into `buf` (cleared first), reusing its allocation.
    pub fn with_buffer(header: Header, mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&header.to_bytes());
        Self {
            body: AvpBuf::from_vec(buf),
        }
    }

    /// A request: R set, plus `flags` (P, T); ids 0 until [`MessageBuilder::set_ids`] (a
    /// [`crate::Node`] sets them when it sends the request).
    pub fn request(command: CommandCode, application: ApplicationId, flags: CommandFlags) -> Self {
        Self::new(Header {
            version: VERSION,
            length: 0,
            flags: flags.with(CommandFlags::REQUEST),
            command,
            application,
            hop_by_hop: 0,
            end_to_end: 0,
        })
    }

    /// The answer to `request` (RFC 6733 §6.2): same command, application, P bit,
    /// Hop-by-Hop and End-to-End ids; R, E and T clear. Session-Id (first) and every
    /// Proxy-Info are copied from the request, in order, as §6.2 requires; the caller adds
    /// Origin-Host, Origin-Realm, Result-Code and the rest.
    pub fn answer_to(request: &MessageView<'_>) -> Self {
        let h = request.header();
        let mut b = Self::new(Header {
            version: VERSION,
            length: 0,
            flags: h.flags.without(
                CommandFlags::REQUEST
                    | CommandFlags::ERROR
                    | CommandFlags::RETRANSMITTED
                    | CommandFlags::RESERVED,
            ),
            command: h.command,
            application: h.application,
            hop_by_hop: h.hop_by_hop,
            end_to_end: h.end_to_end,
        });
        if let Some(session) = request.find(AvpCode::SESSION_ID) {
            b.copy(&session);
        }
        for proxy_info in request.find_all(AvpCode::PROXY_INFO) {
            b.copy(&proxy_info);
        }
        b
    }

    /// Sets the Hop-by-Hop and End-to-End ids.
    pub fn set_ids(&mut self, hop_by_hop: u32, end_to_end: u32) -> &mut Self {
        let buf = self.body.buf_mut();
        buf[12..16].copy_from_slice(&hop_by_hop.to_be_bytes());
        buf[16..20].copy_from_slice(&end_to_end.to_be_bytes());
        self
    }

    /// Sets the Command Flags.
    pub fn set_flags(&mut self, flags: CommandFlags) -> &mut Self {
        self.body.buf_mut()[4] = flags.bits();
        self
    }

    /// The message with its length filled in.
    ///
    /// # Errors
    ///
    /// [`EncodeError`]: the first error met while writing, or a message longer than the
    /// 24-bit length field.
    pub fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        let len = self.body.as_bytes().len();
        if len > MAX_LENGTH {
            self.body.set_error(EncodeError::MessageTooLong);
        }
        let l = (len as u32).to_be_bytes();
        self.body.buf_mut()[1..4].copy_from_slice(&l[1..]);
        self.body.finish()
    }
}

impl Deref for MessageBuilder {
    type Target = AvpBuf;

    fn deref(&self) -> &AvpBuf {
        &self.body
    }
}

impl DerefMut for MessageBuilder {
    fn deref_mut(&mut self) -> &mut AvpBuf {
        &mut self.body
    }
}

/// An owned AVP: its header and either its data or, for an AVP read as Grouped, its children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedAvp {
    /// Code, flags (V cleared: it follows the vendor id), vendor id.
    pub header: AvpHeader,
    /// Data or children.
    pub value: OwnedValue,
}

/// The value of an [`OwnedAvp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedValue {
    /// The data field.
    Octets(Vec<u8>),
    /// The children of a Grouped AVP.
    Grouped(Vec<OwnedAvp>),
}

/// An owned message: the header and the AVP tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The header (its length is recomputed on encoding).
    pub header: Header,
    /// The top-level AVPs.
    pub avps: Vec<OwnedAvp>,
}

impl Message {
    /// Reads a whole message into a tree. `is_grouped` tells which AVPs to read as Grouped
    /// (e.g. from a [`crate::Dictionary`]); `max_depth` bounds the nesting.
    ///
    /// # Errors
    ///
    /// [`OwnedDecodeError`]: a header or AVP framing error, or nesting past `max_depth`.
    pub fn decode(
        octets: &[u8],
        is_grouped: &dyn Fn(AvpKey) -> bool,
        max_depth: usize,
    ) -> Result<Self, OwnedDecodeError> {
        let view = MessageView::parse(octets).map_err(OwnedDecodeError::Header)?;
        Ok(Self {
            header: *view.header(),
            avps: decode_avps(view.avps(), is_grouped, max_depth)?,
        })
    }

    /// Writes the message; lengths are computed and padding zeroed.
    ///
    /// # Errors
    ///
    /// [`EncodeError`] when a length overflows its field.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut b = MessageBuilder::new(self.header);
        encode_avps(&mut b, &self.avps);
        b.finish()
    }
}

fn decode_avps(
    iter: AvpIter<'_>,
    is_grouped: &dyn Fn(AvpKey) -> bool,
    depth: usize,
) -> Result<Vec<OwnedAvp>, OwnedDecodeError> {
    let mut out = Vec::new();
    for avp in iter {
        let avp = avp.map_err(OwnedDecodeError::Avp)?;
        let value = if is_grouped(avp.key()) {
            if depth == 0 {
                return Err(OwnedDecodeError::TooDeep);
            }
            OwnedValue::Grouped(decode_avps(avp.grouped(), is_grouped, depth - 1)?)
        } else {
            OwnedValue::Octets(avp.data().to_vec())
        };
        out.push(OwnedAvp {
            header: avp.header(),
            value,
        });
    }
    Ok(out)
}

fn encode_avps(b: &mut AvpBuf, avps: &[OwnedAvp]) {
    for avp in avps {
        match &avp.value {
            OwnedValue::Octets(data) => {
                b.octets(avp.header, data);
            }
            OwnedValue::Grouped(children) => {
                b.grouped(avp.header, |g| encode_avps(g, children));
            }
        }
    }
}

/// Why octets could not be read into a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OwnedDecodeError {
    /// The header is wrong.
    #[error(transparent)]
    Header(DecodeError),
    /// An AVP header is wrong.
    #[error(transparent)]
    Avp(AvpError),
    /// Grouped AVPs nest deeper than allowed.
    #[error("Grouped AVPs nest too deep")]
    TooDeep,
}
