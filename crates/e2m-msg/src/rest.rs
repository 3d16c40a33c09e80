//! The REST binding (seed 6.x.2.2.1 and 6.x.2.2.2): resources, methods, status codes and
//! headers, as data. No server and no client here: a server passes each request's method
//! and target to [`Route::parse`]; a client builds targets with the path functions below.
//!
//! | operation | request | success |
//! |---|---|---|
//! | registration | `POST /e2m/v1/sessions`, [`Registration`](crate::Registration) | 201, `Location`, [`RegistrationResult`](crate::RegistrationResult) |
//! | key fetch | `GET /e2m/v1/sessions/{session}/keys?appIdentity=…&keyId=…` (or `imsi=…`) | 200, `Cache-Control: no-store`, [`KeyResponse`](crate::KeyResponse) |
//! | deregistration | `DELETE /e2m/v1/sessions/{session}` | 204 |
//! | subscription | `POST /e2m/v1/subscriptions`, [`Subscription`](crate::Subscription) | 201, `Location`, [`SubscriptionResult`](crate::SubscriptionResult) |
//! | unsubscription | `DELETE /e2m/v1/subscriptions/{subscription}` | 204 |
//! | notification | `POST` to the callback URI (by default `/e2m/v1/notifications`), [`Notification`](crate::Notification) | 204 |
//! | intermediate-key push | `POST /e2m/v1/intermediate-keys`, [`IntermediateKeyPush`](crate::IntermediateKeyPush) | 204 |
//!
//! Every failure is a [`Problem`](crate::Problem) with the status of its cause.
//!
//! **Deviation from the seed.** Step 6 of 6.x.2.3 answers the key fetch with "HTTP 201".
//! A GET creates no resource (RFC 9110 §9.3.1, §15.3.2), so e2m answers 200 OK.

use core::fmt;

use e2m_keyid::{AppIdentity, Imsi, KeyId};

use crate::message::{Deregistration, KeyRequest};
use crate::problem::ProblemCause;
use e2m_types::{SessionId, SubscriptionId, UeRef};
use zeroize::Zeroizing;

use crate::values::ValueError;

/// The one versioned base path of every resource. A future incompatible version is `/e2m/v2`.
pub const BASE_PATH: &str = "/e2m/v1";
/// The collection of EMSE sessions at the EMKS (registration target).
pub const SESSIONS_PATH: &str = "/e2m/v1/sessions";
/// The collection of subscriptions (on whichever side accepts subscriptions).
pub const SUBSCRIPTIONS_PATH: &str = "/e2m/v1/subscriptions";
/// The default notification callback path.
pub const NOTIFICATIONS_PATH: &str = "/e2m/v1/notifications";
/// Where the HSS pushes intermediate keys (the stand-in for the stage-3 Diameter interface).
pub const INTERMEDIATE_KEYS_PATH: &str = "/e2m/v1/intermediate-keys";

/// Media type of every e2m message body.
pub const MEDIA_TYPE_XML: &str = "application/xml";
/// Media type of problem details (RFC 9457 §6.2).
pub const MEDIA_TYPE_PROBLEM_XML: &str = "application/problem+xml";

/// Header names (lowercase, as HTTP/2 and HTTP/3 require and HTTP/1.1 allows).
pub mod header {
    /// `Content-Type`: [`MEDIA_TYPE_XML`](super::MEDIA_TYPE_XML) or
    /// [`MEDIA_TYPE_PROBLEM_XML`](super::MEDIA_TYPE_PROBLEM_XML).
    pub const CONTENT_TYPE: &str = "content-type";
    /// `Location`: the created session or subscription (with 201).
    pub const LOCATION: &str = "location";
    /// `Cache-Control`: [`NO_STORE`] on every response that carries key material.
    pub const CACHE_CONTROL: &str = "cache-control";
    /// `Retry-After`: with 429 and 503.
    pub const RETRY_AFTER: &str = "retry-after";
    /// `Allow`: with 405.
    pub const ALLOW: &str = "allow";
    /// The `Cache-Control` value for key responses (RFC 9111 §5.2.2.5): no cache may keep
    /// the key.
    pub const NO_STORE: &str = "no-store";
}

