//! UMTS AKA with MILENAGE, as an HSS/AuC and a UE run it (seed 6.x.2.3,
//! prerequisite a: "Network access AKA run is completed").
//!
//! [`Milenage`] is the algorithm set of TS 35.206 §4.1 on AES-128 (the `aes` crate), checked
//! against the TS 35.208 §4.3 conformance data (`tests/vectors.rs`). [`Aka`] is the
//! protocol around it (TS 33.102 §6.3): the AuC makes an authentication vector
//! `(RAND, XRES, CK, IK, AUTN)`; the UE (USIM) checks AUTN and answers RES, CK, IK.
//!
//! Why not the `milenage` crate: its `Milenage` type derives `Debug` over K and OPc (so a
//! `{:?}` prints the subscriber key), caches outputs in plain fields and never zeroizes them.
//! The algorithm is eight AES calls and a few XORs, so it lives here with the project's
//! secret-handling rules: K and OPc are zeroized on drop, CK and IK come out as
//! [`e2m_kdf::Ck`] / [`e2m_kdf::Ik`], and no `Debug` shows key bytes.

#![cfg_attr(not(test), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use aes::Aes128;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use e2m_kdf::{Ck, Ik, Kausf, KdfError, ResStar};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The KDF crate whose `Ck` and `Ik` this crate's outputs are, so that a UE can go on to
/// `e2m_int_key` without a second dependency.
pub use e2m_kdf;

/// A 128-bit secret that is not a session key: the subscriber key K or OPc.
macro_rules! secret128 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name([u8; 16]);

        impl $name {
            /// Takes ownership of the 16 octets.
            pub const fn from_array(bytes: [u8; 16]) -> Self {
                $name(bytes)
            }

            /// Parses 32 hex digits (either case).
            ///
            /// # Errors
            /// [`AkaError::BadHex`] for anything else.
            pub fn from_hex(text: &str) -> Result<Self, AkaError> {
                let mut bytes = [0u8; 16];
                decode_hex(text, &mut bytes)?;
                Ok($name(bytes))
            }

            /// The octets (named so that every use of raw key material is easy to find).
            pub fn expose_secret(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.zeroize();
            }
        }

        impl ZeroizeOnDrop for $name {}

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret128!(
    /// K, the subscriber's long-term key shared by the USIM and the AuC (TS 33.102 §6.3.1).
    SubscriberKey
);
secret128!(
    /// OPc, the operator variant configuration field mixed with K (TS 35.206 §4.1).
    Opc
);

/// Decodes exactly `out.len()` octets of hex; constant-time enough for test keys and
/// never echoes the input in an error.
fn decode_hex(text: &str, out: &mut [u8]) -> Result<(), AkaError> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * out.len() {
        return Err(AkaError::BadHex);
    }
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = hex_value(pair[0]);
        let lo = hex_value(pair[1]);
        match (hi, lo) {
            (Some(hi), Some(lo)) => *slot = (hi << 4) | lo,
            _ => {
                out.zeroize();
                return Err(AkaError::BadHex);
            }
        }
    }
    Ok(())
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Why an AKA step failed. No variant carries key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AkaError {
    /// AUTN's MAC-A does not match XMAC-A: the network is not genuine, or K/OPc differ
    /// (TS 33.102 §6.3.3: the USIM answers "user authentication reject", cause MAC failure).
    #[error("AUTN MAC failure")]
    MacFailure,
    /// AUTN's SQN is not fresh (TS 33.102 §6.3.3 and Annex C: synchronisation failure).
    #[error("AUTN sequence number is not fresh (synchronisation failure)")]
    SyncFailure,
    /// A sequence number exceeds 48 bits.
    #[error("SQN exceeds 48 bits")]
    SqnOutOfRange,
    /// Hex input of the wrong length or with a non-hex character.
    #[error("expected hex of the exact length")]
    BadHex,
    /// The operating system's random generator failed.
    #[error("random number generator failed")]
    Random,
}

/// SQN, the 48-bit sequence number (TS 33.102 §6.3.2 and Annex C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sqn(u64);

impl Sqn {
    /// The largest 48-bit value.
    pub const MAX: u64 = (1 << 48) - 1;

    /// A sequence number.
    ///
    /// # Errors
    /// [`AkaError::SqnOutOfRange`] above 2^48 − 1.
    pub const fn new(value: u64) -> Result<Sqn, AkaError> {
        if value > Self::MAX {
            return Err(AkaError::SqnOutOfRange);
        }
        Ok(Sqn(value))
    }

