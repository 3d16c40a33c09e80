//! The dictionary: how to read an AVP by code and vendor id, and what a command must carry.
//!
//! [`Dictionary::base`] holds the base protocol (RFC 6733 §4.5 AVPs; CER/CEA, DWR/DWA,
//! DPR/DPA of §5). An application (a vendor-specific one included) is added by value at run
//! time with [`Dictionary::add_application`]; nothing in this crate needs editing.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::avp::{AvpFlags, AvpHeader, AvpKey};
use crate::codes::{ApplicationId, AvpCode, CommandCode};
use crate::value::DataType;

/// What a definition says about one AVP flag bit (the "AVP Flag rules" columns of RFC 6733
/// §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlagRule {
    /// The bit must be set.
    Must,
    /// The bit must be clear.
    MustNot,
    /// Either.
    May,
}

impl FlagRule {
    /// Whether a bit with this value obeys the rule.
    pub const fn allows(self, set: bool) -> bool {
        match self {
            Self::Must => set,
            Self::MustNot => !set,
            Self::May => true,
        }
    }
}

/// How often an AVP may occur in a message or Grouped AVP (RFC 6733 §3.2 qualifiers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AvpRule {
    /// The AVP.
    pub key: AvpKey,
    /// Fewest occurrences (1 or more for a required `{AVP}`).
    pub min: u32,
    /// Most occurrences; `None` for no limit.
    pub max: Option<u32>,
}

impl AvpRule {
    /// `{AVP}`: exactly once.
    pub fn required(key: impl Into<AvpKey>) -> Self {
        Self {
            key: key.into(),
            min: 1,
            max: Some(1),
        }
    }

    /// `[AVP]`: at most once.
    pub fn optional(key: impl Into<AvpKey>) -> Self {
        Self {
            key: key.into(),
            min: 0,
            max: Some(1),
        }
    }

    /// `*[AVP]`: any number of times.
    pub fn any(key: impl Into<AvpKey>) -> Self {
        Self {
            key: key.into(),
            min: 0,
            max: None,
        }
    }

    /// `1*{AVP}`: at least once.
    pub fn at_least_one(key: impl Into<AvpKey>) -> Self {
        Self {
            key: key.into(),
            min: 1,
            max: None,
        }
    }

    /// `min*max`.
    pub fn range(key: impl Into<AvpKey>, min: u32, max: Option<u32>) -> Self {
        Self {
            key: key.into(),
            min,
            max,
        }
    }
}

/// The content rules of a message or of a Grouped AVP (its CCF, RFC 6733 §3.2, §4.4).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Grammar {
    /// The listed AVPs with their occurrence limits.
    pub rules: Vec<AvpRule>,
    /// `* [AVP]`: AVPs not listed are allowed (and kept).
    pub other_avps: bool,
    /// Exactly one of these must be present (RFC 6733 §6.11's rule for
    /// Vendor-Specific-Application-Id); empty for none.
    pub exactly_one_of: Vec<AvpKey>,
}

impl Grammar {
    /// Rules with `* [AVP]`.
    pub fn open(rules: Vec<AvpRule>) -> Self {
        Self {
            rules,
            other_avps: true,
            exactly_one_of: Vec::new(),
        }
    }

    /// Rules without `* [AVP]`: any AVP not listed is DIAMETER_AVP_NOT_ALLOWED.
    pub fn closed(rules: Vec<AvpRule>) -> Self {
        Self {
            rules,
            other_avps: false,
            exactly_one_of: Vec::new(),
        }
    }

    /// The rule for `key`, if listed.
    pub fn rule(&self, key: AvpKey) -> Option<(usize, &AvpRule)> {
        self.rules.iter().enumerate().find(|(_, r)| r.key == key)
    }
}

/// The children of a Grouped AVP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupedContent {
    /// Children checked against a grammar, like a message's AVPs.
    Checked(Grammar),
    /// Children not checked (Failed-AVP: copies of someone else's offending AVPs).
    Unchecked,
}