/// The query parameter naming the UE by application identity.
pub const PARAM_APP_IDENTITY: &str = "appIdentity";
/// The query parameter naming the UE by IMSI.
pub const PARAM_IMSI: &str = "imsi";
/// The query parameter carrying the key id.
pub const PARAM_KEY_ID: &str = "keyId";

/// The HTTP methods the binding uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// DELETE
    Delete,
}

impl Method {
    /// The method token.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One operation of the binding, with its method and success status.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Operation {
    /// EMSE registration.
    Register,
    /// Key fetch.
    FetchKey,
    /// EMSE deregistration.
    Deregister,
    /// Subscription.
    Subscribe,
    /// Unsubscription.
    Unsubscribe,
    /// Notification delivery.
    Notify,
    /// HSS → EMKS intermediate-key push.
    PushIntermediateKey,
}

impl Operation {
    /// The method the operation uses.
    pub const fn method(self) -> Method {
        match self {
            Operation::FetchKey => Method::Get,
            Operation::Deregister | Operation::Unsubscribe => Method::Delete,
            Operation::Register
            | Operation::Subscribe
            | Operation::Notify
            | Operation::PushIntermediateKey => Method::Post,
        }
    }

    /// The status of success: 201 Created with `Location` for registration and
    /// subscription, 200 OK for the key fetch (not the seed's 201: see the module docs),
    /// 204 No Content otherwise.
    pub const fn success_status(self) -> u16 {
        match self {
            Operation::Register | Operation::Subscribe => 201,
            Operation::FetchKey => 200,
            Operation::Deregister
            | Operation::Unsubscribe
            | Operation::Notify
            | Operation::PushIntermediateKey => 204,
        }
    }

    /// Whether the success response must carry `Cache-Control: no-store` (it holds a key).
    pub const fn response_is_secret(self) -> bool {
        matches!(self, Operation::FetchKey)
    }
}

/// A request matched to an operation, with what its target carries.
#[derive(PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Route {
    /// `POST /e2m/v1/sessions`; body: [`Registration`](crate::Registration).
    Register,
    /// `GET /e2m/v1/sessions/{session}/keys?…`; no body.
    FetchKey(KeyRequest),
    /// `DELETE /e2m/v1/sessions/{session}`; no body.
    Deregister(Deregistration),
    /// `POST /e2m/v1/subscriptions`; body: [`Subscription`](crate::Subscription).
    Subscribe,
    /// `DELETE /e2m/v1/subscriptions/{subscription}`; no body.
    Unsubscribe(SubscriptionId),
    /// `POST /e2m/v1/notifications`; body: [`Notification`](crate::Notification).
    Notify,
    /// `POST /e2m/v1/intermediate-keys`; body: [`IntermediateKeyPush`](crate::IntermediateKeyPush).
    PushIntermediateKey,
}

/// Why a method and target match no operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No such resource (answer [`ProblemCause::NotFound`]).
    #[error("no such resource")]
    NotFound,
    /// The resource exists, but not with this method; `allow` is the `Allow` header value.
    #[error("method not allowed; allowed: {allow}")]
    MethodNotAllowed {
        /// The methods the resource supports.
        allow: &'static str,
    },
    /// The target is not in origin form, or is ambiguous: a fragment, a percent-encoded or
    /// empty path segment, a dot segment.
    #[error("request target is not a plain origin-form path")]
    BadTarget,
    /// A session or subscription id in the path is invalid.
    #[error("bad id in path: {0}")]
    BadId(ValueError),
    /// The query string is malformed or ambiguous.
    #[error("bad query: {0}")]
    BadQuery(#[from] QueryError),
}

impl RouteError {
    /// The problem to answer with.
    pub const fn cause(self) -> ProblemCause {
        match self {
            RouteError::NotFound => ProblemCause::NotFound,
            RouteError::MethodNotAllowed { .. } => ProblemCause::MethodNotAllowed,
            RouteError::BadTarget | RouteError::BadId(_) | RouteError::BadQuery(_) => {
                ProblemCause::Malformed
            }
        }
    }
}

