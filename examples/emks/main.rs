//! The EMKS alone: HTTPS with mutual TLS on the REST binding of e2m-msg (seed 6.x.2.2),
//! around the sans-IO core e2m-emks, over the embedded durable store (redb, keys sealed
//! under the operator's KEK files; survives restarts and `kill -9`), or, with
//! `--store postgres`, the shared PostgreSQL store (several instances on one database,
//! any of them serves any request; keys sealed the same way), or, with `--store memory`,
//! the in-memory stores; health, readiness and Prometheus metrics on a separate plain-HTTP
//! listener. Also the helpers that write the certificate directory every role reads and a
//! KEK file, and `restore`, which installs an online backup of the redb store (written to
//! `--backup-dir` on SIGUSR1) into a data directory.
//!
//! ```text
//! # 1. certificates (a CA, the EMKS, the HSS, one per EMSE; the CA key is not kept)
//! cargo run --example emks -- gen-pki --dir /tmp/e2m-pki --emse emse-a --emse emse-b
//! # 2. a KEK file (version 1; mode 0600), which seals the intermediate keys at rest
//! cargo run --example emks -- gen-kek --out /tmp/e2m-kek-1
//! # 3. the server on a data directory, with its operations endpoint on 127.0.0.1:9464
//! cargo run --example emks -- --listen 127.0.0.1:8443 --certs /tmp/e2m-pki \
//!     --data-dir /tmp/e2m-emks-data --kek-file /tmp/e2m-kek-1 \
//!     --provision emse-a,sensor-17@iot.example.com,001010123456789 --keys-per-ue 4 \
//!     --metrics-listen 127.0.0.1:9464
//! curl http://127.0.0.1:9464/metrics
//! # or, one of several instances on a shared PostgreSQL database (same KEK files on each)
//! E2M_DATABASE_URL='host=127.0.0.1 port=5432 user=e2m dbname=e2m' \
//! cargo run --example emks -- --listen 127.0.0.1:8444 --certs /tmp/e2m-pki \
//!     --store postgres --kek-file /tmp/e2m-kek-1 --pool-size 16
//! ```
//!
//! `emks --help` lists every flag with its default; `examples/README.md` describes the
//! operations endpoint (`/healthz`, `/readyz`, `/metrics`) and the logs. The first line on
//! stdout is `EMKS listening on https://ADDR`; with `--metrics-listen`, the second is
//! `metrics listening on http://ADDR`. Bad input: one line on stderr, exit status 2; so
//! does a store that refuses to start (a bad connection string, a database that cannot be
//! reached, a KEK file that is missing or does not open the stored keys), before anything
//! is served.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use e2m_emks::{Emks, EmksConfig};
use e2m_https::emks::{EmksServerOptions, start_emks};
use e2m_https::pki::{GeneratedPki, PkiDir, PkiSpec};
use e2m_https::ratelimit::RateLimit;
use e2m_https::server::Limits;
use e2m_keyid::{AppIdentity, EmseId, Imsi};
use e2m_keystore::import::{IdentityRow, parse_identity_csv};
use e2m_keystore::{
    CacheConfig, CachedIdentities, CachedIntKeys, CachedSessions, IdentityMap, IntKeyStore,
    MonotonicClock, NotificationOutbox, RetentionPolicy, SessionPolicy, SessionStore,
    SubscriptionPolicy, SubscriptionStore,
};
use e2m_keystore_pg::{PgBackend, PgConfig};
use e2m_keystore_redb::e2m_seal::{KekVersion, write_new_kek_file};
use e2m_keystore_redb::{Keyring, RedbStore, RedbStoreConfig};

mod akma;
#[path = "../support/cli.rs"]
#[allow(dead_code, reason = "shared by all examples; each uses a part")]
mod cli;
mod diameter;
mod metrics;

use metrics::{EmksMetrics, Operations, OperationsServer, Refresh, StoreProbe};

const PROGRAM: &str = "emks";

/// The environment variable read for the PostgreSQL connection string when
/// `--database-url` is not given (keeps a password out of the process list).
const DATABASE_URL_ENV: &str = "E2M_DATABASE_URL";

