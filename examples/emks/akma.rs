//! The AAnF beside the EMKS (`--aanf-listen`): Naanf_AKMA (TS 29.535) over HTTP/2 with
//! mutual TLS, or h2c with `--sbi-h2c`, from the same store as the e2m API (its AKMA
//! contexts: in memory, in the redb file, or in the PostgreSQL database, K_AKMA sealed
//! under the same KEK files), with OAuth2 access tokens where `--nrf-key` is given and the
//! NEF's AKMA API where `--nef-api` is. See `examples/README.md`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use e2m_keystore::{AkmaContexts, AkmaOutbox, AkmaPolicy};
use e2m_sbi::aanf::{AanfServer, AanfServerOptions, start_aanf};
use e2m_sbi::client::{ClientTransport, Notifier};
use e2m_sbi::e2m_aanf::e2m_keyid::akma::Fqdn;
use e2m_sbi::e2m_aanf::{Aanf, AanfConfig, AfPolicy, Host};
use e2m_sbi::pki::{AkmaPki, AkmaPkiDir, AkmaPkiSpec};
use e2m_sbi::server::{H2cPeers, Transport};
use e2m_sbi::tls::server_config;
use e2m_sbi::token::TokenPolicy;

use crate::metrics::AanfMetrics;
use crate::{PROGRAM, cli};

/// The AAnF's flags (all off unless `--aanf-listen` is given).
#[derive(Args, Debug)]
pub(crate) struct AkmaArgs {
    /// Also serve the AAnF (Naanf_AKMA, HTTP/2) on ADDR, from the same store.
    #[arg(long, value_name = "ADDR")]
    aanf_listen: Option<SocketAddr>,
    /// The AKMA PKI directory (from `emks gen-akma-pki`): the AAnF's server and client
    /// certificates and the CA its peers' certificates chain to.
    #[arg(long, value_name = "DIR")]
    aanf_certs: Option<PathBuf>,
    /// Serve the AAnF over h2c (HTTP/2 in clear, prior knowledge) instead of TLS: only
    /// inside an operator's trust domain; peers are then named by address
    /// (--sbi-h2c-peer).
    #[arg(long)]
    sbi_h2c: bool,
    /// With --sbi-h2c: the names of the peer at IP (as its certificate would name it),
    /// e.g. `10.0.0.5=ausf.operator.example` (repeatable).
    #[arg(long, value_name = "IP=NAME[,NAME]", value_parser = parse_h2c_peer)]
    sbi_h2c_peer: Vec<(IpAddr, Vec<Host>)>,
    /// A peer allowed to register and remove AKMA contexts (an AUSF; repeatable).
    #[arg(long, value_name = "NAME")]
    aanf_ausf: Vec<Host>,
    /// A NEF allowed to ask for K_AF on behalf of the AFs it serves (repeatable).
    #[arg(long, value_name = "NAME")]
    aanf_nef: Vec<Host>,
    /// An AF allowed AKMA: `FQDN` (inside the operator's domain), `FQDN:nef` (only through
    /// the NEF), with `+supi` and/or `+gpsi` for what it may learn (repeatable).
    #[arg(long, value_name = "FQDN[:nef][+supi][+gpsi]", value_parser = parse_af)]
    aanf_af: Vec<(Fqdn, AfPolicy)>,
    /// A host any AF may name in its notifUri (repeatable; otherwise its certificate's).
    #[arg(long, value_name = "HOST")]
    aanf_notify_host: Vec<Host>,
    /// Reach notifUri host HOST at IP (a demo without DNS; repeatable).
    #[arg(long, value_name = "HOST=IP", value_parser = parse_resolve)]
    aanf_resolve: Vec<(String, IpAddr)>,
    /// Also serve the NEF's AKMA API (`/3gpp-akma/v1/retrieve`: GPSI, never the SUPI).
    #[arg(long)]
    nef_api: bool,
    /// The NRF's public key (PEM, EC P-256/P-384 or RSA): access tokens are then required
    /// and checked (TS 33.501 §13.4.1); without it, mutual TLS alone authorises.
    #[arg(long, value_name = "FILE")]
    nrf_key: Option<PathBuf>,
    /// With --nrf-key: the `iss` tokens must carry (the NRF's NF instance ID).
    #[arg(long, value_name = "ID")]
    nrf_issuer: Option<String>,
    /// With --nrf-key: an `aud` accepted besides `AANF` (this AAnF's NF instance ID;
    /// repeatable).
    #[arg(long, value_name = "ID")]
    aanf_audience: Vec<String>,
    /// K_AF's lifetime, in seconds (it never outlives K_AKMA).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    kaf_lifetime: u64,
    /// K_AKMA's lifetime (an AKMA context's), in seconds.
    #[arg(long, value_name = "SECS", default_value_t = AkmaPolicy::DEFAULT.max_age().as_secs())]
    akma_max_age: u64,
    /// Notification retries: the first wait, in milliseconds (doubling up to 60 s).
    #[arg(long, value_name = "MILLIS", default_value_t = 1000)]
    aanf_first_retry: u64,
    /// How long a notification claimed by this instance is its alone, in seconds (after
    /// a crash, another instance or this one after a restart sends it when this ends).
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    aanf_lease: u64,
}

