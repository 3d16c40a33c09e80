//! 5G and AKMA identifiers (TS 23.003, TS 33.501, TS 33.535, TS 33.220 Annex H) and the AKMA
//! derivations typed on them.
//!
//! Every type here is validated when it is built, stored inline (no allocator), written in
//! exactly one spelling (`Display`) and parsed back from that spelling only (`FromStr`), so
//! that `parse(format(x)) == x` for every value and `format(parse(s)) == s` whenever
//! `parse(s)` succeeds. Only ASCII is accepted anywhere: every one of these strings is a KDF
//! parameter or travels in one, and ASCII is NFKC as it stands (TS 33.220 B.2.1.2).
//!
//! | type | what | where it is defined |
//! |---|---|---|
//! | [`Plmn`] | MCC and MNC of a PLMN | TS 23.003 §2.2, §2.3 |
//! | [`ServingNetworkName`] | `5G:mnc<MNC>.mcc<MCC>.3gppnetwork.org`, P0 of K_AUSF and RES* | TS 33.501 §6.1.1.4, TS 24.501 §9.12.1 |
//! | [`Realm`] | an NAI realm; the home network domain `5gc.mnc<MNC>.mcc<MCC>.3gppnetwork.org` | RFC 7542 §2.2, TS 23.003 §28.2 |
//! | [`Supi`] | IMSI, or network specific identifier / GCI / GLI as an NAI | TS 23.003 §2.2, §28.7.2; wire form TS 29.571 `Supi` |
//! | [`Gpsi`] | MSISDN or external identifier | TS 23.003 §28.8; wire form TS 29.571 `Gpsi` |
//! | [`UeId`] | a SUPI or a GPSI: whom an AKMA context belongs to | TS 29.535 `AkmaKeyInfo` |
//! | [`RoutingIndicator`] | 1 to 4 decimal digits | TS 23.003 §2.2B |
//! | [`AKid`] | the AKMA key identifier, an NAI | TS 33.535 §6.1 |
//! | [`UaProtocolId`], [`Fqdn`], [`AfId`] | AF_ID = FQDN ‖ Ua* security protocol identifier | TS 33.535 A.4, TS 33.220 Annex H |

use core::fmt;
use core::str::FromStr;

use e2m_kdf::{ATid, Kaf, Kakma, Kausf, KdfError};

/// Why text is not a valid 5G or AKMA identifier. No variant carries the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AkmaIdError {
    /// The identifier is empty.
    #[error("identifier is empty")]
    Empty,
    /// Longer than this kind of identifier allows.
    #[error("identifier is {actual} octets; at most {max} allowed")]
    TooLong {
        /// The maximum for this kind.
        max: usize,
        /// Octets supplied.
        actual: usize,
    },
    /// An MCC is three decimal digits (TS 23.003 §2.2).
    #[error("MCC must be three decimal digits")]
    Mcc,
    /// An MNC is two or three decimal digits (TS 23.003 §2.2).
    #[error("MNC must be two or three decimal digits")]
    Mnc,
    /// An IMSI is 6 to 15 decimal digits.
    #[error("IMSI must be 6 to 15 decimal digits")]
    Imsi,
    /// An MSISDN is 5 to 15 decimal digits (TS 29.571 `Gpsi` pattern).
    #[error("MSISDN must be 5 to 15 decimal digits")]
    Msisdn,
    /// A routing indicator is 1 to 4 decimal digits (TS 23.003 §2.2B).
    #[error("routing indicator must be 1 to 4 decimal digits")]
    RoutingIndicator,
    /// A SUPI or GPSI does not start with a known type prefix (`imsi-`, `nai-`, `gci-`,
    /// `gli-`; `msisdn-`, `extid-`).
    #[error("unknown SUPI or GPSI type prefix")]
    TypePrefix,
    /// Not an NAI `username@realm` of RFC 7542 §2.2 (ASCII only here).
    #[error("not an NAI (username@realm, RFC 7542 section 2.2)")]
    Nai,
    /// Not a realm or FQDN: dot-separated labels of letters, digits and inner hyphens.
    #[error("not a domain name (LDH labels of 1 to 63 octets, at least two)")]
    Domain,
    /// A domain name with an upper-case letter: FQDNs and realms are compared octet for
    /// octet here (they are KDF inputs), so only the lower-case spelling is accepted.
    #[error("domain name has upper-case letters; use the lower-case spelling")]
    UpperCase,
    /// Not a serving network name `5G:<SN Id>` (TS 33.501 §6.1.1.4).
    #[error("not a serving network name (5G:<SN Id>)")]
    ServingNetworkName,
    /// Not an AF_ID in e2m's text form `<fqdn>;ua=<10 hex digits>`.
    #[error("not an AF_ID (<fqdn>;ua=<10 lower-case hex digits>)")]
    AfId,
}