/// The EMKS alone: HTTPS with mutual TLS over the e2m-emks core (durable redb store in a
/// data directory, a PostgreSQL database shared by several instances, or in-memory
/// stores), with an optional operations endpoint (health, readiness, Prometheus metrics).
/// Log level from RUST_LOG (default info; audit records at target e2m::audit).
#[derive(Parser, Debug)]
#[command(
    name = "emks",
    version,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes a PKI directory: a CA, the EMKS, the HSS and one certificate per EMSE (the CA
    /// key is not kept).
    GenPki {
        /// Where to write it.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// An EMSE_Id to issue a certificate for (repeatable).
        #[arg(long, value_name = "EMSE_ID")]
        emse: Vec<EmseId>,
    },
    /// Writes a new KEK file (`e2m-kek v1 <version> <64 hex digits>`, mode 0600) with a
    /// random key; never overwrites an existing file.
    GenKek {
        /// The file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Its KEK version (1 to 4294967295; a rotation adds a higher one).
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..))]
        version: u32,
    },
    /// Writes an AKMA PKI directory for the AAnF (`--aanf-certs`): a CA, the AAnF's server
    /// and client certificates, and one per AUSF, NEF and AF (the CA key is not kept).
    GenAkmaPki {
        /// Where to write it.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// An AUSF's name (repeatable).
        #[arg(long, value_name = "NAME")]
        ausf: Vec<String>,
        /// A NEF's name (repeatable).
        #[arg(long, value_name = "NAME")]
        nef: Vec<String>,
        /// An AF's FQDN (repeatable).
        #[arg(long, value_name = "FQDN")]
        af: Vec<String>,
    },
    /// Restores a backup (written by `--backup-dir` on SIGUSR1) into a redb data directory,
    /// with the EMKS stopped: verifies it (checksums, schema, the KEK files), keeps the
    /// file it replaces beside it (`e2m-emks.redb.replaced-<unix ms>`), and installs it.
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        backup: PathBuf,
        /// The data directory to restore into (the EMKS's --data-dir).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The KEK files of the store (repeatable; the backup must open with them).
        #[arg(long, value_name = "FILE", required = true)]
        kek_file: Vec<PathBuf>,
    },
}

/// Where the EMKS keeps its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// redb in `--data-dir`, keys sealed under `--kek-file`: survives restarts.
    Redb,
    /// PostgreSQL at `--database-url`, keys sealed under `--kek-file`: shared by every
    /// instance on the database, survives the loss of any of them.
    Postgres,
    /// In memory: lost when the process ends.
    Memory,
}

