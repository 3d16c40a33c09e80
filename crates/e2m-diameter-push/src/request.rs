//! E2M-Key-Push-Request: written by the HSS from the core's push input
//! ([`IntermediateKeyPush`]), read by the EMKS back into it (SPEC.md, "Messages" and
//! "Validation").

use core::fmt;

use e2m_diameter::{
    AvpBuf, AvpCode, AvpHeader, AvpKey, CommandFlags, DataType, EncodeError, MessageBuilder,
    MessageView, ProtocolError, ResultCode, Time,
};
use e2m_msg::{E2mIntKey, Imsi, IntermediateKeyPush, KeyId, KeyIdSource, Timestamp};

use crate::profile::{NO_STATE_MAINTAINED, PushProfile, SCHEME_RAND_LSB32, SCHEME_SHORT_HASH};

/// The routing and session AVPs of a request (RFC 6733 §6.1, §8.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routing<'a> {
    /// Session-Id, one per push; a retransmission carries the same one.
    pub session_id: &'a str,
    /// Origin-Host: the HSS's Diameter identity.
    pub origin_host: &'a str,
    /// Origin-Realm.
    pub origin_realm: &'a str,
    /// Destination-Realm: the EMKS's realm (agents route by it).
    pub destination_realm: &'a str,
    /// Destination-Host, to pin one EMKS instance (usually absent: any instance that shares
    /// the store may take the push).
    pub destination_host: Option<&'a str>,
}

/// Why a push cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushEncodeError {
    /// The creation time is outside what a Diameter Time can carry (after 2104-02-07).
    #[error("creation time outside the Diameter Time range")]
    CreationTime,
    /// A key id scheme this crate does not define on the wire.
    #[error("key id scheme not supported by the Diameter binding")]
    KeyIdScheme,
    /// The message could not be written (an identity that is not a DiameterIdentity, …).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Octets of a push request besides its strings: header, fixed AVPs and the key (so that
/// the buffer is reserved once and the key is never left behind by a reallocation).
const FIXED_REQUEST_LEN: usize = 20 + 12 + 3 * 8 + 6 * 16 + 44 + 64;

impl PushProfile {
    /// Writes E2M-Key-Push-Request for `push` (SPEC.md's ABNF order): R and P set, the
    /// End-to-End id given (0: the node sets one), Hop-by-Hop 0 (the node sets it).
    ///
    /// The creation time travels as E2M-Creation-Time (whole seconds) and, when its
    /// milliseconds are not 0, E2M-Creation-Time-Fraction. The buffer is reserved once, so
    /// no copy of the key is left in freed memory; the returned octets hold the key: wipe
    /// them (or hand them to a node, which does) when done.
    ///
    /// # Errors
    ///
    /// [`PushEncodeError`].
    pub fn encode_request(
        &self,
        routing: &Routing<'_>,
        push: &IntermediateKeyPush,
        end_to_end: u32,
    ) -> Result<Vec<u8>, PushEncodeError> {
        let created_ms = push.created.as_unix_millis();
        let seconds =
            i64::try_from(created_ms / 1000).map_err(|_| PushEncodeError::CreationTime)?;
        let created = Time::from_unix(seconds).map_err(|_| PushEncodeError::CreationTime)?;
        let fraction = (created_ms % 1000) as u32;
        let (scheme, key_id) = match push.key_id {
            KeyIdSource::RandLsb32(id) => (SCHEME_RAND_LSB32, Some(id.as_u32())),
            KeyIdSource::ShortHash => (SCHEME_SHORT_HASH, None),
            _ => return Err(PushEncodeError::KeyIdScheme),
        };
        let strings = routing.session_id.len()
            + routing.origin_host.len()
            + routing.origin_realm.len()
            + routing.destination_realm.len()
            + routing.destination_host.map_or(0, |h| h.len() + 12)
            + push.imsi.as_str().len();
        let header = e2m_diameter::Header {
            version: e2m_diameter::VERSION,
            length: 0,
            flags: CommandFlags::REQUEST | CommandFlags::PROXIABLE,
            command: self.command(),
            application: self.application_id(),
            hop_by_hop: 0,
            end_to_end,
        };
        let mut b = MessageBuilder::with_buffer(
            header,
            Vec::with_capacity(FIXED_REQUEST_LEN + strings + 16),
        );
        let a = self.avps();
        b.utf8(m(AvpCode::SESSION_ID), routing.session_id);
        b.i32(m(AvpCode::AUTH_SESSION_STATE), NO_STATE_MAINTAINED);
        b.identity(m(AvpCode::ORIGIN_HOST), routing.origin_host);
        b.identity(m(AvpCode::ORIGIN_REALM), routing.origin_realm);
        b.identity(m(AvpCode::DESTINATION_REALM), routing.destination_realm);
        if let Some(host) = routing.destination_host {
            b.identity(m(AvpCode::DESTINATION_HOST), host);
        }
        b.utf8(m(AvpCode::USER_NAME), push.imsi.as_str());
        b.i32(self.vm(a.key_id_scheme), scheme);
        if let Some(id) = key_id {
            b.u32(self.vm(a.key_id), id);
        }
        b.octets(self.vm(a.int_key), push.int_key.expose_secret());
        b.time(self.vm(a.creation_time), created);
        if fraction != 0 {
            b.u32(self.v(a.creation_time_fraction), fraction);
        }
        Ok(b.finish()?)
    }

