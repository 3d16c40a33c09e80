//! The AKMA Ua* profile for DTLS 1.2 with a pre-shared key (TS 24.109 Annex K, clause
//! K.3.2 "TLS 1.2", which TS 33.535 Annex B.1.3 points to), beside the e2m profile: the
//! UE's `psk_identity` names an A-KID, the PSK is K_AF, and the AF (the EMSE's role) gets
//! K_AF for that A-KID from the AAnF through an asynchronous [`AkmaResolver`].
//!
//! # What K.3.2 asks, and what this crate does
//!
//! | K.3.2 | rule | here |
//! |---|---|---|
//! | a) | the ClientHello offers PSK suites | `TLS_PSK_WITH_AES_128_CCM_8` only, as for e2m |
//! | b) | the ClientHello carries `server_name` with the AF's host name | **not sent**: `dimpl` 0.9 has no SNI; the AF's FQDN is in K_AF's AF_ID, so a UE that derived K_AF for another AF fails at Finished |
//! | c) | the AF selects a PSK suite | yes |
//! | d) | the ServerKeyExchange carries `psk_identity_hint` = the static string `"3GPP-AKMA"` | [`AKMA_PSK_IDENTITY_HINT`], sent by a server built with [`DtlsServer::bind_with_akma`]; the client records it ([`DtlsClient::psk_identity_hint`]) |
//! | e) | the ClientKeyExchange's `psk_identity` holds the prefix `"3GPP-AKMA"` and the A-KID | [`akma_psk_identity`]; the AF recognises an AKMA handshake by this prefix ([`parse_akma_psk_identity`]) |
//! | f) | the premaster secret is derived from K_AF | the PSK is the 32 octets of K_AF (RFC 4279 §2 builds the premaster secret from it) |
//!
//! K_AF itself is `KDF(K_AKMA, 0x82, AF_ID)` with AF_ID = FQDN of the AF ‖ Ua* security
//! protocol identifier (TS 33.535 A.4). For this protocol the identifier is TS 33.220
//! Annex H.3's `(0x01,0x00,0x01,yy,zz)` for "shared key-based mutual authentication
//! between UE and NAF" (TS 33.222 §5.4) with `yy,zz` the cipher suite's code point:
//! [`AKMA_UA_PROTOCOL`] = `01 00 01 C0 A8` for `TLS_PSK_WITH_AES_128_CCM_8`.
//!
//! # The separator
//! K.3.2 e) says "a prefix `"3GPP-AKMA"` and the A-KID" and names no separator. The UE
//! conformance defaults of TS 36.508 §4.7H write the GBA analogue as the concatenation of
//! `"3GPP-bootstrapping"`, `"."` and the B-TID. So [`akma_psk_identity`] writes the
//! A-KID right after the prefix (K.3.2 e) as written, [`AkmaIdentityForm::Prefixed`]),
//! [`AkmaIdentityForm::Dotted`] writes `"3GPP-AKMA."` first, and the AF accepts both. That
//! cannot be ambiguous: an NAI's username never starts with a dot (RFC 7542 §2.2, `string
//! = utf8-atext *( "." utf8-atext )`), so a dot after the prefix is always the separator.
//!
//! [`DtlsServer::bind_with_akma`]: crate::server::DtlsServer::bind_with_akma
//! [`DtlsClient::psk_identity_hint`]: crate::client::DtlsClient::psk_identity_hint

use core::future::Future;
use core::pin::Pin;

use e2m_kdf::Kaf;
use e2m_keyid::akma::{AKid, AkmaIdError, UaProtocolId};

use crate::{PeerIdentity, PskKey, PskResolver, ResolveError};
use e2m_keyid::PskIdentity;

/// The `psk_identity_hint` the AF sends in its ServerKeyExchange (TS 24.109 K.3.2 d)).
pub const AKMA_PSK_IDENTITY_HINT: &[u8] = b"3GPP-AKMA";

/// The prefix of the UE's `psk_identity` (TS 24.109 K.3.2 e)), by which the AF recognises
/// an AKMA handshake.
pub const AKMA_PSK_IDENTITY_PREFIX: &str = "3GPP-AKMA";