/// ASCII text of at most `N` octets, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Text<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    /// The concatenation of `parts`, which the caller has checked to be ASCII.
    fn concat(parts: &[&[u8]]) -> Result<Self, AkmaIdError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > N {
            return Err(AkmaIdError::TooLong {
                max: N,
                actual: total,
            });
        }
        let mut bytes = [0u8; N];
        let mut at = 0;
        for p in parts {
            bytes[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        // `total` is at most N, and every N here fits a u16.
        Ok(Text {
            len: total as u16,
            bytes,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn as_str(&self) -> &str {
        // Built from ASCII only.
        core::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

fn check_len(text: &str, max: usize) -> Result<(), AkmaIdError> {
    if text.is_empty() {
        return Err(AkmaIdError::Empty);
    }
    if text.len() > max {
        return Err(AkmaIdError::TooLong {
            max,
            actual: text.len(),
        });
    }
    Ok(())
}

fn all_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

/// RFC 7542 §2.2 `utf8-atext`, ASCII part: letters, digits and ``!#$%&'*+-/=?^_`{|}~``.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// RFC 7542 §2.2 `string = utf8-atext *( "." utf8-atext )`, ASCII only: non-empty runs of
/// atext separated by single dots.
fn check_nai_username(user: &str) -> Result<(), AkmaIdError> {
    if user.is_empty()
        || user
            .split('.')
            .any(|part| part.is_empty() || !part.bytes().all(is_atext))
    {
        return Err(AkmaIdError::Nai);
    }
    Ok(())
}

/// A domain name as an NAI realm (RFC 7542 §2.2 `realm = 1*( label "." ) label`) or FQDN:
/// labels of 1 to 63 letters, digits and inner hyphens, at least two labels, lower case.
fn check_domain(domain: &str) -> Result<(), AkmaIdError> {
    let mut labels = 0;
    for label in domain.split('.') {
        let bytes = label.as_bytes();
        if bytes.is_empty()
            || bytes.len() > 63
            || bytes.first() == Some(&b'-')
            || bytes.last() == Some(&b'-')
            || !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            return Err(AkmaIdError::Domain);
        }
        labels += 1;
    }
    if labels < 2 {
        return Err(AkmaIdError::Domain);
    }
    if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(AkmaIdError::UpperCase);
    }
    Ok(())
}

/// An NAI `username@realm`: the position of the one `@`, after checking both sides.
fn check_nai(nai: &str) -> Result<usize, AkmaIdError> {
    let at = nai.find('@').ok_or(AkmaIdError::Nai)?;
    let (user, realm) = (&nai[..at], &nai[at + 1..]);
    check_nai_username(user)?;
    check_domain(realm).map_err(|e| match e {
        AkmaIdError::UpperCase => e,
        _ => AkmaIdError::Nai,
    })?;
    Ok(at)
}

macro_rules! text_type_common {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = AkmaIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

/// A PLMN identity: MCC (three digits) and MNC (two or three digits), TS 23.003 §2.2.
///
/// A two-digit MNC and the same digits with a leading zero are different MNCs on the radio
/// (TS 24.008 codes the digit count), but every 5G name below writes the MNC with three
/// digits (TS 24.501 §9.12.1, TS 23.003 §28.2), so both give the same names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Plmn {
    mcc: [u8; 3],
    mnc: [u8; 3],
    mnc_digits: u8,
}

impl Plmn {
    /// A PLMN from its MCC and MNC as decimal digits.
    ///
    /// # Errors
    /// [`AkmaIdError::Mcc`] or [`AkmaIdError::Mnc`].
    pub fn new(mcc: &str, mnc: &str) -> Result<Plmn, AkmaIdError> {
        if mcc.len() != 3 || !all_digits(mcc) {
            return Err(AkmaIdError::Mcc);
        }
        if !(2..=3).contains(&mnc.len()) || !all_digits(mnc) {
            return Err(AkmaIdError::Mnc);
        }
        let mut plmn = Plmn {
            mcc: [0; 3],
            mnc: [0; 3],
            mnc_digits: mnc.len() as u8,
        };
        plmn.mcc.copy_from_slice(mcc.as_bytes());
        plmn.mnc[..mnc.len()].copy_from_slice(mnc.as_bytes());
        Ok(plmn)
    }

    /// The MCC, three digits.
    pub fn mcc(&self) -> &str {
        core::str::from_utf8(&self.mcc).unwrap_or_default()
    }

    /// The MNC as given: two or three digits.
    pub fn mnc(&self) -> &str {
        core::str::from_utf8(&self.mnc[..usize::from(self.mnc_digits)]).unwrap_or_default()
    }

    /// The MNC with three digits, a leading zero added to a two-digit one (TS 23.003 §28.2,
    /// TS 24.501 §9.12.1).
    fn mnc3(&self) -> [u8; 3] {
        if self.mnc_digits == 3 {
            self.mnc
        } else {
            [b'0', self.mnc[0], self.mnc[1]]
        }
    }

    /// The serving network name of this PLMN as the serving network (TS 33.501 §6.1.1.4):
    /// `5G:mnc<MNC>.mcc<MCC>.3gppnetwork.org`, the MNC with three digits.
    ///
    /// ```
    /// use e2m_keyid::akma::Plmn;
    /// let plmn = Plmn::new("208", "93")?;
    /// assert_eq!(plmn.serving_network_name().as_str(), "5G:mnc093.mcc208.3gppnetwork.org");
    /// # Ok::<(), e2m_keyid::akma::AkmaIdError>(())
    /// ```
    pub fn serving_network_name(&self) -> ServingNetworkName {
        let mnc = self.mnc3();
        ServingNetworkName(Text::from_known(&[
            b"5G:mnc",
            &mnc,
            b".mcc",
            &self.mcc,
            b".3gppnetwork.org",
        ]))
    }

    /// The home network domain of this PLMN (TS 23.003 §28.2):
    /// `5gc.mnc<MNC>.mcc<MCC>.3gppnetwork.org`, the realm of an IMSI-based SUCI in NAI form
    /// (§28.7.3) and, here, of the A-KID of a UE of this home network.
    pub fn home_network_domain(&self) -> Realm {
        let mnc = self.mnc3();
        Realm(Text::from_known(&[
            b"5gc.mnc",
            &mnc,
            b".mcc",
            &self.mcc,
            b".3gppnetwork.org",
        ]))
    }
}

impl<const N: usize> Text<N> {
    /// For compile-time sized parts that always fit (the PLMN names: 33 octets).
    fn from_known(parts: &[&[u8]]) -> Self {
        Self::concat(parts).unwrap_or(Text {
            len: 0,
            bytes: [0; N],
        })
    }
}

impl fmt::Debug for Plmn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plmn({}-{})", self.mcc(), self.mnc())
    }
}

/// The serving network name, `5G:` followed by the SN Id (TS 33.501 §6.1.1.4): P0 of K_AUSF
/// (A.2) and RES*/XRES* (A.4). At most 255 octets, ASCII, no white space or controls.
///
/// [`Plmn::serving_network_name`] builds the PLMN form; [`ServingNetworkName::parse`]
/// accepts any `5G:<SN Id>` (the SNPN forms of TS 33.501 Annex I.3 included), so that a name
/// received from a serving network can be used exactly as it came.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServingNetworkName(Text<255>);

impl ServingNetworkName {
    /// The most octets a serving network name may have here.
    pub const MAX_LEN: usize = 255;

    /// Parses `5G:<SN Id>`.
    ///
    /// # Errors
    /// [`AkmaIdError::ServingNetworkName`], or a length error.
    pub fn parse(text: &str) -> Result<ServingNetworkName, AkmaIdError> {
        check_len(text, Self::MAX_LEN)?;
        let id = text
            .strip_prefix("5G:")
            .ok_or(AkmaIdError::ServingNetworkName)?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AkmaIdError::ServingNetworkName);
        }
        Ok(ServingNetworkName(Text::concat(&[text.as_bytes()])?))
    }

    /// The name as text (the KDF parameter).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

