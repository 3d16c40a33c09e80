//! The HSS alone: runs AKA for one subscriber (MILENAGE, TS 35.206, `e2m_aka`), derives
//! `e2m_int_key = KDF(CK || IK, "e2m_CIoT")` (seed 6.x.2.1 step 1) and its key id, and pushes
//! both to the EMKS over HTTPS with its HSS client certificate.
//!
//! ```text
//! cargo run --example hss -- --emks https://127.0.0.1:8443 --certs /tmp/e2m-pki \
//!     --imsi 001010123456789 \
//!     --k 465b5ce8b199b49faa5f0a2ee238a6bc --opc cd63cb71954a9f4e48a5994e37a02baf
//! ```
//!
//! Key material: `--k HEX --opc HEX` (run AKA; `--rand HEX` fixes RAND, otherwise fresh from
//! the OS; `--sqn N`, default 1) or `--ck HEX --ik HEX --rand HEX` (the AKA already ran).
//! `--key-id rand` (default: RAND-LSB32, the seed's preferred alternative 1) or `hash` (the
//! EMKS computes the short hash). Output: RAND and AUTN (public: the UE needs them for its
//! side of AKA) and the key id; never K, OPc, CK, IK or the keys. `hss --help` lists the
//! flags and defaults; bad input: one line on stderr, exit status 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use e2m_aka::{Aka, Opc, Sqn, SubscriberKey};
use e2m_https::client::EmksClient;
use e2m_https::pki::PkiDir;
use e2m_kdf::{Ck, E2mProfile, Ik, e2m_int_key};
use e2m_keyid::{Imsi, KeyId};
use e2m_msg::{IntermediateKeyPush, KeyIdSource, Timestamp};

#[path = "support/cli.rs"]
#[allow(dead_code, reason = "shared by all examples; each uses a part")]
mod cli;
#[path = "support/hss_diameter.rs"]
mod hss_diameter;

use cli::{Hex, hex_array, to_hex as hex};

/// The HSS alone: runs AKA (MILENAGE) or takes CK/IK, derives e2m_int_key and its key id,
/// and pushes both to the EMKS over HTTPS with the HSS client certificate.
#[derive(Parser, Debug)]
#[command(name = "hss", version)]
struct Args {
    /// The EMKS's base URL (or push over Diameter with --diameter).
    #[arg(
        long,
        value_name = "https://HOST:PORT",
        required_unless_present = "diameter",
        conflicts_with = "diameter"
    )]
    emks: Option<String>,
    /// The PKI directory (from `emks gen-pki`).
    #[arg(long, value_name = "DIR")]
    certs: PathBuf,
    /// The subscriber's IMSI.
    #[arg(long, value_name = "IMSI")]
    imsi: Imsi,
    /// K, the subscriber key (runs AKA; with --opc).
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>, requires = "opc",
          conflicts_with_all = ["ck", "ik"], required_unless_present = "ck")]
    k: Option<Hex<16>>,
    /// OPc (with --k).
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>, requires = "k")]
    opc: Option<Hex<16>>,
    /// CK, when the AKA already ran (with --ik and --rand).
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>, requires_all = ["ik", "rand"])]
    ck: Option<Hex<16>>,
    /// IK (with --ck).
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>, requires = "ck")]
    ik: Option<Hex<16>>,
    /// RAND (16 octets); with --k, fresh from the OS when absent.
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
    rand: Option<Hex<16>>,
    /// SQN for the AKA run (48 bits).
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_sqn)]
    sqn: Sqn,
    /// Key id scheme: RAND-LSB32 (the seed's preferred alternative 1) or the short hash
    /// (the EMKS computes it).
    #[arg(long = "key-id", value_enum, default_value_t = KeyIdScheme::Rand)]
    key_id: KeyIdScheme,
    /// The push over Diameter (examples/support/hss_diameter.rs).
    #[command(flatten)]
    diameter: hss_diameter::HssDiameterArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum KeyIdScheme {
    /// RAND-LSB32: the last 4 octets of RAND.
    Rand,
    /// The short hash of e2m_int_key.
    Hash,
}

