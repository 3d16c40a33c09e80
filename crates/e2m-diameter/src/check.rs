//! Checking a received message against the dictionary, and the error answers (RFC 6733 §7).
//!
//! A check stops at the first error, as §7 asks ("report only the first error it
//! encountered"), and returns the Result-Code with the Failed-AVP content §7.1.5 asks for.
//! It allocates only when it finds an error.

use crate::avp::{Avp, AvpBuf, AvpHeader, AvpIter, AvpKey};
use crate::codes::{AvpCode, ResultCode};
use crate::dictionary::{CommandDef, Dictionary, Grammar, GroupedContent};
use crate::error::{AvpError, DecodeError, EncodeError, ValueError};
use crate::header::{CommandFlags, Header, VERSION};
use crate::message::{MessageBuilder, MessageView};
use crate::value::{DataType, Value};

/// Limits on what a received message may hold (the defaults are documented in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in octets (default 65,536). A longer Message Length closes
    /// the connection: the message is not read.
    pub max_message_len: usize,
    /// Most AVPs in one message, counting those inside Grouped AVPs the dictionary knows
    /// (default 1,024).
    pub max_avps: usize,
    /// Deepest nesting of Grouped AVPs the dictionary knows (default 16).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_len: 65_536,
            max_avps: 1_024,
            max_depth: 16,
        }
    }
}

/// Why a received request is refused: the Result-Code, the AVPs for the Failed-AVP, and a
/// fixed text for logs and Error-Message (never input octets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// The Result-Code to answer with.
    pub result_code: ResultCode,
    /// Complete, padded AVPs to carry in a Failed-AVP; empty for none.
    pub failed_avps: Vec<u8>,
    /// What was wrong, for logs and the Error-Message AVP.
    pub reason: &'static str,
}

impl ProtocolError {
    /// An error without Failed-AVP.
    pub const fn new(result_code: ResultCode, reason: &'static str) -> Self {
        Self {
            result_code,
            failed_avps: Vec::new(),
            reason,
        }
    }

    fn with_copy(result_code: ResultCode, reason: &'static str, avp: &Avp<'_>) -> Self {
        let mut b = AvpBuf::new();
        b.copy(avp);
        Self {
            result_code,
            failed_avps: b.as_bytes().to_vec(),
            reason,
        }
    }

    fn with_example(
        result_code: ResultCode,
        reason: &'static str,
        dict: &Dictionary,
        keys: &[AvpKey],
    ) -> Self {
        let mut b = AvpBuf::new();
        for key in keys {
            b.octets(dict.header(*key), &vec![0; min_len(dict, *key)]);
        }
        Self {
            result_code,
            failed_avps: b.as_bytes().to_vec(),
            reason,
        }
    }

    /// Whether the answer carries the E bit: for protocol errors (3xxx, §7.1.3, §7.2).
    pub const fn error_bit(&self) -> bool {
        self.result_code.is_protocol_error()
    }

    /// The answer to a message whose header could be read but not the rest
    /// (DIAMETER_UNSUPPORTED_VERSION, DIAMETER_INVALID_MESSAGE_LENGTH).
    pub fn from_decode(error: DecodeError) -> Self {
        match error {
            DecodeError::UnsupportedVersion(_) => {
                Self::new(ResultCode::UNSUPPORTED_VERSION, "version is not 1")
            }
            _ => Self::new(
                ResultCode::INVALID_MESSAGE_LENGTH,
                "message length is not valid",
            ),
        }
    }

    /// DIAMETER_INVALID_AVP_LENGTH for an AVP whose header cannot be framed: its header with
    /// a zero-filled payload of the minimum length of its type (§7.1.5), with the length
    /// made valid so that the Failed-AVP itself can be read.
    pub fn from_avp_error(dict: &Dictionary, error: &AvpError) -> Self {
        let header = AvpHeader {
            code: error.code,
            flags: error.flags.without(crate::avp::AvpFlags::VENDOR),
            vendor_id: error.vendor_id,
        };
        let mut b = AvpBuf::new();
        b.octets(header, &vec![0; min_len(dict, header.key())]);
        Self {
            result_code: ResultCode::INVALID_AVP_LENGTH,
            failed_avps: b.as_bytes().to_vec(),
            reason: "AVP length is not valid",
        }
    }
}

fn min_len(dict: &Dictionary, key: AvpKey) -> usize {
    dict.avp(key).map_or(0, |d| {
        if d.data_type == DataType::Grouped {
            0
        } else {
            d.data_type.min_len()
        }
    })
}

