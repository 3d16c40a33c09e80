//! The AF alone (TS 33.535 §6.3): the EMSE's DTLS 1.2 PSK server in the AKMA role. A UE
//! opens a handshake in the Ua* profile of TS 24.109 K.3.2 (`psk_identity_hint`
//! "3GPP-AKMA"; its `psk_identity` "3GPP-AKMA" and its A-KID); the AF asks the AAnF for
//! K_AF for that A-KID and its own AF_ID (`Naanf_AKMA_ApplicationKey_Get`, TS 29.535, over
//! HTTP/2 with its client certificate, or h2c), uses K_AF as the PSK, and answers the UE's
//! CoAP GETs as the `emse` example does. With `--via-nef` it asks the NEF's AKMA API
//! instead (TS 29.522 §5.14: an AF outside the operator's domain; never a SUPI).
//!
//! ```text
//! cargo run --example af -- --listen 127.0.0.1:5684 --aanf https://127.0.0.1:8446 \
//!     --certs /tmp/akma-pki --af-fqdn af.example.com --notify-listen 127.0.0.1:8447
//! ```
//!
//! AF_ID = `--af-fqdn` ‖ `01 00 01 C0 A8` (TS 33.535 A.4; the Ua* protocol identifier of
//! TLS_PSK_WITH_AES_128_CCM_8, TS 33.220 H.3); its certificate `af-FQDN.pem` must name the
//! FQDN (the AAnF derives K_AF for the AF it authenticated). K_AF is cached until its
//! expiry (at most 5 minutes; `e2m_dtls::akma_source`), and a "no context" answer for 2 s.
//!
//! With `--notify-listen ADDR` the AF runs its notification endpoint (HTTP/2 over TLS with
//! its `af-FQDN-notify` certificate, or h2c for an `http://` AAnF) and gives the AAnF
//! `notifUri` = `https://FQDN:PORT/akma/notify` (`--notify-host` for another host) with
//! each request; a service-disablement notification (the AUSF removed the UE's context)
//! makes it drop that A-KID's K_AF at once, so the UE's next handshake fails and it runs
//! primary authentication again. Notifications are accepted from the names of
//! `--notifier` (default `aanf.e2m.test`, the AAnF's name in `emks gen-akma-pki`; over
//! h2c, the AAnF's address is given those names).
//!
//! Other flags: `--connect-to ADDR` (reach the AAnF there whatever its host resolves to),
//! `--access-token-file FILE` (an OAuth2 bearer token), `--anonymous` (anonymous user
//! access: K_AF without the UE's identity), `--key-cache N`, `--max-peers N`, `--run-for
//! SECS` (default: until SIGINT or SIGTERM). Prints short narrated lines (the first two
//! name the notification endpoint, if any, and the DTLS address); never key bytes. `af
//! --help` lists the flags; bad input: one line on stderr, exit status 2.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use e2m_dtls::akma::AKMA_UA_PROTOCOL;
use e2m_dtls::akma_source::AkmaKeySource;
use e2m_dtls::server::{DtlsServer, ServerConfig, ServerEvent, default_handler};
use e2m_dtls::{NoPsk, PeerIdentity, ResolveError};
use e2m_sbi::client::AfClient;
use e2m_sbi::e2m_aanf::Host;
use e2m_sbi::e2m_aanf::e2m_keyid::akma::{AfId, Fqdn};
use e2m_sbi::e2m_akma::NotifUri;
use e2m_sbi::notify::{NotificationEndpoint, Received, serve_notifications};
use e2m_sbi::server::{H2cPeers, Limits, ServerHandle, Transport};
use e2m_sbi::tls::server_config;
use tokio::sync::mpsc;

#[path = "support/akma_af.rs"]
mod akma_af;
#[path = "support/cli.rs"]
#[allow(dead_code, reason = "shared by all examples; each uses a part")]
mod cli;
#[path = "support/sbi.rs"]
mod sbi;

use akma_af::{AanfKeys, Route};

const PROGRAM: &str = "af";

/// The path of the notification endpoint.
const NOTIFY_PATH: &str = "/akma/notify";