fn parse_sqn(text: &str) -> Result<Sqn, String> {
    let value: u64 = text
        .parse()
        .map_err(|_| "want a decimal number".to_owned())?;
    Sqn::new(value).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let (args, _): (Args, _) = cli::parse_or_exit("hss");
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => cli::failure("hss", message),
    }
}

fn run(args: Args) -> Result<(), String> {
    let imsi = args.imsi;

    // 1. AKA (TS 33.102 §6.3.2) or given CK/IK.
    let (rand, ck, ik) = match (&args.k, &args.opc, &args.ck, &args.ik) {
        (Some(k), Some(opc), None, None) => {
            let k = SubscriberKey::from_array(*k.expose());
            let opc = Opc::from_array(*opc.expose());
            // AMF with the separation bit set (TS 33.401 §6.1.1).
            let auc = Aka::new(&k, &opc, [0x80, 0x00]);
            let vector = match &args.rand {
                Some(r) => auc.make_vector(r.expose(), args.sqn),
                None => auc
                    .make_vector_random(args.sqn)
                    .map_err(|e| e.to_string())?,
            };
            println!(
                "HSS: AKA vector for IMSI {imsi}: RAND={} AUTN={}",
                hex(&vector.rand),
                hex(&vector.autn)
            );
            (vector.rand, vector.ck, vector.ik)
        }
        (None, None, Some(ck), Some(ik)) => {
            let rand = *args
                .rand
                .as_ref()
                .ok_or("--rand is required with --ck/--ik")?
                .expose();
            (
                rand,
                Ck::from_array(*ck.expose()),
                Ik::from_array(*ik.expose()),
            )
        }
        _ => return Err("give either --k and --opc, or --ck, --ik and --rand".into()),
    };

    // 2. e2m_int_key and the key id (seed 6.x.2.1, "Key derivation rules" step 1 and
    //    "Considerations on the key identifier").
    let int_key = e2m_int_key(&ck, &ik, &E2mProfile::PROVISIONAL).map_err(|e| e.to_string())?;
    let key_id = match args.key_id {
        KeyIdScheme::Hash => KeyIdSource::ShortHash,
        KeyIdScheme::Rand => KeyIdSource::RandLsb32(KeyId::from_rand_lsb32(&rand)),
    };
    // Stamped from the clock to the millisecond: the EMKS keeps a UE's newest keys by this
    // time (then key id), so several AKA runs of one UE within a second keep their order
    // whatever order their pushes arrive in (issue 9 item 15).
    let push = IntermediateKeyPush {
        imsi: imsi.clone(),
        key_id,
        int_key,
        created: Timestamp::now_from_system_clock(),
    };

    // 3. Push over HTTPS with the HSS certificate (or over Diameter, --diameter).
    let pki = PkiDir::open(&args.certs).map_err(|e| e.to_string())?;
    if args.diameter.diameter.is_some() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let how = runtime.block_on(hss_diameter::push(&args.diameter, &pki, &push))?;
        println!("HSS: pushed e2m_int_key for IMSI {imsi} {how}");
        return Ok(());
    }
    let emks = args
        .emks
        .as_deref()
        .ok_or("--emks or --diameter is required")?;
    let credentials = pki.hss().map_err(|e| e.to_string())?;
    let ca = pki.ca_certificates().map_err(|e| e.to_string())?;
    let client = EmksClient::new(emks, &credentials, &ca).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime
        .block_on(client.push_intermediate_key(&push))
        .map_err(|e| format!("push to the EMKS failed: {e}"))?;
    match key_id {
        KeyIdSource::RandLsb32(id) => {
            println!("HSS: pushed e2m_int_key for IMSI {imsi}, key id {id} (RAND-LSB32)");
        }
        _ => {
            println!(
                "HSS: pushed e2m_int_key for IMSI {imsi}, key id = short hash (EMKS computes)"
            );
        }
    }
    Ok(())
}