fn parse_h2c_peer(text: &str) -> Result<(IpAddr, Vec<Host>), String> {
    let (ip, names) = text.split_once('=').ok_or("want IP=NAME[,NAME]")?;
    let ip: IpAddr = ip.parse().map_err(|_| "not an IP address")?;
    let names = names
        .split(',')
        .map(|n| n.parse::<Host>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ip, names))
}

fn parse_af(text: &str) -> Result<(Fqdn, AfPolicy), String> {
    let mut parts = text.split('+');
    let head = parts.next().unwrap_or_default();
    let (name, mut policy) = match head.strip_suffix(":nef") {
        Some(name) => (name, AfPolicy::VIA_NEF),
        None => (head, AfPolicy::INSIDE),
    };
    let fqdn = Fqdn::parse(name).map_err(|e| format!("FQDN: {e}"))?;
    for extra in parts {
        policy = match extra {
            "supi" => policy.with_supi(),
            "gpsi" => policy.with_gpsi(),
            _ => return Err(format!("unknown AF right `{extra}` (supi, gpsi)")),
        };
    }
    Ok((fqdn, policy))
}

fn parse_resolve(text: &str) -> Result<(String, IpAddr), String> {
    let (host, ip) = text.split_once('=').ok_or("want HOST=IP")?;
    Ok((
        host.to_owned(),
        ip.parse().map_err(|_| "not an IP address")?,
    ))
}

/// The AKMA context store of the chosen backend.
pub(crate) enum AkmaStore {
    Memory(e2m_keystore::MemoryAkmaContexts),
    Redb(e2m_keystore_redb::RedbAkmaContexts),
    Postgres(e2m_keystore_pg::PgAkmaContexts, Arc<tokio::sync::Notify>),
}

impl AkmaArgs {
    /// Whether the AAnF is to be served.
    pub(crate) fn enabled(&self) -> bool {
        self.aanf_listen.is_some()
    }

    /// The AKMA contexts' policy (exit 2 on a bad value).
    pub(crate) fn policy(&self) -> AkmaPolicy {
        AkmaPolicy::new(
            Duration::from_secs(self.akma_max_age),
            AkmaPolicy::DEFAULT.notify_per_ue(),
        )
        .unwrap_or_else(|e| cli::usage_error(PROGRAM, format!("--akma-max-age: {e}")))
    }

    /// Flags that need --aanf-listen, or each other (exit 2).
    pub(crate) fn check(&self) {
        if self.aanf_listen.is_none() {
            let given = self.aanf_certs.is_some()
                || self.sbi_h2c
                || self.nrf_key.is_some()
                || self.nef_api
                || !self.aanf_af.is_empty()
                || !self.aanf_ausf.is_empty();
            if given {
                cli::usage_error(PROGRAM, "the AAnF flags need --aanf-listen");
            }
            return;
        }
        if self.aanf_certs.is_none() && !self.sbi_h2c {
            cli::usage_error(PROGRAM, "--aanf-listen needs --aanf-certs (or --sbi-h2c)");
        }
        if !self.sbi_h2c && !self.sbi_h2c_peer.is_empty() {
            cli::usage_error(PROGRAM, "--sbi-h2c-peer is for --sbi-h2c");
        }
        if self.nrf_key.is_some() != self.nrf_issuer.is_some() {
            cli::usage_error(PROGRAM, "--nrf-key and --nrf-issuer go together");
        }
    }
}

/// A running AAnF.
pub(crate) struct AkmaRunning(AanfServer);

impl AkmaRunning {
    pub(crate) fn base_url(&self) -> String {
        self.0.base_url()
    }

    pub(crate) async fn shutdown(self) {
        self.0.shutdown().await;
    }
}

fn pki_error(flag: &str, dir: &Path, e: impl std::fmt::Display) -> String {
    format!("{flag} {}: {e}", cli::printable(&dir.display().to_string()))
}

/// Starts the AAnF over `store` (must run on the serving runtime); `metrics` (with
/// `--metrics-listen`) counts its answers and notification deliveries.
pub(crate) async fn start(
    args: &AkmaArgs,
    store: AkmaStore,
    metrics: Option<Arc<AanfMetrics>>,
) -> Result<AkmaRunning, String> {
    match store {
        AkmaStore::Memory(store) => start_on(args, store, None, metrics).await,
        AkmaStore::Redb(store) => start_on(args, store, None, metrics).await,
        AkmaStore::Postgres(store, wake) => start_on(args, store, Some(wake), metrics).await,
    }
}