/// Serving (the default command).
#[derive(Args, Debug)]
struct ServeArgs {
    /// Where to listen for HTTPS (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The PKI directory (from `emks gen-pki`).
    #[arg(long, value_name = "DIR", required = true)]
    certs: Option<PathBuf>,
    /// Where the state lives: `redb` (durable, in --data-dir), `postgres` (shared, at
    /// --database-url) or `memory`.
    #[arg(long, value_enum, default_value_t = StoreKind::Redb)]
    store: StoreKind,
    /// The data directory of the redb store (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// With --store redb: where SIGUSR1 writes an online backup of the store
    /// (`e2m-emks-<UTC time>.redb`; created if missing). Restore one with `emks restore`.
    #[arg(long, value_name = "DIR")]
    backup_dir: Option<PathBuf>,
    /// The PostgreSQL store's connection string, libpq style (`host=H port=P user=U
    /// dbname=D`) or a URL (`postgresql://U@H:P/D`); without it, $E2M_DATABASE_URL (which
    /// keeps a password out of the process list).
    #[arg(long, value_name = "CONNINFO")]
    database_url: Option<String>,
    /// With --store postgres: how long, in milliseconds, this instance may serve a session,
    /// identity mapping or intermediate key it read from the database before reading it
    /// again (0: every read goes to the database). The staleness bound: a session ended, a
    /// mapping changed or a key retired (evicted by newer pushes, replaced) through another
    /// instance may be served here for at most this long; anything created or pushed
    /// through another instance is found at once (a miss reads the database), and a change
    /// through this instance is seen here at once.
    #[arg(long, value_name = "MILLIS", default_value_t = 1000)]
    cache_ttl: u64,
    /// Connections this instance keeps open to PostgreSQL at most.
    #[arg(long, value_name = "N", default_value_t = PgConfig::DEFAULT_POOL_SIZE,
          value_parser = parse_pool_size)]
    pool_size: usize,
    /// A KEK file (from `emks gen-kek`; repeatable, one per version): the newest seals new
    /// keys, every one opens what it sealed. Required with the redb and postgres stores
    /// (every instance on one database needs the same files).
    #[arg(long, value_name = "FILE")]
    kek_file: Vec<PathBuf>,
    /// A CSV file of identity map entries (`emse_id,app_identity,imsi` per line, header
    /// optional), imported all or nothing at start-up; re-importing changes nothing.
    #[arg(long, value_name = "FILE")]
    provision_file: Option<PathBuf>,
    /// Intermediate keys kept per UE.
    #[arg(long, value_name = "N", default_value_t = RetentionPolicy::DEFAULT.keys_per_ue())]
    keys_per_ue: usize,
    /// Oldest intermediate key kept, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = RetentionPolicy::DEFAULT.max_age().as_secs())]
    max_age: u64,
    /// EMSE session lifetime, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = SessionPolicy::DEFAULT.ttl().as_secs())]
    session_ttl: u64,
    /// Identity map entry (EMSE_Id, application identity) → IMSI (the seed's case 2;
    /// repeatable).
    #[arg(long, value_name = "EMSE_ID,APP_ID,IMSI", value_parser = parse_provision)]
    provision: Vec<Provision>,
    /// Let this EMSE name UEs by IMSI (the seed's case 1; repeatable).
    #[arg(long, value_name = "EMSE_ID")]
    allow_imsi: Vec<EmseId>,
    /// Accept callbacks to this host (DNS name, `*.` wildcard or IP address, IPv6 in
    /// brackets) on this port from any EMSE; without it, a callback must name a host of
    /// the EMSE's certificate, on port 443 (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    callback_allow: Vec<e2m_emks::AllowedCallback>,
    /// Requests per second per peer (sustained).
    #[arg(long, value_name = "PER_SEC", default_value_t = RateLimit::DEFAULT.per_second,
          value_parser = parse_rate)]
    rate: f64,
    /// Requests per peer at once after a quiet period.
    #[arg(long, value_name = "N", default_value_t = RateLimit::DEFAULT.burst,
          value_parser = clap::value_parser!(u32).range(1..))]
    burst: u32,
    /// Serve /healthz, /readyz and /metrics (plain HTTP, no authentication) on ADDR; off
    /// unless given; without a value 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9464")]
    metrics_listen: Option<SocketAddr>,
    /// Log format on stderr: plain text (colour only on a terminal) or one JSON object per
    /// line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    akma: akma::AkmaArgs,
    /// The HSS's pushes over Diameter (examples/emks/diameter.rs).
    #[command(flatten)]
    diameter: diameter::DiameterArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

/// One `--provision` entry.
#[derive(Clone, Debug)]
struct Provision {
    emse: EmseId,
    app: AppIdentity,
    imsi: Imsi,
}

fn parse_provision(text: &str) -> Result<Provision, String> {
    let parts: Vec<&str> = text.split(',').collect();
    let [emse, app, imsi] = parts[..] else {
        return Err("want EMSE_ID,APP_ID,IMSI".into());
    };
    Ok(Provision {
        emse: EmseId::new(emse).map_err(|e| format!("EMSE_Id: {e}"))?,
        app: AppIdentity::new(app).map_err(|e| format!("application identity: {e}"))?,
        imsi: Imsi::new(imsi).map_err(|e| format!("IMSI: {e}"))?,
    })
}

fn parse_pool_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err("want 1 to 1000".into()),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("want a positive number".into()),
    }
}

