//! OAuth2 access tokens of the SBI (TS 33.501 §13.4.1; the claims of TS 29.510
//! `AccessTokenClaims`): a JWS (RFC 7515, compact form) signed by the NRF, checked against
//! the NRF's public key the operator configured.
//!
//! [`TokenPolicy::validate`] checks, in order:
//! 1. the form: three base64url parts, a JSON header whose `alg` is the one the configured
//!    key is for (ES256 or ES384 for an EC key, RS256 for an RSA key: never `none`, never an
//!    HMAC, never another family, so a public key can never be used as an HMAC secret);
//! 2. the signature (*ring*, the provider rustls uses here, through jsonwebtoken's
//!    `CryptoProvider` hook);
//! 3. the claims TS 33.501 §13.4.1.1.2 names: `iss` is the configured NRF, `aud` names this
//!    producer (its NF instance ID or its NF type, `AANF`), `exp` is after `now` (and `nbf`,
//!    if present, not after it), less the configured leeway; `sub` and `scope` are present;
//! 4. where the client certificate carries an NF instance ID (a `urn:uuid:` URI,
//!    TS 33.310 §6.1.3c), that `sub` is it (TS 33.501 §13.3.1.2: the token is bound to the
//!    consumer that holds it; a token taken from one NF is useless to another).
//!
//! The scopes are read with `e2m_aanf::Scopes::parse`; the AAnF core decides what they
//! allow. The `jsonwebtoken` crate parses the JWS and checks the standard claims (it is
//! the most used JWT crate of the ecosystem, MIT-licensed); its `CryptoProvider` trait lets
//! the signature check run on the *ring* already in the tree instead of a second RSA/ECDSA
//! stack (its `rust_crypto` backend would add `rsa` and `ed25519-dalek`).

use std::collections::HashSet;
use std::sync::Once;
use std::time::Duration;

use e2m_aanf::Scopes;
use e2m_types::Timestamp;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, Validation};
use serde::Deserialize;

/// Why an access token was refused. The peer is told 401 `invalid_token` whatever the
/// variant; the audit log says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWS of the configured algorithm (form, header, base64, JSON).
    #[error("access token is malformed or of another algorithm")]
    Malformed,
    /// The signature does not verify under the configured NRF key.
    #[error("access token signature does not verify")]
    BadSignature,
    /// A claim TS 33.501 requires is missing or ill-typed (`iss`, `sub`, `aud`, `exp`,
    /// `scope`).
    #[error("access token lacks a required claim")]
    MissingClaim,
    /// `iss` is not the configured NRF.
    #[error("access token from another issuer")]
    WrongIssuer,
    /// `aud` does not name this producer.
    #[error("access token for another audience")]
    WrongAudience,
    /// `exp` is past.
    #[error("access token expired")]
    Expired,
    /// `nbf` is ahead.
    #[error("access token not yet valid")]
    NotYetValid,
    /// `sub` is not the NF instance ID of the client certificate.
    #[error("access token issued to another NF instance")]
    OtherSubject,
}

/// Why a [`TokenPolicy`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenKeyError {
    /// The PEM holds neither an EC P-256/P-384 nor an RSA public key.
    #[error("NRF key: not a PEM EC (P-256, P-384) or RSA public key")]
    UnsupportedKey,
    /// No issuer or no audience given.
    #[error("token policy: an issuer and at least one audience are required")]
    Incomplete,
}

/// A token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidToken {
    /// The AKMA scopes it carries.
    pub scopes: Scopes,
    /// Its `sub`: the consumer's NF instance ID.
    pub subject: Box<str>,
}

/// What an access token must be to be accepted (see the module docs).
#[derive(Clone)]
pub struct TokenPolicy {
    key: DecodingKey,
    algorithm: Algorithm,
    issuer: String,
    audiences: Vec<String>,
    leeway: Duration,
}