text_type_common!(ServingNetworkName);

/// An NAI realm / domain name (RFC 7542 §2.2): the home network identifier in an A-KID,
/// the realm of an NAI SUPI. At most 253 octets, lower-case LDH labels, at least two.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Realm(Text<253>);

impl Realm {
    /// The most octets of a realm (RFC 7542 §2.2 bounds the whole NAI to 253).
    pub const MAX_LEN: usize = 253;

    /// Parses a realm.
    ///
    /// # Errors
    /// [`AkmaIdError::Domain`], [`AkmaIdError::UpperCase`] or a length error.
    pub fn parse(text: &str) -> Result<Realm, AkmaIdError> {
        check_len(text, Self::MAX_LEN)?;
        check_domain(text)?;
        Ok(Realm(Text::concat(&[text.as_bytes()])?))
    }

    /// The realm as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

text_type_common!(Realm);

/// The type of a SUPI (TS 23.501 §5.9.2; TS 29.571 `Supi` pattern prefixes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[non_exhaustive]
pub enum SupiType {
    /// An IMSI (`imsi-` on the wire).
    Imsi,
    /// A network specific identifier, an NAI (`nai-`).
    Nai,
    /// A Global Cable Identifier in NAI form (`gci-`, TS 23.003 §28.15.2).
    Gci,
    /// A Global Line Identifier in NAI form (`gli-`, TS 23.003 §28.16.2).
    Gli,
}

impl SupiType {
    const fn prefix(self) -> &'static str {
        match self {
            SupiType::Imsi => "imsi-",
            SupiType::Nai => "nai-",
            SupiType::Gci => "gci-",
            SupiType::Gli => "gli-",
        }
    }
}

/// The Subscription Permanent Identifier (TS 23.501 §5.9.2).
///
/// Two spellings, one value: the wire form of TS 29.571 (`imsi-001010123456789`,
/// `nai-user@realm`, `gci-…`, `gli-…`; [`Display`](fmt::Display) and [`Supi::parse`]) and the
/// KDF parameter ([`Supi::kdf_param`]): the IMSI's digits, or the NAI, without the type
/// prefix, as TS 33.501 A.7.0 defines P0 and TS 33.535 A.2/A.3 reuse it for K_AKMA and the
/// A-TID.
///
/// ```
/// use e2m_keyid::akma::Supi;
/// let supi: Supi = "imsi-208930000000001".parse()?;
/// assert_eq!(supi.kdf_param(), b"208930000000001");
/// assert_eq!(supi.to_string(), "imsi-208930000000001");
/// # Ok::<(), e2m_keyid::akma::AkmaIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Supi {
    kind: SupiType,
    value: Text<253>,
}

impl Supi {
    /// The most octets of the value (the NAI bound of RFC 7542 §2.2; an IMSI has 15).
    pub const MAX_VALUE_LEN: usize = 253;

    /// The SUPI of an IMSI (6 to 15 digits).
    ///
    /// # Errors
    /// [`AkmaIdError::Imsi`] or a length error.
    pub fn imsi(digits: &str) -> Result<Supi, AkmaIdError> {
        check_len(digits, 15)?;
        if digits.len() < 6 || !all_digits(digits) {
            return Err(AkmaIdError::Imsi);
        }
        Ok(Supi {
            kind: SupiType::Imsi,
            value: Text::concat(&[digits.as_bytes()])?,
        })
    }

    /// A SUPI of type `kind` holding an NAI (`Nai`, `Gci`, `Gli`).
    ///
    /// # Errors
    /// [`AkmaIdError::Nai`] for text that is not an NAI (or `kind` = `Imsi`), or a length
    /// error.
    pub fn nai(kind: SupiType, nai: &str) -> Result<Supi, AkmaIdError> {
        if kind == SupiType::Imsi {
            return Err(AkmaIdError::Nai);
        }
        check_len(nai, Self::MAX_VALUE_LEN)?;
        check_nai(nai)?;
        Ok(Supi {
            kind,
            value: Text::concat(&[nai.as_bytes()])?,
        })
    }

    /// Parses the wire form of TS 29.571 (`imsi-…`, `nai-…`, `gci-…`, `gli-…`).
    ///
    /// TS 29.571's pattern also admits any other string (`|.+`): this type does not, so
    /// that every SUPI it holds has a defined KDF parameter.
    ///
    /// # Errors
    /// [`AkmaIdError::TypePrefix`], or what [`Supi::imsi`] / [`Supi::nai`] return.
    pub fn parse(text: &str) -> Result<Supi, AkmaIdError> {
        check_len(text, Self::MAX_VALUE_LEN + 5)?;
        for kind in [SupiType::Imsi, SupiType::Nai, SupiType::Gci, SupiType::Gli] {
            if let Some(value) = text.strip_prefix(kind.prefix()) {
                return match kind {
                    SupiType::Imsi => Supi::imsi(value),
                    _ => Supi::nai(kind, value),
                };
            }
        }
        Err(AkmaIdError::TypePrefix)
    }