/// The AF alone: a DTLS 1.2 PSK server (TLS_PSK_WITH_AES_128_CCM_8) in the AKMA Ua*
/// profile (TS 24.109 K.3.2), with K_AF from the AAnF over HTTP/2 and the AAnF's
/// service-disablement notifications.
#[derive(Parser, Debug)]
#[command(name = "af", version)]
struct Args {
    /// Where the DTLS server listens (UDP).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5684")]
    listen: SocketAddr,
    #[command(flatten)]
    sbi: sbi::SbiArgs,
    /// This AF's FQDN, the first part of its AF_ID (its certificate must name it).
    #[arg(long, value_name = "FQDN", value_parser = Fqdn::parse)]
    af_fqdn: Fqdn,
    /// Ask the NEF's AKMA API (/3gpp-akma/v1/retrieve at --aanf) instead of Naanf_AKMA.
    #[arg(long)]
    via_nef: bool,
    /// Anonymous user access (anonInd): K_AF without the UE's SUPI or GPSI.
    #[arg(long)]
    anonymous: bool,
    /// Run the notification endpoint on ADDR (TCP) and give the AAnF its notifUri.
    #[arg(long, value_name = "ADDR")]
    notify_listen: Option<SocketAddr>,
    /// The host of notifUri (default: --af-fqdn; the AAnF must reach it).
    #[arg(long, value_name = "HOST", requires = "notify_listen")]
    notify_host: Option<Host>,
    /// A name notifications are accepted from (repeatable).
    #[arg(long, value_name = "NAME", default_value = "aanf.e2m.test")]
    notifier: Vec<Host>,
    /// K_AF cached, at most (0: ask the AAnF at every handshake).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    key_cache: usize,
    /// Peers handled at once, at least 1 (default: the server's default).
    #[arg(long, value_name = "N", value_parser = parse_max_peers)]
    max_peers: Option<usize>,
    /// Exit after this many seconds (default: until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    run_for: Option<u64>,
}

/// `--max-peers`: a server that may handle no peer at all would refuse every handshake.
fn parse_max_peers(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("want a whole number of at least 1".into()),
    }
}

/// The AF's key source: K_AF from the AAnF, cached.
type Keys = AkmaKeySource<AanfKeys>;

fn main() -> ExitCode {
    let (args, _): (Args, _) = cli::parse_or_exit(PROGRAM);
    args.sbi.check(PROGRAM);
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return cli::failure(PROGRAM, format!("runtime: {e}")),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => cli::failure(PROGRAM, message),
    }
}

/// The notification endpoint, started on `listen`: its server, its queue and the
/// `notifUri` naming it.
async fn start_notifications(
    args: &Args,
    listen: SocketAddr,
) -> Result<(ServerHandle, mpsc::Receiver<Received>, NotifUri), String> {
    let fqdn = args.af_fqdn.as_str();
    let transport = match args.sbi.pki() {
        Some(pki) => {
            let shown = cli::printable(&pki.path().display().to_string());
            let ca = pki.ca().map_err(|e| format!("--certs {shown}: {e}"))?;
            let own = pki
                .af_notify(fqdn)
                .map_err(|e| format!("--certs {shown}: {e}"))?;
            Transport::Tls(server_config(&own, &ca).map_err(|e| format!("--certs {shown}: {e}"))?)
        }
        // h2c: peers are named by address (the operator's address plan): the AAnF's
        // address carries the notifier names.
        None => {
            let aanf = aanf_address(args).await?;
            Transport::H2c(H2cPeers::new().name(aanf, args.notifier.iter().cloned()))
        }
    };
    let (endpoint, received) = NotificationEndpoint::channel(NOTIFY_PATH, args.notifier.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--notify-listen {listen}: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("--notify-listen {listen}: {e}"))?
        .port();
    let server = serve_notifications(listener, transport, Limits::default(), endpoint)
        .map_err(|e| format!("--notify-listen {listen}: {e}"))?;
    let host = match &args.notify_host {
        Some(host) => host.to_string(),
        None => fqdn.to_owned(),
    };
    let scheme = if args.sbi.aanf.tls() { "https" } else { "http" };
    let uri = NotifUri::parse(&format!("{scheme}://{host}:{port}{NOTIFY_PATH}"))
        .map_err(|e| format!("notifUri: {e}"))?;
    println!(
        "AF: notification endpoint on {} ({}), notifUri {}",
        server.local_addr(),
        if args.sbi.aanf.tls() {
            "HTTP/2 over TLS"
        } else {
            "h2c"
        },
        uri.as_str()
    );
    Ok((server, received, uri))
}

/// The AAnF's IP address (h2c), from `--connect-to` or the URL's host.
async fn aanf_address(args: &Args) -> Result<IpAddr, String> {
    if let Some(address) = args.sbi.connect_to {
        return Ok(address.ip());
    }
    let host = args.sbi.aanf.host();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    tokio::net::lookup_host((host.as_str(), 0))
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .map(|a| a.ip())
        .ok_or_else(|| format!("--aanf: cannot resolve {}", cli::printable(&host)))
}

