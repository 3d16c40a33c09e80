//! The conformance checker (issue 19): runs the `e2m-check` checks against a running EMKS
//! or EMSE over the wire and reports each verdict with the seed clause or RFC section it
//! comes from. The h2spec / testssl.sh of the EMSE↔EMKS interface.
//!
//! ```text
//! # a test deployment: certificates for the checker's HSS and two EMSEs, and the
//! # identities the operator must provision (examples/README.md, "Checking an EMKS")
//! cargo run --example check -- init --dir /tmp/e2m-check
//! cargo run --example emks -- --store memory --listen 127.0.0.1:8443 \
//!     --certs /tmp/e2m-check/pki --provision-file /tmp/e2m-check/provision.csv \
//!     --allow-imsi emse-a &
//! cargo run --example check -- emks --url https://127.0.0.1:8443 \
//!     --certs /tmp/e2m-check/pki --imsi-emse emse-a --junit /tmp/emks.xml --json /tmp/emks.json
//! # an EMSE (registered with that EMKS as emse-a), driven as UEs
//! cargo run --example emse -- --emks https://127.0.0.1:8443 --certs /tmp/e2m-check/pki \
//!     --emse-id emse-a --listen 127.0.0.1:5684 --oscore-listen 127.0.0.1:5683 &
//! cargo run --example check -- emse --dtls 127.0.0.1:5684 --oscore 127.0.0.1:5683 \
//!     --emse-id emse-a --emks https://127.0.0.1:8443 --certs /tmp/e2m-check/pki
//! cargo run --example check -- list          # every check: name, clause, sends, expects
//! ```
//!
//! Exit status: 0 when no check failed (skips are not failures), 1 when one did (or the
//! run could not start), 2 for bad arguments (one line on stderr, as every example).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use e2m_check::e2m_https::pki::{GeneratedPki, PkiDir, PkiSpec};
use e2m_check::e2m_msg::EmseId;
use e2m_check::{
    CheckInfo, EmksTarget, EmseTarget, Report, Selection, UePlan, XmlLint, emks_checks,
    emse_checks, run_emks, run_emse,
};

#[path = "support/cli.rs"]
#[allow(dead_code, reason = "shared by all examples; each uses a part")]
mod cli;

const PROGRAM: &str = "check";

