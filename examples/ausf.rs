//! The AUSF alone, after a 5G primary authentication (TS 33.501 §6.1.3.2) with AKMA (TS
//! 33.535 §6.1): runs 5G AKA for one subscriber with MILENAGE (TS 35.206; the UDM/ARPF's
//! part is folded in, as the `hss` example folds in the AuC), derives K_AUSF for the
//! serving network name (TS 33.501 A.2), then K_AKMA and the A-TID (TS 33.535 A.2, A.3) and
//! the A-KID (routing indicator, A-TID, home network; §6.1), and registers K_AKMA and the
//! A-KID with the AAnF (`Naanf_AKMA_AnchorKey_Register`, TS 29.535, over HTTP/2 with mutual
//! TLS or h2c). `remove` removes a UE's AKMA context (`Naanf_AKMA_ContextRemove`); the AAnF
//! then notifies the AFs that asked to be told.
//!
//! ```text
//! cargo run --example ausf -- register --aanf https://127.0.0.1:8446 --certs /tmp/akma-pki \
//!     --name ausf.operator.example --supi imsi-208930000000001 \
//!     --k 465b5ce8b199b49faa5f0a2ee238a6bc --opc cd63cb71954a9f4e48a5994e37a02baf \
//!     --serving-network-name 5G:mnc093.mcc208.3gppnetwork.org \
//!     --home-network 5gc.mnc093.mcc208.3gppnetwork.org
//! cargo run --example ausf -- remove --aanf https://127.0.0.1:8446 --certs /tmp/akma-pki \
//!     --name ausf.operator.example --supi imsi-208930000000001
//! ```
//!
//! Key material: `--k HEX --opc HEX`; `--rand HEX` fixes RAND (fresh from the OS
//! otherwise), `--sqn N` (default 1) and `--amf HEX4` (default `8000`: the AMF separation
//! bit that TS 33.501 §6.1.3.2 requires for 5G). Output: RAND and AUTN (public: the UE
//! needs them for its side, e.g. `ue --akma`) and the A-KID (it travels in clear to the
//! AF); never K, OPc, CK, IK, XRES*, K_AUSF or K_AKMA. The example takes the
//! authentication as confirmed: a real AUSF registers after the SEAF's RES* (TS 33.501
//! §6.1.3.2 steps 10–12). `ausf --help` lists the flags; bad input: one line on stderr,
//! exit status 2; a refusal or no answer from the AAnF: one line, exit status 1.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use e2m_aka::{Aka, Opc, Sqn, SubscriberKey};
use e2m_sbi::client::AusfClient;
use e2m_sbi::e2m_aanf::e2m_keyid::akma::{
    AkmaAnchor, Realm, RoutingIndicator, ServingNetworkName, Supi, UeId,
};
use e2m_sbi::e2m_akma::AkmaKeyInfo;

#[path = "support/cli.rs"]
#[allow(dead_code, reason = "shared by all examples; each uses a part")]
mod cli;
#[path = "support/sbi.rs"]
#[allow(dead_code, reason = "shared with the af example; the AUSF uses a part")]
mod sbi;

use cli::{Hex, hex_array, to_hex as hex};

const PROGRAM: &str = "ausf";

/// The AUSF alone: 5G AKA with MILENAGE, K_AUSF, K_AKMA and the A-KID registered with the
/// AAnF over HTTP/2 (TS 33.535 §6.1); or the removal of a UE's AKMA context.
#[derive(Parser, Debug)]
#[command(name = "ausf", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs 5G AKA for one subscriber and registers K_AKMA and the A-KID with the AAnF.
    Register(Box<RegisterArgs>),
    /// Removes a UE's AKMA context from the AAnF (which notifies the AFs that asked).
    Remove(Box<RemoveArgs>),
}

/// How to reach the AAnF, and as which AUSF.
#[derive(Args, Debug)]
struct Peer {
    #[command(flatten)]
    sbi: sbi::SbiArgs,
    /// This AUSF's name in the AKMA PKI (its certificate `ausf-NAME.pem`; for https).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

#[derive(Args, Debug)]
struct RegisterArgs {
    #[command(flatten)]
    peer: Peer,
    /// The subscriber's SUPI (TS 29.571 form: imsi-<digits> or nai-<user@realm>).
    #[arg(long, value_name = "SUPI", value_parser = Supi::parse)]
    supi: Supi,
    /// K, the subscriber key.
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
    k: Hex<16>,
    /// OPc.
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
    opc: Hex<16>,
    /// RAND (16 octets); fresh from the OS when absent.
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
    rand: Option<Hex<16>>,
    /// SQN of the AKA run (48 bits, decimal).
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_sqn)]
    sqn: Sqn,
    /// AMF (2 octets); 8000 sets the separation bit 5G AKA requires (TS 33.501 §6.1.3.2).
    #[arg(long, value_name = "HEX4", default_value = "8000", value_parser = hex_array::<2>)]
    amf: Hex<2>,
    /// The serving network name of the run (TS 33.501 §6.1.1.4), an input of K_AUSF.
    #[arg(long, value_name = "5G:SNID", value_parser = ServingNetworkName::parse)]
    serving_network_name: ServingNetworkName,
    /// The routing indicator, the first part of the A-KID's username (TS 23.003 §2.2B).
    #[arg(long, value_name = "DIGITS", default_value = "0", value_parser = RoutingIndicator::parse)]
    routing_indicator: RoutingIndicator,
    /// The home network identifier, the A-KID's realm (e.g.
    /// 5gc.mnc093.mcc208.3gppnetwork.org).
    #[arg(long, value_name = "REALM", value_parser = Realm::parse)]
    home_network: Realm,
}

