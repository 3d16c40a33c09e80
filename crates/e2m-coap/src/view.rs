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
    #[inline]
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
        let (options, payload) = OptionsView::parse_with_payload(rest)?;
        let options = options.options;
        Ok(MessageView {
            mtype: MessageType::from_bits(header[0] >> 4),
            code,
            message_id: u16::from_be_bytes([header[2], header[3]]),
            token: Token::new(token)?,
            options,
            payload,
        })
    }

    /// Parses a datagram whose payload the caller will rewrite in place (OSCORE decrypts
    /// its ciphertext there, RFC 8613 §8.2): the view of the header, token and options
    /// (its [`Self::payload`] is empty) and the payload, writable. The checks are those of
    /// [`Self::parse`].
    ///
    /// # Errors
    /// As [`Self::parse`] for the same input; never panics.
    #[inline]
    pub fn parse_with_payload_mut(
        octets: &'a mut [u8],
    ) -> Result<(MessageView<'a>, &'a mut [u8]), CoapError> {
        let (header, options_len, payload_len) = {
            let parsed = MessageView::parse(octets)?;
            (
                (parsed.mtype, parsed.code, parsed.message_id, parsed.token),
                parsed.options.len(),
                parsed.payload.len(),
            )
        };
        let (mtype, code, message_id, token) = header;
        // The payload is the datagram's tail; the options end before its marker (if any).
        let (head, payload) = octets.split_at_mut(octets.len() - payload_len);
        let head: &'a [u8] = head;
        let options_end = head.len() - usize::from(payload_len != 0);
        let options = head
            .get(options_end - options_len..options_end)
            .ok_or(CoapError::Truncated)?;
        Ok((
            MessageView {
                mtype,
                code,
                message_id,
                token,
                options,
                payload: &[],
            },
            payload,
        ))
    }

    /// The options in wire order (already validated by [`Self::parse`]).
    #[inline]
    pub fn options(&self) -> impl Iterator<Item = (OptionNumber, &'a [u8])> + Clone + use<'a> {
        OptionIter {
            rest: self.options,
            number: 0,
            payload: &[],
        }
        .map_while(Result::ok)
    }

    /// The options as a list (already validated by [`Self::parse`]).
    #[inline]
    pub fn options_view(&self) -> OptionsView<'a> {
        OptionsView {
            options: self.options,
        }
    }
}

/// An encoded option list with its payload, parsed in place (RFC 7252 §3.1): the tail of a
/// CoAP message after its token, and the shape of an OSCORE plaintext after its code octet
/// (RFC 8613 §5.3). The borrowed counterpart of [`crate::Options::decode_with_payload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionsView<'a> {
    options: &'a [u8],
}

impl<'a> OptionsView<'a> {
    /// Parses options up to the end or to a payload marker, and returns them with the
    /// payload (empty when there is none).
    ///
    /// # Errors
    /// The same [`CoapError`] as [`crate::Options::decode_with_payload`] for the same input;
    /// never panics, never allocates.
    pub fn parse_with_payload(octets: &'a [u8]) -> Result<(OptionsView<'a>, &'a [u8]), CoapError> {
        let mut iter = OptionIter {
            rest: octets,
            number: 0,
            payload: &[],
        };
        for item in iter.by_ref() {
            item?;
        }
        let payload = iter.payload;
        let options = &octets[..octets.len() - payload.len() - usize::from(!payload.is_empty())];
        Ok((OptionsView { options }, payload))
    }