fn main() -> ExitCode {
    let (cli, _): (Cli, _) = cli::parse_or_exit(PROGRAM);
    let result = match cli.command {
        Some(Command::GenPki { dir, emse }) => gen_pki(&dir, emse),
        Some(Command::GenKek { out, version }) => gen_kek(&out, version),
        Some(Command::GenAkmaPki { dir, ausf, nef, af }) => akma::gen_pki(&dir, &ausf, &nef, &af),
        Some(Command::Restore {
            backup,
            data_dir,
            kek_file,
        }) => restore(&backup, &data_dir, &kek_file),
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => cli::failure(PROGRAM, message),
    }
}

fn gen_pki(dir: &std::path::Path, emses: Vec<EmseId>) -> Result<(), String> {
    let spec = PkiSpec::new(emses).map_err(|e| e.to_string())?;
    let pki = GeneratedPki::generate(&spec).map_err(|e| e.to_string())?;
    pki.write_to(dir).map_err(|e| e.to_string())?;
    println!("PKI written to {} ({pki:?})", dir.display());
    Ok(())
}

fn gen_kek(out: &std::path::Path, version: u32) -> Result<(), String> {
    let version = KekVersion::new(version).ok_or("--version must be at least 1")?;
    write_new_kek_file(out, version).map_err(|e| e.to_string())?;
    println!("KEK version {} written to {}", version.get(), out.display());
    Ok(())
}

fn restore(backup: &Path, data_dir: &Path, kek_files: &[PathBuf]) -> Result<(), String> {
    let keyring = read_keyring(kek_files);
    let summary = RedbStore::restore(backup, data_dir, &keyring).map_err(|e| {
        format!(
            "restore {} into {}: {e}",
            cli::printable(&backup.display().to_string()),
            cli::printable(&data_dir.display().to_string())
        )
    })?;
    println!(
        "restored {} keys of {} UEs from {} into {}",
        summary.keys,
        summary.ues,
        cli::printable(&backup.display().to_string()),
        cli::printable(&data_dir.display().to_string())
    );
    if let Some(replaced) = summary.replaced {
        println!(
            "the file it replaced is kept as {}",
            cli::printable(&replaced.display().to_string())
        );
    }
    Ok(())
}