/// A black-box conformance checker for EMKS and EMSE products: every check names the seed
/// clause or RFC section it comes from, what it sends and what it expects.
#[derive(Parser, Debug)]
#[command(name = "check", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks an EMKS, acting as the HSS and as two EMSEs (exit 1 if any check fails).
    Emks(Box<EmksArgs>),
    /// Checks an EMSE, acting as UEs and, towards the EMKS it uses, as the HSS.
    Emse(Box<EmseArgs>),
    /// Writes a test deployment: a PKI (CA, EMKS, HSS, the EMSEs) and provision.csv.
    Init {
        /// The directory to write (`pki/` and `provision.csv` in it).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The EMSEs to issue certificates for (default: emse-a and emse-b).
        #[arg(long, value_name = "EMSE_ID")]
        emse: Vec<EmseId>,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Prints the identity map entries the operator provisions for the checker
    /// (`emse_id,app_identity,imsi`, the emks example's --provision-file format).
    Provisioning {
        /// The EMSEs the checker acts as, in order (default: emse-a and emse-b).
        #[arg(long, value_name = "EMSE_ID")]
        emse: Vec<EmseId>,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Lists every check: name, clause, what it sends, what it expects.
    List,
}

/// Which UEs the checker uses (must match what was provisioned).
#[derive(Args, Debug)]
struct PlanArgs {
    /// The IMSI base: the checker's UEs are base+1 … base+92 (6 to 15 digits).
    #[arg(long, value_name = "DIGITS", default_value = e2m_check::DEFAULT_IMSI_BASE)]
    imsi_base: String,
    /// The domain of the checker's application identities (check-01@DOMAIN …).
    #[arg(long, value_name = "DOMAIN", default_value = e2m_check::DEFAULT_DOMAIN)]
    domain: String,
}

impl PlanArgs {
    fn plan(&self) -> UePlan {
        UePlan::new(&self.imsi_base, &self.domain).unwrap_or_else(|e| {
            cli::usage_error(PROGRAM, format_args!("--imsi-base/--domain: {e}"))
        })
    }
}

/// Which checks run and where the reports go.
#[derive(Args, Debug)]
struct RunArgs {
    /// Run only the checks whose name matches this glob (repeatable; `*` and `?`).
    #[arg(long, value_name = "GLOB")]
    only: Vec<String>,
    /// Skip the checks whose name matches this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    skip: Vec<String>,
    /// Also write the report as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Validate XML answers with xmllint against e2m's XSD: auto (when installed),
    /// required, or off (the strict decoder checks every answer anyway).
    #[arg(long, value_enum, default_value_t = LintMode::Auto)]
    xmllint: LintMode,
    /// The PKI directory: ca.pem, hss.pem + hss.key, emse-<EMSE_Id>.pem + .key.
    #[arg(long, value_name = "DIR")]
    certs: PathBuf,
    /// Intermediate keys the EMKS keeps per UE (its retention policy).
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    keys_per_ue: u8,
    /// How far before now the checker dates the keys it pushes (clock skew allowance).
    #[arg(long, value_name = "MILLIS", default_value_t = 2000)]
    clock_margin: u64,
    #[command(flatten)]
    plan: PlanArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LintMode {
    /// When installed.
    Auto,
    /// Always (the run does not start without xmllint).
    Required,
    /// Never.
    Off,
}

#[derive(Args, Debug)]
struct EmksArgs {
    /// The EMKS: https://HOST[:PORT].
    #[arg(long, value_name = "URL")]
    url: String,
    /// The first EMSE the checker acts as (its certificate is in --certs).
    #[arg(long, value_name = "EMSE_ID", default_value = "emse-a")]
    emse_a: EmseId,
    /// The second EMSE (key separation, sessions bound to certificates).
    #[arg(long, value_name = "EMSE_ID", default_value = "emse-b")]
    emse_b: EmseId,
    /// An EMSE the operator lets name UEs by IMSI (repeatable; default: none).
    #[arg(long, value_name = "EMSE_ID")]
    imsi_emse: Vec<EmseId>,
    /// Sessions one EMSE may hold before a registration replaces its oldest (the EMKS's
    /// policy); the checker registers one more.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    sessions_per_emse: u16,
    /// How long the EMKS serves an intermediate key after its creation, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 86_400)]
    key_max_age: u64,
    /// Where the checker's notification endpoint listens (mutual TLS, EMSE A's callback
    /// certificate).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    callback_listen: SocketAddr,
    /// The host the callback URI names (default: the listening address); it must be a
    /// host EMSE A's certificate names, or one the EMKS allows.
    #[arg(long, value_name = "HOST")]
    callback_host: Option<String>,
    /// Seconds to wait for a notification.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    notification_wait: u64,
    /// Seconds to wait, after a key's expiry, for its key-retired notification (at least
    /// the EMKS's expiry sweep period); without it that check is skipped.
    #[arg(long, value_name = "SECS")]
    expiry_notification_wait: Option<u64>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct EmseArgs {
    /// The EMSE's DTLS address.
    #[arg(long, value_name = "ADDR")]
    dtls: SocketAddr,
    /// The EMSE's OSCORE address (the OSCORE checks are skipped without it).
    #[arg(long, value_name = "ADDR")]
    oscore: Option<SocketAddr>,
    /// The EMSE's EMSE_Id.
    #[arg(long, value_name = "EMSE_ID")]
    emse_id: EmseId,
    /// The EMKS the EMSE fetches its keys from: https://HOST[:PORT].
    #[arg(long, value_name = "URL")]
    emks: String,
    /// The CoAP Uri-Path sent after a handshake (any answer will do).
    #[arg(long, value_name = "PATH", default_value = "e2m-check")]
    coap_path: String,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    let (cli, _): (Cli, _) = cli::parse_or_exit(PROGRAM);
    match cli.command {
        Command::List => {
            print_list("emks", &emks_checks());
            print_list("emse", &emse_checks());
            ExitCode::SUCCESS
        }
        Command::Provisioning { emse, plan } => {
            print!("{}", plan.plan().provisioning_csv(&emses_or_default(emse)));
            ExitCode::SUCCESS
        }
        Command::Init { dir, emse, plan } => match init(&dir, emses_or_default(emse), &plan.plan())
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => cli::failure(PROGRAM, e),
        },
        Command::Emks(args) => run(|| emks(*args)),
        Command::Emse(args) => run(|| emse(*args)),
    }
}

fn emses_or_default(emses: Vec<EmseId>) -> Vec<EmseId> {
    if !emses.is_empty() {
        return emses;
    }
    ["emse-a", "emse-b"]
        .iter()
        .filter_map(|id| EmseId::new(id).ok())
        .collect()
}

fn print_list(suite: &str, checks: &[CheckInfo]) {
    for c in checks {
        println!("{suite}  {}  [{}]", c.name, c.clause);
        println!("      sends:   {}", c.sends);
        println!("      expects: {}", c.expects);
    }
}

fn init(dir: &Path, emses: Vec<EmseId>, plan: &UePlan) -> Result<(), String> {
    if dir.exists() {
        return Err(format!("{} exists; give a new directory", dir.display()));
    }
    let spec = PkiSpec::new(emses.clone()).map_err(|e| e.to_string())?;
    GeneratedPki::generate(&spec)
        .and_then(|pki| pki.write_to(&dir.join("pki")))
        .map_err(|e| format!("writing the PKI: {e}"))?;
    std::fs::write(dir.join("provision.csv"), plan.provisioning_csv(&emses))
        .map_err(|e| format!("writing provision.csv: {e}"))?;
    println!(
        "wrote {0}/pki (ca.pem, emks.*, hss.*, emse-*) and {0}/provision.csv",
        dir.display()
    );
    Ok(())
}

/// Runs a suite on a runtime, prints the table, writes the reports; exit 1 on a failure.
fn run(
    suite: impl FnOnce() -> Result<(Report, Option<PathBuf>, Option<PathBuf>), String>,
) -> ExitCode {
    let (report, junit, json) = match suite() {
        Ok(r) => r,
        Err(e) => return cli::failure(PROGRAM, e),
    };
    print!("{}", report.table());
    for (path, text) in [(junit, report.junit_xml()), (json, report.json())] {
        if let Some(path) = path
            && let Err(e) = std::fs::write(&path, text)
        {
            return cli::failure(PROGRAM, format_args!("{}: {e}", path.display()));
        }
    }
    if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

fn selection(run: &RunArgs, checks: &[CheckInfo]) -> Selection {
    let selection = Selection::new(run.only.clone(), run.skip.clone());
    let unmatched = selection.unmatched(checks);
    if let Some(first) = unmatched.first() {
        cli::usage_error(
            PROGRAM,
            format_args!(
                "--only/--skip {}: matches no check (see `check list`)",
                cli::clip(first, cli::ECHO_LIMIT)
            ),
        );
    }
    selection
}

fn lint(mode: LintMode) -> XmlLint {
    match mode {
        LintMode::Auto => XmlLint::Auto,
        LintMode::Required => XmlLint::Required,
        LintMode::Off => XmlLint::Off,
    }
}

fn open_pki(dir: &Path) -> PkiDir {
    PkiDir::open(dir).unwrap_or_else(|e| cli::usage_error(PROGRAM, format_args!("--certs: {e}")))
}

type Outcome = Result<(Report, Option<PathBuf>, Option<PathBuf>), String>;

fn emks(args: EmksArgs) -> Outcome {
    let selection = selection(&args.run, &emks_checks());
    let pki = open_pki(&args.run.certs);
    let mut target = EmksTarget::from_pki_dir(
        &args.url,
        &pki,
        &args.emse_a,
        &args.emse_b,
        args.run.plan.plan(),
    )?;
    target.imsi_allowed_a = args.imsi_emse.contains(&args.emse_a);
    target.imsi_allowed_b = args.imsi_emse.contains(&args.emse_b);
    target.keys_per_ue = usize::from(args.run.keys_per_ue);
    target.sessions_per_emse = usize::from(args.sessions_per_emse);
    target.key_max_age = Duration::from_secs(args.key_max_age.max(1));
    target.callback_listen = args.callback_listen;
    target.callback_host = args.callback_host;
    target.notification_wait = Duration::from_secs(args.notification_wait.max(1));
    target.expiry_notification_wait = args.expiry_notification_wait.map(Duration::from_secs);
    target.clock_margin = Duration::from_millis(args.run.clock_margin);
    target.xmllint = lint(args.run.xmllint);
    let report = runtime()?.block_on(run_emks(target, &selection))?;
    Ok((report, args.run.junit, args.run.json))
}

fn emse(args: EmseArgs) -> Outcome {
    let selection = selection(&args.run, &emse_checks());
    let pki = open_pki(&args.run.certs);
    let mut target = EmseTarget::from_pki_dir(
        args.dtls,
        args.emse_id,
        &args.emks,
        &pki,
        args.run.plan.plan(),
    )?;
    target.oscore = args.oscore;
    target.keys_per_ue = usize::from(args.run.keys_per_ue);
    target.coap_path = args.coap_path;
    target.clock_margin = Duration::from_millis(args.run.clock_margin);
    let report = runtime()?.block_on(run_emse(target, &selection))?;
    Ok((report, args.run.junit, args.run.json))
}