    /// From its six octets, big-endian.
    pub const fn from_bytes(b: [u8; 6]) -> Sqn {
        Sqn(u64::from_be_bytes([
            0, 0, b[0], b[1], b[2], b[3], b[4], b[5],
        ]))
    }

    /// Its six octets, big-endian.
    pub const fn to_bytes(self) -> [u8; 6] {
        let b = self.0.to_be_bytes();
        [b[2], b[3], b[4], b[5], b[6], b[7]]
    }

    /// Its value.
    pub const fn value(self) -> u64 {
        self.0
    }
}

/// RES (from the UE) or XRES (in the vector): 64 bits with MILENAGE's f2. Compared in
/// constant time; `Debug` shows no octets (XRES is what the serving node must keep secret
/// until it has the UE's answer).
pub struct Res([u8; 8]);

impl Res {
    /// The octets.
    pub fn expose(&self) -> &[u8; 8] {
        &self.0
    }
}

impl PartialEq for Res {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Res {}

impl Drop for Res {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl core::fmt::Debug for Res {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Res(<redacted>)")
    }
}

/// The outputs of f2, f3, f4 and f5 for one RAND (TS 35.206 §4.1).
pub struct F2345 {
    /// f2: RES / XRES.
    pub res: Res,
    /// f3: CK.
    pub ck: Ck,
    /// f4: IK.
    pub ik: Ik,
    /// f5: AK, the anonymity key that conceals SQN in AUTN.
    pub ak: [u8; 6],
}

impl core::fmt::Debug for F2345 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("F2345(<redacted>)")
    }
}

/// MILENAGE keyed for one subscriber (TS 35.206 §4.1, with the default constants
/// r1 = 64, r2 = 0, r3 = 32, r4 = 64, r5 = 96 and c1..c5 = 0, 1, 2, 4, 8 in the last octet).
pub struct Milenage {
    /// E_K: AES-128 with K's key schedule (zeroized on drop by `aes`'s `zeroize` feature).
    cipher: Aes128,
    opc: [u8; 16],
}

impl Drop for Milenage {
    fn drop(&mut self) {
        self.opc.zeroize();
    }
}

impl core::fmt::Debug for Milenage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Milenage(<redacted>)")
    }
}

fn xor16(a: &[u8; 16], b: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// rot(x, r): cyclic left rotation by r bits, r a multiple of 8 (TS 35.206 §4.1).
fn rot(x: &[u8; 16], r_bits: usize) -> [u8; 16] {
    let shift = r_bits / 8;
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = x[(i + shift) % 16];
    }
    out
}

impl Milenage {
    /// MILENAGE for K and OPc (as a USIM or an AuC stores them).
    pub fn new(k: &SubscriberKey, opc: &Opc) -> Milenage {
        Milenage {
            cipher: Aes128::new(&Array::from(*k.expose_secret())),
            opc: *opc.expose_secret(),
        }
    }

    /// OPc = OP ⊕ E_K(OP) (TS 35.206 §4.1).
    pub fn opc_from_op(k: &SubscriberKey, op: &[u8; 16]) -> Opc {
        let cipher = Aes128::new(&Array::from(*k.expose_secret()));
        let mut block = Array::from(*op);
        cipher.encrypt_block(&mut block);
        let mut e: [u8; 16] = block.into();
        let opc = xor16(&e, op);
        e.zeroize();
        Opc(opc)
    }

    fn encrypt(&self, input: [u8; 16]) -> [u8; 16] {
        let mut block = Array::from(input);
        self.cipher.encrypt_block(&mut block);
        block.into()
    }

    /// TEMP = E_K(RAND ⊕ OPc).
    fn temp(&self, rand: &[u8; 16]) -> [u8; 16] {
        self.encrypt(xor16(rand, &self.opc))
    }

    /// OUTn = E_K(rot(TEMP ⊕ OPc, r) ⊕ c) ⊕ OPc for n = 2..5, where c is zero except for
    /// its last octet.
    fn out_n(&self, temp: &[u8; 16], r_bits: usize, c_last: u8) -> [u8; 16] {
        let mut x = rot(&xor16(temp, &self.opc), r_bits);
        x[15] ^= c_last;
        xor16(&self.encrypt(x), &self.opc)
    }

