//! The EMSE's stateless cookie exchange (RFC 6347 §4.2.1), done by the socket's dispatcher
//! before any per-peer state exists and before any key is fetched, and the hand-over of a
//! verified ClientHello to `dimpl` without a second round trip.
//!
//! # The cookie
//! `cookie = HMAC-SHA-256(secret, label || client IP || client port || client_version ||
//! random || session_id || cipher_suites || compression_methods)`, the construction RFC
//! 6347 §4.2.1 suggests (`Cookie = HMAC(Secret, Client-IP, Client-Parameters)`) with the
//! parameters the client must repeat unchanged in its second ClientHello. Only someone who
//! receives datagrams at the client's address and port can return it, so a spoofed source
//! never gets past the dispatcher. The secret is random and changes every
//! [`CookieJar::new`] `rotation`; a cookie verifies under the current and the previous
//! secret, so it lives between one and two rotation periods (RFC 6347 §4.2.1: "the secret
//! should be changed frequently").
//!
//! # Handing the ClientHello to `dimpl`
//! `dimpl` 0.9 always expects a handshake to start with a ClientHello of `message_seq` 0
//! and then runs its own cookie check (a 32-octet `HMAC(per-instance secret,
//! client random)`); its state after a HelloVerifyRequest (next `message_seq` 1 in both
//! directions, transcript cleared, RFC 6347 §4.2.2 and §4.2.6) cannot be reached any other
//! way through its API. Turning its cookie off would not help: it would then answer the
//! client's second ClientHello (`message_seq` 1) as if it were a first one, with a
//! ServerHello of `message_seq` 0 that the client discards, and rewriting the sequence
//! numbers would change the Finished hash, which covers them. So the peer task:
//! 1. feeds `dimpl` a copy of the verified ClientHello with `message_seq` 0
//!    ([`crate::record::as_first_client_hello`]): `dimpl` finds no cookie of its own in
//!    it, answers with a HelloVerifyRequest that is thrown away (never sent), and moves to
//!    the state "HelloVerifyRequest sent";
//! 2. feeds the client's real second ClientHello inside [`with_verified_cookie`]: `dimpl`
//!    recomputes its cookie over the client random through the crypto provider's HMAC, and
//!    [`CookieDeferringHmac`] answers that one computation with the cookie the dispatcher
//!    has already verified, so `dimpl` accepts the ClientHello exactly as the client sent
//!    it. Its transcript starts with that ClientHello (RFC 6347 §4.2.1: the first
//!    ClientHello and the HelloVerifyRequest are not in the Finished hash), identical on
//!    both sides.
//!
//! The deferral is narrow: only inside [`with_verified_cookie`], on this thread, for an
//! HMAC-SHA-256 with a 32-octet key (dimpl's cookie secret; every PRF key of a PSK
//! handshake is 48 or 68 octets) over exactly the 32 octets of that ClientHello's random.
//! Every other HMAC goes to `dimpl`'s RustCrypto provider unchanged. The interop tests
//! (our UE and `openssl s_client`) complete handshakes through this path, so a `dimpl`
//! that computed its cookie differently would fail them rather than pass silently.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use dimpl::crypto::{CryptoProvider, HashAlgorithm, HmacProvider};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use crate::record::{ClientHello, RANDOM_LEN};

/// Domain separation: these MACs are cookies of this protocol version and nothing else.
const LABEL: &[u8] = b"e2m-dtls cookie v1";

/// The cookie length: the whole HMAC-SHA-256 output (dimpl's check also wants 32 octets).
pub(crate) const COOKIE_LEN: usize = 32;

/// The dispatcher's cookie secrets: the current one and the one before it, kept only as
/// keyed HMAC states (wiped on drop: `hmac`'s `zeroize` feature); the random octets they
/// were keyed from are wiped at once.
pub(crate) struct CookieJar {
    current: Hmac<Sha256>,
    previous: Option<Hmac<Sha256>>,
    rotated_at: Instant,
    rotation: Duration,
}

/// A fresh HMAC key state from 32 random octets (the octets themselves are wiped).
fn fresh_secret() -> Result<Hmac<Sha256>, getrandom::Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)?;
    let mac = Hmac::<Sha256>::new_from_slice(&secret);
    secret.zeroize();
    // HMAC takes a key of any length; this cannot fail.
    mac.map_err(|_| getrandom::Error::UNEXPECTED)
}