impl core::fmt::Debug for TokenPolicy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenPolicy")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl TokenPolicy {
    /// The NF type TS 29.510 gives the AAnF (`NFType` `AANF`): a token whose `aud` is the
    /// type rather than an instance ID.
    pub const AANF_NF_TYPE: &'static str = "AANF";

    /// The default leeway for clocks that differ a little (`exp`, `nbf`).
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

    /// A policy for tokens signed by the NRF whose public key is `pem` (an SPKI `PUBLIC
    /// KEY`, or `RSA PUBLIC KEY`): ES256 for a P-256 key, ES384 for P-384, RS256 for RSA.
    /// `issuer` is the NRF's `iss` (its NF instance ID); `audiences` what this producer
    /// accepts in `aud` (its NF instance ID, and [`Self::AANF_NF_TYPE`]).
    ///
    /// # Errors
    /// [`TokenKeyError`] for another kind of key, an empty issuer or no audience.
    pub fn from_pem(
        pem: &[u8],
        issuer: &str,
        audiences: &[&str],
    ) -> Result<TokenPolicy, TokenKeyError> {
        install_ring_provider();
        if issuer.is_empty() || audiences.is_empty() {
            return Err(TokenKeyError::Incomplete);
        }
        let (key, algorithm) = if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            let algorithm = match key.try_get_as_bytes().map(<[u8]>::len) {
                Ok(65) => Algorithm::ES256,
                Ok(97) => Algorithm::ES384,
                _ => return Err(TokenKeyError::UnsupportedKey),
            };
            (key, algorithm)
        } else if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (key, Algorithm::RS256)
        } else {
            return Err(TokenKeyError::UnsupportedKey);
        };
        Ok(TokenPolicy {
            key,
            algorithm,
            issuer: issuer.to_owned(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            leeway: Self::DEFAULT_LEEWAY,
        })
    }

    /// This policy with another leeway.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> TokenPolicy {
        self.leeway = leeway;
        self
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Checks `token` (the `Authorization: Bearer` value) at `now` for a client whose
    /// certificate carries the NF instance ID `cert_instance`, if any.
    ///
    /// # Errors
    /// [`TokenError`] naming the first check that failed.
    pub fn validate(
        &self,
        token: &str,
        cert_instance: Option<&str>,
        now: Timestamp,
    ) -> Result<ValidToken, TokenError> {
        // The header first, so that a header of another algorithm (or none) is told apart
        // from claims that do not read.
        match jsonwebtoken::decode_header(token) {
            Ok(header) if header.alg == self.algorithm => {}
            _ => return Err(TokenError::Malformed),
        }
        let mut validation = Validation::new(self.algorithm);
        // Time is this function's argument, not the library's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.required_spec_claims = ["iss", "sub", "aud", "exp"]
            .into_iter()
            .map(String::from)
            .collect::<HashSet<_>>();
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &validation).map_err(|e| {
            match e.into_kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
                    TokenError::MissingClaim
                }
                ErrorKind::Json(_) => TokenError::MissingClaim,
                _ => TokenError::Malformed,
            }
        })?;
        let claims = data.claims;
        let leeway = self.leeway.as_secs();
        let now = now.as_unix_secs();
        if claims.exp.saturating_add(leeway) <= now {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        if cert_instance.is_some_and(|instance| !claims.sub.eq_ignore_ascii_case(instance)) {
            return Err(TokenError::OtherSubject);
        }
        Ok(ValidToken {
            scopes: Scopes::parse(&claims.scope),
            subject: claims.sub.into(),
        })
    }
}

/// The claims this crate reads (jsonwebtoken checks `iss` and `aud` itself).
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    scope: String,
}

/// jsonwebtoken's signature checks on *ring*: verification only (this crate never signs).
static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: ring_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs [`RING_PROVIDER`] as jsonwebtoken's process default, once; a provider someone
/// else installed first (or a crate feature selected) stays, and is used instead.
fn install_ring_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _other_first = RING_PROVIDER.install_default();
    });
}

