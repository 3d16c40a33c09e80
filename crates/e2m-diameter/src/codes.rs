//! Wire code points as open newtypes with named constants (rustls style): command codes,
//! application ids, AVP codes, Result-Code values and Disconnect-Cause values.
//!
//! Every type accepts any value of its field (a peer may send a code this crate does not
//! know); the constants name the ones RFC 6733 defines, each with its section.

use core::fmt;

macro_rules! code_type {
    (
        $(#[$meta:meta])*
        $name:ident($inner:ty) {
            $( $(#[$cmeta:meta])* $const:ident = $value:expr, $text:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl $name {
            $( $(#[$cmeta])* pub const $const: Self = Self($value); )*

            /// The RFC name of this value, if this crate knows it.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some($text), )*
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{}({})", name, self.0),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<$inner> for $name {
            fn from(value: $inner) -> Self {
                Self(value)
            }
        }
    };
}

code_type! {
    /// A command code (24 bits on the wire; RFC 6733 §3.1).
    CommandCode(u32) {
        /// Capabilities-Exchange-Request/Answer, CER/CEA (§5.3).
        CAPABILITIES_EXCHANGE = 257, "Capabilities-Exchange";
        /// Re-Auth-Request/Answer, RAR/RAA (§8.3).
        RE_AUTH = 258, "Re-Auth";
        /// Accounting-Request/Answer, ACR/ACA (§9.7).
        ACCOUNTING = 271, "Accounting";
        /// Abort-Session-Request/Answer, ASR/ASA (§8.5).
        ABORT_SESSION = 274, "Abort-Session";
        /// Session-Termination-Request/Answer, STR/STA (§8.4).
        SESSION_TERMINATION = 275, "Session-Termination";
        /// Device-Watchdog-Request/Answer, DWR/DWA (§5.5).
        DEVICE_WATCHDOG = 280, "Device-Watchdog";
        /// Disconnect-Peer-Request/Answer, DPR/DPA (§5.4).
        DISCONNECT_PEER = 282, "Disconnect-Peer";
    }
}

code_type! {
    /// An application id (RFC 6733 §2.4 and §11.3).
    ApplicationId(u32) {
        /// Diameter common messages (CER, DWR, DPR; §2.4).
        COMMON = 0, "Diameter common messages";
        /// NASREQ (RFC 7155).
        NASREQ = 1, "NASREQ";
        /// Mobile IPv4 (RFC 4004).
        MOBILE_IPV4 = 2, "Mobile-IPv4";
        /// Diameter base accounting (§2.4).
        BASE_ACCOUNTING = 3, "Diameter base accounting";
        /// The relay application: a relay advertises it instead of the applications it relays
        /// (§2.4); it has a common application with every peer (§5.3).
        RELAY = 0xffff_ffff, "Relay";
    }
}

code_type! {
    /// An AVP code; with a vendor id (0 for the IETF space) it names an AVP (RFC 6733 §4.1).
    AvpCode(u32) {
        /// User-Name (§8.14).
        USER_NAME = 1, "User-Name";
        /// Class (§8.20).
        CLASS = 25, "Class";
        /// Session-Timeout (§8.13).
        SESSION_TIMEOUT = 27, "Session-Timeout";
        /// Proxy-State (§6.7.4).
        PROXY_STATE = 33, "Proxy-State";
        /// Accounting-Session-Id (§9.8.4).
        ACCT_SESSION_ID = 44, "Acct-Session-Id";
        /// Acct-Multi-Session-Id (§9.8.5).
        ACCT_MULTI_SESSION_ID = 50, "Acct-Multi-Session-Id";
        /// Event-Timestamp (§8.21).
        EVENT_TIMESTAMP = 55, "Event-Timestamp";
        /// Acct-Interim-Interval (§9.8.2).
        ACCT_INTERIM_INTERVAL = 85, "Acct-Interim-Interval";
        /// Host-IP-Address (§5.3.5).
        HOST_IP_ADDRESS = 257, "Host-IP-Address";
        /// Auth-Application-Id (§6.8).
        AUTH_APPLICATION_ID = 258, "Auth-Application-Id";
        /// Acct-Application-Id (§6.9).
        ACCT_APPLICATION_ID = 259, "Acct-Application-Id";
        /// Vendor-Specific-Application-Id (§6.11).
        VENDOR_SPECIFIC_APPLICATION_ID = 260, "Vendor-Specific-Application-Id";
        /// Redirect-Host-Usage (§6.13).
        REDIRECT_HOST_USAGE = 261, "Redirect-Host-Usage";
        /// Redirect-Max-Cache-Time (§6.14).
        REDIRECT_MAX_CACHE_TIME = 262, "Redirect-Max-Cache-Time";
        /// Session-Id (§8.8).
        SESSION_ID = 263, "Session-Id";
        /// Origin-Host (§6.3).
        ORIGIN_HOST = 264, "Origin-Host";
        /// Supported-Vendor-Id (§5.3.6).
        SUPPORTED_VENDOR_ID = 265, "Supported-Vendor-Id";
        /// Vendor-Id (§5.3.3).
        VENDOR_ID = 266, "Vendor-Id";
        /// Firmware-Revision (§5.3.4).
        FIRMWARE_REVISION = 267, "Firmware-Revision";
        /// Result-Code (§7.1).
        RESULT_CODE = 268, "Result-Code";
        /// Product-Name (§5.3.7).
        PRODUCT_NAME = 269, "Product-Name";
        /// Session-Binding (§8.17).
        SESSION_BINDING = 270, "Session-Binding";
        /// Session-Server-Failover (§8.18).
        SESSION_SERVER_FAILOVER = 271, "Session-Server-Failover";
        /// Multi-Round-Time-Out (§8.19).
        MULTI_ROUND_TIME_OUT = 272, "Multi-Round-Time-Out";
        /// Disconnect-Cause (§5.4.3).
        DISCONNECT_CAUSE = 273, "Disconnect-Cause";
        /// Auth-Request-Type (§8.7).
        AUTH_REQUEST_TYPE = 274, "Auth-Request-Type";
        /// Auth-Grace-Period (§8.10).
        AUTH_GRACE_PERIOD = 276, "Auth-Grace-Period";
        /// Auth-Session-State (§8.11).
        AUTH_SESSION_STATE = 277, "Auth-Session-State";
        /// Origin-State-Id (§8.16).
        ORIGIN_STATE_ID = 278, "Origin-State-Id";
        /// Failed-AVP (§7.5).
        FAILED_AVP = 279, "Failed-AVP";
        /// Proxy-Host (§6.7.3).
        PROXY_HOST = 280, "Proxy-Host";
        /// Error-Message (§7.3).
        ERROR_MESSAGE = 281, "Error-Message";
        /// Route-Record (§6.7.1).
        ROUTE_RECORD = 282, "Route-Record";
        /// Destination-Realm (§6.6).
        DESTINATION_REALM = 283, "Destination-Realm";
        /// Proxy-Info (§6.7.2).
        PROXY_INFO = 284, "Proxy-Info";
        /// Re-Auth-Request-Type (§8.12).
        RE_AUTH_REQUEST_TYPE = 285, "Re-Auth-Request-Type";
        /// Accounting-Sub-Session-Id (§9.8.6).
        ACCOUNTING_SUB_SESSION_ID = 287, "Accounting-Sub-Session-Id";
        /// Authorization-Lifetime (§8.9).
        AUTHORIZATION_LIFETIME = 291, "Authorization-Lifetime";
        /// Redirect-Host (§6.12).
        REDIRECT_HOST = 292, "Redirect-Host";
        /// Destination-Host (§6.5).
        DESTINATION_HOST = 293, "Destination-Host";
        /// Error-Reporting-Host (§7.4).
        ERROR_REPORTING_HOST = 294, "Error-Reporting-Host";
        /// Termination-Cause (§8.15).
        TERMINATION_CAUSE = 295, "Termination-Cause";
        /// Origin-Realm (§6.4).
        ORIGIN_REALM = 296, "Origin-Realm";
        /// Experimental-Result (§7.6).
        EXPERIMENTAL_RESULT = 297, "Experimental-Result";
        /// Experimental-Result-Code (§7.7).
        EXPERIMENTAL_RESULT_CODE = 298, "Experimental-Result-Code";
        /// Inband-Security-Id (§6.10).
        INBAND_SECURITY_ID = 299, "Inband-Security-Id";
        /// Accounting-Record-Type (§9.8.1).
        ACCOUNTING_RECORD_TYPE = 480, "Accounting-Record-Type";
        /// Accounting-Realtime-Required (§9.8.7).
        ACCOUNTING_REALTIME_REQUIRED = 483, "Accounting-Realtime-Required";
        /// Accounting-Record-Number (§9.8.3).
        ACCOUNTING_RECORD_NUMBER = 485, "Accounting-Record-Number";
    }
}

code_type! {
    /// A Result-Code value (RFC 6733 §7.1); the thousands digit is its class.
    ResultCode(u32) {
        /// 1001 (§7.1.1).
        MULTI_ROUND_AUTH = 1001, "DIAMETER_MULTI_ROUND_AUTH";
        /// 2001 (§7.1.2).
        SUCCESS = 2001, "DIAMETER_SUCCESS";
        /// 2002 (§7.1.2).
        LIMITED_SUCCESS = 2002, "DIAMETER_LIMITED_SUCCESS";
        /// 3001: the command code is not supported (§7.1.3).
        COMMAND_UNSUPPORTED = 3001, "DIAMETER_COMMAND_UNSUPPORTED";
        /// 3002: no route to the destination (§7.1.3).
        UNABLE_TO_DELIVER = 3002, "DIAMETER_UNABLE_TO_DELIVER";
        /// 3003: the destination realm is not recognised (§7.1.3).
        REALM_NOT_SERVED = 3003, "DIAMETER_REALM_NOT_SERVED";
        /// 3004: the requested server cannot serve now (§7.1.3).
        TOO_BUSY = 3004, "DIAMETER_TOO_BUSY";
        /// 3005: the agent found itself in Route-Record (§7.1.3).
        LOOP_DETECTED = 3005, "DIAMETER_LOOP_DETECTED";
        /// 3006 (§7.1.3).
        REDIRECT_INDICATION = 3006, "DIAMETER_REDIRECT_INDICATION";
        /// 3007: the application is not supported (§7.1.3).
        APPLICATION_UNSUPPORTED = 3007, "DIAMETER_APPLICATION_UNSUPPORTED";
        /// 3008: header bits inconsistent with the command (§7.1.3).
        INVALID_HDR_BITS = 3008, "DIAMETER_INVALID_HDR_BITS";
        /// 3009: AVP flag bits inconsistent with the AVP's definition (§7.1.3).
        INVALID_AVP_BITS = 3009, "DIAMETER_INVALID_AVP_BITS";
        /// 3010: a CER from an unknown peer (§7.1.3).
        UNKNOWN_PEER = 3010, "DIAMETER_UNKNOWN_PEER";
        /// 4001 (§7.1.4).
        AUTHENTICATION_REJECTED = 4001, "DIAMETER_AUTHENTICATION_REJECTED";
        /// 4002 (§7.1.4).
        OUT_OF_SPACE = 4002, "DIAMETER_OUT_OF_SPACE";
        /// 4003: the sender lost the election (§7.1.4).
        ELECTION_LOST = 4003, "ELECTION_LOST";
        /// 5001: an unknown AVP with the M bit (§7.1.5).
        AVP_UNSUPPORTED = 5001, "DIAMETER_AVP_UNSUPPORTED";
        /// 5002 (§7.1.5).
        UNKNOWN_SESSION_ID = 5002, "DIAMETER_UNKNOWN_SESSION_ID";
        /// 5003 (§7.1.5).
        AUTHORIZATION_REJECTED = 5003, "DIAMETER_AUTHORIZATION_REJECTED";
        /// 5004: an AVP value that is not valid (§7.1.5).
        INVALID_AVP_VALUE = 5004, "DIAMETER_INVALID_AVP_VALUE";
        /// 5005: a required AVP is missing (§7.1.5).
        MISSING_AVP = 5005, "DIAMETER_MISSING_AVP";
        /// 5006 (§7.1.5).
        RESOURCES_EXCEEDED = 5006, "DIAMETER_RESOURCES_EXCEEDED";
        /// 5007 (§7.1.5).
        CONTRADICTING_AVPS = 5007, "DIAMETER_CONTRADICTING_AVPS";
        /// 5008: an AVP that must not be present (§7.1.5).
        AVP_NOT_ALLOWED = 5008, "DIAMETER_AVP_NOT_ALLOWED";
        /// 5009: an AVP occurs more often than allowed (§7.1.5).
        AVP_OCCURS_TOO_MANY_TIMES = 5009, "DIAMETER_AVP_OCCURS_TOO_MANY_TIMES";
        /// 5010: no common application in a CER (§7.1.5).
        NO_COMMON_APPLICATION = 5010, "DIAMETER_NO_COMMON_APPLICATION";
        /// 5011: version other than 1 (§7.1.5).
        UNSUPPORTED_VERSION = 5011, "DIAMETER_UNSUPPORTED_VERSION";
        /// 5012: rejected for unspecified reasons (§7.1.5).
        UNABLE_TO_COMPLY = 5012, "DIAMETER_UNABLE_TO_COMPLY";
        /// 5013 (§7.1.5).
        INVALID_BIT_IN_HEADER = 5013, "DIAMETER_INVALID_BIT_IN_HEADER";
        /// 5014: an AVP length that is not valid (§7.1.5).
        INVALID_AVP_LENGTH = 5014, "DIAMETER_INVALID_AVP_LENGTH";
        /// 5015: a message length that is not valid (§7.1.5).
        INVALID_MESSAGE_LENGTH = 5015, "DIAMETER_INVALID_MESSAGE_LENGTH";
        /// 5016 (§7.1.5).
        INVALID_AVP_BIT_COMBO = 5016, "DIAMETER_INVALID_AVP_BIT_COMBO";
        /// 5017 (§7.1.5).
        NO_COMMON_SECURITY = 5017, "DIAMETER_NO_COMMON_SECURITY";
    }
}

impl ResultCode {
    /// The class of the code, its thousands digit (RFC 6733 §7.1): 1 informational,
    /// 2 success, 3 protocol error, 4 transient failure, 5 permanent failure; any other
    /// class is handled as a permanent failure.
    pub const fn class(self) -> u32 {
        self.0 / 1000
    }

    /// 2xxx.
    pub const fn is_success(self) -> bool {
        self.class() == 2
    }

    /// 3xxx: sent only in answers with the E bit set (§7.1.3, §7.2).
    pub const fn is_protocol_error(self) -> bool {
        self.class() == 3
    }
}

code_type! {
    /// Disconnect-Cause values (RFC 6733 §5.4.3).
    DisconnectCause(i32) {
        /// A scheduled reboot is imminent; the receiver may reconnect.
        REBOOTING = 0, "REBOOTING";
        /// Resources are constrained; the receiver should not reconnect.
        BUSY = 1, "BUSY";
        /// No messages expected soon; the receiver should not reconnect.
        DO_NOT_WANT_TO_TALK_TO_YOU = 2, "DO_NOT_WANT_TO_TALK_TO_YOU";
    }
}

/// IANA address family numbers used in the Address format (RFC 6733 §4.3.1).
pub mod address_family {
    /// IPv4 (4 address octets).
    pub const IPV4: u16 = 1;
    /// IPv6 (16 address octets).
    pub const IPV6: u16 = 2;
    /// E.164 (an ASCII digit string).
    pub const E164: u16 = 8;
}