/// An AVP definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvpDef {
    /// The AVP's name, e.g. "Origin-Host".
    pub name: Cow<'static, str>,
    /// Code and vendor id (the V bit is set exactly when the vendor id is not 0).
    pub key: AvpKey,
    /// Data format.
    pub data_type: DataType,
    /// The M bit rule.
    pub mandatory: FlagRule,
    /// For Enumerated: the defined values (empty: any value is accepted).
    pub values: Cow<'static, [i32]>,
    /// For Grouped: how the children are checked.
    pub grouped: Option<GroupedContent>,
}

impl AvpDef {
    /// A definition with no listed values and, for Grouped, unchecked children.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        key: impl Into<AvpKey>,
        data_type: DataType,
        mandatory: FlagRule,
    ) -> Self {
        let grouped = (data_type == DataType::Grouped).then_some(GroupedContent::Unchecked);
        Self {
            name: name.into(),
            key: key.into(),
            data_type,
            mandatory,
            values: Cow::Borrowed(&[]),
            grouped,
        }
    }

    /// The same definition with these Enumerated values.
    pub fn with_values(self, values: impl Into<Cow<'static, [i32]>>) -> Self {
        Self {
            values: values.into(),
            ..self
        }
    }

    /// The same definition with a grammar for its children (a Grouped AVP).
    pub fn with_grammar(self, grammar: Grammar) -> Self {
        Self {
            grouped: Some(GroupedContent::Checked(grammar)),
            ..self
        }
    }

    /// The header a sender writes: M set where the rule is [`FlagRule::Must`], V and vendor id
    /// where the vendor id is not 0.
    pub fn header(&self) -> AvpHeader {
        let flags = if self.mandatory == FlagRule::Must {
            AvpFlags::MANDATORY
        } else {
            AvpFlags::NONE
        };
        AvpHeader {
            code: self.key.code,
            flags,
            vendor_id: (self.key.vendor_id != 0).then_some(self.key.vendor_id),
        }
    }
}

/// A command definition: its code, application and the CCF of its request and answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandDef {
    /// E.g. "Capabilities-Exchange".
    pub name: Cow<'static, str>,
    /// Command code.
    pub code: CommandCode,
    /// Application id of the header.
    pub application: ApplicationId,
    /// Whether the P bit is set (`PXY` in the CCF): it must match in a received request.
    pub proxiable: bool,
    /// The request's grammar.
    pub request: Grammar,
    /// The answer's grammar (not applied to answers with the E bit, §7.2).
    pub answer: Grammar,
}

/// Whether an application is an authentication/authorization or accounting one (RFC 6733
/// §2.4): it is advertised in Auth-Application-Id or Acct-Application-Id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApplicationKind {
    /// Auth-Application-Id.
    Auth,
    /// Acct-Application-Id.
    Acct,
}

/// An application to add to a dictionary: its id, how it is advertised, its AVPs and its
/// commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Application {
    /// Application id.
    pub id: ApplicationId,
    /// Name, e.g. "3GPP Zn".
    pub name: Cow<'static, str>,
    /// Auth or Acct.
    pub kind: ApplicationKind,
    /// For a vendor-specific application: the Vendor-Id advertised with it in a
    /// Vendor-Specific-Application-Id (§6.11).
    pub vendor_id: Option<u32>,
    /// The AVPs it defines (AVPs it reuses from the base need not be repeated).
    pub avps: Vec<AvpDef>,
    /// Its commands.
    pub commands: Vec<CommandDef>,
}

/// What the dictionary keeps of an application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationInfo {
    /// Application id.
    pub id: ApplicationId,
    /// Name.
    pub name: Cow<'static, str>,
    /// Auth or Acct.
    pub kind: ApplicationKind,
    /// Vendor-Id for a vendor-specific application.
    pub vendor_id: Option<u32>,
}