impl CookieJar {
    /// A jar with a fresh secret that changes every `rotation`.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub(crate) fn new(rotation: Duration, now: Instant) -> Result<Self, getrandom::Error> {
        Ok(CookieJar {
            current: fresh_secret()?,
            previous: None,
            rotated_at: now,
            rotation,
        })
    }

    /// Moves to a new secret when the current one is older than the rotation period. If
    /// the random source fails, the old secret stays in use (still unforgeable).
    pub(crate) fn rotate_if_due(&mut self, now: Instant) {
        if now.saturating_duration_since(self.rotated_at) < self.rotation {
            return;
        }
        if let Ok(next) = fresh_secret() {
            self.previous = Some(std::mem::replace(&mut self.current, next));
            self.rotated_at = now;
        }
    }

    /// The cookie for `hello` from `from` under the current secret.
    pub(crate) fn cookie(&self, from: SocketAddr, hello: &ClientHello<'_>) -> [u8; COOKIE_LEN] {
        mac_over(self.current.clone(), from, hello)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `hello` carries the cookie we gave `from` for these parameters, under the
    /// current or the previous secret. Constant-time in the cookie's octets.
    pub(crate) fn verify(&self, from: SocketAddr, hello: &ClientHello<'_>) -> bool {
        if hello.cookie.len() != COOKIE_LEN {
            return false;
        }
        [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .any(|key| {
                mac_over(key.clone(), from, hello)
                    .verify_slice(hello.cookie)
                    .is_ok()
            })
    }
}

/// Feeds the cookie's input into a keyed HMAC state.
fn mac_over(mut mac: Hmac<Sha256>, from: SocketAddr, hello: &ClientHello<'_>) -> Hmac<Sha256> {
    mac.update(LABEL);
    match from.ip() {
        IpAddr::V4(ip) => {
            mac.update(&[4]);
            mac.update(&ip.octets());
        }
        IpAddr::V6(ip) => {
            mac.update(&[6]);
            mac.update(&ip.octets());
        }
    }
    mac.update(&from.port().to_be_bytes());
    mac.update(&hello.client_version);
    mac.update(hello.random);
    // Each variable-length field with its length, so no two inputs run together.
    for field in [
        hello.session_id,
        hello.cipher_suites,
        hello.compression_methods,
    ] {
        mac.update(&(field.len() as u32).to_be_bytes());
        mac.update(field);
    }
    mac
}

thread_local! {
    /// The ClientHello random and the cookie already verified for it, while
    /// [`with_verified_cookie`] runs.
    static VERIFIED: Cell<Option<([u8; RANDOM_LEN], [u8; COOKIE_LEN])>> = const { Cell::new(None) };
}

/// Runs `f` (one synchronous call into `dimpl`) with `dimpl`'s cookie computation over
/// `random` answered by `cookie`, which the dispatcher has verified.
pub(crate) fn with_verified_cookie<T>(
    random: [u8; RANDOM_LEN],
    cookie: [u8; COOKIE_LEN],
    f: impl FnOnce() -> T,
) -> T {
    /// Clears the deferral even if `f` unwinds.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            VERIFIED.with(|v| v.set(None));
        }
    }
    VERIFIED.with(|v| v.set(Some((random, cookie))));
    let _clear = Clear;
    f()
}

/// `dimpl`'s RustCrypto HMAC, except for the one cookie computation deferred to the
/// dispatcher (see the module docs).
#[derive(Debug)]
pub(crate) struct CookieDeferringHmac;

static DEFERRING_HMAC: CookieDeferringHmac = CookieDeferringHmac;

/// Every HMAC but the deferred cookie: the endpoints' common one (see the `crypto` module).
fn other_hmac() -> &'static dyn HmacProvider {
    &crate::crypto::CACHING_HMAC
}

impl HmacProvider for CookieDeferringHmac {
    fn hmac_sha256(&self, key: &[u8], data: &[u8]) -> Result<[u8; 32], dimpl::CryptoError> {
        if key.len() == 32
            && let Some((random, cookie)) = VERIFIED.with(Cell::get)
            && data == random
        {
            return Ok(cookie);
        }
        other_hmac().hmac_sha256(key, data)
    }