fn init_logs(format: LogFormat) {
    // PostgreSQL's NOTICEs (e.g. "relation already exists, skipping" at each start, when
    // the idempotent schema statements find the tables) are not the operator's business.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        // Colour codes only for a person at a terminal, never into a file or a collector.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Waits for Ctrl-C or, on Unix, SIGTERM (what a service manager sends).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn serve(args: ServeArgs) -> Result<(), String> {
    // Checks that span several flags, reported like every other input error (exit 2).
    let retention = RetentionPolicy::new(args.keys_per_ue, Duration::from_secs(args.max_age))
        .unwrap_or_else(|e| cli::usage_error(PROGRAM, format!("--keys-per-ue/--max-age: {e}")));
    let sessions = SessionPolicy::new(
        Duration::from_secs(args.session_ttl),
        SessionPolicy::DEFAULT.max_per_emse(),
        SessionPolicy::DEFAULT.max_total(),
    )
    .unwrap_or_else(|e| cli::usage_error(PROGRAM, format!("--session-ttl: {e}")));
    let Some(certs) = args.certs.clone() else {
        cli::usage_error(PROGRAM, "--certs is required");
    };
    check_store_flags(&args);
    args.akma.check();
    init_logs(args.log_format);

    let pki = PkiDir::open(&certs).unwrap_or_else(|e| {
        cli::usage_error(
            PROGRAM,
            format!(
                "--certs {}: {e}",
                cli::printable(&certs.display().to_string())
            ),
        )
    });
    let mut config = EmksConfig::default();
    for allowed in &args.callback_allow {
        config = config.allow_callback(allowed.clone());
    }
    for emse in &args.allow_imsi {
        config = config.allow_imsi(emse);
    }
    // A file that cannot be read or parsed is bad input like a bad flag (exit 2).
    let rows = match &args.provision_file {
        Some(path) => {
            let shown = cli::printable(&path.display().to_string());
            let bytes = std::fs::read(path).unwrap_or_else(|e| {
                cli::usage_error(PROGRAM, format!("--provision-file {shown}: {e}"))
            });
            parse_identity_csv(&bytes).unwrap_or_else(|e| {
                cli::usage_error(PROGRAM, format!("--provision-file {shown}: {e}"))
            })
        }
        None => Vec::new(),
    };
    // The PostgreSQL store's connections run on this runtime, so it exists before any store.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match args.store {
        StoreKind::Memory => {
            let core =
                Emks::in_memory_with(config, retention, sessions, SubscriptionPolicy::DEFAULT);
            let core = Arc::new(core);
            let probe = core.clone();
            let refresh = move |m: &EmksMetrics| {
                m.keys_held
                    .set(i64::try_from(probe.keys().key_count()).unwrap_or(i64::MAX));
                m.sessions
                    .set(i64::try_from(probe.sessions().len()).unwrap_or(i64::MAX));
            };
            let hooks = StoreHooks {
                refresh: Some(Box::new(refresh)),
                akma: args.akma.enabled().then(|| {
                    akma::AkmaStore::Memory(e2m_keystore::MemoryAkmaContexts::new(
                        args.akma.policy(),
                    ))
                }),
                ..StoreHooks::default()
            };
            run(&runtime, core, &args, rows, &pki, hooks)
        }
        StoreKind::Redb => {
            let Some(data_dir) = &args.data_dir else {
                cli::usage_error(PROGRAM, "--data-dir is required with --store redb");
            };
            let keyring = read_keyring(&args.kek_file);
            let store_config = RedbStoreConfig {
                retention,
                sessions,
                subscriptions: SubscriptionPolicy::DEFAULT,
                ..RedbStoreConfig::default()
            };
            let store = RedbStore::open(data_dir, keyring, store_config).unwrap_or_else(|e| {
                cli::usage_error(PROGRAM, format!("--data-dir {}: {e}", data_dir.display()))
            });
            let core = Arc::new(Emks::new(
                config,
                store.int_keys(),
                store.identities(),
                store.sessions(),
                store.subscriptions(),
            ));
            let backup = args.backup_dir.as_ref().map(|dir| {
                std::fs::create_dir_all(dir).unwrap_or_else(|e| {
                    cli::usage_error(
                        PROGRAM,
                        format!(
                            "--backup-dir {}: {e}",
                            cli::printable(&dir.display().to_string())
                        ),
                    )
                });
                OnlineBackup {
                    store: store.clone(),
                    dir: dir.clone(),
                }
            });
            let akma_store = args
                .akma
                .enabled()
                .then(|| akma::AkmaStore::Redb(store.akma(args.akma.policy())));
            let probed = store.clone();
            let probe: StoreProbe = Box::new(move || {
                let store = probed.clone();
                Box::pin(async move { store.check_writable().await.map_err(|e| e.to_string()) })
            });
            let refresh = move |m: &EmksMetrics| {
                if let Ok(n) = store.key_count() {
                    m.keys_held.set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                if let Ok(n) = store.session_count() {
                    m.sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            };
            let hooks = StoreHooks {
                refresh: Some(Box::new(refresh)),
                probe: Some(probe),
                backup,
                outbox_wake: None,
                akma: akma_store,
            };
            run(&runtime, core, &args, rows, &pki, hooks)
        }
        StoreKind::Postgres => {
            let pg_config = postgres_config(&args);
            let keyring = read_keyring(&args.kek_file);
            // Connects, creates the schema if missing and checks the KEK files against the
            // stored check records: every refusal happens here, before anything is served.
            let backend = runtime
                .block_on(PgBackend::connect(&pg_config, keyring))
                .unwrap_or_else(|e| {
                    cli::usage_error(PROGRAM, format!("--store postgres: {}", with_causes(&e)))
                });
            // Read-through caches in front of the shared database (e2m_keystore::cache):
            // each serves what it read for at most --cache-ttl (the staleness bound).
            let cache = postgres_cache(&args);
            let clock = Arc::new(InstantClock(std::time::Instant::now()));
            let core = Arc::new(Emks::new(
                config,
                CachedIntKeys::new(backend.int_keys(retention), cache, clock.clone()),
                CachedIdentities::new(backend.identities(), cache, clock.clone()),
                CachedSessions::new(backend.sessions(sessions), cache, clock),
                backend.subscriptions(SubscriptionPolicy::DEFAULT),
            ));
            // No store gauges: the database is shared by every instance, and counting its
            // tables at each scrape of each instance is load on the database for a figure
            // PostgreSQL's own statistics give (pg_stat_user_tables).
            // Every instance's deliverer wakes when any instance recorded notifications
            // (`LISTEN` on the outbox's channel; the push's transaction `NOTIFY`s it), so a
            // push taken by another instance is delivered at once, not at the next poll.
            let wake = {
                let _runtime = runtime.enter();
                backend.outbox_wakeups()
            };
            let probed = backend.clone();
            let probe: StoreProbe = Box::new(move || {
                let backend = probed.clone();
                Box::pin(async move { backend.check_writable().await.map_err(|e| with_causes(&e)) })
            });
            // The AAnF's deliverer listens for the AKMA entries on a channel of its own.
            let akma_store = args.akma.enabled().then(|| {
                let _runtime = runtime.enter();
                akma::AkmaStore::Postgres(
                    backend.akma(args.akma.policy()),
                    backend.outbox_wakeups(),
                )
            });
            let hooks = StoreHooks {
                refresh: None,
                probe: Some(probe),
                backup: None,
                outbox_wake: Some(wake),
                akma: akma_store,
            };
            let result = run(&runtime, core, &args, rows, &pki, hooks);
            backend.close();
            result
        }
    }
}

/// Entries each read-through cache of `--store postgres` holds at most, whatever the
/// database holds: sessions (as many as `SessionPolicy::DEFAULT` allows in all), identity
/// mappings, and UEs of the key cache (each with the keys fetched of it, at most 16).
const CACHE_CAPACITY: usize = 100_000;

/// The caches' configuration from `--cache-ttl`.
fn postgres_cache(args: &ServeArgs) -> CacheConfig {
    CacheConfig::new(Duration::from_millis(args.cache_ttl), CACHE_CAPACITY)
        .unwrap_or_else(|e| cli::usage_error(PROGRAM, format!("--cache-ttl: {e}")))
}

/// The monotonic clock the caches read (the cache module reads none of its own).
struct InstantClock(std::time::Instant);

impl MonotonicClock for InstantClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// An error's message followed by those of its sources that it does not already include
/// (tokio-postgres says "error connecting to server" and keeps "Connection refused" in
/// its source), joined with ": ".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// Refuses flag combinations the chosen store cannot use (exit 2).
fn check_store_flags(args: &ServeArgs) {
    if args.store != StoreKind::Postgres && args.database_url.is_some() {
        cli::usage_error(PROGRAM, "--database-url is for --store postgres");
    }
    let needs_kek = match args.store {
        StoreKind::Redb => {
            if args.data_dir.is_none() {
                cli::usage_error(
                    PROGRAM,
                    "--data-dir is required with --store redb (or use --store memory)",
                );
            }
            true
        }
        StoreKind::Postgres => {
            if args.data_dir.is_some() {
                cli::usage_error(
                    PROGRAM,
                    "--data-dir is for --store redb; PostgreSQL keeps the state in the database",
                );
            }
            true
        }
        StoreKind::Memory => {
            for (given, flag) in [
                (args.data_dir.is_some(), "--data-dir"),
                (!args.kek_file.is_empty(), "--kek-file"),
            ] {
                if given {
                    cli::usage_error(
                        PROGRAM,
                        format!(
                            "{flag} is for --store redb and --store postgres; --store memory keeps nothing"
                        ),
                    );
                }
            }
            false
        }
    };
    if args.store != StoreKind::Redb && args.backup_dir.is_some() {
        cli::usage_error(
            PROGRAM,
            "--backup-dir is for --store redb (back up PostgreSQL with pg_dump or pg_basebackup)",
        );
    }
    if args.store != StoreKind::Postgres && args.database_url.is_some() {
        cli::usage_error(PROGRAM, "--database-url is for --store postgres");
    }
    if needs_kek && args.kek_file.is_empty() {
        cli::usage_error(
            PROGRAM,
            "--kek-file is required with --store redb and --store postgres (write one with `emks gen-kek`)",
        );
    }
}

/// The operator's KEK files as a keyring; an unreadable or malformed file is refused (exit 2).
fn read_keyring(files: &[PathBuf]) -> Keyring {
    Keyring::from_kek_files(files)
        .unwrap_or_else(|e| cli::usage_error(PROGRAM, format!("--kek-file: {e}")))
}

/// The PostgreSQL store's configuration from `--database-url` (or its environment
/// variable) and `--pool-size`; a connection string that does not parse is refused (exit 2).
fn postgres_config(args: &ServeArgs) -> PgConfig {
    let conninfo = match &args.database_url {
        Some(url) => url.clone(),
        None => match std::env::var(DATABASE_URL_ENV) {
            Ok(url) if !url.is_empty() => url,
            _ => cli::usage_error(
                PROGRAM,
                format!("--store postgres needs --database-url or ${DATABASE_URL_ENV}"),
            ),
        },
    };
    PgConfig::from_conninfo(&conninfo)
        .and_then(|c| c.with_pool_size(args.pool_size))
        .unwrap_or_else(|e| cli::usage_error(PROGRAM, format!("--database-url: {e}")))
}

/// What the serving loop uses of a store besides the core.
#[derive(Default)]
struct StoreHooks {
    /// Reads the state gauges before each scrape.
    refresh: Option<Refresh>,
    /// Asks a durable store whether it can write (readiness).
    probe: Option<StoreProbe>,
    /// Where SIGUSR1 writes an online backup (redb with `--backup-dir`).
    backup: Option<OnlineBackup>,
    /// The PostgreSQL store's `LISTEN`: wakes the deliverer for notifications other
    /// instances recorded.
    outbox_wake: Option<Arc<tokio::sync::Notify>>,
    /// The AKMA contexts the AAnF serves (with `--aanf-listen`).
    akma: Option<akma::AkmaStore>,
}

/// The redb store and the directory its online backups go to.
struct OnlineBackup {
    store: RedbStore,
    dir: PathBuf,
}

/// Writes an online backup on each SIGUSR1 (one at a time, on a blocking thread); with no
/// backup configured, logs that none was written (SIGUSR1 never ends the process).
fn backups_on_sigusr1(backup: Option<OnlineBackup>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut usr1 = match signal(SignalKind::user_defined1()) {
            Ok(usr1) => usr1,
            Err(error) => {
                tracing::warn!(%error, "SIGUSR1 handler not installed: no online backups");
                return;
            }
        };
        let busy = Arc::new(AtomicBool::new(false));
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                let Some(backup) = &backup else {
                    tracing::warn!(
                        "SIGUSR1: online backups need --store redb and --backup-dir; none written"
                    );
                    continue;
                };
                if busy.swap(true, Ordering::AcqRel) {
                    tracing::warn!("SIGUSR1: a backup is being written; no second one started");
                    continue;
                }
                let path = backup.dir.join(format!(
                    "e2m-emks-{}.redb",
                    utc_stamp(std::time::SystemTime::now())
                ));
                let (store, busy) = (backup.store.clone(), busy.clone());
                tokio::task::spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    let shown = path.display().to_string();
                    match store.backup_to(&path) {
                        Ok(summary) => tracing::info!(
                            path = %shown,
                            keys = summary.keys,
                            ues = summary.ues,
                            bytes = summary.bytes,
                            millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                            "online backup written"
                        ),
                        Err(error) => {
                            tracing::error!(path = %shown, %error, "online backup failed");
                        }
                    }
                    busy.store(false, Ordering::Release);
                });
            }
        });
    }
    #[cfg(not(unix))]
    if backup.is_some() {
        tracing::warn!("online backups on SIGUSR1 need a Unix system");
    }
}

