//! The checker's HTTPS client at the wire level: HTTP/1.1 (hyper's client connection) over
//! TLS (rustls, the e2m TLS profile's suites and versions), one connection per request so
//! that every check starts clean, and every status, header and body octet handed back
//! exactly as it came. Requests are built by hand, so a check can send what no
//! well-behaved client would (a wrong media type, a body on a GET, a query given twice).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use e2m_https::pki::{Credentials, PeerIdentity};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;

/// The largest answer body read (a key server's answers are a few hundred octets).
const MAX_ANSWER: usize = 1024 * 1024;

/// Why an exchange gave no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The TCP connection could not be made.
    Connect(String),
    /// The TLS handshake failed (or the server closed the connection with an alert).
    Tls(String),
    /// HTTP failed: the connection closed before an answer, or the answer was not HTTP.
    Http(String),
    /// No answer in time.
    Timeout,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Connect(e) => write!(f, "TCP connect failed: {e}"),
            WireError::Tls(e) => write!(f, "TLS failed: {e}"),
            WireError::Http(e) => write!(f, "no HTTP answer: {e}"),
            WireError::Timeout => f.write_str("no answer in time"),
        }
    }
}

/// One HTTP answer, exactly as received.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The status code.
    pub(crate) status: u16,
    /// The headers.
    pub(crate) headers: HeaderMap,
    /// The body (zeroized when dropped: it may hold a key).
    pub(crate) body: zeroize::Zeroizing<Vec<u8>>,
}

impl Exchange {
    /// A header's value as text, if present once and visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type of `Content-Type` (parameters dropped, lowercased).
    pub(crate) fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// Where the server under test is: `https://host[:port]`.
#[derive(Clone, Debug)]
pub(crate) struct BaseUrl {
    host: String,
    port: u16,
}

impl BaseUrl {
    /// Parses `https://host[:port][/]` (no path: every e2m resource is under `/e2m/v1`).
    pub(crate) fn parse(url: &str) -> Result<BaseUrl, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or("the URL must start with https://")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') || rest.is_empty() {
            return Err("want https://host[:port] with no path".into());
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed [")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| "bad port")?,
                None if after.is_empty() => 443,
                None => return Err("bad text after ]".into()),
            };
            (h.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| "bad port")?),
                None => (rest.to_owned(), 443),
            }
        };
        Ok(BaseUrl { host, port })
    }

    /// The `Host` header value.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn server_name(&self) -> Result<ServerName<'static>, WireError> {
        ServerName::try_from(self.host.clone())
            .map_err(|e| WireError::Connect(format!("bad host name: {e}")))
    }

    async fn resolve(&self) -> Result<SocketAddr, WireError> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| WireError::Connect(e.to_string()))?
            .next()
            .ok_or_else(|| WireError::Connect("host name resolves to nothing".into()))
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "https://{}", self.authority())
    }
}

