//! The EMSE alone: a DTLS 1.2 PSK server with TLS_PSK_WITH_AES_128_CCM_8 only, answering
//! CoAP GETs (and plain text lines, for `openssl s_client`) from many UEs at once (seed
//! 6.x.2.3 steps 2, 5–8), and with `--oscore-listen ADDR` beside it an OSCORE endpoint
//! (RFC 8613, e2m profile) on the same keys.
//!
//! ```text
//! cargo run --example emse -- --listen 127.0.0.1:5684 --psk-hex 0f1e...
//! openssl s_client -dtls1_2 -connect 127.0.0.1:5684 -cipher PSK-AES128-CCM8 \
//!     -psk 0f1e... -psk_identity e2m1.ae47bf35.sensor-17@iot.example.com
//! ```
//!
//! With the EMKS (seed prerequisite c and steps 5–7):
//!
//! ```text
//! cargo run --example emse -- --listen 127.0.0.1:5684 --emks https://127.0.0.1:8443 \
//!     --certs /tmp/e2m-pki --emse-id emse-a
//! ```
//!
//! Flags: `--listen ADDR` (default 127.0.0.1:5684); `--oscore-listen ADDR` (CoAP over
//! OSCORE on UDP, e.g. 127.0.0.1:5683; off by default); `--oscore-record FILE` (the OSCORE
//! endpoint's durable derived-context record: first contact in one round trip); the key
//! source, either `--psk-hex HEX` (static-key mode: one `e2m_key` for every identity, for
//! interop and benchmarks) or `--emks URL --certs DIR --emse-id ID` (register with the EMKS
//! over mutual TLS with the EMSE's certificate from DIR, then fetch each UE's key by
//! application identity and key id; deregister on exit); `--max-peers N`, `--run-for SECS`
//! (exit after that long; default: until SIGINT (Ctrl-C) or SIGTERM). `emse --help` lists
//! the flags and defaults; bad input: one line on stderr, exit status 2.
//!
//! It recovers from the EMKS's outages (issue 9 item 11, `e2m_https::client::EmseSession`):
//! if the EMKS is not reachable at start, registration is retried with backoff (200 ms
//! doubling to 10 s) until it succeeds or the EMSE is stopped; if a key fetch finds that
//! the EMKS no longer knows the session (it restarted without its state, or the session
//! expired), the EMSE registers again, once, and repeats the fetch; on SIGINT or SIGTERM it
//! deregisters before exiting.
//!
//! Both servers ask one `PskResolver` for each (application identity, key id); here that is
//! `KeySource`, whose EMKS variant calls `EmksClient::fetch_key` on the peer's own task (the
//! OSCORE endpoint: on a task per fetch), so other UEs carry on while one fetch waits, and
//! whose cache serves both protocols. In static-key mode every UE's OSCORE context is
//! derived from the one given e2m_key. The OSCORE endpoint lets each source address cause
//! at most 4 key fetches at once and 4 per minute, then challenges it with Echo (spoofed
//! requests cannot make the EMSE load its EMKS beyond that; see `e2m_dtls::oscore_server`). Prints short narrated lines;
//! never key bytes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use e2m_dtls::derived_record::{FileDerivedRecord, FileDerivedRecordConfig};
use e2m_dtls::emks_source::EmksKeySource;
use e2m_dtls::oscore_server::{self, OscoreEvent, OscoreServer, OscoreServerConfig};
use e2m_dtls::server::{DtlsServer, ServerConfig, ServerEvent, default_handler};
use e2m_dtls::{PeerIdentity, PskResolver, ResolveError, StaticPsk};
use e2m_https::client::{Backoff, EmksClient, EmseSession};
use e2m_https::pki::PkiDir;
use e2m_kdf::E2mKey;
use e2m_keyid::{EmseId, PskIdentity};

#[path = "support/cli.rs"]
#[allow(dead_code, reason = "shared by all examples; each uses a part")]
mod cli;

use cli::{Hex, hex_array};

/// The EMSE's DTLS side alone: a DTLS 1.2 PSK server (TLS_PSK_WITH_AES_128_CCM_8) answering
/// CoAP GETs, with one static PSK or keys fetched from the EMKS.
#[derive(Parser, Debug)]
#[command(name = "emse", version)]
struct Args {
    /// Where to listen (UDP).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5684")]
    listen: SocketAddr,
    /// Also serve CoAP over OSCORE (RFC 8613, e2m profile) on this UDP address.
    #[arg(long, value_name = "ADDR")]
    oscore_listen: Option<SocketAddr>,
    /// The OSCORE endpoint's durable record of the contexts it derived (a file; created if
    /// missing): a never-derived context's first request is answered in one round trip.
    /// Without it every new context's first request gets an Echo challenge.
    #[arg(long, value_name = "FILE", requires = "oscore_listen")]
    oscore_record: Option<PathBuf>,
    /// Static-key mode: one e2m_key (32 octets) for every identity.
    #[arg(long, value_name = "HEX64", value_parser = hex_array::<32>,
          conflicts_with_all = ["emks", "certs", "emse_id"],
          required_unless_present_all = ["emks", "certs", "emse_id"])]
    psk_hex: Option<Hex<32>>,
    /// The EMKS's base URL (keys from the EMKS; with --certs and --emse-id).
    #[arg(long, value_name = "URL")]
    emks: Option<String>,
    /// The PKI directory (from `emks gen-pki`).
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// This EMSE's EMSE_Id (its certificate must name it).
    #[arg(long, value_name = "ID")]
    emse_id: Option<EmseId>,
    /// Peers handled at once, at least 1 (default: the server's default).
    #[arg(long, value_name = "N", value_parser = parse_max_peers)]
    max_peers: Option<usize>,
    /// Exit after this many seconds (default: until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    run_for: Option<u64>,
}