fn narrate(event: &ServerEvent) {
    let who = |identity: &PeerIdentity| match identity {
        PeerIdentity::Akma(a_kid) => format!("A-KID {a_kid}"),
        other => format!("\"{other}\" (not an AKMA identity)"),
    };
    match event {
        ServerEvent::Fetching { peer, identity } => println!(
            "AF: {peer} sent psk_identity with {} (TS 24.109 K.3.2 e); asking the AAnF for K_AF",
            who(identity)
        ),
        ServerEvent::KeyUnavailable {
            peer,
            identity,
            error,
        } => {
            let why = match error {
                ResolveError::UnknownIdentity => {
                    "the AAnF holds no AKMA context for it (204) or refused this AF".to_owned()
                }
                other => other.to_string(),
            };
            println!(
                "AF: no K_AF for {} from {peer}: {why}; the handshake fails",
                who(identity)
            )
        }
        ServerEvent::Connected { peer, identity } => println!(
            "AF: DTLS session with {} at {peer} established on K_AF",
            who(identity)
        ),
        ServerEvent::Failed {
            peer,
            identity,
            reason,
        } => println!(
            "AF: handshake with {peer}{} failed: {reason}",
            identity
                .as_ref()
                .map(|i| format!(" ({})", who(i)))
                .unwrap_or_default()
        ),
        ServerEvent::Exchanged {
            peer,
            request_len,
            response_len,
        } => println!("AF: {peer}: {request_len}-octet request, {response_len}-octet answer"),
        ServerEvent::Closed { peer } => println!("AF: {peer} closed"),
        ServerEvent::AlertSent { peer, alert } => {
            println!("AF: sent the fatal alert {alert} to {peer}")
        }
        _ => {}
    }
}

/// A service-disablement notification: the A-KID's K_AF goes (TS 33.535 §6.3, the AAnF's
/// `Naanf_AKMA_ServiceDisableNotification`). A repeat (delivery is at least once) drops
/// nothing more.
fn on_notification(keys: &Keys, received: &Received) {
    let a_kid = received.notification.a_kid;
    let dropped = keys.forget(&a_kid);
    println!(
        "AF: service disablement for A-KID {a_kid} from {}: K_AF {}",
        received.from.peer,
        if dropped { "dropped" } else { "was not cached" }
    );
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(args: Args) -> Result<(), String> {
    let af_id = AfId::new(args.af_fqdn, AKMA_UA_PROTOCOL);
    let (notify, mut received, notif_uri) = match args.notify_listen {
        Some(listen) => {
            let (server, received, uri) = start_notifications(&args, listen).await?;
            (Some(server), Some(received), Some(uri))
        }
        None => (None, None, None),
    };
    let fqdn = args.af_fqdn.as_str().to_owned();
    let client = AfClient::new(args.sbi.client(|pki| pki.af(&fqdn))?);
    let route = if args.via_nef {
        Route::Nef
    } else {
        Route::Aanf
    };
    let fetcher = AanfKeys::new(client, af_id, notif_uri)
        .route(route)
        .anonymous(args.anonymous);
    let keys: Arc<Keys> = Arc::new(AkmaKeySource::new(fetcher, args.key_cache));
    let mut config = ServerConfig::default();
    if let Some(n) = args.max_peers {
        config.max_peers = n;
    }
    // AKMA only: an e2m psk_identity is unknown here (NoPsk).
    let mut server = DtlsServer::bind_with_akma(
        args.listen,
        NoPsk,
        Arc::clone(&keys),
        default_handler(),
        config,
    )
    .await
    .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    println!(
        "AF: DTLS 1.2 PSK server on {} (TLS_PSK_WITH_AES_128_CCM_8, psk_identity_hint \"3GPP-AKMA\"); AF_ID {af_id}; K_AF from {} at {}",
        server.local_addr(),
        match route {
            Route::Aanf => "the AAnF (Naanf_AKMA)",
            Route::Nef => "the NEF (3gpp-akma)",
        },
        args.sbi.aanf.as_str()
    );
    let mut events = server.take_events().ok_or("no event stream")?;
    let run_for = args.run_for.map(Duration::from_secs);
    let until = async move {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => stop_signal().await,
        }
    };
    tokio::pin!(until);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => narrate(&event),
                None => break,
            },
            Some(notification) = async {
                match received.as_mut() {
                    Some(queue) => queue.recv().await,
                    None => std::future::pending().await,
                }
            } => on_notification(&keys, &notification),
            _ = &mut until => break,
        }
    }
    println!("AF: stopping");
    server.shutdown();
    if let Some(notify) = notify {
        notify.shutdown().await;
    }
    Ok(())
}