/// Why a query string was refused. Anything that two servers could read differently is
/// refused rather than guessed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A query on a resource that takes none.
    #[error("this resource takes no query")]
    Unexpected,
    /// A parameter other than `appIdentity`, `imsi` and `keyId`.
    #[error("unknown query parameter")]
    UnknownParameter,
    /// A parameter given twice.
    #[error("query parameter given twice")]
    DuplicateParameter,
    /// Both `appIdentity` and `imsi`, or neither.
    #[error("exactly one of appIdentity and imsi is required")]
    UeNotExactlyOnce,
    /// No `keyId`.
    #[error("keyId is required")]
    MissingKeyId,
    /// A pair without `=`, an empty pair (`&&`), or an empty value.
    #[error("query pair is empty or has no '='")]
    BadPair,
    /// A `+` (space in HTML forms, plus elsewhere), `;` (a separator to some servers), or a
    /// character that must be percent-encoded.
    #[error("ambiguous or unencoded character in query")]
    BadCharacter,
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding in query")]
    BadPercentEncoding,
    /// A value that is not valid for its parameter.
    #[error("bad query value: {0}")]
    BadValue(ValueError),
}

/// The path of a session resource: `/e2m/v1/sessions/{session}` (the registration's
/// `Location`, the deregistration target), with the session id in its one wire form
/// ([`SessionId::to_text`]). It holds the secret id, so it is zeroized when dropped.
pub fn session_path(session: &SessionId) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(
        SESSIONS_PATH.len() + 1 + SessionId::TEXT_LEN,
    ));
    out.push_str(SESSIONS_PATH);
    out.push('/');
    out.push_str(&session.to_text());
    out
}

/// The path of a subscription resource: `/e2m/v1/subscriptions/{subscription}`.
pub fn subscription_path(subscription: &SubscriptionId) -> String {
    format!("{SUBSCRIPTIONS_PATH}/{subscription}")
}

/// Percent-encodes every octet outside RFC 3986 "unreserved" (uppercase hex, §2.1), so the
/// value reads the same to every parser.
fn push_percent_encoded(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

impl KeyRequest {
    /// The request target (path and query) of the key fetch:
    /// `/e2m/v1/sessions/{session}/keys?appIdentity={pct-encoded}&keyId={8 hex}` or
    /// `…?imsi={digits}&keyId=…`.
    ///
    /// ```
    /// use e2m_msg::{AppIdentity, KeyId, KeyRequest, Route, SessionId, UeRef};
    /// let request = KeyRequest {
    ///     session_id: SessionId::parse("AAAAAAAAAAAAAAAAs-0123")?,
    ///     ue: UeRef::AppIdentity(AppIdentity::new("sensor-17@iot.example.com")?),
    ///     key_id: KeyId::from_u32(0xae47bf35),
    /// };
    /// let target = request.to_target();
    /// assert_eq!(target.as_str(),
    ///     "/e2m/v1/sessions/AAAAAAAAAAAAAAAAs-0123/keys?appIdentity=sensor-17%40iot.example.com&keyId=ae47bf35");
    /// assert_eq!(Route::parse("GET", &target)?, Route::FetchKey(request));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_target(&self) -> Zeroizing<String> {
        // Path, the 22-character session id, "/keys?", both parameter names and the key id
        // fit in 128; the identity takes at most 3 characters per octet. Reserved once: the
        // target holds the secret session id, and a growing String would leave copies.
        let mut out = Zeroizing::new(String::with_capacity(
            SESSIONS_PATH.len() + 128 + 3 * AppIdentity::MAX_LEN,
        ));
        out.push_str(SESSIONS_PATH);
        out.push('/');
        out.push_str(&self.session_id.to_text());
        out.push_str("/keys?");
        match &self.ue {
            UeRef::AppIdentity(id) => {
                out.push_str(PARAM_APP_IDENTITY);
                out.push('=');
                push_percent_encoded(&mut out, id.as_str());
            }
            UeRef::Imsi(imsi) => {
                out.push_str(PARAM_IMSI);
                out.push('=');
                out.push_str(imsi.as_str());
            }
        }
        out.push('&');
        out.push_str(PARAM_KEY_ID);
        out.push('=');
        out.push_str(&self.key_id.to_string());
        out
    }
}