    /// The SUPI type.
    pub fn kind(&self) -> SupiType {
        self.kind
    }

    /// The value without the type prefix: the IMSI digits or the NAI.
    pub fn value(&self) -> &str {
        self.value.as_str()
    }

    /// P1 of K_AKMA and the A-TID (TS 33.535 A.2, A.3): P0 of TS 33.501 A.7.0, the IMSI
    /// (TS 23.003 §2.2) or the NAI as a character string, ASCII here.
    pub fn kdf_param(&self) -> &[u8] {
        self.value.as_bytes()
    }
}

impl fmt::Display for Supi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.prefix())?;
        f.write_str(self.value())
    }
}

impl fmt::Debug for Supi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Supi(\"{self}\")")
    }
}

impl FromStr for Supi {
    type Err = AkmaIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Supi::parse(s)
    }
}

/// The Generic Public Subscription Identifier (TS 23.501 §5.9.8), in the wire form of
/// TS 29.571: `msisdn-<5 to 15 digits>` or `extid-<local>@<domain>` (TS 23.003 §19.7.2).
/// What an AF outside the operator's domain learns instead of the SUPI.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gpsi(Text<260>);

impl Gpsi {
    /// The most octets of the wire form (`extid-` and a 253-octet NAI; an MSISDN is shorter).
    pub const MAX_LEN: usize = 259;

    /// Parses the wire form.
    ///
    /// TS 29.571's pattern also admits any other string (`|.+`): this type does not.
    ///
    /// # Errors
    /// [`AkmaIdError::TypePrefix`], [`AkmaIdError::Msisdn`], [`AkmaIdError::Nai`] or a
    /// length error.
    pub fn parse(text: &str) -> Result<Gpsi, AkmaIdError> {
        check_len(text, Self::MAX_LEN)?;
        if let Some(digits) = text.strip_prefix("msisdn-") {
            if !(5..=15).contains(&digits.len()) || !all_digits(digits) {
                return Err(AkmaIdError::Msisdn);
            }
        } else if let Some(ext) = text.strip_prefix("extid-") {
            check_len(ext, 253)?;
            check_nai(ext)?;
        } else {
            return Err(AkmaIdError::TypePrefix);
        }
        Ok(Gpsi(Text::concat(&[text.as_bytes()])?))
    }

    /// The wire form.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

text_type_common!(Gpsi);

/// The UE an AKMA context belongs to: its SUPI or its GPSI (TS 29.535 `AkmaKeyInfo` carries
/// exactly one; TS 33.535 §6.1 registers K_AKMA under the SUPI, later releases also allow
/// the GPSI).
///
/// One text form for both: the TS 29.571 wire form of the one it holds. The two sets of
/// type prefixes (`imsi-`, `nai-`, `gci-`, `gli-`; `msisdn-`, `extid-`) do not meet, so
/// [`UeId::parse`] always knows which one it reads, and a store may key its contexts by
/// this text alone.
///
/// ```
/// use e2m_keyid::akma::UeId;
/// let supi: UeId = "imsi-208930000000001".parse()?;
/// let gpsi: UeId = "msisdn-33612345678".parse()?;
/// assert!(matches!(supi, UeId::Supi(_)) && matches!(gpsi, UeId::Gpsi(_)));
/// assert_eq!(gpsi.to_string(), "msisdn-33612345678");
/// # Ok::<(), e2m_keyid::akma::AkmaIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UeId {
    /// The SUPI (the AUSF's normal case).
    Supi(Supi),
    /// The GPSI.
    Gpsi(Gpsi),
}

impl UeId {
    /// The most octets of the text form (a GPSI's; a SUPI's is at most 258).
    pub const MAX_LEN: usize = Gpsi::MAX_LEN;

    /// Parses the wire form of a SUPI or of a GPSI, told apart by their type prefixes.
    ///
    /// # Errors
    /// What [`Supi::parse`] or [`Gpsi::parse`] return; [`AkmaIdError::TypePrefix`] for a
    /// prefix of neither.
    pub fn parse(text: &str) -> Result<UeId, AkmaIdError> {
        if text.starts_with("msisdn-") || text.starts_with("extid-") {
            Gpsi::parse(text).map(UeId::Gpsi)
        } else {
            Supi::parse(text).map(UeId::Supi)
        }
    }

    /// The SUPI, if this is one.
    pub fn supi(&self) -> Option<&Supi> {
        match self {
            UeId::Supi(supi) => Some(supi),
            UeId::Gpsi(_) => None,
        }
    }

    /// The GPSI, if this is one.
    pub fn gpsi(&self) -> Option<&Gpsi> {
        match self {
            UeId::Gpsi(gpsi) => Some(gpsi),
            UeId::Supi(_) => None,
        }
    }
}

impl From<Supi> for UeId {
    fn from(supi: Supi) -> UeId {
        UeId::Supi(supi)
    }
}

impl From<Gpsi> for UeId {
    fn from(gpsi: Gpsi) -> UeId {
        UeId::Gpsi(gpsi)
    }
}

impl fmt::Display for UeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UeId::Supi(supi) => fmt::Display::fmt(supi, f),
            UeId::Gpsi(gpsi) => fmt::Display::fmt(gpsi, f),
        }
    }
}

impl fmt::Debug for UeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UeId::Supi(supi) => fmt::Debug::fmt(supi, f),
            UeId::Gpsi(gpsi) => fmt::Debug::fmt(gpsi, f),
        }
    }
}

impl FromStr for UeId {
    type Err = AkmaIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UeId::parse(s)
    }
}

/// The routing indicator: 1 to 4 decimal digits that, with the home network identifier,
/// route to the AUSF and UDM instances serving the subscriber (TS 23.003 §2.2B). The UDM
/// hands it to the AUSF with the AKMA indication (TS 33.535 §6.1 step 2); it is part of the
/// A-KID's username. `0` where none is provisioned.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoutingIndicator(Text<4>);