    /// The options in wire order (already validated by [`Self::parse_with_payload`]).
    pub fn iter(&self) -> impl Iterator<Item = (OptionNumber, &'a [u8])> + Clone + use<'a> {
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

/// Writes a message piece by piece into a caller's buffer: the header and token, options
/// in ascending number order (each value given whole, or written by the caller in place),
/// then the payload. Nothing is allocated but the buffer's growth.
#[derive(Debug)]
pub struct MessageWriter<'o> {
    out: &'o mut Vec<u8>,
    last: u16,
}

impl<'o> MessageWriter<'o> {
    /// Appends the 4-octet header and the token to `out` (RFC 7252 §3).
    pub fn new(
        mtype: MessageType,
        code: Code,
        message_id: u16,
        token: &Token,
        out: &'o mut Vec<u8>,
    ) -> MessageWriter<'o> {
        let token = token.as_bytes();
        out.push((1 << 6) | (mtype.to_bits() << 4) | token.len() as u8);
        out.push(code.0);
        out.extend_from_slice(&message_id.to_be_bytes());
        out.extend_from_slice(token);
        MessageWriter { out, last: 0 }
    }

    /// Appends an option's delta/length head for a value of `len` octets (RFC 7252 §3.1).
    ///
    /// # Errors
    /// [`CoapError::OptionNumber`] if `number` is below the previous option's,
    /// [`CoapError::OptionTooLong`] for a value over 65804 octets; nothing is written then.
    pub fn option_head(&mut self, number: OptionNumber, len: usize) -> Result<(), CoapError> {
        let delta = number
            .0
            .checked_sub(self.last)
            .ok_or(CoapError::OptionNumber)?;
        if len > crate::options::MAX_VALUE_LEN {
            return Err(CoapError::OptionTooLong);
        }
        let (d, dx) = nibble(usize::from(delta));
        let (l, lx) = nibble(len);
        self.out.push((d << 4) | l);
        self.out.extend_from_slice(&dx.0[..dx.1]);
        self.out.extend_from_slice(&lx.0[..lx.1]);
        self.last = number.0;
        Ok(())
    }

    /// Appends an option.
    ///
    /// # Errors
    /// As [`Self::option_head`].
    pub fn option(&mut self, number: OptionNumber, value: &[u8]) -> Result<(), CoapError> {
        self.option_head(number, value.len())?;
        self.out.extend_from_slice(value);
        Ok(())
    }

    /// The buffer, to write the value announced by [`Self::option_head`] (exactly that many
    /// octets) or, after [`Self::payload_marker`], the payload.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.out
    }

    /// Appends the payload marker; the payload follows in [`Self::buffer`] and must not be
    /// empty (RFC 7252 §3).
    pub fn payload_marker(self) -> &'o mut Vec<u8> {
        self.out.push(0xff);
        self.out
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
    let mut writer = MessageWriter::new(mtype, code, message_id, token, out);
    for (number, value) in options {
        writer.option(number, value)?;
    }
    if !payload.is_empty() {
        writer.payload_marker().extend_from_slice(payload);
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
            let mut copy = octets[..cut].to_vec();
            assert_eq!(
                MessageView::parse_with_payload_mut(&mut copy).err(),
                Message::decode(&octets[..cut]).err(),
                "{cut}"
            );
        }
        let mut copy = octets.clone();
        let (head, payload) = MessageView::parse_with_payload_mut(&mut copy).unwrap();
        assert_eq!(
            (head.mtype, head.code, head.message_id, head.token),
            (view.mtype, view.code, view.message_id, view.token)
        );
        assert!(head.options().eq(m.options.iter()));
        assert!(head.options_view().iter().eq(m.options.iter()));
        assert!(head.payload.is_empty());
        assert_eq!(payload, b"xyz");
        payload.copy_from_slice(b"abc");
        assert_eq!(&copy[copy.len() - 3..], b"abc");
        let mut no_payload = Message::new(MessageType::Confirmable, Code::GET, 9, Token::EMPTY);
        no_payload.set_uri_path("a").unwrap();
        let mut octets = no_payload.encode();
        let (head, payload) = MessageView::parse_with_payload_mut(&mut octets).unwrap();
        assert!(head.options().eq(no_payload.options.iter()));
        assert!(payload.is_empty());
        let tail = &octets[4 + 2..];
        let (options, payload) = OptionsView::parse_with_payload(tail).unwrap();
        let (owned, owned_payload) = crate::Options::decode_with_payload(tail).unwrap();
        assert!(options.iter().eq(owned.iter()));
        assert_eq!(payload, owned_payload);
        for cut in 0..tail.len() {
            assert_eq!(
                OptionsView::parse_with_payload(&tail[..cut]).err(),
                crate::Options::decode_with_payload(&tail[..cut]).err(),
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