/// The Ua* security protocol identifier of this profile, the second part of AF_ID (TS
/// 33.535 A.4): TS 33.220 H.3 `(0x01,0x00,0x01,yy,zz)`, shared-key (D)TLS 1.2 of TS
/// 33.222 §5.4, with `yy,zz` = `0xC0,0xA8`, the code point of `TLS_PSK_WITH_AES_128_CCM_8`
/// (RFC 6655), the one suite these endpoints serve.
pub const AKMA_UA_PROTOCOL: UaProtocolId = UaProtocolId::TLS12_PSK_WITH_AES_128_CCM_8;

/// The most octets of an AKMA `psk_identity`: the prefix, a dot and a 253-octet A-KID.
pub const AKMA_PSK_IDENTITY_MAX_LEN: usize = AKMA_PSK_IDENTITY_PREFIX.len() + 1 + AKid::MAX_LEN;

/// How the UE writes its `psk_identity` (module docs, "The separator").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AkmaIdentityForm {
    /// `3GPP-AKMA<A-KID>`: K.3.2 e) as written.
    #[default]
    Prefixed,
    /// `3GPP-AKMA.<A-KID>`: as TS 36.508 §4.7H writes the GBA analogue.
    Dotted,
}

/// The UE's `psk_identity` for `a_kid` (TS 24.109 K.3.2 e)), in `form`.
///
/// ```
/// use e2m_dtls::akma::{AkmaIdentityForm, akma_psk_identity, parse_akma_psk_identity};
/// use e2m_keyid::akma::AKid;
/// let a_kid = AKid::parse("rid0.atid00@5gc.mnc093.mcc208.3gppnetwork.org")?;
/// let id = akma_psk_identity(&a_kid, AkmaIdentityForm::Prefixed);
/// assert_eq!(id, "3GPP-AKMArid0.atid00@5gc.mnc093.mcc208.3gppnetwork.org");
/// assert_eq!(parse_akma_psk_identity(id.as_bytes()), Some(Ok(a_kid)));
/// let dotted = akma_psk_identity(&a_kid, AkmaIdentityForm::Dotted);
/// assert_eq!(parse_akma_psk_identity(dotted.as_bytes()), Some(Ok(a_kid)));
/// # Ok::<(), e2m_keyid::akma::AkmaIdError>(())
/// ```
pub fn akma_psk_identity(a_kid: &AKid, form: AkmaIdentityForm) -> String {
    let separator = match form {
        AkmaIdentityForm::Prefixed => "",
        AkmaIdentityForm::Dotted => ".",
    };
    format!("{AKMA_PSK_IDENTITY_PREFIX}{separator}{a_kid}")
}

/// Reads a `psk_identity` as the AF does: `None` if it does not start with the AKMA
/// prefix (not an AKMA handshake: the e2m profile's, or another's), else the A-KID after
/// the prefix (and an optional dot), or why it is not one.
///
/// # Errors
/// `Some(Err(_))`: the prefix is there but what follows is not an A-KID (not ASCII, not an
/// NAI of at most 253 octets, an upper-case realm).
pub fn parse_akma_psk_identity(octets: &[u8]) -> Option<Result<AKid, AkmaIdError>> {
    let rest = octets.strip_prefix(AKMA_PSK_IDENTITY_PREFIX.as_bytes())?;
    // A username never starts with a dot, so a dot here is the separator (module docs).
    let rest = rest.strip_prefix(b".").unwrap_or(rest);
    Some(
        core::str::from_utf8(rest)
            .map_err(|_| AkmaIdError::Nai)
            .and_then(AKid::parse),
    )
}