impl RoutingIndicator {
    /// Parses 1 to 4 decimal digits.
    ///
    /// # Errors
    /// [`AkmaIdError::RoutingIndicator`].
    pub fn parse(text: &str) -> Result<RoutingIndicator, AkmaIdError> {
        if !(1..=4).contains(&text.len()) || !all_digits(text) {
            return Err(AkmaIdError::RoutingIndicator);
        }
        Ok(RoutingIndicator(Text::concat(&[text.as_bytes()])?))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

text_type_common!(RoutingIndicator);

/// The AKMA key identifier (TS 33.535 §6.1): an NAI `username@realm` (RFC 7542 §2.2) whose
/// username holds the routing indicator and the A-TID and whose realm holds the home
/// network identifier. It names one K_AKMA; the AF passes it to the AAnF, which finds the
/// context by it.
///
/// Two ways in:
/// * [`AKid::parse`] accepts any NAI of at most 253 ASCII octets. The AAnF and the AF never
///   need more: they match an A-KID octet for octet and route on its realm, so they take
///   whatever encoding of the username the UE and AUSF of a network agree on.
/// * [`AKid::new`] builds one from its parts in e2m's encoding of the username,
///   `rid<RID>.atid<A-TID as 64 lower-case hex digits>` (the `rid` tag as in the SUCI NAI of
///   TS 23.003 §28.7.3), and [`AKid::a_tid`] / [`AKid::routing_indicator`] read those parts
///   back. TS 33.535 §6.1 says what the username *includes*, not how it is spelled: this is
///   the spelling our UE and AUSF share, documented so that another implementation can
///   produce it; replace it only on both sides. **Provisional**: no public text or
///   implementation found so far fixes the spelling (TS 33.535 §6.1 names the parts only;
///   no A-KID clause of TS 23.003 was found in the copies available; UERANSIM derives
///   K_AKMA but no A-KID; open5gs's AKMA work is an unmerged draft, free5gc's a
///   proposal). GBA's B-TID, by analogy, writes its random part in base64 (TS 33.220
///   §4.5.2), which may be what a later 3GPP text chooses.
///
/// ```
/// use e2m_keyid::akma::{AKid, Plmn, RoutingIndicator};
/// use e2m_keyid::e2m_kdf::ATid;
/// let a_kid = AKid::new(
///     &RoutingIndicator::parse("0")?,
///     &ATid([0xab; 32]),
///     &Plmn::new("208", "93")?.home_network_domain(),
/// )?;
/// assert!(a_kid.as_str().starts_with("rid0.atidabab"));
/// assert!(a_kid.as_str().ends_with("@5gc.mnc093.mcc208.3gppnetwork.org"));
/// assert_eq!(a_kid.a_tid(), Some(ATid([0xab; 32])));
/// assert_eq!(AKid::parse(a_kid.as_str())?, a_kid);
/// # Ok::<(), e2m_keyid::akma::AkmaIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AKid {
    text: Text<253>,
    at: u8,
}

impl AKid {
    /// The most octets of an A-KID (RFC 7542 §2.2).
    pub const MAX_LEN: usize = 253;

    /// Parses any NAI `username@realm` (ASCII, at most 253 octets, lower-case realm).
    ///
    /// # Errors
    /// [`AkmaIdError::Nai`], [`AkmaIdError::UpperCase`] or a length error.
    pub fn parse(text: &str) -> Result<AKid, AkmaIdError> {
        check_len(text, Self::MAX_LEN)?;
        let at = check_nai(text)?;
        Ok(AKid {
            text: Text::concat(&[text.as_bytes()])?,
            // The '@' is within 253 octets of the start.
            at: at as u8,
        })
    }

    /// The A-KID of `a_tid` for a UE with routing indicator `rid` in the home network whose
    /// realm is `home` (for an IMSI: [`Plmn::home_network_domain`]; for an NAI SUPI: its
    /// realm), in e2m's username encoding (see the type's documentation).
    ///
    /// # Errors
    /// [`AkmaIdError::TooLong`] when the A-KID would exceed 253 octets (a realm of more
    /// than 176 octets leaves no room for the username).
    pub fn new(rid: &RoutingIndicator, a_tid: &ATid, home: &Realm) -> Result<AKid, AkmaIdError> {
        let mut hex = [0u8; 64];
        // 32 octets fill the 64-digit buffer exactly, so encoding cannot fail.
        let _ = base16ct::lower::encode(&a_tid.0, &mut hex);
        let text = Text::concat(&[
            b"rid",
            rid.as_str().as_bytes(),
            b".atid",
            &hex,
            b"@",
            home.as_str().as_bytes(),
        ])?;
        let user_len = 3 + rid.as_str().len() + 5 + hex.len();
        Ok(AKid {
            text,
            // At most 76.
            at: user_len as u8,
        })
    }

    /// The A-KID as text.
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The username (before the `@`).
    pub fn username(&self) -> &str {
        &self.as_str()[..usize::from(self.at)]
    }

    /// The realm (after the `@`): where the AF's request is routed.
    pub fn realm(&self) -> &str {
        &self.as_str()[usize::from(self.at) + 1..]
    }

    /// The username's two parts in e2m's encoding, if it is in that encoding.
    fn e2m_parts(&self) -> Option<(&str, &str)> {
        let user = self.username().strip_prefix("rid")?;
        let (rid, a_tid) = user.split_once(".atid")?;
        Some((rid, a_tid))
    }

    /// The A-TID, if the username is in e2m's encoding.
    pub fn a_tid(&self) -> Option<ATid> {
        let (_, hex) = self.e2m_parts()?;
        if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut out = [0u8; 32];
        base16ct::lower::decode(hex, &mut out).ok()?;
        Some(ATid(out))
    }