/// Checks a received request: header bits against the command (E never set; P as the
/// command defines it, §3), then every AVP (framing, M bit of unknown AVPs, flag rules,
/// values, Grouped children, occurrences) against `command`'s request grammar, within
/// `limits`. Without a command definition (a message only relayed) the AVPs are checked
/// for framing, the limits and the dictionary's AVP definitions only, and unknown AVPs are
/// accepted whatever their M bit (§4.1: relays must not reject them).
///
/// # Errors
///
/// The first [`ProtocolError`] found.
pub fn check_request(
    dict: &Dictionary,
    command: Option<&CommandDef>,
    msg: &MessageView<'_>,
    limits: &Limits,
) -> Result<(), ProtocolError> {
    let flags = msg.flags();
    if flags.is_error() {
        return Err(ProtocolError::new(
            ResultCode::INVALID_HDR_BITS,
            "E bit set in a request",
        ));
    }
    if command.is_some_and(|def| def.proxiable != flags.is_proxiable()) {
        return Err(ProtocolError::new(
            ResultCode::INVALID_HDR_BITS,
            "P bit differs from the command's definition",
        ));
    }
    let mut walker = Walker {
        dict,
        limits,
        seen: 0,
        relay: command.is_none(),
    };
    walker.walk(msg.avps(), command.map(|c| &c.request), 0)
}

/// Checks a received answer: its AVPs against `command`'s answer grammar, or, with the E
/// bit set, against the answer-message grammar of §7.2 (Origin-Host, Origin-Realm and
/// Result-Code required).
///
/// # Errors
///
/// The first [`ProtocolError`] found (an answer is never answered: the caller drops it).
pub fn check_answer(
    dict: &Dictionary,
    command: Option<&CommandDef>,
    msg: &MessageView<'_>,
    limits: &Limits,
) -> Result<(), ProtocolError> {
    let error_grammar;
    let grammar = if msg.flags().is_error() {
        error_grammar = Grammar::open(vec![
            crate::dictionary::AvpRule::required(AvpCode::ORIGIN_HOST),
            crate::dictionary::AvpRule::required(AvpCode::ORIGIN_REALM),
            crate::dictionary::AvpRule::required(AvpCode::RESULT_CODE),
        ]);
        Some(&error_grammar)
    } else {
        command.map(|c| &c.answer)
    };
    let mut walker = Walker {
        dict,
        limits,
        seen: 0,
        relay: command.is_none(),
    };
    walker.walk(msg.avps(), grammar, 0)
}

struct Walker<'d> {
    dict: &'d Dictionary,
    limits: &'d Limits,
    seen: usize,
    relay: bool,
}

/// Occurrence counters for up to this many rules live on the stack.
const STACK_RULES: usize = 32;

