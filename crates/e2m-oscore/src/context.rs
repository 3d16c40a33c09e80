//! The security context and its derivation (RFC 8613 §3).

use alloc::vec::Vec;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroize;

use crate::cbor;
use crate::secret::{AeadKey, CommonIv};
use crate::{MasterSecret, OscoreError, PartialIv, ReplayWindow, SenderSequence};

/// COSE algorithm identifier of AES-CCM-16-64-128 (RFC 8152 §10.2), the AEAD Algorithm of
/// every context here (RFC 8613 §3.2.1 default).
pub const ALG_AES_CCM_16_64_128: u64 = 10;
/// Nonce length of that algorithm.
pub const NONCE_LEN: usize = 13;
/// The longest Sender/Recipient ID: nonce length − 6 (RFC 8613 §3.3).
pub const MAX_ID_LEN: usize = NONCE_LEN - 6;
/// The longest ID Context this crate accepts: what the kid context field can carry (one
/// length octet, RFC 8613 §6.1).
pub const MAX_ID_CONTEXT_LEN: usize = 255;

/// The inputs of a security context (RFC 8613 §3.2): what both endpoints agree on.
#[derive(Debug)]
pub struct ContextInput<'a> {
    /// The Master Secret.
    pub master_secret: &'a MasterSecret,
    /// The Master Salt (empty is the default, RFC 8613 §3.2.1).
    pub master_salt: &'a [u8],
    /// The ID Context, if any.
    pub id_context: Option<&'a [u8]>,
    /// This endpoint's Sender ID (the peer's Recipient ID), at most 7 octets.
    pub sender_id: &'a [u8],
    /// This endpoint's Recipient ID (the peer's Sender ID), at most 7 octets.
    pub recipient_id: &'a [u8],
}

/// One OSCORE security context (RFC 8613 §3.1): the Common Context, this endpoint's Sender
/// Context and its Recipient Context for one peer.
///
/// Not `Clone`: two copies would hand out the same sender sequence numbers. The keys and IV
/// are zeroized on drop and redacted in `Debug`.
#[derive(Debug)]
pub struct SecurityContext {
    pub(crate) id_context: Option<Vec<u8>>,
    pub(crate) common_iv: CommonIv,
    pub(crate) sender_id: Vec<u8>,
    pub(crate) sender_key: AeadKey,
    pub(crate) sequence: SenderSequence,
    pub(crate) recipient_id: Vec<u8>,
    pub(crate) recipient_key: AeadKey,
    pub(crate) replay: ReplayWindow,
}

impl SecurityContext {
    /// Derives the context (RFC 8613 §3.2.1): Sender Key, Recipient Key and Common IV by
    /// HKDF-SHA-256 from the Master Secret and Master Salt with
    /// `info = [id, id_context, alg_aead, type, L]`.
    ///
    /// `sequence` is this endpoint's sender sequence ([`SenderSequence::volatile`] only where
    /// the inputs are never reused after a state loss). The replay window starts empty; a
    /// server that re-derives a context it used before a state loss calls
    /// [`Self::forget_replay_window`] (Appendix B.1.2).
    ///
    /// # Errors
    /// [`OscoreError::InvalidId`] for an ID over 7 octets, equal Sender and Recipient IDs,
    /// or an ID Context over 255 octets.
    pub fn derive(
        input: &ContextInput<'_>,
        sequence: SenderSequence,
    ) -> Result<SecurityContext, OscoreError> {
        if input.sender_id.len() > MAX_ID_LEN
            || input.recipient_id.len() > MAX_ID_LEN
            || input.sender_id == input.recipient_id
            || input
                .id_context
                .is_some_and(|c| c.len() > MAX_ID_CONTEXT_LEN)
        {
            return Err(OscoreError::InvalidId);
        }
        // Step 1 (HKDF-Extract): PRK from the Master Salt and Master Secret.
        let hkdf =
            Hkdf::<Sha256>::new(Some(input.master_salt), input.master_secret.expose_secret());
        let mut sender_key = [0u8; 16];
        let mut recipient_key = [0u8; 16];
        let mut common_iv = [0u8; NONCE_LEN];
        // Step 2 (HKDF-Expand): one output per (id, type).
        expand(
            &hkdf,
            input.sender_id,
            input.id_context,
            "Key",
            &mut sender_key,
        );
        expand(
            &hkdf,
            input.recipient_id,
            input.id_context,
            "Key",
            &mut recipient_key,
        );
        expand(&hkdf, &[], input.id_context, "IV", &mut common_iv);
        let context = SecurityContext {
            id_context: input.id_context.map(<[u8]>::to_vec),
            common_iv: CommonIv::new(common_iv),
            sender_id: input.sender_id.to_vec(),
            sender_key: AeadKey::new(sender_key),
            sequence,
            recipient_id: input.recipient_id.to_vec(),
            recipient_key: AeadKey::new(recipient_key),
            replay: ReplayWindow::new(),
        };
        sender_key.zeroize();
        recipient_key.zeroize();
        common_iv.zeroize();
        Ok(context)
    }

