//! The crypto provider both DTLS endpoints give `dimpl`: its RustCrypto provider, with an
//! HMAC that reuses the keyed state of its last key.
//!
//! Why: the TLS 1.2 PRF (RFC 5246 §5) is a chain of HMACs under one secret, and `dimpl`'s
//! HMAC keys a fresh state for each: two SHA-256 compressions for the inner and outer pads
//! every time, and two more to hash the key first when it is longer than a block (the PSK
//! premaster secret, RFC 4279 §2, is 68 octets for a 32-octet PSK). A DTLS-PSK handshake
//! runs five PRFs (extended master secret, key block, the two Finished values, and the
//! DTLS-SRTP exporter, which `dimpl` always runs when the client offers `use_srtp`): 18
//! HMACs and 111 compressions per handshake on the server (callgrind, issue 20), of which
//! 32 only re-key a state keyed the same way a moment before.
//!
//! The keyed state is kept only inside [`scope`], around one call into `dimpl`, and wiped
//! when the scope ends (`hmac`'s `zeroize` feature wipes a dropped state; the key copy is
//! wiped here): no secret outlives the call that used it. Outside a scope every HMAC is
//! computed as `dimpl`'s own is. The result is the same HMAC either way; the interop tests
//! (our UE and `openssl s_client`/`s_server`) complete handshakes through it.

use std::cell::RefCell;

use dimpl::crypto::{CryptoProvider, HashAlgorithm, HmacProvider};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Keys up to this length are cached (a PRF secret is 48 or 68 octets here).
const MAX_KEY: usize = 128;

/// The last key and its keyed state.
struct Keyed {
    key: [u8; MAX_KEY],
    len: usize,
    state: Hmac<Sha256>,
}

impl Drop for Keyed {
    fn drop(&mut self) {
        // The state wipes itself (`hmac`'s `zeroize` feature).
        self.key.zeroize();
    }
}

struct Cache {
    /// Inside [`scope`].
    on: bool,
    last: Option<Keyed>,
}

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache { on: false, last: None }) };
}

/// Runs `f` (one call into `dimpl`) with the HMAC's keyed state kept between its HMACs,
/// and wiped at the end (also if `f` unwinds). Inside another scope, `f` just runs in it.
pub(crate) fn scope<T>(f: impl FnOnce() -> T) -> T {
    /// Ends the scope: wipes the kept state.
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            CACHE.with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    c.on = false;
                    c.last = None;
                }
            });
        }
    }
    let outermost = CACHE.with(|c| match c.try_borrow_mut() {
        Ok(mut c) if !c.on => {
            c.on = true;
            true
        }
        _ => false,
    });
    if !outermost {
        return f();
    }
    let _end = End;
    f()
}

/// HMAC-SHA-256 of `data` under `key`, from the kept keyed state when `key` is the last
/// key of this scope.
fn hmac_sha256(key: &[u8], data: &[u8]) -> Option<[u8; 32]> {
    let mut state = CACHE.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        if !c.on || key.len() > MAX_KEY {
            return None;
        }
        if let Some(last) = &c.last
            && last.len == key.len()
            && bool::from(last.key[..last.len].ct_eq(key))
        {
            return Some(last.state.clone());
        }
        let state = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
        let mut copy = [0u8; MAX_KEY];
        copy[..key.len()].copy_from_slice(key);
        c.last = Some(Keyed {
            key: copy,
            len: key.len(),
            state: state.clone(),
        });
        copy.zeroize();
        Some(state)
    })?;
    state.update(data);
    Some(state.finalize().into_bytes().into())
}

/// `dimpl`'s RustCrypto HMAC, reusing keyed states inside [`scope`].
#[derive(Debug)]
pub(crate) struct CachingHmac;

pub(crate) static CACHING_HMAC: CachingHmac = CachingHmac;

fn rust_crypto_hmac() -> &'static dyn HmacProvider {
    dimpl::crypto::rust_crypto::default_provider().hmac_provider
}

impl HmacProvider for CachingHmac {
    fn hmac(
        &self,
        hash: HashAlgorithm,
        key: &[u8],
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize, dimpl::CryptoError> {
        if hash == HashAlgorithm::SHA256
            && let Some(mac) = hmac_sha256(key, data)
            && let Some(out) = out.get_mut(..mac.len())
        {
            out.copy_from_slice(&mac);
            return Ok(mac.len());
        }
        rust_crypto_hmac().hmac(hash, key, data, out)
    }
}

/// `dimpl`'s RustCrypto provider with [`CachingHmac`]: the UE's client provider, and the
/// base of the server's (which defers its cookie, see the `cookie` module).
pub(crate) fn provider() -> CryptoProvider {
    CryptoProvider {
        hmac_provider: &CACHING_HMAC,
        ..dimpl::crypto::rust_crypto::default_provider()
    }
}

#[cfg(test)]
#[allow(
    clippy::expect_used,
    reason = "a test fails by panicking, with a message"
)]
mod tests {
    use super::*;

    fn ours(key: &[u8], data: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let n = CACHING_HMAC
            .hmac(HashAlgorithm::SHA256, key, data, &mut out)
            .expect("hmac");
        assert_eq!(n, 32);
        out
    }

    fn genuine(key: &[u8], data: &[u8]) -> [u8; 32] {
        rust_crypto_hmac().hmac_sha256(key, data).expect("hmac")
    }

    /// RFC 4231 test case 2 ("Jefe"), then keys of every length class (short, one block,
    /// longer than a block: hashed first, longer than the cache) in and out of a scope,
    /// alternating so that a stale kept state would show.
    #[test]
    fn the_same_hmac_in_and_out_of_a_scope() {
        let rfc4231_2 =
            hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
                .expect("hex");
        let keys: Vec<Vec<u8>> = [4usize, 32, 48, 64, 68, 128, 129, 200]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        let check = || {
            assert_eq!(
                ours(b"Jefe", b"what do ya want for nothing?").as_slice(),
                rfc4231_2.as_slice()
            );
            for round in 0..3u8 {
                for key in &keys {
                    for data in [&b""[..], &[round; 13][..], &[round; 200][..]] {
                        assert_eq!(ours(key, data), genuine(key, data), "key {}", key.len());
                    }
                }
            }
        };
        check();
        scope(check);
        // Nested scopes, and a state kept in one scope is gone after it.
        scope(|| scope(check));
        scope(|| {
            ours(&keys[2], b"x");
            // Kept inside the scope, for the next HMAC under that key...
            CACHE.with(|c| assert_eq!(c.borrow().last.as_ref().map(|k| k.len), Some(48)));
        });
        // ...and gone after it.
        CACHE.with(|c| assert!(c.borrow().last.is_none() && !c.borrow().on));
    }
}
