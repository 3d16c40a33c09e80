//! A borrowed view of a CoAP message: parse a datagram without copying its options or
//! payload (the hot path of a transport that only needs to look inside).

use alloc::vec::Vec;

use crate::options::{nibble, read_extended};
use crate::{CoapError, Code, MessageType, OptionNumber, Token};

/// A CoAP message parsed in place (RFC 7252 §3): the same checks as
/// [`crate::Message::decode`], no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// The message type.
    pub mtype: MessageType,
    /// The method or response code.
    pub code: Code,
    /// The message ID.
    pub message_id: u16,
    /// The token.
    pub token: Token,
    options: &'a [u8],
    /// The payload; empty means none.
    pub payload: &'a [u8],
}

impl<'a> MessageView<'a> {
    /// Parses a datagram.
    ///
    /// # Errors
    /// The same [`CoapError`] as [`crate::Message::decode`] for the same input; never panics.
    pub fn parse(octets: &'a [u8]) -> Result<MessageView<'a>, CoapError> {
        let (header, rest) = octets.split_at_checked(4).ok_or(CoapError::Truncated)?;
        if header[0] >> 6 != 1 {
            return Err(CoapError::Version);
        }
        let token_len = usize::from(header[0] & 0x0f);
        if token_len > Token::MAX_LEN {
            return Err(CoapError::TokenLength);
        }
        let code = Code(header[1]);
        let (token, rest) = rest
            .split_at_checked(token_len)
            .ok_or(CoapError::Truncated)?;
        if code.is_empty() && (token_len != 0 || !rest.is_empty()) {
            return Err(CoapError::EmptyNotEmpty);
        }
        // Walk the options once to validate them and find the payload.
        let mut iter = OptionIter {
            rest,
            number: 0,
            payload: &[],
        };
        for item in iter.by_ref() {
            item?;
        }
        let payload = iter.payload;
        let options = &rest[..rest.len() - payload.len() - usize::from(!payload.is_empty())];
        Ok(MessageView {
            mtype: MessageType::from_bits(header[0] >> 4),
            code,
            message_id: u16::from_be_bytes([header[2], header[3]]),
            token: Token::new(token)?,
            options,
            payload,
        })
    }

    /// The options in wire order (already validated by [`Self::parse`]).
    pub fn options(&self) -> impl Iterator<Item = (OptionNumber, &'a [u8])> + Clone + use<'a> {
        OptionIter {
            rest: self.options,
            number: 0,
            payload: &[],
        }
        .map_while(Result::ok)
    }
}

/// Iterates over encoded options up to the payload marker, which it records.
#[derive(Clone)]
struct OptionIter<'a> {
    rest: &'a [u8],
    number: u32,
    payload: &'a [u8],
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<(OptionNumber, &'a [u8]), CoapError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&first, tail) = self.rest.split_first()?;
        if first == 0xff {
            self.rest = &[];
            if tail.is_empty() {
                return Some(Err(CoapError::EmptyPayload));
            }
            self.payload = tail;
            return None;
        }
        let mut rest = tail;
        let item = (|| {
            let delta = read_extended(first >> 4, &mut rest)?;
            let len = read_extended(first & 0x0f, &mut rest)?;
            self.number += delta;
            let number = u16::try_from(self.number).map_err(|_| CoapError::OptionNumber)?;
            let (value, tail) = rest
                .split_at_checked(len as usize)
                .ok_or(CoapError::Truncated)?;
            rest = tail;
            Ok((OptionNumber(number), value))
        })();
        self.rest = if item.is_ok() { rest } else { &[] };
        Some(item)
    }
}

/// Writes a message from its parts: header, the options given in ascending number order,
/// and the payload. For a caller that assembles options from several sources without
/// building an [`crate::Options`] (OSCORE's outer message).
///
/// # Errors
/// [`CoapError::OptionNumber`] if the options are not in ascending order,
/// [`CoapError::OptionTooLong`] for a value over 65804 octets; `out` then holds a partial
/// message.
pub fn encode_parts<'o>(
    mtype: MessageType,
    code: Code,
    message_id: u16,
    token: &Token,
    options: impl IntoIterator<Item = (OptionNumber, &'o [u8])>,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CoapError> {
    let token = token.as_bytes();
    out.push((1 << 6) | (mtype.to_bits() << 4) | token.len() as u8);
    out.push(code.0);
    out.extend_from_slice(&message_id.to_be_bytes());
    out.extend_from_slice(token);
    let mut last = 0u16;
    for (number, value) in options {
        let delta = number.0.checked_sub(last).ok_or(CoapError::OptionNumber)?;
        if value.len() > crate::options::MAX_VALUE_LEN {
            return Err(CoapError::OptionTooLong);
        }
        let (d, dx) = nibble(usize::from(delta));
        let (l, lx) = nibble(value.len());
        out.push((d << 4) | l);
        out.extend_from_slice(&dx.0[..dx.1]);
        out.extend_from_slice(&lx.0[..lx.1]);
        out.extend_from_slice(value);
        last = number.0;
    }
    if !payload.is_empty() {
        out.push(0xff);
        out.extend_from_slice(payload);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn view_agrees_with_decode() {
        let mut m = Message::new(
            MessageType::Confirmable,
            Code::GET,
            9,
            Token::new(&[1, 2]).unwrap(),
        );
        m.set_uri_path("a/bb/ccc").unwrap();
        m.options.push(OptionNumber(300), &[7; 300]).unwrap();
        m.payload = b"xyz".to_vec();
        let octets = m.encode();
        let view = MessageView::parse(&octets).unwrap();
        assert_eq!(view.payload, b"xyz");
        assert!(view.options().eq(m.options.iter()));
        let mut out = Vec::new();
        encode_parts(
            view.mtype,
            view.code,
            view.message_id,
            &view.token,
            view.options(),
            view.payload,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, octets);
        for cut in 0..octets.len() {
            assert_eq!(
                MessageView::parse(&octets[..cut]).err(),
                Message::decode(&octets[..cut]).err(),
                "{cut}"
            );
        }
        let mut out = Vec::new();
        let unsorted = [(OptionNumber(11), &b""[..]), (OptionNumber(3), &b""[..])];
        assert_eq!(
            encode_parts(
                view.mtype,
                view.code,
                1,
                &Token::EMPTY,
                unsorted,
                &[],
                &mut out
            ),
            Err(CoapError::OptionNumber)
        );
    }
}
