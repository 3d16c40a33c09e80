//! Typed derivations: each names its keys by kind and cites the clause it implements.

use zeroize::Zeroize;

use crate::engine::kdf_checked;
use crate::{
    Ck, CkPrime, E2mIntKey, E2mProfile, Fc, Ik, IkPrime, Kaf, Kakma, Kasme, Kausf, KdfError,
    KdfOutput, Ks, KsNaf, ResStar, text_param,
};

/// Checks a text parameter that must not be empty.
fn non_empty_text(text: &str) -> Result<&[u8], KdfError> {
    if text.is_empty() {
        return Err(KdfError::EmptyText);
    }
    text_param(text)
}

/// Checks a binary parameter's length against the 16-bit length field.
fn octets(index: usize, bytes: &[u8]) -> Result<&[u8], KdfError> {
    if bytes.len() > usize::from(u16::MAX) {
        return Err(KdfError::ParameterTooLong {
            index,
            len: bytes.len(),
        });
    }
    Ok(bytes)
}

/// The one-shot KDF under Key = CK || IK (the Ks copy is wiped when it drops).
fn kdf_ck_ik(ck: &Ck, ik: &Ik, fc: Fc, params: &[&[u8]]) -> KdfOutput {
    kdf_checked(Ks::from_ck_ik(ck, ik).expose_secret(), fc, params)
}

fn split_halves(out: &KdfOutput) -> ([u8; 16], [u8; 16]) {
    let bytes = out.expose_secret();
    let mut first = [0u8; 16];
    let mut second = [0u8; 16];
    first.copy_from_slice(&bytes[..16]);
    second.copy_from_slice(&bytes[16..]);
    (first, second)
}

/// CK' and IK' (TS 33.402 A.2; the same construction as RFC 9048 §3.3 / RFC 5448).
///
/// `Key = CK || IK`, `FC = 0x20`, `P0` = access network identity (e.g. `"WLAN"`),
/// `P1 = SQN ⊕ AK` (6 octets). CK' is the first 128 bits of the output, IK' the last.
/// In Solution #10 the HSS hands CK'/IK' to the serving node instead of CK/IK, so that it
/// cannot compute `e2m_int_key`. Verified against RFC 5448 Appendix C, cases 1–4.
///
/// # Errors
/// [`KdfError::EmptyText`] or [`KdfError::TextNotNormalized`] for a bad network name,
/// [`KdfError::ParameterTooLong`] if it exceeds 65535 octets.
pub fn ck_ik_prime(
    ck: &Ck,
    ik: &Ik,
    access_network_identity: &str,
    sqn_xor_ak: &[u8; 6],
) -> Result<(CkPrime, IkPrime), KdfError> {
    let network = octets(0, non_empty_text(access_network_identity)?)?;
    let out = kdf_ck_ik(ck, ik, Fc::CK_IK_PRIME, &[network, sqn_xor_ak]);
    let (ck_prime, ik_prime) = split_halves(&out);
    Ok((CkPrime::from_array(ck_prime), IkPrime::from_array(ik_prime)))
}

/// K_ASME (TS 33.401 A.2): `Key = CK || IK`, `FC = 0x10`, `P0` = serving network identity
/// (PLMN id, 3 octets as in TS 24.301), `P1 = SQN ⊕ AK` (6 octets).
pub fn kasme(ck: &Ck, ik: &Ik, serving_network_id: &[u8; 3], sqn_xor_ak: &[u8; 6]) -> Kasme {
    let out = kdf_ck_ik(ck, ik, Fc::KASME, &[serving_network_id, sqn_xor_ak]);
    Kasme::from_array(*out.expose_secret())
}

/// Ks_NAF (TS 33.220 B.3): `Key = Ks = CK || IK`, `FC = 0x01`, `P0 = "gba-me"`,
/// `P1 = RAND`, `P2 = IMPI`, `P3 = NAF_Id` (the NAF's FQDN followed by the Ua security
/// protocol identifier, TS 33.220 H.2, given here as octets).
///
/// # Errors
/// [`KdfError`] for an empty or non-NFKC IMPI, or a parameter over 65535 octets.
pub fn ks_naf(ks: &Ks, rand: &[u8; 16], impi: &str, naf_id: &[u8]) -> Result<KsNaf, KdfError> {
    let impi = octets(2, non_empty_text(impi)?)?;
    let naf_id = octets(3, naf_id)?;
    let out = kdf_checked(
        ks.expose_secret(),
        Fc::KS_NAF,
        &[b"gba-me", rand, impi, naf_id],
    );
    Ok(KsNaf::from_array(*out.expose_secret()))
}

/// K_AUSF for 5G AKA (TS 33.501 A.2): `Key = CK || IK`, `FC = 0x6A`, `P0` = serving
/// network name (TS 33.501 §6.1.1.4: `"5G:"` and the SNN-network-identifier of TS 24.501
/// §9.12.1, e.g. `"5G:mnc093.mcc208.3gppnetwork.org"`, the MNC always three digits),
/// `P1 = SQN ⊕ AK` (the first six octets of AUTN; AK = 0 where AK is not used).
///
/// The UDM/ARPF computes it for the 5G HE AV, the UE after accepting AUTN; the AUSF keeps
/// it and derives K_AKMA and the A-TID from it ([`kakma`], [`a_tid`]). `e2m_keyid::akma`
/// builds the serving network name from a PLMN so that the MNC padding cannot be missed.
///
/// # Errors
/// [`KdfError`] for an empty or non-NFKC serving network name, or one over 65535 octets.
pub fn kausf(
    ck: &Ck,
    ik: &Ik,
    serving_network_name: &str,
    sqn_xor_ak: &[u8; 6],
) -> Result<Kausf, KdfError> {
    let name = octets(0, non_empty_text(serving_network_name)?)?;
    let out = kdf_ck_ik(ck, ik, Fc::KAUSF, &[name, sqn_xor_ak]);
    Ok(Kausf::from_array(*out.expose_secret()))
}

