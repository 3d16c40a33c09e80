//! The `emks` example's Diameter interface (issue 17): the HSS's pushes over Diameter
//! (`e2m-diameter-push`), beside HTTPS, into the same core, with the same metrics and audit.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use e2m_diameter_push::net::{
    DiameterTls, EmksDiameter, EmksDiameterConfig, EmksDiameterOptions, start_emks_diameter,
};
use e2m_emks::Emks;
use e2m_https::metrics::EmksObserver;
use e2m_https::pki::{DEFAULT_EMKS_HOST, DEFAULT_HSS_HOST, PkiDir};
use e2m_keystore::{IdentityMap, IntKeyStore, SessionStore, SubscriptionStore};
use tokio::sync::Notify;

/// The realm of the generated PKI's Diameter identities.
const DEFAULT_REALM: &str = "e2m.test";

/// How the Diameter interface is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DiameterTransport {
    /// TLS from the first octet with mutual certificates from --certs (RFC 6733 §13): the
    /// peer's certificate must name its Origin-Host.
    Tls,
    /// Plain TCP: peers are not authenticated (a network protected by IPsec only).
    Tcp,
}

/// The Diameter flags of `emks` (all start with `--diameter`).
#[derive(Args, Debug)]
pub(crate) struct DiameterArgs {
    /// Also take the HSS's key pushes over Diameter on ADDR (the e2m push application;
    /// off unless given; 5658 is the registered Diameter-over-TLS port, 3868 TCP's).
    #[arg(long, value_name = "ADDR")]
    diameter_listen: Option<SocketAddr>,
    /// The EMKS's Diameter identity (Origin-Host); over TLS a dNSName of its certificate.
    #[arg(long, value_name = "FQDN", default_value = DEFAULT_EMKS_HOST)]
    diameter_host: String,
    /// The EMKS's Diameter realm (the HSS's Destination-Realm).
    #[arg(long, value_name = "REALM", default_value = DEFAULT_REALM)]
    diameter_realm: String,
    /// tls (certificates from --certs) or tcp (no peer authentication).
    #[arg(long, value_enum, default_value_t = DiameterTransport::Tls)]
    diameter_transport: DiameterTransport,
    /// An HSS allowed to push, by Diameter identity (repeatable; default the generated
    /// PKI's HSS, hss.e2m.test).
    #[arg(long = "diameter-peer", value_name = "FQDN")]
    diameter_peers: Vec<String>,
    /// A Diameter agent (relay) trusted to forward an HSS's pushes (repeatable): through
    /// it the HSS is known by the Origin-Host it forwards, which must be a --diameter-peer.
    #[arg(long = "diameter-relay", value_name = "FQDN")]
    diameter_relays: Vec<String>,
    /// The watchdog's Tw in seconds (RFC 3539: at least 6).
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(6..=86_400))]
    diameter_watchdog: u64,
    /// Pushes in the store at once; past it a push is answered DIAMETER_TOO_BUSY (the HSS
    /// retries).
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    diameter_max_in_flight: u64,
}

/// Starts the Diameter interface when `--diameter-listen` is given; prints its line on
/// stdout (`Diameter listening on ADDR (tls|tcp)`).
pub(crate) async fn start<K, M, S, B>(
    args: &DiameterArgs,
    core: Arc<Emks<K, M, S, B>>,
    pki: &PkiDir,
    observer: Option<Arc<dyn EmksObserver>>,
    wake: Arc<Notify>,
) -> Result<Option<EmksDiameter>, String>
where
    K: IntKeyStore + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    let Some(listen) = args.diameter_listen else {
        return Ok(None);
    };
    let mut config = EmksDiameterConfig::new(
        listen,
        args.diameter_host.clone(),
        args.diameter_realm.clone(),
    );
    config.hss = if args.diameter_peers.is_empty() {
        vec![DEFAULT_HSS_HOST.to_owned()]
    } else {
        args.diameter_peers.clone()
    };
    config.relays.clone_from(&args.diameter_relays);
    config.watchdog_interval = Duration::from_secs(args.diameter_watchdog);
    config.max_in_flight = usize::try_from(args.diameter_max_in_flight).unwrap_or(256);
    let tls = match args.diameter_transport {
        DiameterTransport::Tls => Some(DiameterTls {
            credentials: pki.emks().map_err(|e| e.to_string())?,
            ca: pki.ca_certificates().map_err(|e| e.to_string())?,
        }),
        DiameterTransport::Tcp => {
            tracing::warn!("Diameter over plain TCP: peers are not authenticated");
            None
        }
    };
    let options = EmksDiameterOptions {
        observer,
        wake: Some(wake),
    };
    let diameter = start_emks_diameter(core, config, tls.as_ref(), options)
        .await
        .map_err(|e| format!("--diameter-listen {listen}: {e}"))?;
    let transport = match args.diameter_transport {
        DiameterTransport::Tls => "tls",
        DiameterTransport::Tcp => "tcp",
    };
    // Like the other lines on stdout: a closed stdout is no reason to stop serving.
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "Diameter listening on {} ({transport})",
        diameter.local_addr()
    );
    let _ = stdout.flush();
    Ok(Some(diameter))
}
