//! The UE alone: derives (or is given) `e2m_key` for one EMSE, opens DTLS 1.2 with
//! TLS_PSK_WITH_AES_128_CCM_8 and psk_identity = (application identity, key id), and sends
//! one CoAP GET (seed 6.x.2.3 prerequisite b and steps 1, 3, 4, 8).
//!
//! ```text
//! # PSK from the AKA run (the ME derives it; seed "Key derivation rules"):
//! cargo run --example ue -- --connect 127.0.0.1:5684 --identity sensor-17@iot.example.com \
//!     --k 465b5ce8b199b49faa5f0a2ee238a6bc --opc cd63cb71954a9f4e48a5994e37a02baf \
//!     --rand 23553cbe9637a89d218ae64dae47bf35 --emse-id emse-a.example.com
//! # PSK given directly (e.g. against `openssl s_server -psk HEX`):
//! cargo run --example ue -- --connect 127.0.0.1:4433 --identity sensor-17@iot.example.com \
//!     --key-id ae47bf35 --psk-hex 0f1e...
//! ```
//!
//! Flags: `--connect ADDR` (required); the psk_identity as `--psk-identity TEXT` or as
//! `--identity APP_ID` with `--key-id HEX8` (default with `--rand`: RAND-LSB32); the PSK as
//! `--psk-hex HEX` or from `--k HEX --opc HEX --rand HEX --emse-id ID` (add `--autn HEX` to
//! have the USIM check AUTN first); `--path P` (default `hello`), `--timeout SECS`
//! (default 10). Prints short narrated lines; never key bytes.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use e2m_aka::{Aka, Milenage, Opc, SubscriberKey};
use e2m_dtls::DtlsLimits;
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_dtls::coap::CoapMessage;
use e2m_kdf::{E2mKey, E2mProfile, e2m_int_key, e2m_key};
use e2m_keyid::{AppIdentity, KeyId, PskIdentity};

const USAGE: &str = "usage: ue --connect ADDR
          (--psk-identity TEXT | --identity APP_ID [--key-id HEX8])
          (--psk-hex HEX | --k HEX --opc HEX --rand HEX --emse-id ID [--autn HEX])
          [--path P] [--timeout SECS]";

#[derive(Default)]
struct Args {
    connect: Option<String>,
    psk_identity: Option<String>,
    identity: Option<String>,
    key_id: Option<String>,
    psk_hex: Option<String>,
    k: Option<String>,
    opc: Option<String>,
    rand: Option<String>,
    autn: Option<String>,
    emse_id: Option<String>,
    path: Option<String>,
    timeout: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--connect" => &mut out.connect,
            "--psk-identity" => &mut out.psk_identity,
            "--identity" => &mut out.identity,
            "--key-id" => &mut out.key_id,
            "--psk-hex" => &mut out.psk_hex,
            "--k" => &mut out.k,
            "--opc" => &mut out.opc,
            "--rand" => &mut out.rand,
            "--autn" => &mut out.autn,
            "--emse-id" => &mut out.emse_id,
            "--path" => &mut out.path,
            "--timeout" => &mut out.timeout,
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown flag {other}")),
        };
        *slot = Some(it.next().ok_or(format!("{flag} needs a value"))?.clone());
    }
    Ok(out)
}

fn hex16(text: &str, flag: &str) -> Result<[u8; 16], String> {
    let mut out = [0u8; 16];
    if text.len() != 32 || !text.is_ascii() {
        return Err(format!("{flag}: want 32 hex digits"));
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("{flag}: not hex"))?;
    }
    Ok(out)
}