    /// The ID Context, if any.
    pub fn id_context(&self) -> Option<&[u8]> {
        self.id_context.as_deref()
    }

    /// This endpoint's Sender ID.
    pub fn sender_id(&self) -> &[u8] {
        &self.sender_id
    }

    /// This endpoint's Recipient ID (the peer's Sender ID).
    pub fn recipient_id(&self) -> &[u8] {
        &self.recipient_id
    }

    /// The Sender Key.
    pub fn sender_key(&self) -> &AeadKey {
        &self.sender_key
    }

    /// The Recipient Key.
    pub fn recipient_key(&self) -> &AeadKey {
        &self.recipient_key
    }

    /// The Common IV.
    pub fn common_iv(&self) -> &CommonIv {
        &self.common_iv
    }

    /// The sender sequence (to read or persist its reservation).
    pub fn sequence(&self) -> &SenderSequence {
        &self.sequence
    }

    /// The sender sequence, to confirm a persisted reservation.
    pub fn sequence_mut(&mut self) -> &mut SenderSequence {
        &mut self.sequence
    }

    /// The replay window.
    pub fn replay_window(&self) -> &ReplayWindow {
        &self.replay
    }

    /// Marks the replay window as lost (a server that rebooted and re-derived this context,
    /// Appendix B.1.2): no request is processed until one answers an Echo challenge.
    pub fn forget_replay_window(&mut self) {
        self.replay = ReplayWindow::uninitialized();
    }

    /// The AEAD nonce for a Partial IV sent by the endpoint with Sender ID `id` (RFC 8613
    /// §5.2): the ID length, the ID left-padded to 7 octets and the Partial IV left-padded
    /// to 5 octets, XORed with the Common IV.
    pub fn nonce(&self, id: &[u8], piv: &PartialIv) -> [u8; NONCE_LEN] {
        // IDs are checked at derivation and at decoding to be ≤ 7 octets; a longer one is
        // refused by the callers before this point (`.min` only keeps this function total).
        let id = &id[..id.len().min(MAX_ID_LEN)];
        // Fixed-size arithmetic (this runs twice per message): the nonce as a 13-octet
        // big-endian number, ID length ‖ ID (left-padded to 7) ‖ Partial IV (left-padded to
        // 5), XORed with the Common IV's number.
        let id_value = id.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let value = (u128::from(id.len() as u8) << 96)
            | (u128::from(id_value) << 40)
            | u128::from(piv.sequence() & (PartialIv::LIMIT - 1));
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&(value ^ self.common_iv.value()).to_be_bytes()[16 - NONCE_LEN..]);
        nonce
    }
}

/// HKDF-Expand with `info = [id, id_context, alg_aead, type, L]` (RFC 8613 §3.2.1).
fn expand(hkdf: &Hkdf<Sha256>, id: &[u8], id_context: Option<&[u8]>, kind: &str, out: &mut [u8]) {
    let mut info = Vec::with_capacity(32 + id_context.map_or(0, <[u8]>::len));
    cbor::array(&mut info, 5);
    cbor::bstr(&mut info, id);
    match id_context {
        Some(ctx) => cbor::bstr(&mut info, ctx),
        None => cbor::null(&mut info),
    }
    cbor::uint(&mut info, ALG_AES_CCM_16_64_128);
    cbor::tstr(&mut info, kind);
    cbor::uint(&mut info, out.len() as u64);
    // 16 or 13 octets is far below HKDF-SHA-256's 255 × 32 limit, so this cannot fail.
    if hkdf.expand(&info, out).is_err() {
        out.fill(0);
    }
}