    /// OUT1 = E_K(TEMP ⊕ rot(IN1 ⊕ OPc, r1) ⊕ c1) ⊕ OPc, IN1 = SQN‖AMF‖SQN‖AMF.
    fn out1(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 16] {
        let temp = self.temp(rand);
        let mut in1 = [0u8; 16];
        in1[0..6].copy_from_slice(sqn);
        in1[6..8].copy_from_slice(amf);
        in1[8..14].copy_from_slice(sqn);
        in1[14..16].copy_from_slice(amf);
        let x = xor16(&temp, &rot(&xor16(&in1, &self.opc), 64));
        xor16(&self.encrypt(x), &self.opc)
    }

    /// f1: MAC-A, the network authentication code in AUTN.
    pub fn f1(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 8] {
        let out1 = self.out1(rand, sqn, amf);
        let mut mac = [0u8; 8];
        mac.copy_from_slice(&out1[..8]);
        mac
    }

    /// f1*: MAC-S, the resynchronisation authentication code in AUTS.
    pub fn f1_star(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 8] {
        let out1 = self.out1(rand, sqn, amf);
        let mut mac = [0u8; 8];
        mac.copy_from_slice(&out1[8..]);
        mac
    }

    /// f2 (RES), f3 (CK), f4 (IK) and f5 (AK) for one RAND.
    pub fn f2345(&self, rand: &[u8; 16]) -> F2345 {
        let temp = self.temp(rand);
        let mut out2 = self.out_n(&temp, 0, 1);
        let mut out3 = self.out_n(&temp, 32, 2);
        let mut out4 = self.out_n(&temp, 64, 4);
        let mut res = [0u8; 8];
        res.copy_from_slice(&out2[8..]);
        let mut ak = [0u8; 6];
        ak.copy_from_slice(&out2[..6]);
        let result = F2345 {
            res: Res(res),
            ck: Ck::from_array(out3),
            ik: Ik::from_array(out4),
            ak,
        };
        out2.zeroize();
        out3.zeroize();
        out4.zeroize();
        result
    }

    /// f5*: the anonymity key of AUTS (resynchronisation).
    pub fn f5_star(&self, rand: &[u8; 16]) -> [u8; 6] {
        let temp = self.temp(rand);
        let out5 = self.out_n(&temp, 96, 8);
        let mut ak = [0u8; 6];
        ak.copy_from_slice(&out5[..6]);
        ak
    }
}

/// An authentication vector, as the AuC hands it out (TS 33.102 §6.3.2).
pub struct AuthVector {
    /// RAND, the challenge. Its last four octets are the e2m key id (RAND-LSB32).
    pub rand: [u8; 16],
    /// AUTN = SQN ⊕ AK ‖ AMF ‖ MAC-A.
    pub autn: [u8; 16],
    /// XRES, the expected response.
    pub xres: Res,
    /// CK.
    pub ck: Ck,
    /// IK.
    pub ik: Ik,
}

impl AuthVector {
    /// SQN ⊕ AK, the first six octets of AUTN (an input of K_ASME, CK'/IK' and K_AUSF).
    pub fn sqn_xor_ak(&self) -> [u8; 6] {
        let mut out = [0u8; 6];
        out.copy_from_slice(&self.autn[..6]);
        out
    }

    /// 5G AKA, UDM/ARPF side: K_AUSF of this vector for `serving_network_name`
    /// (TS 33.501 §6.1.3.2 step 1, A.2), the key of the 5G HE AV the AUSF keeps and AKMA
    /// starts from.
    ///
    /// # Errors
    /// [`KdfError`] for an empty or non-NFKC serving network name.
    pub fn kausf(&self, serving_network_name: &str) -> Result<Kausf, KdfError> {
        e2m_kdf::kausf(&self.ck, &self.ik, serving_network_name, &self.sqn_xor_ak())
    }

    /// 5G AKA, UDM/ARPF side: XRES* of this vector for `serving_network_name`
    /// (TS 33.501 A.4), which replaces XRES in the 5G HE AV.
    ///
    /// # Errors
    /// [`KdfError`] for an empty or non-NFKC serving network name.
    pub fn xres_star(&self, serving_network_name: &str) -> Result<ResStar, KdfError> {
        e2m_kdf::res_star(
            &self.ck,
            &self.ik,
            serving_network_name,
            &self.rand,
            self.xres.expose(),
        )
    }
}