/// Why a definition cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DictionaryError {
    /// An AVP with this code and vendor id is already defined differently.
    #[error("AVP {0:?} is already defined differently")]
    AvpConflict(AvpKey),
    /// A command with this code is already defined for this application.
    #[error("command {1:?} of application {0:?} is already defined")]
    CommandConflict(ApplicationId, CommandCode),
    /// The application id is already defined.
    #[error("application {0:?} is already defined")]
    ApplicationConflict(ApplicationId),
    /// A command's application id differs from the application it is added with.
    #[error("command {1:?} belongs to application {0:?}, not to the one added")]
    CommandApplication(ApplicationId, CommandCode),
    /// A grammar names an AVP the dictionary does not define.
    #[error("a grammar names the undefined AVP {0:?}")]
    UndefinedAvp(AvpKey),
}

/// AVP and command definitions, looked up by (code, vendor id) and (application, command).
#[derive(Clone, Debug)]
pub struct Dictionary {
    avps: HashMap<AvpKey, AvpDef>,
    commands: HashMap<(ApplicationId, CommandCode), CommandDef>,
    applications: HashMap<ApplicationId, ApplicationInfo>,
}

impl Default for Dictionary {
    fn default() -> Self {
        Self::base()
    }
}

impl Dictionary {
    /// An empty dictionary (not even the base protocol).
    pub fn empty() -> Self {
        Self {
            avps: HashMap::new(),
            commands: HashMap::new(),
            applications: HashMap::new(),
        }
    }

    /// The base protocol: every AVP of RFC 6733 §4.5 and the common application (0) with
    /// CER/CEA, DWR/DWA and DPR/DPA (§5.3.1–§5.5.2).
    pub fn base() -> Self {
        let mut d = Self::empty();
        for def in base::avps() {
            d.avps.insert(def.key, def);
        }
        let common = ApplicationInfo {
            id: ApplicationId::COMMON,
            name: Cow::Borrowed("Diameter common messages"),
            kind: ApplicationKind::Auth,
            vendor_id: None,
        };
        d.applications.insert(ApplicationId::COMMON, common);
        for cmd in base::commands() {
            d.commands.insert((cmd.application, cmd.code), cmd);
        }
        d
    }

    /// Adds an application with its AVPs and commands. An AVP defined again identically is
    /// accepted (applications share AVPs).
    ///
    /// # Errors
    ///
    /// [`DictionaryError`] on a conflicting definition or a grammar that names an AVP defined
    /// nowhere; the dictionary is then unchanged.
    pub fn add_application(&mut self, app: Application) -> Result<(), DictionaryError> {
        if self.applications.contains_key(&app.id) {
            return Err(DictionaryError::ApplicationConflict(app.id));
        }
        for def in &app.avps {
            if self.avps.get(&def.key).is_some_and(|old| old != def) {
                return Err(DictionaryError::AvpConflict(def.key));
            }
        }
        let defined =
            |key: &AvpKey| self.avps.contains_key(key) || app.avps.iter().any(|d| d.key == *key);
        let grammars = app
            .avps
            .iter()
            .filter_map(|d| match &d.grouped {
                Some(GroupedContent::Checked(g)) => Some(g),
                _ => None,
            })
            .chain(app.commands.iter().flat_map(|c| [&c.request, &c.answer]));
        for grammar in grammars {
            if let Some(rule) = grammar.rules.iter().find(|r| !defined(&r.key)) {
                return Err(DictionaryError::UndefinedAvp(rule.key));
            }
        }
        for cmd in &app.commands {
            if cmd.application != app.id {
                return Err(DictionaryError::CommandApplication(
                    cmd.application,
                    cmd.code,
                ));
            }
            if self.commands.contains_key(&(app.id, cmd.code)) {
                return Err(DictionaryError::CommandConflict(app.id, cmd.code));
            }
        }
        for def in app.avps {
            self.avps.insert(def.key, def);
        }
        for cmd in app.commands {
            self.commands.insert((cmd.application, cmd.code), cmd);
        }
        self.applications.insert(
            app.id,
            ApplicationInfo {
                id: app.id,
                name: app.name,
                kind: app.kind,
                vendor_id: app.vendor_id,
            },
        );
        Ok(())
    }

