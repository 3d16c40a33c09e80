//! K_AKMA sealed at rest: an AAnF's anchor keys (TS 33.535 §6.1), bound to the UE, the A-KID
//! and the lifetime of their AKMA context.

use e2m_kdf::Kakma;
use e2m_keyid::akma::{AKid, Supi, SupiType, UeId};
use e2m_types::Timestamp;

use crate::keyring::{open_value, seal_value};
use crate::record::{Aad, FORMAT, LABEL_K_AKMA};
use crate::{KekVersion, Keyring, OpenError, SealError, SealNonce, SealedKey};

/// Octets of the largest associated data of an AKMA record: label (1 + 15), format (1), KEK
/// version (4), UE kind (1), UE length (2), UE (at most [`UeId::MAX_LEN`] = 259), A-KID
/// length (1), A-KID (at most [`AKid::MAX_LEN`] = 253), two times (16): 553.
const AKMA_AAD_MAX: usize = 1 + 15 + 1 + 4 + 1 + 2 + UeId::MAX_LEN + 1 + AKid::MAX_LEN + 16;

/// Where a K_AKMA belongs: the clear fields an AAnF store keeps beside its sealed bytes
/// (and indexes by), all bound into the sealed value's associated data.
///
/// Opening with any field different from the one used when sealing fails, so sealed bytes
/// copied to another UE's context (or to another A-KID, or into an intermediate-key row:
/// the kind label differs) never yield a key, and an edited lifetime is refused:
/// - `ue` (SUPI or GPSI) and `a_kid`: the context's identity; a K_AKMA moved to another UE
///   would give that UE's A-KID another UE's keys;
/// - `registered` and `expires`: an edited expiry could serve K_AKMA (and so K_AF) past the
///   operator's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AkmaKeyRecord<'a> {
    /// The UE the context belongs to.
    pub ue: &'a UeId,
    /// Its A-KID.
    pub a_kid: &'a AKid,
    /// When the AUSF registered it.
    pub registered: Timestamp,
    /// When it stops being served.
    pub expires: Timestamp,
}

impl<'a> AkmaKeyRecord<'a> {
    /// The record of the K_AKMA of `ue` under `a_kid`, registered at `registered`, served
    /// until `expires`.
    pub fn new(
        ue: &'a UeId,
        a_kid: &'a AKid,
        registered: Timestamp,
        expires: Timestamp,
    ) -> AkmaKeyRecord<'a> {
        AkmaKeyRecord {
            ue,
            a_kid,
            registered,
            expires,
        }
    }

    /// The associated data for this record sealed in format `format` under KEK `kek`. Every
    /// variable-length field carries its length and the layout is fixed, so two different
    /// records never give the same octets:
    ///
    /// ```text
    /// len(label) ‖ "e2m-seal k-akma" ‖ format (1) ‖ KEK version (4, BE)
    ///   ‖ UE kind (1: 1 = SUPI, 2 = GPSI) ‖ len(UE) (2, BE) ‖ UE (TS 29.571 wire form, ASCII)
    ///   ‖ len(A-KID) (1) ‖ A-KID (ASCII) ‖ registered (8, BE, Unix milliseconds)
    ///   ‖ expires (8, BE, Unix milliseconds)
    /// ```
    fn associated_data(&self, format: u8, kek: KekVersion) -> Aad<AKMA_AAD_MAX> {
        let mut aad = Aad::start(LABEL_K_AKMA, format, kek);
        // A SUPI's text form is built on the stack (its type keeps the type and the value
        // apart); a GPSI's is stored as it is sent.
        let mut supi_text = [0u8; 5 + Supi::MAX_VALUE_LEN];
        let (kind, ue): (u8, &[u8]) = match self.ue {
            UeId::Supi(supi) => {
                let prefix = supi_prefix(supi).as_bytes();
                let value = supi.value().as_bytes();
                let len = prefix.len() + value.len();
                supi_text[..prefix.len()].copy_from_slice(prefix);
                supi_text[prefix.len()..len].copy_from_slice(value);
                (1, &supi_text[..len])
            }
            UeId::Gpsi(gpsi) => (2, gpsi.as_str().as_bytes()),
        };
        aad.push(&[kind]);
        // At most 259 octets: fits two.
        aad.push(&u16::try_from(ue.len()).unwrap_or(u16::MAX).to_be_bytes());
        aad.push(ue);
        let a_kid = self.a_kid.as_str().as_bytes();
        // At most 253 octets: fits one.
        aad.push(&[u8::try_from(a_kid.len()).unwrap_or(u8::MAX)]);
        aad.push(a_kid);
        aad.push(&self.registered.as_unix_millis().to_be_bytes());
        aad.push(&self.expires.as_unix_millis().to_be_bytes());
        aad
    }
}