    /// V and M set, the profile's Vendor-Id.
    pub(crate) fn vm(&self, code: AvpCode) -> AvpHeader {
        AvpHeader::mandatory(code).with_vendor(self.vendor_id())
    }

    /// V set, M clear.
    pub(crate) fn v(&self, code: AvpCode) -> AvpHeader {
        AvpHeader::new(code).with_vendor(self.vendor_id())
    }

    /// Reads E2M-Key-Push-Request into the core's push input, checking every AVP of the
    /// push as SPEC.md's "Validation" says, in one pass, allocating nothing unless it
    /// refuses (the Failed-AVP is a copy).
    ///
    /// The checks of the whole message against the dictionary (unknown AVPs with the M bit,
    /// M-bit rules, AVPs of other applications) are the node's
    /// ([`e2m_diameter::check_request`] with [`PushProfile::dictionary`]), which runs before
    /// a [`e2m_diameter::Node`] delivers a request; a caller without a node runs it first.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] with SPEC.md's Result-Code and Failed-AVP: 5005 missing, 5009
    /// repeated, 5008 not allowed, 5004 invalid value, 5014 invalid length; 3001/3007 for a
    /// message that is not this application's request.
    pub fn decode_request<'a>(
        &self,
        view: &MessageView<'a>,
    ) -> Result<PushRequest<'a>, ProtocolError> {
        if view.application() != self.application_id() {
            return Err(ProtocolError::new(
                ResultCode::APPLICATION_UNSUPPORTED,
                "not the e2m push application",
            ));
        }
        if view.command() != self.command() || !view.is_request() {
            return Err(ProtocolError::new(
                ResultCode::COMMAND_UNSUPPORTED,
                "not an E2M-Key-Push-Request",
            ));
        }
        let mut f = Fields::default();
        for avp in view.avps() {
            let avp = avp.map_err(|e| {
                let mut b = AvpBuf::new();
                let header = AvpHeader {
                    code: e.code,
                    flags: e.flags.without(e2m_diameter::AvpFlags::VENDOR),
                    vendor_id: e.vendor_id,
                };
                b.octets(header, &[]);
                failed(ResultCode::INVALID_AVP_LENGTH, "AVP length is not valid", b)
            })?;
            let slot = match self.field(avp.key()) {
                Some(slot) => slot,
                None => continue,
            };
            if slot == Field::KeyExpiryTime {
                return Err(copy(
                    ResultCode::AVP_NOT_ALLOWED,
                    "E2M-Key-Expiry-Time in a request",
                    &avp,
                ));
            }
            let entry = f.get(slot);
            if entry.is_some() {
                return Err(copy(
                    ResultCode::AVP_OCCURS_TOO_MANY_TIMES,
                    "AVP occurs twice",
                    &avp,
                ));
            }
            *entry = Some(avp);
        }
        self.read_fields(view, &f)
    }

    fn field(&self, key: AvpKey) -> Option<Field> {
        let a = self.avps();
        if key.vendor_id == 0 {
            return match key.code {
                AvpCode::SESSION_ID => Some(Field::SessionId),
                AvpCode::AUTH_SESSION_STATE => Some(Field::AuthSessionState),
                AvpCode::ORIGIN_HOST => Some(Field::OriginHost),
                AvpCode::ORIGIN_REALM => Some(Field::OriginRealm),
                AvpCode::DESTINATION_REALM => Some(Field::DestinationRealm),
                AvpCode::DESTINATION_HOST => Some(Field::DestinationHost),
                AvpCode::USER_NAME => Some(Field::UserName),
                AvpCode::VENDOR_SPECIFIC_APPLICATION_ID => Some(Field::VendorApp),
                _ => None,
            };
        }
        if key.vendor_id != self.vendor_id() {
            return None;
        }
        match key.code {
            c if c == a.key_id => Some(Field::KeyId),
            c if c == a.key_id_scheme => Some(Field::KeyIdScheme),
            c if c == a.int_key => Some(Field::IntKey),
            c if c == a.creation_time => Some(Field::CreationTime),
            c if c == a.creation_time_fraction => Some(Field::CreationTimeFraction),
            c if c == a.key_expiry_time => Some(Field::KeyExpiryTime),
            _ => None,
        }
    }

    fn read_fields<'a>(
        &self,
        view: &MessageView<'a>,
        f: &Fields<'a>,
    ) -> Result<PushRequest<'a>, ProtocolError> {
        let a = self.avps();
        let session_id = required_text(
            f.session_id,
            self,
            AvpCode::SESSION_ID.into(),
            DataType::Utf8String,
        )?;
        let state = required(
            f.auth_session_state,
            self,
            AvpCode::AUTH_SESSION_STATE.into(),
        )?;
        if fixed_i32(&state, self)? != NO_STATE_MAINTAINED {
            return Err(copy(
                ResultCode::INVALID_AVP_VALUE,
                "Auth-Session-State is not NO_STATE_MAINTAINED",
                &state,
            ));
        }
        let origin_host = required_text(
            f.origin_host,
            self,
            AvpCode::ORIGIN_HOST.into(),
            DataType::DiameterIdentity,
        )?;
        let origin_realm = required_text(
            f.origin_realm,
            self,
            AvpCode::ORIGIN_REALM.into(),
            DataType::DiameterIdentity,
        )?;
        let destination_realm = required_text(
            f.destination_realm,
            self,
            AvpCode::DESTINATION_REALM.into(),
            DataType::DiameterIdentity,
        )?;
        let destination_host = match f.destination_host {
            Some(avp) => Some(text(&avp, DataType::DiameterIdentity)?),
            None => None,
        };
        if let Some(vsai) = f.vendor_app {
            self.check_vendor_app(view, &vsai)?;
        }
        let user = required(f.user_name, self, AvpCode::USER_NAME.into())?;
        let imsi = core::str::from_utf8(user.data())
            .ok()
            .and_then(|t| Imsi::new(t).ok())
            .ok_or_else(|| {
                copy(
                    ResultCode::INVALID_AVP_VALUE,
                    "User-Name is not an IMSI",
                    &user,
                )
            })?;
        let scheme_avp = required(f.key_id_scheme, self, self.key(a.key_id_scheme))?;
        let key_id = match fixed_i32(&scheme_avp, self)? {
            SCHEME_RAND_LSB32 => {
                let avp = required(f.key_id, self, self.key(a.key_id))?;
                KeyIdSource::RandLsb32(KeyId::from_u32(fixed_u32(&avp, self)?))
            }
            SCHEME_SHORT_HASH => {
                if let Some(avp) = f.key_id {
                    return Err(copy(
                        ResultCode::AVP_NOT_ALLOWED,
                        "E2M-Key-Id with the SHORT_HASH scheme",
                        &avp,
                    ));
                }
                KeyIdSource::ShortHash
            }
            _ => {
                return Err(copy(
                    ResultCode::INVALID_AVP_VALUE,
                    "E2M-Key-Id-Scheme not defined",
                    &scheme_avp,
                ));
            }
        };
        let key_avp = required(f.int_key, self, self.key(a.int_key))?;
        let int_key = E2mIntKey::from_slice(key_avp.data()).map_err(|_| {
            copy(
                ResultCode::INVALID_AVP_VALUE,
                "E2M-Int-Key is not 32 octets",
                &key_avp,
            )
        })?;
        let time_avp = required(f.creation_time, self, self.key(a.creation_time))?;
        let seconds = Time::from_ntp(fixed_u32(&time_avp, self)?).unix();
        let fraction = match f.creation_time_fraction {
            Some(avp) => {
                let ms = fixed_u32(&avp, self)?;
                if ms > 999 {
                    return Err(copy(
                        ResultCode::INVALID_AVP_VALUE,
                        "E2M-Creation-Time-Fraction above 999",
                        &avp,
                    ));
                }
                u64::from(ms)
            }
            None => 0,
        };
        let created = u64::try_from(seconds)
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .and_then(|ms| Timestamp::checked_from_unix_millis(ms + fraction))
            .ok_or_else(|| {
                copy(
                    ResultCode::INVALID_AVP_VALUE,
                    "E2M-Creation-Time before 1970",
                    &time_avp,
                )
            })?;
        Ok(PushRequest {
            session_id,
            origin_host,
            origin_realm,
            destination_realm,
            destination_host,
            retransmitted: view.flags().is_retransmitted(),
            user_name_avp: user.raw(),
            push: IntermediateKeyPush {
                imsi,
                key_id,
                int_key,
                created,
            },
        })
    }

    /// SPEC.md: a Vendor-Specific-Application-Id in a push is ignored if it matches the
    /// header, DIAMETER_INVALID_AVP_VALUE otherwise.
    fn check_vendor_app(
        &self,
        view: &MessageView<'_>,
        vsai: &e2m_diameter::Avp<'_>,
    ) -> Result<(), ProtocolError> {
        let mut app = None;
        for child in vsai.grouped() {
            let Ok(child) = child else {
                return Err(copy(
                    ResultCode::INVALID_AVP_VALUE,
                    "bad Vendor-Specific-Application-Id",
                    vsai,
                ));
            };
            if child.key() == AvpCode::AUTH_APPLICATION_ID.into()
                || child.key() == AvpCode::ACCT_APPLICATION_ID.into()
            {
                app = child.u32().ok();
            }
        }
        if app == Some(view.application().0) {
            Ok(())
        } else {
            Err(copy(
                ResultCode::INVALID_AVP_VALUE,
                "Vendor-Specific-Application-Id does not match the header",
                vsai,
            ))
        }
    }
}

