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
//! side of AKA) and the key id; never K, OPc, CK, IK or the keys.

use std::process::ExitCode;
use std::time::SystemTime;

use e2m_aka::{Aka, Opc, Sqn, SubscriberKey};
use e2m_https::client::EmksClient;
use e2m_https::pki::PkiDir;
use e2m_kdf::{Ck, E2mProfile, Ik, e2m_int_key};
use e2m_keyid::{Imsi, KeyId};
use e2m_msg::{IntermediateKeyPush, KeyIdSource, Timestamp};

const USAGE: &str = "usage: hss --emks https://HOST:PORT --certs DIR --imsi IMSI
           (--k HEX --opc HEX [--rand HEX] [--sqn N] | --ck HEX --ik HEX --rand HEX)
           [--key-id rand|hash]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hss: {message}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn hex16(text: &str, flag: &str) -> Result<[u8; 16], String> {
    let mut out = [0u8; 16];
    if text.len() != 32 {
        return Err(format!("{flag}: want 32 hex digits"));
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("{flag}: not hex"))?;
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default)]
struct Args {
    emks: Option<String>,
    certs: Option<String>,
    imsi: Option<String>,
    k: Option<String>,
    opc: Option<String>,
    ck: Option<String>,
    ik: Option<String>,
    rand: Option<String>,
    sqn: u64,
    short_hash: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        sqn: 1,
        ..Args::default()
    };
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        i += 1;
        let value = args
            .get(i)
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag {
            "--emks" => out.emks = Some(value),
            "--certs" => out.certs = Some(value),
            "--imsi" => out.imsi = Some(value),
            "--k" => out.k = Some(value),
            "--opc" => out.opc = Some(value),
            "--ck" => out.ck = Some(value),
            "--ik" => out.ik = Some(value),
            "--rand" => out.rand = Some(value),
            "--sqn" => out.sqn = value.parse().map_err(|_| "--sqn: not a number")?,
            "--key-id" => {
                out.short_hash = match value.as_str() {
                    "rand" => false,
                    "hash" => true,
                    _ => return Err("--key-id: rand or hash".into()),
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
        i += 1;
    }
    Ok(out)
}

fn run(args: &[String]) -> Result<(), String> {
    let args = parse_args(args)?;
    let emks = args.emks.as_deref().ok_or("--emks is required")?;
    let certs = args.certs.as_deref().ok_or("--certs is required")?;
    let imsi = Imsi::new(args.imsi.as_deref().ok_or("--imsi is required")?)
        .map_err(|e| format!("--imsi: {e}"))?;

    // 1. AKA (TS 33.102 §6.3.2) or given CK/IK.
    let (rand, ck, ik) = match (&args.k, &args.opc, &args.ck, &args.ik) {
        (Some(k), Some(opc), None, None) => {
            let k = SubscriberKey::from_hex(k).map_err(|e| format!("--k: {e}"))?;
            let opc = Opc::from_hex(opc).map_err(|e| format!("--opc: {e}"))?;
            // AMF with the separation bit set (TS 33.401 §6.1.1).
            let auc = Aka::new(&k, &opc, [0x80, 0x00]);
            let sqn = Sqn::new(args.sqn).map_err(|e| format!("--sqn: {e}"))?;
            let vector = match &args.rand {
                Some(r) => auc.make_vector(&hex16(r, "--rand")?, sqn),
                None => auc.make_vector_random(sqn).map_err(|e| e.to_string())?,
            };
            println!(
                "HSS: AKA vector for IMSI {imsi}: RAND={} AUTN={}",
                hex(&vector.rand),
                hex(&vector.autn)
            );
            (vector.rand, vector.ck, vector.ik)
        }
        (None, None, Some(ck), Some(ik)) => {
            let rand = hex16(
                args.rand
                    .as_deref()
                    .ok_or("--rand is required with --ck/--ik")?,
                "--rand",
            )?;
            let ck = Ck::from_hex(ck).map_err(|e| format!("--ck: {e}"))?;
            let ik = Ik::from_hex(ik).map_err(|e| format!("--ik: {e}"))?;
            (rand, ck, ik)
        }
        _ => return Err("give either --k and --opc, or --ck, --ik and --rand".into()),
    };

    // 2. e2m_int_key and the key id (seed 6.x.2.1, "Key derivation rules" step 1 and
    //    "Considerations on the key identifier").
    let int_key = e2m_int_key(&ck, &ik, &E2mProfile::PROVISIONAL).map_err(|e| e.to_string())?;
    let key_id = if args.short_hash {
        KeyIdSource::ShortHash
    } else {
        KeyIdSource::RandLsb32(KeyId::from_rand_lsb32(&rand))
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let push = IntermediateKeyPush {
        imsi: imsi.clone(),
        key_id,
        int_key,
        created: Timestamp::from_unix_secs(now),
    };

    // 3. Push over HTTPS with the HSS certificate.
    let pki = PkiDir::open(std::path::Path::new(certs)).map_err(|e| e.to_string())?;
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