    /// The routing indicator, if the username is in e2m's encoding.
    pub fn routing_indicator(&self) -> Option<RoutingIndicator> {
        let (rid, _) = self.e2m_parts()?;
        self.a_tid()?;
        RoutingIndicator::parse(rid).ok()
    }
}

text_type_common!(AKid);

/// A Ua (here Ua*) security protocol identifier: five octets, the first naming the
/// organisation that specifies the protocol, the other four the protocol (TS 33.220 H.1).
/// The named constants are 3GPP's (TS 33.220 H.3); any other value can be built.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UaProtocolId(pub [u8; 5]);

impl UaProtocolId {
    /// (0x01,0x00,0x00,0x00,0x00): Ua security protocol of TS 33.221 (TS 33.220 H.3).
    pub const TS_33_221: UaProtocolId = UaProtocolId([0x01, 0x00, 0x00, 0x00, 0x00]);
    /// (0x01,0x00,0x00,0x00,0x02): HTTP digest authentication of TS 24.109, unless used in
    /// the context of another Ua protocol of the list (TS 33.220 H.3).
    pub const HTTP_DIGEST: UaProtocolId = UaProtocolId([0x01, 0x00, 0x00, 0x00, 0x02]);
    /// (0x01,0x00,0x00,0x00,0x07): shared-key TLS 1.3 of TS 33.222 §5.4.0.2 (TS 33.220 H.3).
    pub const TLS13_SHARED_KEY: UaProtocolId = UaProtocolId([0x01, 0x00, 0x00, 0x00, 0x07]);
    /// (0x01,0x00,0x01,0xC0,0xA8): shared-key (D)TLS 1.2 of TS 33.222 with the cipher suite
    /// `TLS_PSK_WITH_AES_128_CCM_8` (0xC0,0xA8, RFC 6655): the suite e2m's DTLS endpoints
    /// use. See [`UaProtocolId::tls12_psk`].
    pub const TLS12_PSK_WITH_AES_128_CCM_8: UaProtocolId = UaProtocolId::tls12_psk(0xC0A8);

    /// (0x01,0x00,0x01,yy,zz): the TLS 1.2 shared-key protocols of TS 33.222 (§5.3
    /// "Shared key-based UE authentication with certificate-based NAF authentication", §5.4
    /// "Shared key-based mutual authentication between UE and NAF"), where yy,zz is the
    /// two-octet code of the TLS cipher suite in use (TS 33.220 H.3).
    pub const fn tls12_psk(cipher_suite: u16) -> UaProtocolId {
        let [yy, zz] = cipher_suite.to_be_bytes();
        UaProtocolId([0x01, 0x00, 0x01, yy, zz])
    }
}

impl fmt::Debug for UaProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UaProtocolId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A fully qualified domain name: lower-case LDH labels, at least two, at most 253 octets,
/// no trailing dot. The FQDN of an AF, as in AF_ID and in the AF's certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fqdn(Text<253>);

impl Fqdn {
    /// The most octets of an FQDN (RFC 1035 §2.3.4, less the final dot).
    pub const MAX_LEN: usize = 253;

    /// Parses an FQDN.
    ///
    /// # Errors
    /// [`AkmaIdError::Domain`], [`AkmaIdError::UpperCase`] or a length error.
    pub fn parse(text: &str) -> Result<Fqdn, AkmaIdError> {
        check_len(text, Self::MAX_LEN)?;
        check_domain(text)?;
        Ok(Fqdn(Text::concat(&[text.as_bytes()])?))
    }

    /// The FQDN as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

text_type_common!(Fqdn);

/// AF_ID = FQDN of the AF ‖ Ua* security protocol identifier (TS 33.535 A.4; the identifier
/// is the Ua security protocol identifier of TS 33.220 Annex H): P0 of K_AF.
///
/// Text form (the `afId` of the JSON binding): `<fqdn>;ua=<10 lower-case hex digits>`.
/// TS 29.522 types `afId` as a plain string and no 3GPP text spells AF_ID's five binary
/// octets in it; this is e2m's spelling, and it keeps both parts, since K_AF depends on both.
///
/// ```
/// use e2m_keyid::akma::{AfId, Fqdn, UaProtocolId};
/// let af = AfId::new(Fqdn::parse("af.example.com")?, UaProtocolId::TLS12_PSK_WITH_AES_128_CCM_8);
/// assert_eq!(af.to_string(), "af.example.com;ua=010001c0a8");
/// assert_eq!(af.kdf_param(), b"af.example.com\x01\x00\x01\xc0\xa8");
/// assert_eq!("af.example.com;ua=010001c0a8".parse::<AfId>()?, af);
/// # Ok::<(), e2m_keyid::akma::AkmaIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AfId {
    fqdn: Fqdn,
    ua: UaProtocolId,
}

impl AfId {
    /// The AF_ID of an AF and the Ua* protocol it runs with the UE.
    pub fn new(fqdn: Fqdn, ua: UaProtocolId) -> AfId {
        AfId { fqdn, ua }
    }

    /// Parses the text form `<fqdn>;ua=<10 lower-case hex digits>`.
    ///
    /// # Errors
    /// [`AkmaIdError::AfId`], or what [`Fqdn::parse`] returns for the FQDN.
    pub fn parse(text: &str) -> Result<AfId, AkmaIdError> {
        let (fqdn, ua) = text.split_once(";ua=").ok_or(AkmaIdError::AfId)?;
        if ua.len() != 10 || ua.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(AkmaIdError::AfId);
        }
        let mut id = [0u8; 5];
        base16ct::lower::decode(ua, &mut id).map_err(|_| AkmaIdError::AfId)?;
        Ok(AfId {
            fqdn: Fqdn::parse(fqdn)?,
            ua: UaProtocolId(id),
        })
    }

    /// The AF's FQDN.
    pub fn fqdn(&self) -> &Fqdn {
        &self.fqdn
    }

    /// The Ua* security protocol identifier.
    pub fn ua_protocol(&self) -> UaProtocolId {
        self.ua
    }