async fn start_on<C: AkmaContexts + AkmaOutbox + 'static>(
    args: &AkmaArgs,
    store: C,
    wake: Option<Arc<tokio::sync::Notify>>,
    metrics: Option<Arc<AanfMetrics>>,
) -> Result<AkmaRunning, String> {
    let listen = args.aanf_listen.ok_or("--aanf-listen missing")?;
    let mut config = AanfConfig::new(Duration::from_secs(args.kaf_lifetime))
        .map_err(|e| format!("--kaf-lifetime: {e}"))?;
    for name in &args.aanf_ausf {
        config = config.allow_ausf(name.clone());
    }
    for name in &args.aanf_nef {
        config = config.allow_nef(name.clone());
    }
    for (fqdn, policy) in &args.aanf_af {
        config = config.allow_af(*fqdn, *policy);
    }
    for host in &args.aanf_notify_host {
        config = config.allow_notify_host(host.clone());
    }
    let tokens = match (&args.nrf_key, &args.nrf_issuer) {
        (Some(file), Some(issuer)) => {
            let pem = std::fs::read(file).map_err(|e| pki_error("--nrf-key", file, e))?;
            let mut audiences = vec![TokenPolicy::AANF_NF_TYPE];
            audiences.extend(args.aanf_audience.iter().map(String::as_str));
            config = config.require_tokens();
            Some(
                TokenPolicy::from_pem(&pem, issuer, &audiences)
                    .map_err(|e| pki_error("--nrf-key", file, e))?,
            )
        }
        _ => None,
    };
    let pki = args.aanf_certs.as_deref().map(AkmaPkiDir::open);
    let (transport, notifier) = match (&pki, args.sbi_h2c) {
        (_, true) => {
            let peers = args
                .sbi_h2c_peer
                .iter()
                .fold(H2cPeers::new(), |peers, (ip, names)| {
                    peers.name(*ip, names.iter().cloned())
                });
            let notifier = match &pki {
                Some(pki) => tls_notifier(pki)?.allow_h2c(),
                None => Notifier::h2c_only(),
            };
            (Transport::H2c(peers), notifier)
        }
        (Some(pki), false) => {
            let dir = pki.path();
            let ca = pki.ca().map_err(|e| pki_error("--aanf-certs", dir, e))?;
            let server = pki.aanf().map_err(|e| pki_error("--aanf-certs", dir, e))?;
            let tls = server_config(&server, &ca).map_err(|e| pki_error("--aanf-certs", dir, e))?;
            (Transport::Tls(tls), tls_notifier(pki)?)
        }
        (None, false) => return Err("--aanf-listen needs --aanf-certs (or --sbi-h2c)".into()),
    };
    let notifier = args
        .aanf_resolve
        .iter()
        .fold(notifier, |n, (host, ip)| n.resolve(host, *ip));
    let mut options = AanfServerOptions::new(transport, notifier);
    options.listen = listen;
    options.tokens = tokens;
    options.nef_api = args.nef_api;
    options.outbox_wake = wake;
    options.delivery.first_retry = Duration::from_millis(args.aanf_first_retry.max(1));
    options.delivery.lease = Duration::from_secs(args.aanf_lease);
    if let Some(metrics) = metrics {
        options.observer = Some(metrics.clone());
        options.delivery_observer = Some(metrics);
    }
    let core = Arc::new(Aanf::new(config, store));
    let server = start_aanf(core, options)
        .await
        .map_err(|e| format!("--aanf-listen {listen}: {e}"))?;
    Ok(AkmaRunning(server))
}

fn tls_notifier(pki: &AkmaPkiDir) -> Result<Notifier, String> {
    let dir = pki.path();
    let ca = pki.ca().map_err(|e| pki_error("--aanf-certs", dir, e))?;
    let client = pki
        .aanf_client()
        .map_err(|e| pki_error("--aanf-certs", dir, e))?;
    let transport =
        ClientTransport::tls(&client, &ca).map_err(|e| pki_error("--aanf-certs", dir, e))?;
    Ok(Notifier::new(transport))
}

/// `emks gen-akma-pki`: the AKMA roles' certificates.
pub(crate) fn gen_pki(
    dir: &Path,
    ausf: &[String],
    nef: &[String],
    af: &[String],
) -> Result<(), String> {
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let spec = AkmaPkiSpec::new(&refs(ausf), &refs(nef), &refs(af));
    AkmaPki::generate(&spec, dir).map_err(|e| e.to_string())?;
    println!(
        "AKMA PKI written to {}",
        cli::printable(&dir.display().to_string())
    );
    Ok(())
}