fn m(code: AvpCode) -> AvpHeader {
    AvpHeader::mandatory(code)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    SessionId,
    AuthSessionState,
    OriginHost,
    OriginRealm,
    DestinationRealm,
    DestinationHost,
    UserName,
    VendorApp,
    KeyId,
    KeyIdScheme,
    IntKey,
    CreationTime,
    CreationTimeFraction,
    KeyExpiryTime,
}

/// The AVPs of a push found in one pass (each at most once).
#[derive(Default)]
struct Fields<'a> {
    session_id: Option<e2m_diameter::Avp<'a>>,
    auth_session_state: Option<e2m_diameter::Avp<'a>>,
    origin_host: Option<e2m_diameter::Avp<'a>>,
    origin_realm: Option<e2m_diameter::Avp<'a>>,
    destination_realm: Option<e2m_diameter::Avp<'a>>,
    destination_host: Option<e2m_diameter::Avp<'a>>,
    user_name: Option<e2m_diameter::Avp<'a>>,
    vendor_app: Option<e2m_diameter::Avp<'a>>,
    key_id: Option<e2m_diameter::Avp<'a>>,
    key_id_scheme: Option<e2m_diameter::Avp<'a>>,
    int_key: Option<e2m_diameter::Avp<'a>>,
    creation_time: Option<e2m_diameter::Avp<'a>>,
    creation_time_fraction: Option<e2m_diameter::Avp<'a>>,
    unused: Option<e2m_diameter::Avp<'a>>,
}

