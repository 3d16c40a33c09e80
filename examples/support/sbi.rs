//! The SBI client flags the AKMA roles share (`ausf`, `af`): where the AAnF (or the NEF)
//! is, how to reach it, and the access token to show; and the `SbiClient` they make.
//!
//! `https://` URLs: HTTP/2 over TLS (ALPN `h2`) with the role's client certificate from
//! the AKMA PKI directory (`emks gen-akma-pki`) and the AAnF's certificate checked
//! against the URL's host. `http://` URLs: h2c with prior knowledge (RFC 9113 §3.3), for
//! an operator running the SBI in clear inside its trust domain; no certificate then.

use std::net::SocketAddr;
use std::path::PathBuf;

use e2m_sbi::client::{ClientTransport, SbiClient};
use e2m_sbi::e2m_https::pki::Credentials;
use e2m_sbi::pki::AkmaPkiDir;
use e2m_sbi::tls::PemError;

use super::cli;

/// An SBI base URL whose scheme says the transport.
#[derive(Clone, Debug)]
pub(crate) struct SbiUrl {
    text: String,
    tls: bool,
}

impl SbiUrl {
    /// The URL as given.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it is `https://` (else `http://`, h2c).
    pub(crate) fn tls(&self) -> bool {
        self.tls
    }

    /// The host part (without brackets around an IPv6 address).
    pub(crate) fn host(&self) -> String {
        self.text
            .parse::<hyper::Uri>()
            .ok()
            .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()))
            .unwrap_or_default()
    }
}

/// `--aanf`'s value parser: an absolute `https://` or `http://` URL with a host.
pub(crate) fn parse_sbi_url(text: &str) -> Result<SbiUrl, String> {
    let uri: hyper::Uri = text.parse().map_err(|_| "not a URL".to_owned())?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("want an https:// or http:// URL".into()),
    };
    match uri.authority() {
        Some(a) if !a.host().is_empty() && !a.as_str().contains('@') => {}
        _ => return Err("want a URL with a host (and no user part)".into()),
    }
    Ok(SbiUrl {
        text: text.trim_end_matches('/').to_owned(),
        tls,
    })
}

/// Where the AAnF is and how to reach it.
#[derive(clap::Args, Debug)]
pub(crate) struct SbiArgs {
    /// The AAnF's base URL: https://HOST:PORT (HTTP/2 over TLS with this role's client
    /// certificate) or http://HOST:PORT (h2c with prior knowledge, inside an operator's
    /// trust domain only).
    #[arg(long, value_name = "URL", value_parser = parse_sbi_url)]
    pub(crate) aanf: SbiUrl,
    /// The AKMA PKI directory (from `emks gen-akma-pki`): this role's certificate and the
    /// CA (for https).
    #[arg(long, value_name = "DIR")]
    pub(crate) certs: Option<PathBuf>,
    /// Connect to ADDR whatever the URL's host resolves to (the host still names the AAnF
    /// for TLS), as `curl --resolve` does.
    #[arg(long, value_name = "ADDR")]
    pub(crate) connect_to: Option<SocketAddr>,
    /// A file holding an OAuth2 access token from the NRF, sent as a bearer token (TS
    /// 33.501 §13.4.1; for an AAnF started with --nrf-key).
    #[arg(long, value_name = "FILE")]
    pub(crate) access_token_file: Option<PathBuf>,
}

impl SbiArgs {
    /// Refuses `--certs` missing for https, or given for h2c (exit 2).
    pub(crate) fn check(&self, program: &str) {
        match (self.aanf.tls(), self.certs.is_some()) {
            (true, false) => cli::usage_error(program, "an https:// --aanf needs --certs"),
            (false, true) => cli::usage_error(
                program,
                "--certs is for https:// (an http:// --aanf is h2c, without certificates)",
            ),
            _ => {}
        }
    }

    /// The PKI directory (https only).
    pub(crate) fn pki(&self) -> Option<AkmaPkiDir> {
        self.certs.as_deref().map(AkmaPkiDir::open)
    }

    /// The client; `credentials` picks this role's certificate from the PKI (https).
    pub(crate) fn client(
        &self,
        credentials: impl FnOnce(&AkmaPkiDir) -> Result<Credentials, PemError>,
    ) -> Result<SbiClient, String> {
        let transport = match self.pki() {
            Some(pki) => {
                let shown = cli::printable(&pki.path().display().to_string());
                let ca = pki.ca().map_err(|e| format!("--certs {shown}: {e}"))?;
                let own = credentials(&pki).map_err(|e| format!("--certs {shown}: {e}"))?;
                ClientTransport::tls(&own, &ca).map_err(|e| format!("--certs {shown}: {e}"))?
            }
            None => ClientTransport::H2c,
        };
        let mut client =
            SbiClient::new(self.aanf.as_str(), &transport).map_err(|e| format!("--aanf: {e}"))?;
        if let Some(address) = self.connect_to {
            client = client.resolve(address);
        }
        if let Some(file) = &self.access_token_file {
            let shown = cli::printable(&file.display().to_string());
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("--access-token-file {shown}: {e}"))?,
            );
            client = client
                .bearer_token(text.trim())
                .map_err(|e| format!("--access-token-file {shown}: {e}"))?;
        }
        Ok(client)
    }
}