/// Where the AF gets K_AF for an A-KID (TS 33.535 §6.3, Naanf_AKMA_ApplicationKey_Get):
/// the shape of [`PskResolver`], for the AKMA profile.
///
/// The future must be `Send`: it runs on the peer's own task, so while it waits other
/// peers' handshakes carry on. [`AkmaKeySource`](crate::akma_source::AkmaKeySource) is the
/// implementation with a key cache and a memory of "no key" answers over any
/// [`AkmaKeyFetcher`](crate::akma_source::AkmaKeyFetcher) (the AAnF or NEF client).
///
/// ```
/// use e2m_dtls::ResolveError;
/// use e2m_dtls::akma::AkmaResolver;
/// use e2m_kdf::Kaf;
/// use e2m_keyid::akma::AKid;
///
/// struct OneUe(AKid, Kaf);
/// impl AkmaResolver for OneUe {
///     async fn resolve(&self, a_kid: &AKid) -> Result<Kaf, ResolveError> {
///         if *a_kid == self.0 { Ok(self.1.copy_secret()) } else { Err(ResolveError::UnknownIdentity) }
///     }
/// }
/// ```
pub trait AkmaResolver: Send + Sync + 'static {
    /// K_AF for `a_kid`, derived for this AF's AF_ID.
    ///
    /// # Errors
    /// [`ResolveError::UnknownIdentity`] when the AAnF has no AKMA context for the A-KID
    /// (or refuses this AF), [`ResolveError::Unavailable`] when it cannot be asked; the
    /// handshake then fails.
    fn resolve(&self, a_kid: &AKid) -> impl Future<Output = Result<Kaf, ResolveError>> + Send;

    /// The answer for `a_kid` if the resolver has it at hand (a cache hit, positive or
    /// negative), else `None` (the default). As for
    /// [`PskResolver::resolve_local`], the DTLS server
    /// spends the source's fetch budget only when this returns `None`.
    fn resolve_local(&self, a_kid: &AKid) -> Option<Result<Kaf, ResolveError>> {
        let _ = a_kid;
        None
    }
}

impl<A: AkmaResolver> AkmaResolver for std::sync::Arc<A> {
    fn resolve(&self, a_kid: &AKid) -> impl Future<Output = Result<Kaf, ResolveError>> + Send {
        (**self).resolve(a_kid)
    }

    fn resolve_local(&self, a_kid: &AKid) -> Option<Result<Kaf, ResolveError>> {
        (**self).resolve_local(a_kid)
    }
}

/// One K_AF for every A-KID (tests, and an AF run against a fixed key).
pub struct StaticKaf(pub Kaf);

impl AkmaResolver for StaticKaf {
    async fn resolve(&self, _a_kid: &AKid) -> Result<Kaf, ResolveError> {
        Ok(self.0.copy_secret())
    }

    fn resolve_local(&self, _a_kid: &AKid) -> Option<Result<Kaf, ResolveError>> {
        Some(Ok(self.0.copy_secret()))
    }
}

/// The server's view of an [`AkmaResolver`]: object-safe, so that the server holds it
/// beside the e2m resolver without a second type parameter. A fetch is boxed once; it
/// waits for a network round trip anyway.
pub(crate) trait DynAkmaResolver: Send + Sync {
    fn resolve_boxed<'a>(
        &'a self,
        a_kid: &'a AKid,
    ) -> Pin<Box<dyn Future<Output = Result<Kaf, ResolveError>> + Send + 'a>>;

    fn resolve_local(&self, a_kid: &AKid) -> Option<Result<Kaf, ResolveError>>;
}

impl<A: AkmaResolver> DynAkmaResolver for A {
    fn resolve_boxed<'a>(
        &'a self,
        a_kid: &'a AKid,
    ) -> Pin<Box<dyn Future<Output = Result<Kaf, ResolveError>> + Send + 'a>> {
        Box::pin(AkmaResolver::resolve(self, a_kid))
    }

    fn resolve_local(&self, a_kid: &AKid) -> Option<Result<Kaf, ResolveError>> {
        AkmaResolver::resolve_local(self, a_kid)
    }
}

/// The server's reading of a peeked `psk_identity`: an AKMA identity when the server
/// serves AKMA and the prefix is there, else an e2m one, exactly as before AKMA existed.
/// `Err` holds the reason reported in the server's `Failed` event.
pub(crate) fn peer_identity(octets: &[u8], serves_akma: bool) -> Result<PeerIdentity, String> {
    if serves_akma && let Some(parsed) = parse_akma_psk_identity(octets) {
        return parsed
            .map(PeerIdentity::Akma)
            .map_err(|e| format!("AKMA psk_identity (TS 24.109 K.3.2): A-KID: {e}"));
    }
    PskIdentity::parse(octets)
        .map(PeerIdentity::E2m)
        .map_err(|e| format!("psk_identity: {e}"))
}

/// The answer at hand for `id` from the resolver of its profile (no AKMA resolver: no key,
/// at once).
pub(crate) fn resolve_local_any<R: PskResolver>(
    e2m: &R,
    akma: Option<&dyn DynAkmaResolver>,
    id: &PeerIdentity,
) -> Option<Result<PskKey, ResolveError>> {
    match id {
        PeerIdentity::E2m(id) => e2m.resolve_local(id).map(|r| r.map(PskKey::E2m)),
        PeerIdentity::Akma(a_kid) => match akma {
            Some(akma) => akma.resolve_local(a_kid).map(|r| r.map(PskKey::Af)),
            None => Some(Err(ResolveError::UnknownIdentity)),
        },
    }
}

