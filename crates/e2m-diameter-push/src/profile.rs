//! The code points of the push application (SPEC.md, "Code points") as one profile value,
//! and the dictionary they define.

use std::borrow::Cow;

use e2m_diameter::{
    AdvertisedApplication, Application, ApplicationId, ApplicationKind, AvpCode, AvpDef, AvpKey,
    AvpRule, CommandCode, CommandDef, DataType, Dictionary, DictionaryError, FlagRule, Grammar,
};

/// E2M-Key-Id-Scheme RAND_LSB32 (0): E2M-Key-Id carries octets 12..16 of RAND.
pub const SCHEME_RAND_LSB32: i32 = 0;
/// E2M-Key-Id-Scheme SHORT_HASH (1): no E2M-Key-Id; the EMKS computes the short hash.
pub const SCHEME_SHORT_HASH: i32 = 1;
/// E2M_ERROR_USER_UNKNOWN: an Experimental-Result-Code under the profile's Vendor-Id, the
/// same number and meaning as TS 29.229's DIAMETER_ERROR_USER_UNKNOWN (SPEC.md, "Result
/// codes").
pub const E2M_ERROR_USER_UNKNOWN: u32 = 5001;
/// Auth-Session-State NO_STATE_MAINTAINED (RFC 6733 §8.11): the push keeps no session.
pub const NO_STATE_MAINTAINED: i32 = 1;

/// The six AVP codes of the application, relative to the profile's Vendor-Id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AvpCodes {
    /// E2M-Key-Id (Unsigned32).
    pub key_id: AvpCode,
    /// E2M-Key-Id-Scheme (Enumerated).
    pub key_id_scheme: AvpCode,
    /// E2M-Int-Key (OctetString, 32 octets).
    pub int_key: AvpCode,
    /// E2M-Creation-Time (Time).
    pub creation_time: AvpCode,
    /// E2M-Creation-Time-Fraction (Unsigned32, milliseconds 0–999).
    pub creation_time_fraction: AvpCode,
    /// E2M-Key-Expiry-Time (Time, answers only).
    pub key_expiry_time: AvpCode,
}

impl AvpCodes {
    /// The provisional codes 0xE20001–0xE20006 (outside every IETF and 3GPP allocation, so
    /// that decoders that look a format up by code alone, like pycrate's, read them right).
    pub const PROVISIONAL: AvpCodes = AvpCodes {
        key_id: AvpCode(0x00E2_0001),
        key_id_scheme: AvpCode(0x00E2_0002),
        int_key: AvpCode(0x00E2_0003),
        creation_time: AvpCode(0x00E2_0004),
        creation_time_fraction: AvpCode(0x00E2_0005),
        key_expiry_time: AvpCode(0x00E2_0006),
    };

    fn all(&self) -> [AvpCode; 6] {
        [
            self.key_id,
            self.key_id_scheme,
            self.int_key,
            self.creation_time,
            self.creation_time_fraction,
            self.key_expiry_time,
        ]
    }
}

/// Why a profile is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Vendor-Id 0 is the IETF's; RFC 6733 §4.1.1 forbids it for vendor AVPs.
    #[error("the Vendor-Id must not be 0 (RFC 6733 section 4.1.1)")]
    VendorId,
    /// Not a vendor-specific Application-Id (0x01000000–0xFFFFFFFE, RFC 6733 §11.3).
    #[error("the Application-Id must be vendor-specific (0x01000000 to 0xfffffffe)")]
    ApplicationId,
    /// A command code needs 24 bits and must not be a base protocol one.
    #[error("the command code must fit in 24 bits and not be a base protocol command")]
    CommandCode,
    /// Two AVPs share a code.
    #[error("two AVPs of the profile share a code")]
    AvpCodes,
}

/// The push application's code points: Vendor-Id, Application-Id, command code and AVP
/// codes (SPEC.md, "Changing the code points"). [`PushProfile::PROVISIONAL`] (also the
/// `Default`) has the values of SPEC.md; an operator who registers its own sets them once,
/// on the HSS and the EMKS alike, with [`PushProfile::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PushProfile {
    vendor_id: u32,
    application_id: ApplicationId,
    command: CommandCode,
    avps: AvpCodes,
}

impl Default for PushProfile {
    fn default() -> Self {
        Self::PROVISIONAL
    }
}

impl PushProfile {
    /// SPEC.md's provisional code points: Vendor-Id 32473 (RFC 5612's enterprise number for
    /// documentation), Application-Id 0x65326D01, command 16777214 (RFC 6733 §11.2.1's
    /// experimental range), AVPs [`AvpCodes::PROVISIONAL`].
    pub const PROVISIONAL: PushProfile = PushProfile {
        vendor_id: 32473,
        application_id: ApplicationId(0x6532_6D01),
        command: CommandCode(16_777_214),
        avps: AvpCodes::PROVISIONAL,
    };

    /// A profile with other code points.
    ///
    /// # Errors
    ///
    /// [`ProfileError`] when a code point is outside its space (see the variants).
    pub fn new(
        vendor_id: u32,
        application_id: ApplicationId,
        command: CommandCode,
        avps: AvpCodes,
    ) -> Result<Self, ProfileError> {
        if vendor_id == 0 {
            return Err(ProfileError::VendorId);
        }
        if !(0x0100_0000..=0xFFFF_FFFE).contains(&application_id.0) {
            return Err(ProfileError::ApplicationId);
        }
        let base = [
            CommandCode::CAPABILITIES_EXCHANGE,
            CommandCode::DEVICE_WATCHDOG,
            CommandCode::DISCONNECT_PEER,
        ];
        if command.0 > 0x00FF_FFFF || base.contains(&command) {
            return Err(ProfileError::CommandCode);
        }
        let codes = avps.all();
        if codes
            .iter()
            .enumerate()
            .any(|(i, c)| codes[i + 1..].contains(c))
        {
            return Err(ProfileError::AvpCodes);
        }
        Ok(Self {
            vendor_id,
            application_id,
            command,
            avps,
        })
    }