    /// P0 of K_AF: the FQDN's octets followed by the five octets of the protocol identifier.
    pub fn kdf_param(&self) -> AfIdOctets {
        let fqdn = self.fqdn.as_str().as_bytes();
        let mut bytes = [0u8; Fqdn::MAX_LEN + 5];
        bytes[..fqdn.len()].copy_from_slice(fqdn);
        bytes[fqdn.len()..fqdn.len() + 5].copy_from_slice(&self.ua.0);
        AfIdOctets {
            bytes,
            len: fqdn.len() + 5,
        }
    }
}

impl fmt::Display for AfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};ua=", self.fqdn)?;
        for b in self.ua.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for AfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AfId(\"{self}\")")
    }
}

impl FromStr for AfId {
    type Err = AkmaIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AfId::parse(s)
    }
}

/// The octets of an AF_ID ([`AfId::kdf_param`]), inline.
#[derive(Clone, Copy)]
pub struct AfIdOctets {
    bytes: [u8; Fqdn::MAX_LEN + 5],
    len: usize,
}

impl core::ops::Deref for AfIdOctets {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl PartialEq<[u8]> for AfIdOctets {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for AfIdOctets {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == other[..]
    }
}

impl fmt::Debug for AfIdOctets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AfIdOctets({:?})", &**self)
    }
}

/// K_AKMA for `supi` from `kausf` (TS 33.535 A.2, FC 0x80), on the typed SUPI: the UE after
/// primary authentication, the AUSF before registering the key with the AAnF.
///
/// # Errors
/// None in practice (a [`Supi`] is always a valid text parameter); the [`KdfError`] of
/// [`e2m_kdf::kakma`] is passed on.
pub fn kakma(kausf: &Kausf, supi: &Supi) -> Result<Kakma, KdfError> {
    e2m_kdf::kakma(kausf, supi.value())
}

/// The A-TID for `supi` from `kausf` (TS 33.535 A.3, FC 0x81).
///
/// # Errors
/// As [`kakma`].
pub fn a_tid(kausf: &Kausf, supi: &Supi) -> Result<ATid, KdfError> {
    e2m_kdf::a_tid(kausf, supi.value())
}

/// K_AF for `af_id` from `kakma` (TS 33.535 A.4, FC 0x82): the UE for the AF it connects
/// to, the AAnF for the AF it authenticated.
///
/// # Errors
/// None in practice (an AF_ID is at most 258 octets); the [`KdfError`] of
/// [`e2m_kdf::kaf`] is passed on.
pub fn kaf(kakma: &Kakma, af_id: &AfId) -> Result<Kaf, KdfError> {
    e2m_kdf::kaf(kakma, &af_id.kdf_param())
}

/// What the UE and the AUSF derive from K_AUSF after a primary authentication with AKMA
/// (TS 33.535 §6.1 step 3): K_AKMA and the A-KID.
///
/// ```
/// use e2m_keyid::akma::{AkmaAnchor, Plmn, RoutingIndicator, Supi};
/// use e2m_keyid::e2m_kdf::Kausf;
/// let supi = Supi::imsi("208930000000001")?;
/// let home = Plmn::new("208", "93")?.home_network_domain();
/// let anchor = AkmaAnchor::derive(&Kausf::from_array([7; 32]), &supi, &RoutingIndicator::parse("0")?, &home)?;
/// assert_eq!(anchor.a_kid.realm(), "5gc.mnc093.mcc208.3gppnetwork.org");
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AkmaAnchor {
    /// K_AKMA (TS 33.535 A.2).
    pub kakma: Kakma,
    /// The A-KID (TS 33.535 §6.1), carrying the A-TID (A.3).
    pub a_kid: AKid,
}

impl AkmaAnchor {
    /// K_AKMA and the A-KID of `supi` from `kausf`.
    ///
    /// # Errors
    /// [`AkmaAnchorError::Kdf`] (not in practice, see [`kakma`]) or
    /// [`AkmaAnchorError::Id`] when `home` is too long to leave room for the username.
    pub fn derive(
        kausf: &Kausf,
        supi: &Supi,
        rid: &RoutingIndicator,
        home: &Realm,
    ) -> Result<AkmaAnchor, AkmaAnchorError> {
        let kakma = kakma(kausf, supi).map_err(AkmaAnchorError::Kdf)?;
        let a_tid = a_tid(kausf, supi).map_err(AkmaAnchorError::Kdf)?;
        let a_kid = AKid::new(rid, &a_tid, home).map_err(AkmaAnchorError::Id)?;
        Ok(AkmaAnchor { kakma, a_kid })
    }
}