impl Deregistration {
    /// The request target of the deregistration: the session path.
    pub fn to_target(&self) -> Zeroizing<String> {
        session_path(&self.session_id)
    }
}

/// Characters a query value may carry unencoded: RFC 3986 pchar and `/`, `?`, less the
/// delimiters `&` and `=`, and less `+` and `;`, which some parsers read as space or as a
/// separator.
fn is_query_value_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'@'
                | b':'
                | b'/'
                | b'?'
                | b'!'
                | b'$'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b','
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one query value into `out` (at most `out.len()` octets; longer is `TooLong`).
fn percent_decode<'b>(value: &[u8], out: &'b mut [u8]) -> Result<&'b [u8], QueryError> {
    if value.is_empty() {
        return Err(QueryError::BadPair);
    }
    let mut n = 0;
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        let decoded = if b == b'%' {
            let hi = value.get(i + 1).copied().and_then(hex_value);
            let lo = value.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    i += 3;
                    (hi << 4) | lo
                }
                _ => return Err(QueryError::BadPercentEncoding),
            }
        } else if is_query_value_byte(b) {
            i += 1;
            b
        } else {
            return Err(QueryError::BadCharacter);
        };
        let slot = out
            .get_mut(n)
            .ok_or(QueryError::BadValue(ValueError::TooLong {
                max: AppIdentity::MAX_LEN,
                actual: n + 1,
            }))?;
        *slot = decoded;
        n += 1;
    }
    Ok(&out[..n])
}

/// Parses the key fetch query: exactly one of `appIdentity`/`imsi` and one `keyId`, in any
/// order, each once, nothing else.
fn parse_key_query(query: &[u8]) -> Result<(UeRef, KeyId), QueryError> {
    let mut ue: Option<UeRef> = None;
    let mut key_id: Option<KeyId> = None;
    if query.is_empty() {
        return Err(QueryError::UeNotExactlyOnce);
    }
    for pair in query.split(|&b| b == b'&') {
        let eq = pair
            .iter()
            .position(|&b| b == b'=')
            .ok_or(QueryError::BadPair)?;
        let (name, value) = (&pair[..eq], &pair[eq + 1..]);
        let mut buf = [0u8; AppIdentity::MAX_LEN];
        let decoded = percent_decode(value, &mut buf)?;
        if name == PARAM_APP_IDENTITY.as_bytes() || name == PARAM_IMSI.as_bytes() {
            if ue.is_some() {
                return Err(
                    if name == PARAM_APP_IDENTITY.as_bytes()
                        && matches!(ue, Some(UeRef::AppIdentity(_)))
                        || name == PARAM_IMSI.as_bytes() && matches!(ue, Some(UeRef::Imsi(_)))
                    {
                        QueryError::DuplicateParameter
                    } else {
                        QueryError::UeNotExactlyOnce
                    },
                );
            }
            ue = Some(if name == PARAM_APP_IDENTITY.as_bytes() {
                UeRef::AppIdentity(
                    AppIdentity::from_utf8(decoded)
                        .map_err(|e| QueryError::BadValue(ValueError::Identity(e)))?,
                )
            } else {
                UeRef::Imsi(
                    Imsi::from_utf8(decoded)
                        .map_err(|e| QueryError::BadValue(ValueError::Identity(e)))?,
                )
            });
        } else if name == PARAM_KEY_ID.as_bytes() {
            if key_id.is_some() {
                return Err(QueryError::DuplicateParameter);
            }
            key_id = Some(
                KeyId::parse_bytes(decoded)
                    .map_err(|e| QueryError::BadValue(ValueError::KeyId(e)))?,
            );
        } else {
            return Err(QueryError::UnknownParameter);
        }
    }
    let ue = ue.ok_or(QueryError::UeNotExactlyOnce)?;
    let key_id = key_id.ok_or(QueryError::MissingKeyId)?;
    Ok((ue, key_id))
}