impl core::fmt::Debug for AuthVector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // RAND and AUTN travel in clear over the air; XRES, CK and IK do not.
        f.debug_struct("AuthVector")
            .field("rand", &HexBytes(&self.rand))
            .field("autn", &HexBytes(&self.autn))
            .finish_non_exhaustive()
    }
}

struct HexBytes<'a>(&'a [u8]);

impl core::fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What the UE (USIM) returns for an accepted challenge (TS 33.102 §6.3.3).
pub struct AkaResponse {
    /// RES, sent back to the serving node.
    pub res: Res,
    /// CK, kept by the ME (here: the input of `e2m_int_key`, seed "Key derivation rules").
    pub ck: Ck,
    /// IK, likewise.
    pub ik: Ik,
    /// The SQN recovered from AUTN, which the USIM now records as the highest accepted.
    pub sqn: Sqn,
    /// SQN ⊕ AK as AUTN carried it: with CK and IK, the input of K_AUSF (5G AKA).
    pub sqn_xor_ak: [u8; 6],
}

impl AkaResponse {
    /// 5G AKA, UE side: K_AUSF for the serving network name the ME built (TS 33.501
    /// §6.1.3.2 step 6, A.2); equal to the home network's [`AuthVector::kausf`].
    ///
    /// # Errors
    /// [`KdfError`] for an empty or non-NFKC serving network name.
    pub fn kausf(&self, serving_network_name: &str) -> Result<Kausf, KdfError> {
        e2m_kdf::kausf(&self.ck, &self.ik, serving_network_name, &self.sqn_xor_ak)
    }

    /// 5G AKA, UE side: RES* for `rand` (the challenge just answered) and the serving
    /// network name (TS 33.501 A.4).
    ///
    /// # Errors
    /// [`KdfError`] for an empty or non-NFKC serving network name.
    pub fn res_star(
        &self,
        serving_network_name: &str,
        rand: &[u8; 16],
    ) -> Result<ResStar, KdfError> {
        e2m_kdf::res_star(
            &self.ck,
            &self.ik,
            serving_network_name,
            rand,
            self.res.expose(),
        )
    }
}

impl core::fmt::Debug for AkaResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AkaResponse")
            .field("sqn", &self.sqn)
            .finish_non_exhaustive()
    }
}

/// UMTS AKA for one subscriber, on either side: the HSS/AuC makes vectors, the UE answers
/// challenges. Both hold the same K and OPc.
///
/// ```
/// use e2m_aka::{Aka, Opc, Sqn, SubscriberKey};
/// // TS 35.208 test set 1 K and OPc.
/// let k = SubscriberKey::from_hex("465b5ce8b199b49faa5f0a2ee238a6bc")?;
/// let opc = Opc::from_hex("cd63cb71954a9f4e48a5994e37a02baf")?;
/// let auc = Aka::new(&k, &opc, [0xb9, 0xb9]);
/// let usim = Aka::new(&k, &opc, [0xb9, 0xb9]);
/// let rand = [0x23; 16];
/// let av = auc.make_vector(&rand, Sqn::new(32)?);
/// let answer = usim.respond(&av.rand, &av.autn, Some(Sqn::new(31)?))?;
/// assert!(answer.res == av.xres && answer.ck == av.ck && answer.ik == av.ik);
/// # Ok::<(), e2m_aka::AkaError>(())
/// ```
#[derive(Debug)]
pub struct Aka {
    milenage: Milenage,
    amf: [u8; 2],
}

impl Aka {
    /// AKA for subscriber `k`/`opc`, with the AMF the AuC puts in AUTN (e.g. `[0x80, 0x00]`:
    /// the E-UTRAN separation bit of TS 33.401 §6.1.1 set).
    pub fn new(k: &SubscriberKey, opc: &Opc, amf: [u8; 2]) -> Aka {
        Aka {
            milenage: Milenage::new(k, opc),
            amf,
        }
    }

    /// The MILENAGE instance underneath.
    pub fn milenage(&self) -> &Milenage {
        &self.milenage
    }