    /// The definition of an AVP.
    pub fn avp(&self, key: impl Into<AvpKey>) -> Option<&AvpDef> {
        self.avps.get(&key.into())
    }

    /// The definition of a command of an application.
    pub fn command(&self, application: ApplicationId, code: CommandCode) -> Option<&CommandDef> {
        self.commands.get(&(application, code))
    }

    /// An application's entry.
    pub fn application(&self, id: ApplicationId) -> Option<&ApplicationInfo> {
        self.applications.get(&id)
    }

    /// Every application defined.
    pub fn applications(&self) -> impl Iterator<Item = &ApplicationInfo> {
        self.applications.values()
    }

    /// The header a sender writes for `key` (M per the definition); an undefined AVP gets no
    /// M bit.
    pub fn header(&self, key: impl Into<AvpKey>) -> AvpHeader {
        let key = key.into();
        self.avps.get(&key).map_or(
            AvpHeader {
                code: key.code,
                flags: AvpFlags::NONE,
                vendor_id: (key.vendor_id != 0).then_some(key.vendor_id),
            },
            AvpDef::header,
        )
    }

    /// Whether the AVP is defined as Grouped.
    pub fn is_grouped(&self, key: AvpKey) -> bool {
        self.avps
            .get(&key)
            .is_some_and(|d| d.data_type == DataType::Grouped)
    }
}

/// The base protocol's definitions (RFC 6733 §4.5 table, §5 and §6 CCFs).
mod base {
    use super::*;
    use crate::codes::AvpCode as C;
    use DataType as T;
    use FlagRule::{Must, MustNot};