    /// The Vendor-Id of the application's AVPs and of its Vendor-Specific-Application-Id.
    pub const fn vendor_id(&self) -> u32 {
        self.vendor_id
    }

    /// The Application-Id.
    pub const fn application_id(&self) -> ApplicationId {
        self.application_id
    }

    /// The command code of E2M-Key-Push-Request/Answer.
    pub const fn command(&self) -> CommandCode {
        self.command
    }

    /// The AVP codes.
    pub const fn avps(&self) -> &AvpCodes {
        &self.avps
    }

    /// An AVP of the application, by its code: (code, the profile's Vendor-Id).
    pub const fn key(&self, code: AvpCode) -> AvpKey {
        AvpKey::vendor(code, self.vendor_id)
    }

    /// How the application is advertised in CER/CEA: Vendor-Specific-Application-Id
    /// { Vendor-Id, Auth-Application-Id } (SPEC.md, "Messages").
    pub const fn advertised(&self) -> AdvertisedApplication {
        AdvertisedApplication::vendor_auth(self.application_id, self.vendor_id)
    }

    /// The application as a dictionary addition: its six AVPs (flag rules of SPEC.md) and
    /// E2M-Key-Push-Request/Answer with the grammars of SPEC.md's ABNF.
    pub fn application(&self) -> Application {
        let a = &self.avps;
        let def = |name: &'static str, code: AvpCode, ty: DataType, m: FlagRule| {
            AvpDef::new(name, self.key(code), ty, m)
        };
        let avps = vec![
            def("E2M-Key-Id", a.key_id, DataType::Unsigned32, FlagRule::Must),
            def(
                "E2M-Key-Id-Scheme",
                a.key_id_scheme,
                DataType::Enumerated,
                FlagRule::Must,
            )
            .with_values(Cow::Borrowed(&[SCHEME_RAND_LSB32, SCHEME_SHORT_HASH][..])),
            def(
                "E2M-Int-Key",
                a.int_key,
                DataType::OctetString,
                FlagRule::Must,
            ),
            def(
                "E2M-Creation-Time",
                a.creation_time,
                DataType::Time,
                FlagRule::Must,
            ),
            def(
                "E2M-Creation-Time-Fraction",
                a.creation_time_fraction,
                DataType::Unsigned32,
                FlagRule::MustNot,
            ),
            def(
                "E2M-Key-Expiry-Time",
                a.key_expiry_time,
                DataType::Time,
                FlagRule::MustNot,
            ),
        ];
        let request = Grammar::open(vec![
            AvpRule::required(AvpCode::SESSION_ID),
            AvpRule::required(AvpCode::AUTH_SESSION_STATE),
            AvpRule::required(AvpCode::ORIGIN_HOST),
            AvpRule::required(AvpCode::ORIGIN_REALM),
            AvpRule::required(AvpCode::DESTINATION_REALM),
            AvpRule::optional(AvpCode::DESTINATION_HOST),
            AvpRule::required(AvpCode::USER_NAME),
            AvpRule::required(self.key(a.key_id_scheme)),
            AvpRule::optional(self.key(a.key_id)),
            AvpRule::required(self.key(a.int_key)),
            AvpRule::required(self.key(a.creation_time)),
            AvpRule::optional(self.key(a.creation_time_fraction)),
            // An answer's AVP in a request: DIAMETER_AVP_NOT_ALLOWED (SPEC.md, "Validation").
            AvpRule::range(self.key(a.key_expiry_time), 0, Some(0)),
            AvpRule::optional(AvpCode::ORIGIN_STATE_ID),
            AvpRule::any(AvpCode::PROXY_INFO),
            AvpRule::any(AvpCode::ROUTE_RECORD),
        ]);
        let answer = Grammar::open(vec![
            AvpRule::required(AvpCode::SESSION_ID),
            AvpRule::optional(AvpCode::AUTH_SESSION_STATE),
            AvpRule::required(AvpCode::ORIGIN_HOST),
            AvpRule::required(AvpCode::ORIGIN_REALM),
            AvpRule::optional(AvpCode::RESULT_CODE),
            AvpRule::optional(AvpCode::EXPERIMENTAL_RESULT),
            AvpRule::optional(self.key(a.key_expiry_time)),
            AvpRule::optional(AvpCode::ERROR_MESSAGE),
            AvpRule::optional(AvpCode::ERROR_REPORTING_HOST),
            AvpRule::optional(AvpCode::FAILED_AVP),
            AvpRule::optional(AvpCode::ORIGIN_STATE_ID),
            AvpRule::any(AvpCode::PROXY_INFO),
        ]);
        Application {
            id: self.application_id,
            name: Cow::Borrowed("e2m Key Push (provisional)"),
            kind: ApplicationKind::Auth,
            vendor_id: Some(self.vendor_id),
            avps,
            commands: vec![CommandDef {
                name: Cow::Borrowed("E2M-Key-Push"),
                code: self.command,
                application: self.application_id,
                proxiable: true,
                request,
                answer,
            }],
        }
    }

    /// The base protocol's dictionary with the application added.
    ///
    /// # Errors
    ///
    /// [`DictionaryError`] if the profile's codes clash with the base protocol's (never for
    /// a profile made by [`PushProfile::new`] with distinct codes).
    pub fn dictionary(&self) -> Result<Dictionary, DictionaryError> {
        let mut d = Dictionary::base();
        d.add_application(self.application())?;
        Ok(d)
    }
}