#[derive(Args, Debug)]
struct RemoveArgs {
    #[command(flatten)]
    peer: Peer,
    /// The UE whose AKMA context goes.
    #[arg(long, value_name = "SUPI", value_parser = Supi::parse)]
    supi: Supi,
}

fn parse_sqn(text: &str) -> Result<Sqn, String> {
    let value: u64 = text
        .parse()
        .map_err(|_| "want a decimal number".to_owned())?;
    Sqn::new(value).map_err(|e| e.to_string())
}

impl Peer {
    /// Refuses a missing or misplaced `--name` (exit 2).
    fn check(&self) {
        self.sbi.check(PROGRAM);
        match (self.sbi.aanf.tls(), self.name.is_some()) {
            (true, false) => cli::usage_error(PROGRAM, "an https:// --aanf needs --name"),
            (false, true) => cli::usage_error(PROGRAM, "--name is for https:// (h2c has none)"),
            _ => {}
        }
    }

    fn client(&self) -> Result<AusfClient, String> {
        let name = self.name.clone().unwrap_or_default();
        Ok(AusfClient::new(self.sbi.client(|pki| pki.ausf(&name))?))
    }
}

fn main() -> ExitCode {
    let (cli, _): (Cli, _) = cli::parse_or_exit(PROGRAM);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return cli::failure(PROGRAM, format!("runtime: {e}")),
    };
    let result = match cli.command {
        Command::Register(args) => {
            args.peer.check();
            runtime.block_on(register(&args))
        }
        Command::Remove(args) => {
            args.peer.check();
            runtime.block_on(remove(&args))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => cli::failure(PROGRAM, message),
    }
}

async fn register(args: &RegisterArgs) -> Result<(), String> {
    let supi = args.supi;
    let snn = &args.serving_network_name;
    // 1. The 5G HE AV (TS 33.501 §6.1.3.2 step 1, the UDM/ARPF's part): RAND, AUTN,
    //    XRES*, K_AUSF.
    let k = SubscriberKey::from_array(*args.k.expose());
    let opc = Opc::from_array(*args.opc.expose());
    let arpf = Aka::new(&k, &opc, *args.amf.expose());
    let vector = match &args.rand {
        Some(rand) => arpf.make_vector(rand.expose(), args.sqn),
        None => arpf
            .make_vector_random(args.sqn)
            .map_err(|e| e.to_string())?,
    };
    let _xres_star = vector
        .xres_star(snn.as_str())
        .map_err(|e| format!("XRES*: {e}"))?;
    let kausf = vector
        .kausf(snn.as_str())
        .map_err(|e| format!("K_AUSF: {e}"))?;
    println!(
        "AUSF: 5G AKA for {supi} (SQN {}): RAND={} AUTN={}",
        args.sqn.value(),
        hex(&vector.rand),
        hex(&vector.autn)
    );
    println!(
        "AUSF: K_AUSF = KDF(CK||IK, \"{snn}\", SQN^AK) (TS 33.501 A.2); XRES* kept for the SEAF's confirmation"
    );
    // 2. K_AKMA, the A-TID and the A-KID (TS 33.535 §6.1 step 3, A.2, A.3).
    let anchor = AkmaAnchor::derive(&kausf, &supi, &args.routing_indicator, &args.home_network)
        .map_err(|e| format!("AKMA: {e}"))?;
    println!("AUSF: K_AKMA and A-TID derived from K_AUSF (TS 33.535 A.2, A.3)");
    println!("AUSF: A-KID {}", anchor.a_kid);
    let a_kid = anchor.a_kid;
    // 3. Naanf_AKMA_AnchorKey_Register (TS 33.535 §6.1 step 4; TS 29.535 §5.2.2.2).
    let ausf = args.peer.client()?;
    let info = AkmaKeyInfo {
        ue: UeId::Supi(supi),
        a_kid,
        k_akma: anchor.kakma,
        supp_feat: None,
    };
    let stored = ausf
        .register(&info)
        .await
        .map_err(|e| format!("registration with the AAnF failed: {e}"))?;
    if stored.a_kid != a_kid {
        return Err("the AAnF stored another A-KID than the one registered".into());
    }
    println!(
        "AUSF: registered K_AKMA and A-KID for {supi} with the AAnF at {} (200)",
        args.peer.sbi.aanf.as_str()
    );
    Ok(())
}

async fn remove(args: &RemoveArgs) -> Result<(), String> {
    let ausf = args.peer.client()?;
    ausf.remove(args.supi)
        .await
        .map_err(|e| format!("removal at the AAnF failed: {e}"))?;
    println!(
        "AUSF: removed the AKMA context of {} at the AAnF (204); it notifies the AFs that asked",
        args.supi
    );
    Ok(())
}