    pub(super) fn avps() -> Vec<AvpDef> {
        // RFC 6733 §4.5: every base AVP has V "MUST NOT"; M is "MUST" except where marked.
        let table: [(&'static str, AvpCode, DataType, FlagRule); 49] = [
            (
                "Acct-Interim-Interval",
                C::ACCT_INTERIM_INTERVAL,
                T::Unsigned32,
                Must,
            ),
            (
                "Accounting-Realtime-Required",
                C::ACCOUNTING_REALTIME_REQUIRED,
                T::Enumerated,
                Must,
            ),
            (
                "Acct-Multi-Session-Id",
                C::ACCT_MULTI_SESSION_ID,
                T::Utf8String,
                Must,
            ),
            (
                "Accounting-Record-Number",
                C::ACCOUNTING_RECORD_NUMBER,
                T::Unsigned32,
                Must,
            ),
            (
                "Accounting-Record-Type",
                C::ACCOUNTING_RECORD_TYPE,
                T::Enumerated,
                Must,
            ),
            ("Acct-Session-Id", C::ACCT_SESSION_ID, T::OctetString, Must),
            (
                "Accounting-Sub-Session-Id",
                C::ACCOUNTING_SUB_SESSION_ID,
                T::Unsigned64,
                Must,
            ),
            (
                "Acct-Application-Id",
                C::ACCT_APPLICATION_ID,
                T::Unsigned32,
                Must,
            ),
            (
                "Auth-Application-Id",
                C::AUTH_APPLICATION_ID,
                T::Unsigned32,
                Must,
            ),
            (
                "Auth-Request-Type",
                C::AUTH_REQUEST_TYPE,
                T::Enumerated,
                Must,
            ),
            (
                "Authorization-Lifetime",
                C::AUTHORIZATION_LIFETIME,
                T::Unsigned32,
                Must,
            ),
            (
                "Auth-Grace-Period",
                C::AUTH_GRACE_PERIOD,
                T::Unsigned32,
                Must,
            ),
            (
                "Auth-Session-State",
                C::AUTH_SESSION_STATE,
                T::Enumerated,
                Must,
            ),
            (
                "Re-Auth-Request-Type",
                C::RE_AUTH_REQUEST_TYPE,
                T::Enumerated,
                Must,
            ),
            ("Class", C::CLASS, T::OctetString, Must),
            (
                "Destination-Host",
                C::DESTINATION_HOST,
                T::DiameterIdentity,
                Must,
            ),
            (
                "Destination-Realm",
                C::DESTINATION_REALM,
                T::DiameterIdentity,
                Must,
            ),
            ("Disconnect-Cause", C::DISCONNECT_CAUSE, T::Enumerated, Must),
            ("Error-Message", C::ERROR_MESSAGE, T::Utf8String, MustNot),
            (
                "Error-Reporting-Host",
                C::ERROR_REPORTING_HOST,
                T::DiameterIdentity,
                MustNot,
            ),
            ("Event-Timestamp", C::EVENT_TIMESTAMP, T::Time, Must),
            (
                "Experimental-Result",
                C::EXPERIMENTAL_RESULT,
                T::Grouped,
                Must,
            ),
            (
                "Experimental-Result-Code",
                C::EXPERIMENTAL_RESULT_CODE,
                T::Unsigned32,
                Must,
            ),
            ("Failed-AVP", C::FAILED_AVP, T::Grouped, Must),
            (
                "Firmware-Revision",
                C::FIRMWARE_REVISION,
                T::Unsigned32,
                MustNot,
            ),
            ("Host-IP-Address", C::HOST_IP_ADDRESS, T::Address, Must),
            (
                "Inband-Security-Id",
                C::INBAND_SECURITY_ID,
                T::Unsigned32,
                Must,
            ),
            (
                "Multi-Round-Time-Out",
                C::MULTI_ROUND_TIME_OUT,
                T::Unsigned32,
                Must,
            ),
            ("Origin-Host", C::ORIGIN_HOST, T::DiameterIdentity, Must),
            ("Origin-Realm", C::ORIGIN_REALM, T::DiameterIdentity, Must),
            ("Origin-State-Id", C::ORIGIN_STATE_ID, T::Unsigned32, Must),
            ("Product-Name", C::PRODUCT_NAME, T::Utf8String, MustNot),
            ("Proxy-Host", C::PROXY_HOST, T::DiameterIdentity, Must),
            ("Proxy-Info", C::PROXY_INFO, T::Grouped, Must),
            ("Proxy-State", C::PROXY_STATE, T::OctetString, Must),
            ("Redirect-Host", C::REDIRECT_HOST, T::DiameterUri, Must),
            (
                "Redirect-Host-Usage",
                C::REDIRECT_HOST_USAGE,
                T::Enumerated,
                Must,
            ),
            (
                "Redirect-Max-Cache-Time",
                C::REDIRECT_MAX_CACHE_TIME,
                T::Unsigned32,
                Must,
            ),
            ("Result-Code", C::RESULT_CODE, T::Unsigned32, Must),
            ("Route-Record", C::ROUTE_RECORD, T::DiameterIdentity, Must),
            ("Session-Id", C::SESSION_ID, T::Utf8String, Must),
            ("Session-Timeout", C::SESSION_TIMEOUT, T::Unsigned32, Must),
            ("Session-Binding", C::SESSION_BINDING, T::Unsigned32, Must),
            (
                "Session-Server-Failover",
                C::SESSION_SERVER_FAILOVER,
                T::Enumerated,
                Must,
            ),
            (
                "Supported-Vendor-Id",
                C::SUPPORTED_VENDOR_ID,
                T::Unsigned32,
                Must,
            ),
            (
                "Termination-Cause",
                C::TERMINATION_CAUSE,
                T::Enumerated,
                Must,
            ),
            ("User-Name", C::USER_NAME, T::Utf8String, Must),
            ("Vendor-Id", C::VENDOR_ID, T::Unsigned32, Must),
            (
                "Vendor-Specific-Application-Id",
                C::VENDOR_SPECIFIC_APPLICATION_ID,
                T::Grouped,
                Must,
            ),
        ];
        let mut defs: Vec<AvpDef> = table
            .into_iter()
            .map(|(name, code, t, m)| AvpDef::new(name, code, t, m))
            .collect();
        for def in &mut defs {
            // Enumerated values: §5.4.3, §6.13, §8.7, §8.11, §8.12, §8.15, §8.18, §9.8.1, §9.8.7.
            let values: &'static [i32] = match def.key.code {
                C::DISCONNECT_CAUSE => &[0, 1, 2],
                C::REDIRECT_HOST_USAGE => &[0, 1, 2, 3, 4, 5, 6],
                C::AUTH_REQUEST_TYPE => &[1, 2, 3],
                C::AUTH_SESSION_STATE => &[0, 1],
                C::RE_AUTH_REQUEST_TYPE => &[0, 1],
                C::TERMINATION_CAUSE => &[1, 2, 3, 4, 5, 6, 7, 8],
                C::SESSION_SERVER_FAILOVER => &[0, 1, 2, 3],
                C::ACCOUNTING_RECORD_TYPE => &[1, 2, 3, 4],
                C::ACCOUNTING_REALTIME_REQUIRED => &[1, 2, 3],
                _ => &[],
            };
            def.values = Cow::Borrowed(values);
            // Grouped grammars: §6.7.2, §6.11, §7.6; Failed-AVP (§7.5) stays unchecked.
            let grammar = match def.key.code {
                C::PROXY_INFO => Some(Grammar::open(vec![
                    AvpRule::required(C::PROXY_HOST),
                    AvpRule::required(C::PROXY_STATE),
                ])),
                C::VENDOR_SPECIFIC_APPLICATION_ID => Some(Grammar {
                    rules: vec![
                        AvpRule::required(C::VENDOR_ID),
                        AvpRule::optional(C::AUTH_APPLICATION_ID),
                        AvpRule::optional(C::ACCT_APPLICATION_ID),
                    ],
                    other_avps: false,
                    exactly_one_of: vec![
                        AvpKey::ietf(C::AUTH_APPLICATION_ID),
                        AvpKey::ietf(C::ACCT_APPLICATION_ID),
                    ],
                }),
                C::EXPERIMENTAL_RESULT => Some(Grammar::closed(vec![
                    AvpRule::required(C::VENDOR_ID),
                    AvpRule::required(C::EXPERIMENTAL_RESULT_CODE),
                ])),
                _ => None,
            };
            if let Some(g) = grammar {
                def.grouped = Some(GroupedContent::Checked(g));
            }
        }
        defs
    }