/// `YYYYMMDDTHHMMSS.mmmZ` (UTC) for a backup's file name.
fn utc_stamp(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Provisions, then serves until a stop signal, over any stores.
fn run<K, M, S, B>(
    runtime: &tokio::runtime::Runtime,
    core: Arc<Emks<K, M, S, B>>,
    args: &ServeArgs,
    rows: Vec<IdentityRow>,
    pki: &PkiDir,
    hooks: StoreHooks,
) -> Result<(), String>
where
    K: IntKeyStore + NotificationOutbox + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    for p in &args.provision {
        runtime
            .block_on(core.identities().provision(&p.emse, &p.app, &p.imsi))
            .map_err(|e| format!("provisioning: {e}"))?;
    }
    if !rows.is_empty() {
        let summary = runtime
            .block_on(core.identities().provision_all(rows))
            .map_err(|e| format!("--provision-file: {e}; nothing was imported"))?;
        tracing::info!(
            added = summary.added,
            unchanged = summary.unchanged,
            "provisioning file imported"
        );
    }
    let metrics = Arc::new(EmksMetrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let StoreHooks {
        refresh,
        probe,
        backup,
        outbox_wake,
        akma: akma_store,
    } = hooks;
    runtime.block_on(async {
        backups_on_sigusr1(backup);
        let operations = match args.metrics_listen {
            Some(addr) => {
                if !addr.ip().is_loopback() {
                    tracing::warn!(%addr, "the operations endpoint has no authentication; keep it on a management network");
                }
                let operations = Operations {
                    metrics: metrics.clone(),
                    ready: ready.clone(),
                    refresh,
                    store_probe: probe,
                    aanf: args.akma.enabled(),
                };
                Some(
                    OperationsServer::start(addr, operations)
                        .await
                        .map_err(|e| format!("--metrics-listen {addr}: {e}"))?,
                )
            }
            None => None,
        };
        // One wake-up for the deliverer, whichever interface took the push.
        let wake = outbox_wake.unwrap_or_else(|| Arc::new(tokio::sync::Notify::new()));
        let observer: Option<Arc<dyn e2m_https::metrics::EmksObserver>> =
            operations.is_some().then(|| {
                let observer: Arc<dyn e2m_https::metrics::EmksObserver> = metrics.clone();
                observer
            });
        let options = EmksServerOptions {
            listen: args.listen,
            limits: Limits {
                rate: RateLimit {
                    per_second: args.rate,
                    burst: args.burst,
                },
                ..Limits::default()
            },
            observer: observer.clone(),
            outbox_wake: Some(wake.clone()),
            ..EmksServerOptions::default()
        };
        let server = start_emks(core.clone(), pki, options)
            .await
            .map_err(|e| e.to_string())?;
        let aanf = match akma_store {
            Some(store) => {
                let observed = operations.is_some().then(|| metrics.aanf.clone());
                Some(akma::start(&args.akma, store, observed).await?)
            }
            None => None,
        };
        ready.store(true, Ordering::Release);
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "EMKS listening on {}", server.base_url());
        if let Some(aanf) = &aanf {
            let _ = writeln!(stdout, "AAnF listening on {}", aanf.base_url());
        }
        if let Some(operations) = &operations {
            let _ = writeln!(
                stdout,
                "metrics listening on http://{}",
                operations.local_addr()
            );
        }
        let _ = stdout.flush();
        let diameter = diameter::start(&args.diameter, core, pki, observer, wake).await?;
        stop_signal().await;
        ready.store(false, Ordering::Release);
        tracing::info!("stopping");
        if let Some(diameter) = diameter {
            diameter.shutdown(Duration::from_secs(2)).await;
        }
        server.shutdown().await;
        if let Some(aanf) = aanf {
            aanf.shutdown().await;
        }
        if let Some(operations) = operations {
            operations.shutdown().await;
        }
        Ok(())
    })
}