impl Route {
    /// Matches a request's method and target (origin form: path and optional query).
    ///
    /// Paths are matched exactly: no trailing slash, no empty or dot segment, no
    /// percent-encoding in the path (no id ever needs it), no fragment. Method tokens are
    /// case-sensitive (RFC 9110 §9.1).
    ///
    /// # Errors
    /// [`RouteError`]; its [`cause`](RouteError::cause) is the problem to answer with.
    pub fn parse(method: &str, target: &str) -> Result<Route, RouteError> {
        let bytes = target.as_bytes();
        if bytes.first() != Some(&b'/') || bytes.contains(&b'#') {
            return Err(RouteError::BadTarget);
        }
        let (path, query) = match target.find('?') {
            Some(q) => (&target[..q], Some(&target.as_bytes()[q + 1..])),
            None => (target, None),
        };
        if path.bytes().any(|b| !is_path_byte(b)) {
            return Err(RouteError::BadTarget);
        }
        let rest = path.strip_prefix(BASE_PATH).ok_or(RouteError::NotFound)?;
        let rest = match rest.strip_prefix('/') {
            Some(r) => r,
            None => return Err(RouteError::NotFound),
        };
        let mut segments = rest.split('/');
        let first = segments.next().unwrap_or_default();
        let second = segments.next();
        let third = segments.next();
        let fourth = segments.next();
        if fourth.is_some() {
            return Err(RouteError::NotFound);
        }
        for s in [Some(first), second, third].into_iter().flatten() {
            if s.is_empty() || s == "." || s == ".." {
                return Err(RouteError::BadTarget);
            }
        }
        let no_query = || match query {
            None => Ok(()),
            Some(_) => Err(RouteError::BadQuery(QueryError::Unexpected)),
        };
        let allow = |allowed: Method, allow: &'static str| {
            if method == allowed.as_str() {
                Ok(())
            } else {
                Err(RouteError::MethodNotAllowed { allow })
            }
        };
        match (first, second, third) {
            ("sessions", None, None) => {
                allow(Method::Post, "POST")?;
                no_query()?;
                Ok(Route::Register)
            }
            ("sessions", Some(id), None) => {
                allow(Method::Delete, "DELETE")?;
                let session_id = SessionId::parse(id).map_err(|e| RouteError::BadId(e.into()))?;
                no_query()?;
                Ok(Route::Deregister(Deregistration { session_id }))
            }
            ("sessions", Some(id), Some("keys")) => {
                allow(Method::Get, "GET")?;
                let session_id = SessionId::parse(id).map_err(|e| RouteError::BadId(e.into()))?;
                let (ue, key_id) = parse_key_query(query.unwrap_or_default())?;
                Ok(Route::FetchKey(KeyRequest {
                    session_id,
                    ue,
                    key_id,
                }))
            }
            ("subscriptions", None, None) => {
                allow(Method::Post, "POST")?;
                no_query()?;
                Ok(Route::Subscribe)
            }
            ("subscriptions", Some(id), None) => {
                allow(Method::Delete, "DELETE")?;
                let id = id
                    .parse::<SubscriptionId>()
                    .map_err(|e| RouteError::BadId(e.into()))?;
                no_query()?;
                Ok(Route::Unsubscribe(id))
            }
            ("notifications", None, None) => {
                allow(Method::Post, "POST")?;
                no_query()?;
                Ok(Route::Notify)
            }
            ("intermediate-keys", None, None) => {
                allow(Method::Post, "POST")?;
                no_query()?;
                Ok(Route::PushIntermediateKey)
            }
            _ => Err(RouteError::NotFound),
        }
    }

    /// The operation this route performs.
    pub const fn operation(&self) -> Operation {
        match self {
            Route::Register => Operation::Register,
            Route::FetchKey(_) => Operation::FetchKey,
            Route::Deregister(_) => Operation::Deregister,
            Route::Subscribe => Operation::Subscribe,
            Route::Unsubscribe(_) => Operation::Unsubscribe,
            Route::Notify => Operation::Notify,
            Route::PushIntermediateKey => Operation::PushIntermediateKey,
        }
    }
}

/// Path characters accepted unencoded: RFC 3986 unreserved plus `/` (no `%`, no sub-delims:
/// no e2m path needs them, and refusing them leaves nothing to normalise).
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/')
}
