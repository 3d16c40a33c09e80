//! The EMSE's DTLS side alone: a DTLS 1.2 PSK server with TLS_PSK_WITH_AES_128_CCM_8 only,
//! answering CoAP GETs (and plain text lines, for `openssl s_client`) from many UEs at once
//! (seed 6.x.2.3 steps 2, 5–8).
//!
//! ```text
//! cargo run --example emse -- --listen 127.0.0.1:5684 --psk-hex 0f1e...
//! openssl s_client -dtls1_2 -connect 127.0.0.1:5684 -cipher PSK-AES128-CCM8 \
//!     -psk 0f1e... -psk_identity e2m1.ae47bf35.sensor-17@iot.example.com
//! ```
//!
//! Flags: `--listen ADDR` (default 127.0.0.1:5684), `--psk-hex HEX` (static-key mode: one
//! `e2m_key` for every identity, for interop and benchmarks), `--max-peers N`,
//! `--run-for SECS` (exit after that long; default: until Ctrl-C).
//!
//! Where the EMKS plugs in: the server asks a [`PskResolver`] for each `psk_identity`
//! (seed steps 5–7). This example's resolver is [`KeySource`]; the EMKS mode is a variant
//! whose `resolve` calls the EMKS client (`e2m::emks_http`) with the identity and key id
//! and returns the `e2m_key` it answers — the demo composes exactly that. Prints short
//! narrated lines; never key bytes.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use e2m::dtls::server::{DtlsServer, ServerConfig, ServerEvent, default_handler};
use e2m::dtls::{PskResolver, ResolveError, StaticPsk};
use e2m_kdf::E2mKey;
use e2m_keyid::PskIdentity;

const USAGE: &str = "usage: emse [--listen ADDR] --psk-hex HEX [--max-peers N] [--run-for SECS]";

/// Where the EMSE's keys come from.
enum KeySource {
    /// `--psk-hex`: the same key for every identity.
    Static(StaticPsk),
}

impl PskResolver for KeySource {
    async fn resolve(&self, identity: &PskIdentity) -> Result<E2mKey, ResolveError> {
        match self {
            KeySource::Static(key) => key.resolve(identity).await,
        }
    }
}

#[derive(Default)]
struct Args {
    listen: Option<String>,
    psk_hex: Option<String>,
    max_peers: Option<String>,
    run_for: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut out.listen,
            "--psk-hex" => &mut out.psk_hex,
            "--max-peers" => &mut out.max_peers,
            "--run-for" => &mut out.run_for,
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown flag {other}")),
        };
        *slot = Some(it.next().ok_or(format!("{flag} needs a value"))?.clone());
    }
    Ok(out)
}

fn narrate(event: &ServerEvent) {
    match event {
        ServerEvent::Fetching { peer, identity } => println!(
            "EMSE: {peer} sent psk_identity (application identity {}, key id {}); fetching its key (step 5)",
            identity.identity, identity.key_id
        ),
        ServerEvent::KeyUnavailable {
            peer,
            identity,
            error,
        } => println!(
            "EMSE: no key for {} from {peer}: {error}; the handshake will fail",
            identity.identity
        ),
        ServerEvent::Connected { peer, identity } => println!(
            "EMSE: DTLS session with {} at {peer} established (step 8)",
            identity.identity
        ),
        ServerEvent::Failed {
            peer,
            identity,
            reason,
        } => println!(
            "EMSE: handshake with {peer}{} failed: {reason}",
            identity
                .as_ref()
                .map(|i| format!(" ({})", i.identity))
                .unwrap_or_default()
        ),
        ServerEvent::Exchanged {
            peer,
            request_len,
            response_len,
        } => println!("EMSE: {peer}: {request_len}-octet request, {response_len}-octet answer"),
        ServerEvent::Closed { peer } => println!("EMSE: {peer} closed"),
        _ => {}
    }
}

async fn run(args: Args) -> Result<(), String> {
    let listen: SocketAddr = args
        .listen
        .as_deref()
        .unwrap_or("127.0.0.1:5684")
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    let key = E2mKey::from_hex(args.psk_hex.as_deref().ok_or("--psk-hex is required")?)
        .map_err(|e| format!("--psk-hex: {e}"))?;
    let mut config = ServerConfig::default();
    if let Some(n) = &args.max_peers {
        config.max_peers = n.parse().map_err(|e| format!("--max-peers: {e}"))?;
    }
    let run_for = match &args.run_for {
        Some(s) => Some(Duration::from_secs(
            s.parse().map_err(|e| format!("--run-for: {e}"))?,
        )),
        None => None,
    };
    let mut server = DtlsServer::bind(
        listen,
        KeySource::Static(StaticPsk(key)),
        default_handler(),
        config,
    )
    .await
    .map_err(|e| e.to_string())?;
    println!(
        "EMSE: DTLS 1.2 PSK server on {} (TLS_PSK_WITH_AES_128_CCM_8 only, static key mode)",
        server.local_addr()
    );
    let mut events = server.take_events().ok_or("no event stream")?;
    let until = async {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(until);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => narrate(&event),
                None => break,
            },
            _ = &mut until => break,
        }
    }
    println!("EMSE: stopping");
    server.shutdown();
    Ok(())
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&raw) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("emse: {message}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("emse: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("emse: {message}");
            ExitCode::FAILURE
        }
    }
}