    fn hmac(
        &self,
        hash: HashAlgorithm,
        key: &[u8],
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize, dimpl::CryptoError> {
        other_hmac().hmac(hash, key, data, out)
    }
}

/// The endpoints' provider (see the `crypto` module) with [`CookieDeferringHmac`] in
/// place of its HMAC: the EMSE's server provider.
pub(crate) fn server_crypto_provider() -> CryptoProvider {
    CryptoProvider {
        hmac_provider: &DEFERRING_HMAC,
        ..crate::crypto::provider()
    }
}

#[cfg(test)]
#[allow(
    clippy::expect_used,
    reason = "a test fails by panicking, with a message"
)]
mod tests {
    use super::*;
    use crate::record::parse_client_hello;

    /// A ClientHello record: epoch 0, the given cookie, one suite.
    fn hello(cookie: &[u8], random: u8) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[random; 32]);
        body.push(0); // session_id
        body.push(cookie.len() as u8);
        body.extend_from_slice(cookie);
        body.extend_from_slice(&[0, 2, 0xc0, 0xa8]);
        body.extend_from_slice(&[1, 0]);
        let mut hs = vec![
            1,
            0,
            0,
            body.len() as u8,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            body.len() as u8,
        ];
        hs.extend_from_slice(&body);
        let mut record = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, hs.len() as u8];
        record.extend_from_slice(&hs);
        record
    }

    #[test]
    fn a_cookie_verifies_only_for_its_address_port_and_parameters() {
        let now = Instant::now();
        let jar = CookieJar::new(Duration::from_secs(30), now).expect("random");
        let from: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let first = hello(&[], 7);
        let cookie = jar.cookie(from, &parse_client_hello(&first).expect("hello"));
        let second = hello(&cookie, 7);
        let second = parse_client_hello(&second).expect("hello");
        assert!(jar.verify(from, &second));
        for other in ["127.0.0.1:4001", "127.0.0.2:4000", "[::1]:4000"] {
            assert!(
                !jar.verify(other.parse().expect("addr"), &second),
                "{other}"
            );
        }
        let other_random = hello(&cookie, 8);
        assert!(!jar.verify(from, &parse_client_hello(&other_random).expect("hello")));
        let mut forged = cookie;
        forged[31] ^= 1;
        let forged = hello(&forged, 7);
        assert!(!jar.verify(from, &parse_client_hello(&forged).expect("hello")));
        let short = hello(&cookie[..31], 7);
        assert!(!jar.verify(from, &parse_client_hello(&short).expect("hello")));
    }

    #[test]
    fn a_cookie_outlives_one_rotation_but_not_two() {
        let now = Instant::now();
        let period = Duration::from_secs(30);
        let mut jar = CookieJar::new(period, now).expect("random");
        let from: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let cookie = jar.cookie(from, &parse_client_hello(&hello(&[], 1)).expect("hello"));
        let second = hello(&cookie, 1);
        let second = parse_client_hello(&second).expect("hello");
        jar.rotate_if_due(now + period / 2);
        assert!(jar.verify(from, &second), "no rotation yet");
        jar.rotate_if_due(now + period);
        assert!(jar.verify(from, &second), "previous secret");
        jar.rotate_if_due(now + period * 2);
        assert!(!jar.verify(from, &second), "two rotations later");
    }

    #[test]
    fn the_deferral_answers_only_the_cookie_computation_inside_its_scope() {
        let hmac = CookieDeferringHmac;
        let random = [9u8; RANDOM_LEN];
        let cookie = [0xc0u8; COOKIE_LEN];
        let genuine = other_hmac().hmac_sha256(&[1; 32], &random).expect("hmac");
        assert_eq!(hmac.hmac_sha256(&[1; 32], &random).expect("hmac"), genuine);
        with_verified_cookie(random, cookie, || {
            assert_eq!(hmac.hmac_sha256(&[1; 32], &random).expect("hmac"), cookie);
            // Another key length (a PRF key) or other data: the genuine HMAC.
            let prf = other_hmac().hmac_sha256(&[1; 48], &random).expect("hmac");
            assert_eq!(hmac.hmac_sha256(&[1; 48], &random).expect("hmac"), prf);
            assert_ne!(hmac.hmac_sha256(&[1; 32], &[8; 32]).expect("hmac"), cookie);
        });
        assert_eq!(hmac.hmac_sha256(&[1; 32], &random).expect("hmac"), genuine);
    }
}