impl Walker<'_> {
    fn walk(
        &mut self,
        avps: AvpIter<'_>,
        grammar: Option<&Grammar>,
        depth: usize,
    ) -> Result<(), ProtocolError> {
        let n_rules = grammar.map_or(0, |g| g.rules.len());
        let mut stack = [0u32; STACK_RULES];
        let mut heap = Vec::new();
        let counts: &mut [u32] = if n_rules <= STACK_RULES {
            &mut stack[..n_rules]
        } else {
            heap.resize(n_rules, 0);
            &mut heap
        };
        for avp in avps.clone() {
            let avp = avp.map_err(|e| ProtocolError::from_avp_error(self.dict, &e))?;
            self.seen += 1;
            if self.seen > self.limits.max_avps {
                return Err(ProtocolError::new(
                    ResultCode::UNABLE_TO_COMPLY,
                    "too many AVPs",
                ));
            }
            self.check_avp(&avp, depth)?;
            if let Some(g) = grammar {
                match g.rule(avp.key()) {
                    Some((i, rule)) => {
                        counts[i] += 1;
                        if rule.max.is_some_and(|max| counts[i] > max) {
                            let rc = if rule.max == Some(0) {
                                ResultCode::AVP_NOT_ALLOWED
                            } else {
                                ResultCode::AVP_OCCURS_TOO_MANY_TIMES
                            };
                            return Err(ProtocolError::with_copy(
                                rc,
                                "AVP occurs too many times",
                                &avp,
                            ));
                        }
                    }
                    None if !g.other_avps => {
                        return Err(ProtocolError::with_copy(
                            ResultCode::AVP_NOT_ALLOWED,
                            "AVP not allowed here",
                            &avp,
                        ));
                    }
                    None => {}
                }
            }
        }
        let Some(g) = grammar else { return Ok(()) };
        if let Some((rule, _)) = g.rules.iter().zip(counts.iter()).find(|(r, c)| **c < r.min) {
            return Err(ProtocolError::with_example(
                ResultCode::MISSING_AVP,
                "required AVP missing",
                self.dict,
                &[rule.key],
            ));
        }
        if !g.exactly_one_of.is_empty() {
            let present = || {
                avps.clone()
                    .map_while(Result::ok)
                    .filter(|a| g.exactly_one_of.contains(&a.key()))
            };
            match present().count() {
                0 => {
                    return Err(ProtocolError::with_example(
                        ResultCode::MISSING_AVP,
                        "one of the alternative AVPs is required",
                        self.dict,
                        &g.exactly_one_of,
                    ));
                }
                1 => {}
                _ => {
                    let mut b = AvpBuf::new();
                    for a in present() {
                        b.copy(&a);
                    }
                    return Err(ProtocolError {
                        result_code: ResultCode::AVP_OCCURS_TOO_MANY_TIMES,
                        failed_avps: b.as_bytes().to_vec(),
                        reason: "alternative AVPs both present",
                    });
                }
            }
        }
        Ok(())
    }

    fn check_avp(&mut self, avp: &Avp<'_>, depth: usize) -> Result<(), ProtocolError> {
        let Some(def) = self.dict.avp(avp.key()) else {
            if avp.is_mandatory() && !self.relay {
                return Err(ProtocolError::with_copy(
                    ResultCode::AVP_UNSUPPORTED,
                    "unknown AVP with the M bit",
                    avp,
                ));
            }
            return Ok(());
        };
        if !def.mandatory.allows(avp.is_mandatory()) {
            return Err(ProtocolError::with_copy(
                ResultCode::INVALID_AVP_BITS,
                "M bit against the AVP's definition",
                avp,
            ));
        }
        let value = Value::read(avp, def.data_type).map_err(|e| match e {
            ValueError::Length { .. } => ProtocolError::with_example(
                ResultCode::INVALID_AVP_LENGTH,
                "AVP length does not fit its type",
                self.dict,
                &[avp.key()],
            ),
            _ => ProtocolError::with_copy(
                ResultCode::INVALID_AVP_VALUE,
                "AVP value is not valid",
                avp,
            ),
        })?;
        match value {
            Value::Enumerated(v) if !def.values.is_empty() && !def.values.contains(&v) => {
                Err(ProtocolError::with_copy(
                    ResultCode::INVALID_AVP_VALUE,
                    "Enumerated value not defined",
                    avp,
                ))
            }
            Value::Grouped(children) => {
                if depth + 1 > self.limits.max_depth {
                    return Err(ProtocolError::new(
                        ResultCode::UNABLE_TO_COMPLY,
                        "Grouped AVPs nest too deep",
                    ));
                }
                match &def.grouped {
                    Some(GroupedContent::Checked(g)) => self.walk(children, Some(g), depth + 1),
                    _ => {
                        // Unchecked children (Failed-AVP) must still be framed.
                        for child in children {
                            child.map_err(|e| ProtocolError::from_avp_error(self.dict, &e))?;
                        }
                        Ok(())
                    }
                }
            }
            _ => Ok(()),
        }
    }
}

/// Writes the answer to a refused request (RFC 6733 §6.2, §7.2): same command, application,
/// P bit and ids; the E bit for protocol errors (3xxx); Session-Id and Proxy-Info copied
/// from the request when it could be read (`request`); Origin-Host, Origin-Realm,
/// Result-Code, Error-Message (the fixed reason) and Failed-AVP when there is one.
///
/// # Errors
///
/// [`EncodeError`] if an identity is not a DiameterIdentity.
pub fn error_answer(
    header: &Header,
    request: Option<&MessageView<'_>>,
    origin_host: &str,
    origin_realm: &str,
    error: &ProtocolError,
) -> Result<Vec<u8>, EncodeError> {
    let mut b = match request {
        Some(req) => MessageBuilder::answer_to(req),
        None => MessageBuilder::new(Header {
            version: VERSION,
            length: 0,
            flags: header.flags.without(
                CommandFlags::REQUEST
                    | CommandFlags::ERROR
                    | CommandFlags::RETRANSMITTED
                    | CommandFlags::RESERVED,
            ),
            ..*header
        }),
    };
    if error.error_bit() {
        let flags = CommandFlags::from_bits(b.as_bytes()[4]).with(CommandFlags::ERROR);
        b.set_flags(flags);
    }
    b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_HOST), origin_host);
    b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_REALM), origin_realm);
    b.u32(
        AvpHeader::mandatory(AvpCode::RESULT_CODE),
        error.result_code.0,
    );
    b.utf8(AvpHeader::new(AvpCode::ERROR_MESSAGE), error.reason);
    if !error.failed_avps.is_empty() {
        b.grouped(AvpHeader::mandatory(AvpCode::FAILED_AVP), |g| {
            g.extend_encoded(&error.failed_avps);
        });
    }
    b.finish()
}