    /// HSS/AuC: the authentication vector for a given RAND and SQN (TS 33.102 §6.3.2):
    /// MAC = f1(SQN, RAND, AMF), XRES = f2(RAND), CK = f3, IK = f4, AK = f5,
    /// AUTN = SQN ⊕ AK ‖ AMF ‖ MAC.
    pub fn make_vector(&self, rand: &[u8; 16], sqn: Sqn) -> AuthVector {
        let sqn_bytes = sqn.to_bytes();
        let mac = self.milenage.f1(rand, &sqn_bytes, &self.amf);
        let F2345 { res, ck, ik, ak } = self.milenage.f2345(rand);
        let mut autn = [0u8; 16];
        for (i, slot) in autn[..6].iter_mut().enumerate() {
            *slot = sqn_bytes[i] ^ ak[i];
        }
        autn[6..8].copy_from_slice(&self.amf);
        autn[8..].copy_from_slice(&mac);
        AuthVector {
            rand: *rand,
            autn,
            xres: res,
            ck,
            ik,
        }
    }

    /// HSS/AuC: a vector with a fresh RAND from the operating system's generator.
    ///
    /// # Errors
    /// [`AkaError::Random`] if the generator fails.
    #[cfg(feature = "getrandom")]
    #[cfg_attr(docsrs, doc(cfg(feature = "getrandom")))]
    pub fn make_vector_random(&self, sqn: Sqn) -> Result<AuthVector, AkaError> {
        let mut rand = [0u8; 16];
        getrandom::fill(&mut rand).map_err(|_| AkaError::Random)?;
        Ok(self.make_vector(&rand, sqn))
    }

    /// UE (USIM): checks AUTN for RAND and answers (TS 33.102 §6.3.3). AK = f5(RAND)
    /// recovers SQN; XMAC = f1(SQN, RAND, AMF) must equal MAC (compared in constant time);
    /// then SQN must exceed `highest_accepted` (a simplified Annex C freshness check: the
    /// caller keeps the highest SQN it accepted, `None` for a fresh USIM).
    ///
    /// # Errors
    /// [`AkaError::MacFailure`] or [`AkaError::SyncFailure`]; a real UE would answer the
    /// latter with AUTS, which these examples do not need.
    pub fn respond(
        &self,
        rand: &[u8; 16],
        autn: &[u8; 16],
        highest_accepted: Option<Sqn>,
    ) -> Result<AkaResponse, AkaError> {
        let F2345 { res, ck, ik, ak } = self.milenage.f2345(rand);
        let mut sqn_bytes = [0u8; 6];
        for (i, slot) in sqn_bytes.iter_mut().enumerate() {
            *slot = autn[i] ^ ak[i];
        }
        let mut amf = [0u8; 2];
        amf.copy_from_slice(&autn[6..8]);
        let xmac = self.milenage.f1(rand, &sqn_bytes, &amf);
        // Step order of §6.3.3: MAC first (a forged AUTN must not learn anything about
        // the USIM's SQN state), freshness second.
        if !bool::from(xmac.ct_eq(&autn[8..])) {
            return Err(AkaError::MacFailure);
        }
        let sqn = Sqn::from_bytes(sqn_bytes);
        if highest_accepted.is_some_and(|h| sqn <= h) {
            return Err(AkaError::SyncFailure);
        }
        let mut sqn_xor_ak = [0u8; 6];
        sqn_xor_ak.copy_from_slice(&autn[..6]);
        Ok(AkaResponse {
            res,
            ck,
            ik,
            sqn,
            sqn_xor_ak,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rot_is_a_left_rotation() {
        let x: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(rot(&x, 0), x);
        assert_eq!(rot(&x, 32)[0], 4);
        assert_eq!(rot(&x, 96)[0], 12);
        assert_eq!(rot(&x, 96)[4], 0);
    }

    #[test]
    fn debug_hides_secrets() {
        let k = SubscriberKey::from_array([0xab; 16]);
        let opc = Opc::from_array([0xcd; 16]);
        let aka = Aka::new(&k, &opc, [0x80, 0]);
        let av = aka.make_vector(&[0x11; 16], Sqn(1));
        for text in [
            format!("{k:?}"),
            format!("{opc:?}"),
            format!("{aka:?}"),
            format!("{:?}", av.xres),
            format!("{:?}", av.ck),
        ] {
            assert!(!text.contains("abab") && !text.contains("cdcd"), "{text}");
        }
        assert!(format!("{av:?}").contains("1111"));
    }

    #[test]
    fn bad_hex_is_an_error() {
        assert_eq!(SubscriberKey::from_hex("00").err(), Some(AkaError::BadHex));
        assert_eq!(
            Opc::from_hex("zz63cb71954a9f4e48a5994e37a02baf").err(),
            Some(AkaError::BadHex)
        );
        assert_eq!(Sqn::new(1 << 48).err(), Some(AkaError::SqnOutOfRange));
    }
}