impl<'a> Fields<'a> {
    fn get(&mut self, field: Field) -> &mut Option<e2m_diameter::Avp<'a>> {
        match field {
            Field::SessionId => &mut self.session_id,
            Field::AuthSessionState => &mut self.auth_session_state,
            Field::OriginHost => &mut self.origin_host,
            Field::OriginRealm => &mut self.origin_realm,
            Field::DestinationRealm => &mut self.destination_realm,
            Field::DestinationHost => &mut self.destination_host,
            Field::UserName => &mut self.user_name,
            Field::VendorApp => &mut self.vendor_app,
            Field::KeyId => &mut self.key_id,
            Field::KeyIdScheme => &mut self.key_id_scheme,
            Field::IntKey => &mut self.int_key,
            Field::CreationTime => &mut self.creation_time,
            Field::CreationTimeFraction => &mut self.creation_time_fraction,
            Field::KeyExpiryTime => &mut self.unused,
        }
    }
}

fn failed(result_code: ResultCode, reason: &'static str, avps: AvpBuf) -> ProtocolError {
    ProtocolError {
        result_code,
        failed_avps: avps.as_bytes().to_vec(),
        reason,
    }
}

/// The error with a copy of the offending AVP as its Failed-AVP.
fn copy(
    result_code: ResultCode,
    reason: &'static str,
    avp: &e2m_diameter::Avp<'_>,
) -> ProtocolError {
    let mut b = AvpBuf::new();
    b.copy(avp);
    failed(result_code, reason, b)
}