    fn capabilities() -> Vec<AvpRule> {
        vec![
            AvpRule::required(C::ORIGIN_HOST),
            AvpRule::required(C::ORIGIN_REALM),
            AvpRule::at_least_one(C::HOST_IP_ADDRESS),
            AvpRule::required(C::VENDOR_ID),
            AvpRule::required(C::PRODUCT_NAME),
            AvpRule::optional(C::ORIGIN_STATE_ID),
            AvpRule::any(C::SUPPORTED_VENDOR_ID),
            AvpRule::any(C::AUTH_APPLICATION_ID),
            AvpRule::any(C::INBAND_SECURITY_ID),
            AvpRule::any(C::ACCT_APPLICATION_ID),
            AvpRule::any(C::VENDOR_SPECIFIC_APPLICATION_ID),
            AvpRule::optional(C::FIRMWARE_REVISION),
        ]
    }

    fn with_result(mut rules: Vec<AvpRule>) -> Vec<AvpRule> {
        rules.insert(0, AvpRule::required(C::RESULT_CODE));
        rules.push(AvpRule::optional(C::ERROR_MESSAGE));
        rules.push(AvpRule::optional(C::FAILED_AVP));
        rules
    }

    pub(super) fn commands() -> Vec<CommandDef> {
        let origin = || {
            vec![
                AvpRule::required(C::ORIGIN_HOST),
                AvpRule::required(C::ORIGIN_REALM),
            ]
        };
        let cmd =
            |name: &'static str, code, request: Vec<AvpRule>, answer: Vec<AvpRule>| CommandDef {
                name: Cow::Borrowed(name),
                code,
                application: ApplicationId::COMMON,
                proxiable: false,
                request: Grammar::open(request),
                answer: Grammar::open(answer),
            };
        let mut dwr = origin();
        dwr.push(AvpRule::optional(C::ORIGIN_STATE_ID));
        let mut dpr = origin();
        dpr.push(AvpRule::required(C::DISCONNECT_CAUSE));
        vec![
            // §5.3.1, §5.3.2
            cmd(
                "Capabilities-Exchange",
                CommandCode::CAPABILITIES_EXCHANGE,
                capabilities(),
                with_result(capabilities()),
            ),
            // §5.5.1, §5.5.2
            cmd(
                "Device-Watchdog",
                CommandCode::DEVICE_WATCHDOG,
                dwr.clone(),
                with_result(dwr),
            ),
            // §5.4.1, §5.4.2
            cmd(
                "Disconnect-Peer",
                CommandCode::DISCONNECT_PEER,
                dpr,
                with_result(origin()),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn base_table_flags() {
        let d = Dictionary::base();
        // RFC 6733 §4.5: Product-Name, Firmware-Revision, Error-Message and
        // Error-Reporting-Host must not carry M; Origin-Host must.
        for code in [
            AvpCode::PRODUCT_NAME,
            AvpCode::FIRMWARE_REVISION,
            AvpCode::ERROR_MESSAGE,
            AvpCode::ERROR_REPORTING_HOST,
        ] {
            assert_eq!(
                d.avp(code).unwrap().mandatory,
                FlagRule::MustNot,
                "{code:?}"
            );
            assert!(!d.header(code).flags.is_mandatory());
        }
        assert_eq!(
            d.avp(AvpCode::ORIGIN_HOST).unwrap().data_type,
            DataType::DiameterIdentity
        );
        assert!(d.header(AvpCode::ORIGIN_HOST).flags.is_mandatory());
        assert_eq!(
            d.avp(AvpCode::SESSION_ID).unwrap().data_type,
            DataType::Utf8String
        );
        assert!(d.is_grouped(AvpKey::ietf(AvpCode::FAILED_AVP)));
        assert!(
            d.command(ApplicationId::COMMON, CommandCode::CAPABILITIES_EXCHANGE)
                .is_some()
        );
        assert!(
            d.command(ApplicationId::COMMON, CommandCode::RE_AUTH)
                .is_none()
        );
    }

    #[test]
    fn applications_are_added_by_value() {
        let mut d = Dictionary::base();
        let key = AvpKey::vendor(AvpCode(405), 10415);
        let app = Application {
            id: ApplicationId(16_777_220),
            name: "test".into(),
            kind: ApplicationKind::Auth,
            vendor_id: Some(10415),
            avps: vec![AvpDef::new(
                "ME-Key-Material",
                key,
                DataType::OctetString,
                FlagRule::Must,
            )],
            commands: vec![CommandDef {
                name: "Test".into(),
                code: CommandCode(310),
                application: ApplicationId(16_777_220),
                proxiable: true,
                request: Grammar::open(vec![
                    AvpRule::required(key),
                    AvpRule::required(AvpCode::ORIGIN_HOST),
                ]),
                answer: Grammar::open(vec![AvpRule::required(AvpCode::RESULT_CODE)]),
            }],
        };
        d.add_application(app.clone()).unwrap();
        assert_eq!(d.avp(key).unwrap().name, "ME-Key-Material");
        assert!(d.header(key).flags.is_mandatory());
        assert_eq!(d.header(key).vendor_id, Some(10415));
        assert_eq!(
            d.add_application(app.clone()),
            Err(DictionaryError::ApplicationConflict(ApplicationId(
                16_777_220
            )))
        );
        // A conflicting AVP is refused and leaves the dictionary as it was.
        let mut other = app;
        other.id = ApplicationId(99);
        other.avps[0].data_type = DataType::Unsigned32;
        other.commands.clear();
        assert_eq!(
            d.add_application(other),
            Err(DictionaryError::AvpConflict(key))
        );
        assert!(d.application(ApplicationId(99)).is_none());
    }
}