/// Why [`AkmaAnchor::derive`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AkmaAnchorError {
    /// A derivation refused its input.
    #[error("AKMA derivation: {0}")]
    Kdf(KdfError),
    /// The A-KID could not be formed.
    #[error("A-KID: {0}")]
    Id(AkmaIdError),
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn ue_ids_read_either_wire_form_and_nothing_else() {
        for (text, is_supi) in [
            ("imsi-001010123456789", true),
            ("nai-user@example.org", true),
            ("gli-line@example.org", true),
            ("msisdn-33612345678", false),
            ("extid-sensor@example.org", false),
        ] {
            let ue = UeId::parse(text).unwrap();
            assert_eq!(ue.to_string(), text);
            assert_eq!(ue.supi().is_some(), is_supi, "{text}");
            assert_eq!(ue.gpsi().is_some(), !is_supi, "{text}");
        }
        assert_eq!(UeId::parse("tel-123456"), Err(AkmaIdError::TypePrefix));
        assert_eq!(UeId::parse("msisdn-12"), Err(AkmaIdError::Msisdn));
        assert_eq!(UeId::parse("imsi-12"), Err(AkmaIdError::Imsi));
        assert_eq!(UeId::parse(""), Err(AkmaIdError::Empty));
    }

    #[test]
    fn plmn_names_pad_the_mnc() {
        let two = Plmn::new("208", "93").unwrap();
        let three = Plmn::new("208", "093").unwrap();
        assert_ne!(two, three);
        assert_eq!(two.serving_network_name(), three.serving_network_name());
        assert_eq!(
            two.home_network_domain().as_str(),
            "5gc.mnc093.mcc208.3gppnetwork.org"
        );
        assert_eq!(Plmn::new("20", "93"), Err(AkmaIdError::Mcc));
        assert_eq!(Plmn::new("208", "9"), Err(AkmaIdError::Mnc));
        assert_eq!(Plmn::new("208", "9a3"), Err(AkmaIdError::Mnc));
        assert_eq!(format!("{two:?}"), "Plmn(208-93)");
    }

    #[test]
    fn supi_forms() {
        let imsi = Supi::parse("imsi-001010123456789").unwrap();
        assert_eq!(imsi.kind(), SupiType::Imsi);
        assert_eq!(imsi.kdf_param(), b"001010123456789");
        let nai = Supi::parse("nai-sensor.17@iot.example.com").unwrap();
        assert_eq!(nai.kdf_param(), b"sensor.17@iot.example.com");
        assert_eq!(nai.to_string(), "nai-sensor.17@iot.example.com");
        assert_eq!(Supi::parse("imsi-12345"), Err(AkmaIdError::Imsi));
        assert_eq!(
            Supi::parse("imsi-1234567890123456"),
            Err(AkmaIdError::TooLong {
                max: 15,
                actual: 16
            })
        );
        assert_eq!(Supi::parse("001010123456789"), Err(AkmaIdError::TypePrefix));
        assert_eq!(Supi::parse("nai-nouser"), Err(AkmaIdError::Nai));
        assert_eq!(Supi::parse("nai-a..b@x.org"), Err(AkmaIdError::Nai));
        assert_eq!(Supi::parse("nai-a@X.org"), Err(AkmaIdError::UpperCase));
        assert_eq!(Supi::parse("nai-a@b@x.org"), Err(AkmaIdError::Nai));
        assert_eq!(Supi::parse("nai-a@org"), Err(AkmaIdError::Nai));
        assert_eq!(Supi::parse("nai-é@x.org"), Err(AkmaIdError::Nai));
        assert_eq!(Supi::nai(SupiType::Imsi, "a@b.c"), Err(AkmaIdError::Nai));
    }

    #[test]
    fn gpsi_forms() {
        assert!(Gpsi::parse("msisdn-33612345678").is_ok());
        assert!(Gpsi::parse("extid-device-17@iot.example.com").is_ok());
        assert_eq!(Gpsi::parse("msisdn-1234"), Err(AkmaIdError::Msisdn));
        assert_eq!(Gpsi::parse("extid-nodomain"), Err(AkmaIdError::Nai));
        assert_eq!(
            Gpsi::parse("tel:+33612345678"),
            Err(AkmaIdError::TypePrefix)
        );
    }

    #[test]
    fn a_kid_parts_and_foreign_encodings() {
        let rid = RoutingIndicator::parse("1234").unwrap();
        let home = Realm::parse("5gc.mnc001.mcc001.3gppnetwork.org").unwrap();
        let a_kid = AKid::new(&rid, &ATid([0x5a; 32]), &home).unwrap();
        assert_eq!(a_kid.routing_indicator(), Some(rid));
        assert_eq!(a_kid.realm(), home.as_str());
        assert_eq!(a_kid.username().len(), 3 + 4 + 5 + 64);
        // Another network's spelling is still an A-KID, with no parts e2m can read.
        let foreign = AKid::parse("0.abcdef@5gc.mnc001.mcc001.3gppnetwork.org").unwrap();
        assert_eq!(foreign.a_tid(), None);
        assert_eq!(foreign.routing_indicator(), None);
        assert_eq!(
            RoutingIndicator::parse("12345"),
            Err(AkmaIdError::RoutingIndicator)
        );
        assert_eq!(
            RoutingIndicator::parse(""),
            Err(AkmaIdError::RoutingIndicator)
        );
        // A realm too long to leave room for the username.
        let long = Realm::parse(&format!("{}org", "a.".repeat(110))).unwrap();
        assert!(matches!(
            AKid::new(&rid, &ATid([0; 32]), &long),
            Err(AkmaIdError::TooLong { max: 253, .. })
        ));
    }

    #[test]
    fn af_id_text_and_octets() {
        assert_eq!(AfId::parse("af.example.com"), Err(AkmaIdError::AfId));
        assert_eq!(
            AfId::parse("af.example.com;ua=010001C0A8"),
            Err(AkmaIdError::AfId)
        );
        assert_eq!(
            AfId::parse("af.example.com;ua=010001c0a"),
            Err(AkmaIdError::AfId)
        );
        assert_eq!(
            AfId::parse("af.example.com;ua=010001c0zz"),
            Err(AkmaIdError::AfId)
        );
        assert_eq!(
            AfId::parse("-af.example.com;ua=0100000002"),
            Err(AkmaIdError::Domain)
        );
        assert_eq!(
            UaProtocolId::tls12_psk(0xC0A8),
            UaProtocolId([1, 0, 1, 0xc0, 0xa8])
        );
        let af = AfId::parse("af.example.com;ua=0100000002").unwrap();
        assert_eq!(af.ua_protocol(), UaProtocolId::HTTP_DIGEST);
        assert_eq!(af.kdf_param(), b"af.example.com\x01\x00\x00\x00\x02");
    }

    #[test]
    fn serving_network_name_forms() {
        assert!(ServingNetworkName::parse("5G:mnc093.mcc208.3gppnetwork.org").is_ok());
        assert_eq!(
            ServingNetworkName::parse("4G:mnc093.mcc208.3gppnetwork.org"),
            Err(AkmaIdError::ServingNetworkName)
        );
        assert_eq!(
            ServingNetworkName::parse("5G:"),
            Err(AkmaIdError::ServingNetworkName)
        );
        assert_eq!(
            ServingNetworkName::parse("5G:a b"),
            Err(AkmaIdError::ServingNetworkName)
        );
    }
}