/// The data length of a fixed-size type (4 for Unsigned32, Enumerated, Time).
const FIXED_LEN: usize = 4;

/// DIAMETER_MISSING_AVP with an example of the AVP: its header (M bit and V bit as it is
/// sent) and a zero-filled minimal value (RFC 6733 §7.5).
fn missing(profile: &PushProfile, key: AvpKey) -> ProtocolError {
    let vendor = key.vendor_id != 0;
    let a = profile.avps();
    let mandatory =
        !(vendor && (key.code == a.creation_time_fraction || key.code == a.key_expiry_time));
    let mut header = if mandatory {
        AvpHeader::mandatory(key.code)
    } else {
        AvpHeader::new(key.code)
    };
    if vendor {
        header = header.with_vendor(key.vendor_id);
    }
    let fixed = vendor && key.code != a.int_key;
    let fixed = fixed || key.code == AvpCode::AUTH_SESSION_STATE;
    let mut b = AvpBuf::new();
    b.octets(header, if fixed { &[0; FIXED_LEN] } else { &[] });
    failed(ResultCode::MISSING_AVP, "required AVP missing", b)
}

fn required<'a>(
    avp: Option<e2m_diameter::Avp<'a>>,
    profile: &PushProfile,
    key: AvpKey,
) -> Result<e2m_diameter::Avp<'a>, ProtocolError> {
    avp.ok_or_else(|| missing(profile, key))
}

fn text<'a>(avp: &e2m_diameter::Avp<'a>, ty: DataType) -> Result<&'a str, ProtocolError> {
    let read = match ty {
        DataType::DiameterIdentity => avp.identity(),
        _ => avp.utf8(),
    };
    read.map_err(|_| copy(ResultCode::INVALID_AVP_VALUE, "AVP value is not valid", avp))
}

fn required_text<'a>(
    avp: Option<e2m_diameter::Avp<'a>>,
    profile: &PushProfile,
    key: AvpKey,
    ty: DataType,
) -> Result<&'a str, ProtocolError> {
    text(&required(avp, profile, key)?, ty)
}

/// DIAMETER_INVALID_AVP_LENGTH for a fixed-size AVP of another length: its header with a
/// zero-filled value of the right length (RFC 6733 §7.5, as the base crate does).
fn bad_length(avp: &e2m_diameter::Avp<'_>) -> ProtocolError {
    let mut b = AvpBuf::new();
    b.octets(avp.header(), &[0; FIXED_LEN]);
    failed(
        ResultCode::INVALID_AVP_LENGTH,
        "AVP length does not fit its type",
        b,
    )
}

fn fixed_u32(avp: &e2m_diameter::Avp<'_>, _profile: &PushProfile) -> Result<u32, ProtocolError> {
    avp.u32().map_err(|_| bad_length(avp))
}

fn fixed_i32(avp: &e2m_diameter::Avp<'_>, _profile: &PushProfile) -> Result<i32, ProtocolError> {
    avp.i32().map_err(|_| bad_length(avp))
}

/// A push as the EMKS read it: the core's input ([`PushRequest::push`], whose key is
/// zeroized on drop) and the routing AVPs it came with, borrowed from the message.
///
/// `Debug` shows no key material.
pub struct PushRequest<'a> {
    /// Session-Id.
    pub session_id: &'a str,
    /// Origin-Host: the HSS (through an agent, as the agent forwarded it).
    pub origin_host: &'a str,
    /// Origin-Realm.
    pub origin_realm: &'a str,
    /// Destination-Realm.
    pub destination_realm: &'a str,
    /// Destination-Host, if any.
    pub destination_host: Option<&'a str>,
    /// The T flag: possibly a retransmission (RFC 6733 §5.5.4).
    pub retransmitted: bool,
    /// The core's push input (the same type the HTTPS binding decodes its XML into).
    pub push: IntermediateKeyPush,
    user_name_avp: &'a [u8],
}

impl PushRequest<'_> {
    /// The User-Name AVP as received: the Failed-AVP of a DIAMETER_INVALID_AVP_VALUE for a
    /// subscriber the store refuses (SPEC.md, "Mapping from the HTTPS push").
    pub fn user_name_avp(&self) -> &[u8] {
        self.user_name_avp
    }
}

impl fmt::Debug for PushRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushRequest")
            .field("session_id", &self.session_id)
            .field("origin_host", &self.origin_host)
            .field("destination_realm", &self.destination_realm)
            .field("retransmitted", &self.retransmitted)
            .field("push", &self.push)
            .finish_non_exhaustive()
    }
}