fn no_signer(
    _: &Algorithm,
    _: &jsonwebtoken::EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

struct RingVerifier {
    algorithm: Algorithm,
    scheme: &'static dyn ring::signature::VerificationAlgorithm,
    key: RingKey,
}

enum RingKey {
    /// A SEC1 point, or a PKCS#1 `RSAPublicKey`.
    Der(Vec<u8>),
    /// RSA modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

fn ring_verifier(
    algorithm: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    use ring::signature as sig;
    let (family, scheme): (_, &'static dyn sig::VerificationAlgorithm) = match algorithm {
        Algorithm::ES256 => (AlgorithmFamily::Ec, &sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => (AlgorithmFamily::Ec, &sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::RS256 => (AlgorithmFamily::Rsa, &sig::RSA_PKCS1_2048_8192_SHA256),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    if key.family() != family {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let key = match key.kind() {
        DecodingKeyKind::SecretOrDer(der) => RingKey::Der(der.clone()),
        DecodingKeyKind::RsaModulusExponent { n, e } => RingKey::Rsa {
            n: n.clone(),
            e: e.clone(),
        },
    };
    Ok(Box::new(RingVerifier {
        algorithm: *algorithm,
        scheme,
        key,
    }))
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let verified = match &self.key {
            RingKey::Der(der) => {
                ring::signature::UnparsedPublicKey::new(self.scheme, der).verify(msg, signature)
            }
            RingKey::Rsa { n, e } => ring::signature::RsaPublicKeyComponents { n, e }.verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                msg,
                signature,
            ),
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use e2m_aanf::Scope;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    const NRF: &str = "8ba8b0a4-3ab0-4c2b-8c59-1d0f0b6f6a11";
    const AF: &str = "4947a69a-f61b-4bc1-b9da-47c9c5d14b64";

    /// A P-256 key made here (ring), its public key as SPKI PEM, and a signer of JWS
    /// compact tokens written out by hand (RFC 7515 §7.1), independent of jsonwebtoken.
    struct Nrf {
        pair: EcdsaKeyPair,
    }

    impl Nrf {
        fn new() -> Nrf {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            Nrf {
                pair: EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.as_ref(),
                    &rng,
                )
                .unwrap(),
            }
        }

        fn public_pem(&self) -> String {
            // SPKI of an id-ecPublicKey on prime256v1 (RFC 5480): a fixed 26-octet prefix
            // and the 65-octet uncompressed point.
            let mut der = hex_decode("3059301306072a8648ce3d020106082a8648ce3d030107034200");
            der.extend_from_slice(self.pair.public_key().as_ref());
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
        }

        fn sign(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
            let input = format!(
                "{}.{}",
                B64.encode(header.to_string()),
                B64.encode(claims.to_string())
            );
            let sig = self
                .pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap();
            format!("{input}.{}", B64.encode(sig.as_ref()))
        }
    }

    fn hex_decode(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn claims(exp: u64) -> serde_json::Value {
        serde_json::json!({
            "iss": NRF, "sub": AF, "aud": "AANF", "exp": exp,
            "scope": "naanf-akma naanf-akma:applicationkeyget"
        })
    }

    const NOW: u64 = 1_800_000_000;

    fn setup() -> (Nrf, TokenPolicy) {
        let nrf = Nrf::new();
        let policy = TokenPolicy::from_pem(nrf.public_pem().as_bytes(), NRF, &["AANF"]).unwrap();
        (nrf, policy)
    }

    #[test]
    fn a_good_token_gives_its_scopes() {
        let (nrf, policy) = setup();
        assert_eq!(policy.algorithm(), Algorithm::ES256);
        let es256 = serde_json::json!({"alg": "ES256", "typ": "JWT"});
        let token = nrf.sign(&es256, &claims(NOW + 60));
        let valid = policy
            .validate(&token, Some(AF), Timestamp::from_unix_secs(NOW))
            .unwrap();
        assert!(valid.scopes.contains(Scope::ApplicationKeyGet));
        assert!(!valid.scopes.contains(Scope::SupiAccess));
        assert_eq!(&*valid.subject, AF);
    }

    #[test]
    fn every_claim_check_bites() {
        let (nrf, policy) = setup();
        let es256 = serde_json::json!({"alg": "ES256"});
        let now = Timestamp::from_unix_secs(NOW);
        let check = |c: serde_json::Value| policy.validate(&nrf.sign(&es256, &c), None, now);
        assert_eq!(check(claims(NOW - 31)), Err(TokenError::Expired));
        assert!(check(claims(NOW - 29)).is_ok(), "leeway");
        let mut c = claims(NOW + 60);
        c["iss"] = "another-nrf".into();
        assert_eq!(check(c), Err(TokenError::WrongIssuer));
        let mut c = claims(NOW + 60);
        c["aud"] = serde_json::json!(["UDM", "a-different-instance"]);
        assert_eq!(check(c), Err(TokenError::WrongAudience));
        let mut c = claims(NOW + 60);
        c["aud"] = serde_json::json!(["x", "AANF"]);
        assert!(check(c).is_ok(), "an audience list naming us");
        for claim in ["sub", "exp", "iss", "aud", "scope"] {
            let mut c = claims(NOW + 60);
            c.as_object_mut().unwrap().remove(claim);
            assert_eq!(check(c), Err(TokenError::MissingClaim), "{claim}");
        }
        let mut c = claims(NOW + 60);
        c["nbf"] = (NOW + 3600).into();
        assert_eq!(check(c), Err(TokenError::NotYetValid));
        let token = nrf.sign(&es256, &claims(NOW + 60));
        let other = "00000000-0000-4000-8000-000000000000";
        assert_eq!(
            policy.validate(&token, Some(other), now),
            Err(TokenError::OtherSubject)
        );
    }

    #[test]
    fn forged_and_confused_tokens_are_refused() {
        let (nrf, policy) = setup();
        let now = Timestamp::from_unix_secs(NOW);
        let token = nrf.sign(&serde_json::json!({"alg": "ES256"}), &claims(NOW + 60));
        // Another key's signature.
        let (other, _) = setup();
        let forged = other.sign(&serde_json::json!({"alg": "ES256"}), &claims(NOW + 60));
        assert_eq!(
            policy.validate(&forged, None, now),
            Err(TokenError::BadSignature)
        );
        // The claims changed under the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut c = claims(NOW + 60);
        c["scope"] = "naanf-akma naanf-akma:applicationkeyget:supi-access".into();
        let changed = B64.encode(c.to_string());
        parts[1] = &changed;
        assert_eq!(
            policy.validate(&parts.join("."), None, now),
            Err(TokenError::BadSignature)
        );
        // alg none, HS256 with the public key as secret, RS256: another algorithm.
        for alg in ["none", "HS256", "RS256", "ES384"] {
            let header = B64.encode(serde_json::json!({"alg": alg}).to_string());
            let body = B64.encode(claims(NOW + 60).to_string());
            let t = format!("{header}.{body}.{}", token.split('.').nth(2).unwrap());
            assert_eq!(
                policy.validate(&t, None, now),
                Err(TokenError::Malformed),
                "{alg}"
            );
        }
        for junk in ["", "a.b", "a.b.c", "....", "not a token"] {
            assert!(policy.validate(junk, None, now).is_err(), "{junk}");
        }
    }

    #[test]
    fn only_public_keys_of_supported_kinds() {
        assert!(matches!(
            TokenPolicy::from_pem(
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                NRF,
                &["AANF"]
            ),
            Err(TokenKeyError::UnsupportedKey)
        ));
        let nrf = Nrf::new();
        assert!(matches!(
            TokenPolicy::from_pem(nrf.public_pem().as_bytes(), "", &["AANF"]),
            Err(TokenKeyError::Incomplete)
        ));
    }
}