/// RES* or XRES* (TS 33.501 A.4): `Key = CK || IK`, `FC = 0x6B`, `P0` = serving network
/// name, `P1 = RAND`, `P2` = RES (UE) or XRES (UDM/ARPF); the 128 least significant bits of
/// the output.
///
/// # Errors
/// [`KdfError::ResLength`] unless `res` is 4 to 16 octets; [`KdfError`] for an empty or
/// non-NFKC serving network name.
pub fn res_star(
    ck: &Ck,
    ik: &Ik,
    serving_network_name: &str,
    rand: &[u8; 16],
    res: &[u8],
) -> Result<ResStar, KdfError> {
    if !(4..=16).contains(&res.len()) {
        return Err(KdfError::ResLength { len: res.len() });
    }
    let name = octets(0, non_empty_text(serving_network_name)?)?;
    let out = kdf_ck_ik(ck, ik, Fc::RES_STAR, &[name, rand, res]);
    let (mut high, low) = split_halves(&out);
    high.as_mut_slice().zeroize();
    Ok(ResStar::from_array(low))
}

/// K_AKMA (TS 33.535 A.2): `Key = K_AUSF`, `FC = 0x80`, `P0 = "AKMA"`, `P1 = SUPI`.
///
/// The SUPI is "the same value as parameter P0 in Annex A.7.0 of TS 33.501" (TS 33.535
/// A.2): for an IMSI the IMSI's digits as a character string (TS 23.003 §2.2, no `imsi-`
/// prefix), for a network specific identifier, GCI or GLI its NAI (TS 23.003 §28.7.2,
/// §28.15.2, §28.16.2). `e2m_keyid::akma::Supi::kdf_param` gives exactly that.
///
/// Not the K_AUSF FC 0x6A: two public projects derive K_AKMA with it (see the crate's
/// `tests/data/akma.txt`, which checks against both mistakes).
///
/// # Errors
/// [`KdfError`] for an empty or non-NFKC SUPI, or one over 65535 octets.
pub fn kakma(kausf: &Kausf, supi: &str) -> Result<Kakma, KdfError> {
    let supi = octets(1, non_empty_text(supi)?)?;
    let out = kdf_checked(kausf.expose_secret(), Fc::KAKMA, &[b"AKMA", supi]);
    Ok(Kakma::from_array(*out.expose_secret()))
}

/// A-TID, the AKMA temporary identifier (TS 33.535 A.3): `Key = K_AUSF`, `FC = 0x81`,
/// `P0 = "A-TID"`, `P1 = SUPI` (encoded as for [`kakma`]). Not a secret: it travels in
/// the A-KID.
///
/// # Errors
/// [`KdfError`] for an empty or non-NFKC SUPI, or one over 65535 octets.
pub fn a_tid(kausf: &Kausf, supi: &str) -> Result<ATid, KdfError> {
    let supi = octets(1, non_empty_text(supi)?)?;
    let out = kdf_checked(kausf.expose_secret(), Fc::A_TID, &[b"A-TID", supi]);
    Ok(ATid(*out.expose_secret()))
}

/// K_AF (TS 33.535 A.4): `Key = K_AKMA`, `FC = 0x82`, `P0 = AF_ID` (the AF's FQDN followed
/// by the five-octet Ua* security protocol identifier of TS 33.220 Annex H, given here as
/// octets; `e2m_keyid::akma::AfId` builds it from validated parts).
///
/// # Errors
/// [`KdfError::ParameterTooLong`] for an AF_ID over 65535 octets.
pub fn kaf(kakma: &Kakma, af_id: &[u8]) -> Result<Kaf, KdfError> {
    let af_id = octets(0, af_id)?;
    let out = kdf_checked(kakma.expose_secret(), Fc::KAF, &[af_id]);
    Ok(Kaf::from_array(*out.expose_secret()))
}

/// The AKMA temporary identifier (TS 33.535 A.3), 256 bits. An identifier, not a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ATid(pub [u8; 32]);

impl core::fmt::Debug for ATid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ATid(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// `e2m_int_key = KDF(CK || IK, FC, "e2m_CIoT")` (seed 6.x.2.1, "Key derivation rules",
/// step 1), with the FC and label of `profile`. Run by the HSS and by the UE's ME.
///
/// ```
/// use e2m_kdf::{Ck, Ik, E2mProfile, e2m_int_key};
/// // TS 35.208 test set 1 CK, IK; the expected value is computed independently by
/// // vectors/generate.py (see tests/data/e2m.txt).
/// let ck = Ck::from_hex("b40ba9a3c58b2a05bbf0d987b21bf8cb").unwrap();
/// let ik = Ik::from_hex("f769bcd751044604127672711c6d3441").unwrap();
/// let key = e2m_int_key(&ck, &ik, &E2mProfile::PROVISIONAL)?;
/// assert_eq!(key.expose_secret().len(), 32);
/// # Ok::<(), e2m_kdf::KdfError>(())
/// ```
///
/// # Errors
/// [`KdfError`] if the profile's label is not a valid text parameter.
pub fn e2m_int_key(ck: &Ck, ik: &Ik, profile: &E2mProfile<'_>) -> Result<E2mIntKey, KdfError> {
    let label = octets(0, non_empty_text(profile.int_key_label)?)?;
    let out = kdf_ck_ik(ck, ik, profile.int_key_fc, &[label]);
    Ok(E2mIntKey::from_array(*out.expose_secret()))
}