/// Where the EMSE's keys come from.
enum KeySource {
    /// `--psk-hex`: the same key for every identity.
    Static(StaticPsk),
    /// `--emks`: the EMKS, through the session this EMSE registered (seed prerequisite c)
    /// and renews when the EMKS forgets it, with the EMSE's small key cache
    /// (`e2m_dtls::emks_source`).
    Emks(Box<EmksKeySource>),
}

impl PskResolver for KeySource {
    async fn resolve(&self, identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        match self {
            KeySource::Static(key) => key.resolve(identity).await,
            // Seed steps 5–7: GET with the UE's identity and key id; the EMKS derives the
            // key for the EMSE_Id bound to this session.
            KeySource::Emks(keys) => keys.resolve(identity).await,
        }
    }
}

/// Registers with the EMKS as `emse_id` (seed 6.x.2.2.2.1: POST, 201 and a session),
/// retrying while the EMKS is unreachable; `None` if stopped first.
async fn emks_source(
    url: &str,
    certs: &Path,
    emse_id: &EmseId,
    stop: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Result<Option<KeySource>, String> {
    let pki = PkiDir::open(certs).map_err(|e| format!("--certs: {e}"))?;
    let client = EmksClient::for_emse(url, &pki, emse_id).map_err(|e| format!("--emks: {e}"))?;
    println!("EMSE: registering with the EMKS at {url} as {emse_id} (retried until it answers)");
    let session = tokio::select! {
        session = EmseSession::establish(client, None, Backoff::DEFAULT) => {
            session.map_err(|e| format!("registration refused: {e}"))?
        }
        () = stop => return Ok(None),
    };
    println!("EMSE: registered with the EMKS as {emse_id} (201 Created, session established)");
    Ok(Some(KeySource::Emks(Box::new(EmksKeySource::new(
        session,
        KEY_CACHE_CAPACITY,
    )))))
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM (what service managers send).
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

/// Keys the EMSE caches (bounded by each key's expiry; see `e2m_dtls::emks_source`).
const KEY_CACHE_CAPACITY: usize = 1024;

/// The application identity of an e2m peer (the whole identity of any other).
fn who(identity: &PeerIdentity) -> String {
    identity
        .e2m()
        .map_or_else(|| identity.to_string(), |id| id.identity.to_string())
}

fn narrate(event: &ServerEvent) {
    match event {
        ServerEvent::Fetching { peer, identity } => match identity.e2m() {
            Some(id) => println!(
                "EMSE: {peer} sent psk_identity (application identity {}, key id {}); fetching its key (step 5)",
                id.identity, id.key_id
            ),
            None => println!("EMSE: {peer} sent psk_identity \"{identity}\"; fetching its key"),
        },
        ServerEvent::KeyUnavailable {
            peer,
            identity,
            error,
        } => println!(
            "EMSE: no key for {} from {peer}: {error}; the handshake will fail",
            who(identity)
        ),
        ServerEvent::Connected { peer, identity } => println!(
            "EMSE: DTLS session with {} at {peer} established (step 8)",
            who(identity)
        ),
        ServerEvent::Failed {
            peer,
            identity,
            reason,
        } => println!(
            "EMSE: handshake with {peer}{} failed: {reason}",
            identity
                .as_ref()
                .map(|i| format!(" ({})", who(i)))
                .unwrap_or_default()
        ),
        ServerEvent::Exchanged {
            peer,
            request_len,
            response_len,
        } => println!("EMSE: {peer}: {request_len}-octet request, {response_len}-octet answer"),
        ServerEvent::Closed { peer } => println!("EMSE: {peer} closed"),
        ServerEvent::AlertSent { peer, alert } => {
            println!("EMSE: sent the fatal alert {alert} to {peer}")
        }
        _ => {}
    }
}

fn narrate_oscore(event: &OscoreEvent) {
    match event {
        OscoreEvent::Fetching { peer, identity } => println!(
            "EMSE: OSCORE request from {peer} names application identity {}, key id {}; fetching its key (step 5)",
            identity.identity, identity.key_id
        ),
        OscoreEvent::KeyUnavailable {
            identity, error, ..
        } => println!(
            "EMSE: no key for {} key id {}: {error}; answered so that the UE re-authenticates",
            identity.identity, identity.key_id
        ),
        OscoreEvent::ContextDerived { identity } => println!(
            "EMSE: OSCORE context for {} key id {} derived from e2m_key",
            identity.identity, identity.key_id
        ),
        OscoreEvent::FirstDerivation { identity } => println!(
            "EMSE: {} key id {}: never derived before (recorded durably), its first request is answered at once",
            identity.identity, identity.key_id
        ),
        OscoreEvent::RecordFailed { identity, error } => println!(
            "EMSE: {} key id {}: derived-context record not written ({error}); Echo challenge instead",
            identity.identity, identity.key_id
        ),
        OscoreEvent::EchoChallenge { peer } => println!(
            "EMSE: {peer}: first request in a new context, answered with an Echo challenge (RFC 8613 B.1.2)"
        ),
        OscoreEvent::Exchanged {
            peer,
            identity,
            code,
        } => println!(
            "EMSE: {peer}: verified OSCORE request from {}, answered {code}",
            identity.identity
        ),
        OscoreEvent::Refused { peer, code } => {
            println!("EMSE: {peer}: unprotected answer {code}")
        }
        _ => {}
    }
}

async fn run(args: Args) -> Result<(), String> {
    let listen = args.listen;
    let run_for = args.run_for.map(Duration::from_secs);
    let until = async move {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => stop_signal().await,
        }
    };
    tokio::pin!(until);
    let (source, mode) = match (&args.psk_hex, &args.emks, &args.certs, &args.emse_id) {
        (Some(hex), None, None, None) => {
            let key = E2mKey::from_array(*hex.expose());
            (KeySource::Static(StaticPsk(key)), "static key mode")
        }
        (None, Some(url), Some(certs), Some(emse_id)) => {
            match emks_source(url, certs, emse_id, &mut until).await? {
                Some(source) => (source, "keys from the EMKS"),
                None => {
                    println!("EMSE: stopped before the EMKS answered");
                    return Ok(());
                }
            }
        }
        _ => return Err("give --psk-hex, or --emks, --certs and --emse-id".into()),
    };
    let mut config = ServerConfig::default();
    if let Some(n) = args.max_peers {
        config.max_peers = n;
    }
    let source = std::sync::Arc::new(source);
    let mut server = DtlsServer::bind(
        listen,
        std::sync::Arc::clone(&source),
        default_handler(),
        config,
    )
    .await
    .map_err(|e| e.to_string())?;
    println!(
        "EMSE: DTLS 1.2 PSK server on {} (TLS_PSK_WITH_AES_128_CCM_8 only, {mode})",
        server.local_addr()
    );
    let mut events = server.take_events().ok_or("no event stream")?;
    let mut oscore = match args.oscore_listen {
        Some(addr) => {
            let resolver = std::sync::Arc::clone(&source);
            let handler = oscore_server::default_handler();
            let config = OscoreServerConfig::default();
            let mut endpoint = match &args.oscore_record {
                Some(path) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs();
                    let record =
                        FileDerivedRecord::open(path, FileDerivedRecordConfig::default(), now)
                            .map_err(|e| format!("--oscore-record: {e}"))?;
                    OscoreServer::bind_with_record(addr, resolver, handler, config, record).await
                }
                None => OscoreServer::bind(addr, resolver, handler, config).await,
            }
            .map_err(|e| format!("--oscore-listen: {e}"))?;
            println!(
                "EMSE: OSCORE endpoint on {} (CoAP over OSCORE, e2m profile, {mode})",
                endpoint.local_addr()
            );
            let events = endpoint.take_events().ok_or("no event stream")?;
            Some((endpoint, events))
        }
        None => None,
    };
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => narrate(&event),
                None => break,
            },
            Some(event) = async {
                match oscore.as_mut() {
                    Some((_, events)) => events.recv().await,
                    None => std::future::pending().await,
                }
            } => narrate_oscore(&event),
            _ = &mut until => break,
        }
    }
    println!("EMSE: stopping");
    server.shutdown();
    if let Some((endpoint, _)) = oscore {
        endpoint.shutdown();
    }
    if let KeySource::Emks(keys) = &*source {
        // Seed 6.x.2.2.2.3: DELETE the session.
        match keys.session().close().await {
            Ok(()) => println!("EMSE: deregistered from the EMKS (204)"),
            Err(e) => println!("EMSE: deregistration failed: {e}"),
        }
    }
    Ok(())
}

/// `--max-peers`: a server that may handle no peer at all would refuse every handshake.
fn parse_max_peers(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("want a whole number of at least 1".into()),
    }
}

fn main() -> ExitCode {
    let (args, _): (Args, _) = cli::parse_or_exit("emse");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return cli::failure("emse", format!("runtime: {e}")),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => cli::failure("emse", message),
    }
}