/// The longest AAD: 0x83, "Encrypt0" (9), 0x40, the external_aad's head (1) and at most
/// 5 + 1 + 7 + 1 + 5 + 1 = 20 octets of external_aad.
const MAX_AAD_LEN: usize = 32;

/// The AAD of one message, on the stack.
pub(crate) struct Aad {
    bytes: [u8; MAX_AAD_LEN],
    len: usize,
}

impl Aad {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len.min(MAX_AAD_LEN)]
    }
}

/// The AAD's first 16 octets with a zero external_aad length: `["Encrypt0", h'',` then the
/// bstr head of external_aad, and external_aad's `[1, [10],` (its kid follows).
const AAD_HEAD: [u8; 16] = [
    0x83, // array(3)
    0x68,
    b'E',
    b'n',
    b'c',
    b'r',
    b'y',
    b'p',
    b't',
    b'0', // tstr "Encrypt0"
    0x40, // bstr h''
    0x40, // bstr head of external_aad (its length is or-ed in)
    0x85, // array(5)
    0x01, // oscore_version 1
    0x81, // array(1)
    ALG_AES_CCM_16_64_128 as u8,
];

/// The AAD of an OSCORE message (RFC 8613 §5.4): the COSE `Enc_structure`
/// `["Encrypt0", h'', external_aad]` with
/// `external_aad = bstr .cbor [oscore_version: 1, [alg_aead], request_kid, request_piv, options: h'']`
/// (no Class I options are defined). `request_kid` is at most 7 octets (callers check).
#[inline]
pub(crate) fn aad(request_kid: &[u8], request_piv: &PartialIv) -> Aad {
    let kid = &request_kid[..request_kid.len().min(MAX_ID_LEN)];
    let piv = request_piv.as_bytes();
    // external_aad: 5 octets before the kid's bstr head, the kid, the Partial IV's head and
    // octets, the empty options' head (≤ 20, a one-octet bstr head).
    let external_len = 5 + kid.len() + 1 + piv.len() + 1;
    let mut head = AAD_HEAD;
    head[11] |= external_len as u8;
    // The rest, at most 1 + 7 + 1 + 5 + 1 = 15 octets, as one big-endian number built in
    // registers (written whole: see `PartialIv`): bstr(kid) ‖ bstr(piv) ‖ h''.
    let mut tail = u128::from(0x40 | kid.len() as u8);
    for octet in kid {
        tail = (tail << 8) | u128::from(*octet);
    }
    tail = (tail << 8) | u128::from(0x40 | piv.len() as u8);
    tail = (tail << (8 * piv.len())) | u128::from(request_piv.sequence());
    tail = (tail << 8) | 0x40;
    let tail_len = kid.len() + piv.len() + 3;
    let mut bytes = [0u8; MAX_AAD_LEN];
    bytes[..16].copy_from_slice(&head);
    bytes[16..].copy_from_slice(&(tail << (8 * (16 - tail_len))).to_be_bytes());
    Aad {
        bytes,
        len: 16 + tail_len,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn aad_matches_the_generic_cbor_encoding() {
        for kid in [&[][..], &[1], &[1, 2, 3, 4, 5, 6, 7]] {
            for seq in [0u64, 20, 0xff_ffff_ffff] {
                let piv = PartialIv::from_sequence(seq).unwrap_or_else(|| unreachable!());
                let mut external = Vec::new();
                cbor::array(&mut external, 5);
                cbor::uint(&mut external, 1);
                cbor::array(&mut external, 1);
                cbor::uint(&mut external, ALG_AES_CCM_16_64_128);
                cbor::bstr(&mut external, kid);
                cbor::bstr(&mut external, piv.as_bytes());
                cbor::bstr(&mut external, &[]);
                let mut want = Vec::new();
                cbor::array(&mut want, 3);
                cbor::tstr(&mut want, "Encrypt0");
                cbor::bstr(&mut want, &[]);
                cbor::bstr(&mut want, &external);
                assert_eq!(aad(kid, &piv).as_bytes(), &want[..]);
            }
        }
    }
}