/// The PSK and, when it came from AKA, the RAND it came from.
fn psk_from_args(args: &Args) -> Result<(E2mKey, Option<[u8; 16]>), String> {
    if let Some(hex) = &args.psk_hex {
        let key = E2mKey::from_hex(hex).map_err(|e| format!("--psk-hex: {e}"))?;
        println!("UE: PSK given on the command line (32 octets, not shown)");
        return Ok((key, None));
    }
    let (Some(k), Some(opc), Some(rand), Some(emse_id)) =
        (&args.k, &args.opc, &args.rand, &args.emse_id)
    else {
        return Err("give --psk-hex, or --k, --opc, --rand and --emse-id".into());
    };
    let k = SubscriberKey::from_hex(k).map_err(|e| format!("--k: {e}"))?;
    let opc = Opc::from_hex(opc).map_err(|e| format!("--opc: {e}"))?;
    let rand = hex16(rand, "--rand")?;
    let (ck, ik) = match &args.autn {
        Some(autn) => {
            let autn = hex16(autn, "--autn")?;
            let answer = Aka::new(&k, &opc, [0, 0])
                .respond(&rand, &autn, None)
                .map_err(|e| format!("USIM refused the challenge: {e}"))?;
            println!(
                "UE: USIM accepted AUTN (SQN {}), computed RES, CK, IK",
                answer.sqn.value()
            );
            (answer.ck, answer.ik)
        }
        None => {
            let out = Milenage::new(&k, &opc).f2345(&rand);
            println!("UE: USIM computed CK, IK for RAND (MILENAGE f3, f4)");
            (out.ck, out.ik)
        }
    };
    let profile = E2mProfile::PROVISIONAL;
    let int_key = e2m_int_key(&ck, &ik, &profile).map_err(|e| format!("e2m_int_key: {e}"))?;
    println!("UE: ME derived e2m_int_key = KDF(CK||IK, \"e2m_CIoT\") (seed, step 1)");
    let key = e2m_key(&int_key, emse_id, &profile).map_err(|e| format!("e2m_key: {e}"))?;
    println!("UE: ME derived e2m_key = KDF(e2m_int_key, EMSE_Id \"{emse_id}\") (prerequisite b)");
    Ok((key, Some(rand)))
}

fn identity_from_args(args: &Args, rand: Option<[u8; 16]>) -> Result<PskIdentity, String> {
    if let Some(text) = &args.psk_identity {
        return PskIdentity::parse(text.as_bytes()).map_err(|e| format!("--psk-identity: {e}"));
    }
    let app = args
        .identity
        .as_deref()
        .ok_or("give --psk-identity or --identity")?;
    let app = AppIdentity::new(app).map_err(|e| format!("--identity: {e}"))?;
    let key_id = match (&args.key_id, rand) {
        (Some(text), _) => text
            .parse::<KeyId>()
            .map_err(|e| format!("--key-id: {e}"))?,
        (None, Some(rand)) => KeyId::from_rand_lsb32(&rand),
        (None, None) => return Err("give --key-id (or --rand for RAND-LSB32)".into()),
    };
    Ok(PskIdentity::new(app, key_id))
}

async fn run(args: Args) -> Result<(), String> {
    let connect: SocketAddr = args
        .connect
        .as_deref()
        .ok_or("--connect is required")?
        .parse()
        .map_err(|e| format!("--connect: {e}"))?;
    let timeout = Duration::from_secs(
        args.timeout
            .as_deref()
            .unwrap_or("10")
            .parse()
            .map_err(|e| format!("--timeout: {e}"))?,
    );
    let (psk, rand) = psk_from_args(&args)?;
    let identity = identity_from_args(&args, rand)?;
    println!(
        "UE: psk_identity \"{identity}\" (application identity {}, key id {})",
        identity.identity, identity.key_id
    );
    let limits = DtlsLimits {
        handshake_timeout: timeout,
        ..DtlsLimits::default()
    };
    let config = UeDtlsConfig::new(&identity, &psk, limits).map_err(|e| e.to_string())?;
    println!("UE: ClientHello to {connect}, TLS_PSK_WITH_AES_128_CCM_8 only (step 1)");
    let mut ue = DtlsClient::connect(connect, &config).await.map_err(|e| {
        format!(
            "DTLS handshake failed: {e} (the EMSE sends no alert: a PSK it does not share, \
                 or a key id its EMKS no longer holds, ends in a timeout; re-authenticate)"
        )
    })?;
    println!("UE: handshake complete; fresh DTLS session keys from the PSK (steps 3, 4, 8)");
    let path = args.path.as_deref().unwrap_or("hello");
    let request = CoapMessage::get(path, 0x0e2e, b"e2m");
    println!("UE: CoAP GET /{path}");
    let answer = ue
        .request(&request, timeout)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    println!(
        "UE: CoAP {} \"{}\"",
        answer.code,
        String::from_utf8_lossy(&answer.payload)
    );
    ue.close().await.map_err(|e| e.to_string())?;
    println!("UE: close_notify sent");
    Ok(())
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&raw) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("ue: {message}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ue: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ue: {message}");
            ExitCode::FAILURE
        }
    }
}