/// A TLS client configuration of the e2m profile (TLS 1.2 and 1.3, AEAD suites, ring),
/// trusting `ca`, presenting `credentials` if given; ALPN `http/1.1`.
pub(crate) fn client_config(
    ca: &[CertificateDer<'static>],
    credentials: Option<&Credentials>,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert.clone()).map_err(|e| format!("CA: {e}"))?;
    }
    let builder = ClientConfig::builder_with_provider(e2m_https::tls::profile_provider())
        .with_protocol_versions(e2m_https::tls::PROFILE_VERSIONS)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match credentials {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key())
            .map_err(|e| format!("client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What the TLS handshake showed about the server.
#[derive(Debug, Clone)]
pub(crate) struct TlsFacts {
    /// `TLSv1.3` or `TLSv1.2`.
    pub(crate) version: String,
    /// The negotiated suite.
    pub(crate) suite: String,
    /// The e2m identity in the server's certificate, or why there is none.
    pub(crate) identity: Result<PeerIdentity, String>,
}

/// One request.
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    pub(crate) headers: Vec<(&'a str, String)>,
    pub(crate) body: Vec<u8>,
}

impl<'a> Request<'a> {
    /// A request with no body and no extra header.
    pub(crate) fn new(method: &'a str, target: &'a str) -> Self {
        Request {
            method,
            target,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// This request with an XML body (`Content-Type: application/xml`).
    pub(crate) fn xml(mut self, body: &[u8]) -> Self {
        self.headers
            .push(("content-type", e2m_msg::rest::MEDIA_TYPE_XML.to_owned()));
        self.body = body.to_vec();
        self
    }

    /// This request with `name: value` added.
    pub(crate) fn header(mut self, name: &'a str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// This request with `body` (and no content type unless added).
    pub(crate) fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}

/// Connects (TCP, then TLS with `config`) to `base`.
async fn connect(
    base: &BaseUrl,
    config: &Arc<ClientConfig>,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, TlsFacts), WireError> {
    let addr = base.resolve().await?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| WireError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    let tls = connector
        .connect(base.server_name()?, tcp)
        .await
        .map_err(|e| WireError::Tls(e.to_string()))?;
    let (_, conn) = tls.get_ref();
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let identity = match conn.peer_certificates().and_then(|c| c.first()) {
        Some(leaf) => PeerIdentity::from_certificate(leaf).map_err(|e| e.to_string()),
        None => Err("no server certificate".into()),
    };
    Ok((
        tls,
        TlsFacts {
            version: version.replace("TLSv1_", "TLSv1."),
            suite,
            identity,
        },
    ))
}

/// Sends `request` over a new connection and reads the whole answer.
pub(crate) async fn send(
    base: &BaseUrl,
    config: &Arc<ClientConfig>,
    request: Request<'_>,
    timeout: Duration,
) -> Result<(Exchange, TlsFacts), WireError> {
    tokio::time::timeout(timeout, send_inner(base, config, request))
        .await
        .map_err(|_| WireError::Timeout)?
}

async fn send_inner(
    base: &BaseUrl,
    config: &Arc<ClientConfig>,
    request: Request<'_>,
) -> Result<(Exchange, TlsFacts), WireError> {
    let (tls, facts) = connect(base, config).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| WireError::Http(e.to_string()))?;
    let driver = tokio::spawn(connection);
    let mut builder = hyper::Request::builder()
        .method(request.method)
        .uri(request.target)
        .header(hyper::header::HOST, base.authority());
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| WireError::Http(format!("header name: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| WireError::Http(format!("header value: {e}")))?;
        builder = builder.header(name, value);
    }
    let http_request = builder
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|e| WireError::Http(format!("request: {e}")))?;
    let answer = sender.send_request(http_request).await;
    let result = match answer {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            match Limited::new(body, MAX_ANSWER).collect().await {
                Ok(collected) => Ok(Exchange {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body: zeroize::Zeroizing::new(collected.to_bytes().to_vec()),
                }),
                Err(e) => Err(WireError::Http(format!("body: {e}"))),
            }
        }
        Err(e) => Err(classify(&e)),
    };
    drop(sender);
    driver.abort();
    result.map(|exchange| (exchange, facts))
}

/// A hyper error whose source is a TLS alert reads as a TLS failure (TLS 1.3 servers refuse
/// a client certificate after the client's handshake has already completed).
fn classify(e: &hyper::Error) -> WireError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && inner.downcast_ref::<rustls::Error>().is_some()
        {
            return WireError::Tls(inner.to_string());
        }
        source = s.source();
    }
    WireError::Http(e.to_string())
}

/// Connects only (no request), for the checks of the TLS layer itself.
pub(crate) async fn handshake(
    base: &BaseUrl,
    config: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<TlsFacts, WireError> {
    tokio::time::timeout(timeout, connect(base, config))
        .await
        .map_err(|_| WireError::Timeout)?
        .map(|(_, facts)| facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let b = BaseUrl::parse("https://127.0.0.1:8443").unwrap_or_else(|_| BaseUrl {
            host: String::new(),
            port: 0,
        });
        assert_eq!(b.authority(), "127.0.0.1:8443");
        let b = BaseUrl::parse("https://[::1]:9/").map(|b| b.authority());
        assert_eq!(b.as_deref(), Ok("[::1]:9"));
        let b = BaseUrl::parse("https://emks.example").map(|b| b.authority());
        assert_eq!(b.as_deref(), Ok("emks.example:443"));
        assert!(BaseUrl::parse("http://x").is_err());
        assert!(BaseUrl::parse("https://x/e2m").is_err());
        assert!(BaseUrl::parse("https://x:port").is_err());
    }
}