/// The key for `id`, fetched by the resolver of its profile.
pub(crate) async fn resolve_any<R: PskResolver>(
    e2m: &R,
    akma: Option<&dyn DynAkmaResolver>,
    id: &PeerIdentity,
) -> Result<PskKey, ResolveError> {
    match id {
        PeerIdentity::E2m(id) => e2m.resolve(id).await.map(PskKey::E2m),
        PeerIdentity::Akma(a_kid) => match akma {
            Some(akma) => akma.resolve_boxed(a_kid).await.map(PskKey::Af),
            None => Err(ResolveError::UnknownIdentity),
        },
    }
}

/// Who a peer is, for the default handler's greeting: the e2m application identity with
/// its key id, or the A-KID.
pub(crate) fn describe(id: &PeerIdentity) -> String {
    match id {
        PeerIdentity::E2m(id) => format!("{} (key id {})", id.identity, id.key_id),
        PeerIdentity::Akma(a_kid) => format!("A-KID {a_kid}"),
    }
}

/// The peer's name: the e2m application identity, or the A-KID.
pub(crate) fn name(id: &PeerIdentity) -> String {
    match id {
        PeerIdentity::E2m(id) => id.identity.to_string(),
        PeerIdentity::Akma(a_kid) => a_kid.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const A_KID: &str = "rid0.atid2f3be0cbfe30b8ad73d8e335f76e5e40d0f960d1eb92fb3b51ce56ebcf5e2eec@5gc.mnc093.mcc208.3gppnetwork.org";

    #[test]
    fn the_identity_is_the_prefix_and_the_a_kid_in_either_form() {
        let a_kid = AKid::parse(A_KID).unwrap();
        let plain = akma_psk_identity(&a_kid, AkmaIdentityForm::Prefixed);
        assert_eq!(plain, format!("3GPP-AKMA{A_KID}"));
        let dotted = akma_psk_identity(&a_kid, AkmaIdentityForm::Dotted);
        assert_eq!(dotted, format!("3GPP-AKMA.{A_KID}"));
        for text in [&plain, &dotted] {
            assert_eq!(parse_akma_psk_identity(text.as_bytes()), Some(Ok(a_kid)));
        }
        assert!(plain.len() <= AKMA_PSK_IDENTITY_MAX_LEN);
    }

    #[test]
    fn other_identities_are_not_akma_and_bad_a_kids_are_typed_errors() {
        // The e2m profile's identity, GBA's prefix, a prefix in the wrong case, nothing.
        for other in [
            &b"e2m1.ae47bf35.sensor-17@iot.example.com"[..],
            b"3GPP-bootstrapping.abc@bsf.example.org",
            b"3gpp-akmarid0.x@example.org",
            b"3GPP-AKM",
            b"",
        ] {
            assert_eq!(parse_akma_psk_identity(other), None, "{other:?}");
        }
        for (bad, error) in [
            (&b"3GPP-AKMA"[..], AkmaIdError::Empty),
            (b"3GPP-AKMA.", AkmaIdError::Empty),
            (b"3GPP-AKMA..rid0.x@example.org", AkmaIdError::Nai),
            (b"3GPP-AKMArid0.x", AkmaIdError::Nai),
            (b"3GPP-AKMArid0.x@Example.org", AkmaIdError::UpperCase),
            (b"3GPP-AKMA\xffx@example.org", AkmaIdError::Nai),
        ] {
            assert_eq!(parse_akma_psk_identity(bad), Some(Err(error)), "{bad:?}");
        }
        let long = format!("3GPP-AKMA{}@example.org", "a".repeat(250));
        assert!(matches!(
            parse_akma_psk_identity(long.as_bytes()),
            Some(Err(AkmaIdError::TooLong { .. }))
        ));
    }

    #[test]
    fn the_ua_protocol_is_the_ccm_8_suite_of_h3() {
        assert_eq!(AKMA_UA_PROTOCOL.0, [0x01, 0x00, 0x01, 0xc0, 0xa8]);
        assert_eq!(AKMA_PSK_IDENTITY_HINT, AKMA_PSK_IDENTITY_PREFIX.as_bytes());
    }
}