/// The wire prefix of a SUPI's type (TS 29.571 `Supi`).
fn supi_prefix(supi: &Supi) -> &'static str {
    match supi.kind() {
        SupiType::Imsi => "imsi-",
        SupiType::Nai => "nai-",
        SupiType::Gci => "gci-",
        SupiType::Gli => "gli-",
        // A SUPI type a later e2m-keyid adds: a prefix no other type has, so the record
        // still binds the kind.
        _ => "supi-",
    }
}

impl Keyring {
    /// Seals `k_akma` for `record` under the newest KEK, with `nonce`. The 65 octets of
    /// the result have the layout of every sealed value ([`SealedKey`]); the kind label
    /// `"e2m-seal k-akma"` in the associated data keeps them from ever opening as an
    /// intermediate key, and an intermediate key from opening as a K_AKMA.
    ///
    /// # Errors
    /// [`SealError::CipherRefused`] only if the AEAD refuses (it cannot for this input).
    pub fn seal_k_akma(
        &self,
        record: &AkmaKeyRecord<'_>,
        k_akma: &Kakma,
        nonce: SealNonce,
    ) -> Result<SealedKey, SealError> {
        let kek = self.newest();
        let aad = record.associated_data(FORMAT, kek.version());
        seal_value(kek, aad.as_bytes(), k_akma.expose_secret(), nonce).map(SealedKey)
    }

    /// Opens `sealed` as the K_AKMA of `record`.
    ///
    /// # Errors
    /// [`OpenError::UnknownKekVersion`] if the keyring lacks the KEK it was sealed under;
    /// [`OpenError::NotAuthentic`] if it does not authenticate for this record (edited
    /// bytes or fields, bytes of another UE, A-KID or kind, or a wrong KEK file).
    pub fn open_k_akma(
        &self,
        record: &AkmaKeyRecord<'_>,
        sealed: &SealedKey,
    ) -> Result<Kakma, OpenError> {
        let version = sealed.0.kek_version();
        let kek = self
            .get(version)
            .ok_or(OpenError::UnknownKekVersion(version))?;
        let aad = record.associated_data(sealed.0.format(), version);
        let plain = open_value(kek, aad.as_bytes(), &sealed.0)
            .map_err(|_| OpenError::NotAuthentic(version))?;
        Ok(Kakma::from_array(*plain))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// The associated data is the documented layout, octet for octet (written out by hand
    /// here, not produced by the code under test), so another implementation can open
    /// these records.
    #[test]
    fn associated_data_is_the_documented_layout() {
        let ue = UeId::parse("imsi-001010123456789").unwrap();
        let a_kid = AKid::parse("rid0.atid01@5gc.mnc001.mcc001.3gppnetwork.org").unwrap();
        let record = AkmaKeyRecord::new(
            &ue,
            &a_kid,
            Timestamp::from_unix_millis(0x01_0203_0405),
            Timestamp::from_unix_millis(0x0a0b_0c0d_0e0f),
        );
        let aad = record.associated_data(FORMAT, KekVersion::new(7).unwrap());
        let mut expected = vec![15u8];
        expected.extend_from_slice(b"e2m-seal k-akma");
        expected.extend_from_slice(&[2, 0, 0, 0, 7]);
        expected.push(1);
        expected.extend_from_slice(&[0, 20]);
        expected.extend_from_slice(b"imsi-001010123456789");
        expected.push(45);
        expected.extend_from_slice(b"rid0.atid01@5gc.mnc001.mcc001.3gppnetwork.org");
        expected.extend_from_slice(&[0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05]);
        expected.extend_from_slice(&[0, 0, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f]);
        assert_eq!(aad.as_bytes(), &expected[..]);

        let gpsi = UeId::parse("msisdn-33612345678").unwrap();
        let aad = AkmaKeyRecord {
            ue: &gpsi,
            ..record
        }
        .associated_data(FORMAT, KekVersion::new(7).unwrap());
        assert_eq!(&aad.as_bytes()[21..24], &[2, 0, 18]);
        assert_eq!(&aad.as_bytes()[24..42], b"msisdn-33612345678");
    }

    /// The largest record fits the buffer: nothing is cut off silently.
    #[test]
    fn the_longest_fields_fit() {
        let realm = format!("{}.example", "a".repeat(60));
        let long_nai = format!(
            "{}@{realm}.{}.{}.org",
            "u".repeat(48),
            "b".repeat(60),
            "c".repeat(60)
        );
        let ue = UeId::parse(&format!("extid-{long_nai}")).unwrap();
        let a_kid = AKid::parse(&long_nai).unwrap();
        let record = AkmaKeyRecord::new(&ue, &a_kid, Timestamp::MAX, Timestamp::MAX);
        let aad = record.associated_data(FORMAT, KekVersion::new(1).unwrap());
        assert_eq!(
            aad.as_bytes().len(),
            16 + 5 + 1 + 2 + ue.to_string().len() + 1 + a_kid.as_str().len() + 16
        );
        assert!(aad.as_bytes().len() <= AKMA_AAD_MAX);
    }
}
