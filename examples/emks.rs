//! The EMKS alone: HTTPS with mutual TLS on the REST binding of e2m-msg (seed 6.x.2.2),
//! around the sans-IO core e2m-emks with in-memory stores. Also the PKI helper that writes
//! the certificate directory every role reads.
//!
//! ```text
//! # 1. certificates (a CA, the EMKS, the HSS, one per EMSE; the CA key is not kept)
//! cargo run --example emks -- gen-pki --dir /tmp/e2m-pki --emse emse-a --emse emse-b
//! # 2. the server
//! cargo run --example emks -- --listen 127.0.0.1:8443 --certs /tmp/e2m-pki \
//!     --provision emse-a,sensor-17@iot.example.com,001010123456789 --keys-per-ue 4
//! ```
//!
//! Serve flags: `--listen ADDR` (default 127.0.0.1:8443; port 0 picks one), `--certs DIR`,
//! store policy `--keys-per-ue N` (default 4), `--max-age SECS` (default 86400),
//! `--session-ttl SECS` (default 43200), identity map `--provision EMSE_ID,APP_ID,IMSI`
//! (repeatable; the seed's case 2), `--allow-imsi EMSE_ID` (case 1, repeatable), transport
//! `--rate PER_SEC --burst N` (per peer). Log level from `RUST_LOG` (default `info`; audit
//! records are at target `e2m::audit`). The first line on stdout is
//! `EMKS listening on https://ADDR`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use e2m_emks::{Emks, EmksConfig};
use e2m_https::emks::{EmksServerOptions, start_emks};
use e2m_https::pki::{GeneratedPki, PkiDir, PkiSpec};
use e2m_https::ratelimit::RateLimit;
use e2m_https::server::Limits;
use e2m_keyid::{AppIdentity, EmseId, Imsi};
use e2m_keystore::{IdentityMap, RetentionPolicy, SessionPolicy, SubscriptionPolicy, block_on};

const USAGE: &str = "usage:
  emks gen-pki --dir DIR [--emse EMSE_ID]...
  emks [--listen ADDR] --certs DIR [--keys-per-ue N] [--max-age SECS] [--session-ttl SECS]
       [--provision EMSE_ID,APP_ID,IMSI]... [--allow-imsi EMSE_ID]... [--rate PER_SEC] [--burst N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("gen-pki") {
        gen_pki(&args[1..])
    } else {
        serve(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("emks: {message}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

/// Takes the value after a flag.
fn value<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn parse<T: std::str::FromStr>(text: &str, flag: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: cannot parse {text:?}"))
}

fn gen_pki(args: &[String]) -> Result<(), String> {
    let mut dir = None;
    let mut emses = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--dir" => dir = Some(PathBuf::from(value(args, &mut i, "--dir")?)),
            "--emse" => {
                let id = value(args, &mut i, "--emse")?;
                emses.push(EmseId::new(id).map_err(|e| format!("--emse {id:?}: {e}"))?);
            }
            other => return Err(format!("unknown flag {other}")),
        }
        i += 1;
    }
    let dir = dir.ok_or("--dir is required")?;
    let spec = PkiSpec::new(emses).map_err(|e| e.to_string())?;
    let pki = GeneratedPki::generate(&spec).map_err(|e| e.to_string())?;
    pki.write_to(&dir).map_err(|e| e.to_string())?;
    println!("PKI written to {} ({pki:?})", dir.display());
    Ok(())
}

struct ServeArgs {
    listen: SocketAddr,
    certs: PathBuf,
    retention: RetentionPolicy,
    sessions: SessionPolicy,
    provision: Vec<(EmseId, AppIdentity, Imsi)>,
    allow_imsi: Vec<EmseId>,
    rate: RateLimit,
}

fn parse_serve(args: &[String]) -> Result<ServeArgs, String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 8443));
    let mut certs = None;
    let mut keys_per_ue = RetentionPolicy::DEFAULT.keys_per_ue();
    let mut max_age = RetentionPolicy::DEFAULT.max_age();
    let mut session_ttl = SessionPolicy::DEFAULT.ttl();
    let mut provision = Vec::new();
    let mut allow_imsi = Vec::new();
    let mut rate = RateLimit::DEFAULT;
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        match flag {
            "--listen" => listen = parse(value(args, &mut i, flag)?, flag)?,
            "--certs" => certs = Some(PathBuf::from(value(args, &mut i, flag)?)),
            "--keys-per-ue" => keys_per_ue = parse(value(args, &mut i, flag)?, flag)?,
            "--max-age" => max_age = Duration::from_secs(parse(value(args, &mut i, flag)?, flag)?),
            "--session-ttl" => {
                session_ttl = Duration::from_secs(parse(value(args, &mut i, flag)?, flag)?);
            }
            "--provision" => {
                let text = value(args, &mut i, flag)?;
                let parts: Vec<&str> = text.split(',').collect();
                let [emse, app, imsi] = parts[..] else {
                    return Err(format!("--provision {text:?}: want EMSE_ID,APP_ID,IMSI"));
                };
                provision.push((
                    EmseId::new(emse).map_err(|e| format!("--provision EMSE_Id: {e}"))?,
                    AppIdentity::new(app).map_err(|e| format!("--provision identity: {e}"))?,
                    Imsi::new(imsi).map_err(|e| format!("--provision IMSI: {e}"))?,
                ));
            }
            "--allow-imsi" => {
                let id = value(args, &mut i, flag)?;
                allow_imsi.push(EmseId::new(id).map_err(|e| format!("{flag}: {e}"))?);
            }
            "--rate" => rate.per_second = parse(value(args, &mut i, flag)?, flag)?,
            "--burst" => rate.burst = parse(value(args, &mut i, flag)?, flag)?,
            other => return Err(format!("unknown flag {other}")),
        }
        i += 1;
    }
    let retention = RetentionPolicy::new(keys_per_ue, max_age).map_err(|e| e.to_string())?;
    let sessions = SessionPolicy::new(
        session_ttl,
        SessionPolicy::DEFAULT.max_per_emse(),
        SessionPolicy::DEFAULT.max_total(),
    )
    .map_err(|e| e.to_string())?;
    Ok(ServeArgs {
        listen,
        certs: certs.ok_or("--certs is required")?,
        retention,
        sessions,
        provision,
        allow_imsi,
        rate,
    })
}

fn serve(args: &[String]) -> Result<(), String> {
    let args = parse_serve(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let pki = PkiDir::open(&args.certs).map_err(|e| e.to_string())?;
    let mut config = EmksConfig::default();
    for emse in &args.allow_imsi {
        config = config.allow_imsi(emse);
    }
    let core = Arc::new(Emks::in_memory_with(
        config,
        args.retention,
        args.sessions,
        SubscriptionPolicy::DEFAULT,
    ));
    for (emse, app, imsi) in &args.provision {
        block_on(core.identities().provision(emse, app, imsi))
            .map_err(|e| format!("provisioning: {e}"))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let options = EmksServerOptions {
            listen: args.listen,
            limits: Limits {
                rate: args.rate,
                ..Limits::default()
            },
            ..EmksServerOptions::default()
        };
        let server = start_emks(core, &pki, options)
            .await
            .map_err(|e| e.to_string())?;
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "EMKS listening on {}", server.base_url());
        let _ = stdout.flush();
        let _ = tokio::signal::ctrl_c().await;
        server.shutdown().await;
        Ok(())
    })
}
