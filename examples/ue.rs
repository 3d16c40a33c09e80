//! The UE alone: derives (or is given) `e2m_key` for one EMSE and sends one CoAP GET
//! secured with it (seed 6.x.2.3 prerequisite b and steps 1, 3, 4, 8), over
//! `--protocol dtls` (the default: DTLS 1.2 with TLS_PSK_WITH_AES_128_CCM_8 and
//! psk_identity = (application identity, key id)) or `--protocol oscore` (CoAP protected with
//! OSCORE, RFC 8613, in the e2m profile: no handshake; the request names the application
//! identity and key id in its OSCORE option).
//!
//! ```text
//! # PSK from the AKA run (the ME derives it; seed "Key derivation rules"):
//! cargo run --example ue -- --connect 127.0.0.1:5684 --identity sensor-17@iot.example.com \
//!     --k 465b5ce8b199b49faa5f0a2ee238a6bc --opc cd63cb71954a9f4e48a5994e37a02baf \
//!     --rand 23553cbe9637a89d218ae64dae47bf35 --emse-id emse-a.example.com
//! # OSCORE to the EMSE's OSCORE endpoint (`emse --oscore-listen`):
//! cargo run --example ue -- --protocol oscore --connect 127.0.0.1:5683 \
//!     --identity sensor-17@iot.example.com --key-id ae47bf35 --psk-hex 0f1e...
//! # PSK given directly (e.g. against `openssl s_server -psk HEX`):
//! cargo run --example ue -- --connect 127.0.0.1:4433 --identity sensor-17@iot.example.com \
//!     --key-id ae47bf35 --psk-hex 0f1e...
//! ```
//!
//! Flags: `--connect ADDR` (required); the psk_identity as `--psk-identity TEXT` or as
//! `--identity APP_ID` with `--key-id HEX8` (default with `--rand`: RAND-LSB32); the PSK as
//! `--psk-hex HEX` or from `--k HEX --opc HEX --rand HEX --emse-id ID` (add `--autn HEX` to
//! have the USIM check AUTN first); `--path P` (default `hello`), `--timeout SECS`
//! (default 10), `--protocol dtls|oscore` (default dtls). Over DTLS, an EMSE that refuses
//! the handshake sends a fatal alert, and the UE prints it with what to do (e.g.
//! `decrypt_error (51)`: re-authenticate) on one line and exits 1 at once. Over OSCORE, an
//! EMSE that can no longer get the key id's key answers so that the UE prints
//! "re-authenticate" and exits 1.
//!
//! `--akma` (TS 33.535, module `support/ue_akma.rs`): the USIM answers the 5G AKA challenge
//! (`--k --opc --rand --autn`), the ME derives K_AUSF and RES* for `--serving-network-name`,
//! K_AKMA and the A-KID (`--supi`, `--routing-indicator`, `--home-network`), and K_AF for
//! `--af-fqdn` and `--ua-protocol` (default `010001c0a8`, this DTLS suite's), then GETs over
//! DTLS 1.2 PSK with psk_identity "3GPP-AKMA" + A-KID (TS 24.109 K.3.2):
//!
//! ```text
//! cargo run --example ue -- --akma --connect 127.0.0.1:5684 \
//!     --k 465b5ce8b199b49faa5f0a2ee238a6bc --opc cd63cb71954a9f4e48a5994e37a02baf \
//!     --rand 23553cbe9637a89d218ae64dae47bf35 --autn 55f328b43577b9b94a9ffac354dfafb3 \
//!     --supi imsi-208930000000001 --serving-network-name 5G:mnc093.mcc208.3gppnetwork.org \
//!     --home-network 5gc.mnc093.mcc208.3gppnetwork.org --af-fqdn af.example.com
//! ```
//!
//! Prints short narrated lines; never key bytes. `ue --help` lists the flags
//! and defaults; bad input: one line on stderr, exit status 2.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use e2m_aka::{Aka, Milenage, Opc, SubscriberKey};
use e2m_coap::{Code, Message, MessageType, Token};
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_dtls::oscore_client::{OscoreClient, OscoreClientError};
use e2m_dtls::{AlertDescription, DtlsError, DtlsLimits};
use e2m_kdf::{E2mKey, E2mProfile, e2m_int_key};
use e2m_keyid::{AppIdentity, EmseId, KeyId, PskIdentity, e2m_key};
use e2m_oscore::SenderSequence;
use e2m_oscore::e2m::E2mOscoreProfile;

#[path = "support/cli.rs"]
#[allow(dead_code, reason = "shared by all examples; each uses a part")]
mod cli;
#[path = "support/ue_akma.rs"]
mod ue_akma;

use cli::{Hex, hex_array};

/// The UE alone: derives (or is given) e2m_key for one EMSE and sends one CoAP GET over
/// DTLS 1.2 PSK (TLS_PSK_WITH_AES_128_CCM_8) or OSCORE.
#[derive(Parser, Debug)]
#[command(name = "ue", version)]
struct Args {
    /// The EMSE's address (its DTLS or its OSCORE endpoint, per --protocol).
    #[arg(long, value_name = "ADDR")]
    connect: SocketAddr,
    /// How the CoAP request is secured.
    #[arg(long, value_enum, default_value_t = Protocol::Dtls)]
    protocol: Protocol,
    /// The whole psk_identity (instead of --identity and --key-id).
    #[arg(long, value_name = "TEXT", value_parser = parse_psk_identity,
          conflicts_with_all = ["identity", "key_id"],
          required_unless_present_any = ["identity", "akma"])]
    psk_identity: Option<PskIdentity>,
    /// The application identity.
    #[arg(long, value_name = "APP_ID")]
    identity: Option<AppIdentity>,
    /// The key id (8 lower-case hex digits; default with --rand: RAND-LSB32).
    #[arg(long, value_name = "HEX8")]
    key_id: Option<KeyId>,
    /// e2m_key (32 octets) given directly: the DTLS PSK, or the OSCORE profile's input.
    #[arg(long, visible_alias = "e2m-key", value_name = "HEX64", value_parser = hex_array::<32>,
          conflicts_with_all = ["k", "opc", "autn", "emse_id"],
          required_unless_present_all = ["k", "opc", "rand", "emse_id"],
          required_unless_present = "akma")]
    psk_hex: Option<Hex<32>>,
    /// K, the subscriber key (the USIM's; with --opc, --rand, --emse-id).
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
    k: Option<Hex<16>>,
    /// OPc.
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
    opc: Option<Hex<16>>,
    /// RAND of the AKA run.
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
    rand: Option<Hex<16>>,
    /// AUTN: have the USIM check it first.
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
    autn: Option<Hex<16>>,
    /// The EMSE_Id the PSK is derived for.
    #[arg(long, value_name = "ID")]
    emse_id: Option<String>,
    /// The CoAP path to GET.
    #[arg(long, value_name = "P", default_value = "hello")]
    path: String,
    /// Handshake and request timeout, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
    #[command(flatten)]
    akma: ue_akma::AkmaArgs,
}

/// The application protocol secured with e2m_key.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// DTLS 1.2 with TLS_PSK_WITH_AES_128_CCM_8.
    Dtls,
    /// OSCORE (RFC 8613), e2m profile.
    Oscore,
}

fn parse_psk_identity(text: &str) -> Result<PskIdentity, String> {
    PskIdentity::parse(text.as_bytes()).map_err(|e| e.to_string())
}

/// The PSK and, when it came from AKA, the RAND it came from.
fn psk_from_args(args: &Args) -> Result<(E2mKey, Option<[u8; 16]>), String> {
    if let Some(hex) = &args.psk_hex {
        let key = E2mKey::from_array(*hex.expose());
        println!("UE: PSK given on the command line (32 octets, not shown)");
        return Ok((key, None));
    }
    let (Some(k), Some(opc), Some(rand), Some(emse_id)) =
        (&args.k, &args.opc, &args.rand, &args.emse_id)
    else {
        return Err("give --psk-hex, or --k, --opc, --rand and --emse-id".into());
    };
    let k = SubscriberKey::from_array(*k.expose());
    let opc = Opc::from_array(*opc.expose());
    let rand = *rand.expose();
    let (ck, ik) = match &args.autn {
        Some(autn) => {
            let answer = Aka::new(&k, &opc, [0, 0])
                .respond(&rand, autn.expose(), None)
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
    // Typed input is normalised to NFKC (TS 33.220 B.2.1.2), so `ｉｏｔ.example.com` names the
    // same EMSE as `iot.example.com`; identifiers from the wire stay strict.
    let emse = EmseId::new_normalized(emse_id).map_err(|e| format!("--emse-id: {e}"))?;
    let key = e2m_key(&int_key, &emse, &profile).map_err(|e| format!("e2m_key: {e}"))?;
    println!("UE: ME derived e2m_key = KDF(e2m_int_key, EMSE_Id \"{emse}\") (prerequisite b)");
    Ok((key, Some(rand)))
}

fn identity_from_args(args: &Args, rand: Option<[u8; 16]>) -> Result<PskIdentity, String> {
    if let Some(identity) = &args.psk_identity {
        return Ok(identity.clone());
    }
    let app: AppIdentity = args
        .identity
        .clone()
        .ok_or("give --psk-identity or --identity")?;
    let key_id = match (args.key_id, rand) {
        (Some(key_id), _) => key_id,
        (None, Some(rand)) => KeyId::from_rand_lsb32(&rand),
        (None, None) => return Err("give --key-id (or --rand for RAND-LSB32)".into()),
    };
    Ok(PskIdentity::new(app, key_id))
}

async fn run(args: Args) -> Result<(), String> {
    let connect = args.connect;
    let timeout = Duration::from_secs(args.timeout);
    if args.akma.akma {
        return akma_get(&args, timeout).await;
    }
    let (psk, rand) = psk_from_args(&args)?;
    let identity = identity_from_args(&args, rand)?;
    println!(
        "UE: psk_identity \"{identity}\" (application identity {}, key id {})",
        identity.identity, identity.key_id
    );
    let request = get_request(&args.path)?;
    match args.protocol {
        Protocol::Dtls => dtls_get(connect, &identity, &psk, &request, timeout).await,
        Protocol::Oscore => oscore_get(connect, &identity, &psk, &request, timeout).await,
    }
}

/// `--akma`: 5G AKA, the AKMA keys, and the GET to the AF (module `ue_akma`).
async fn akma_get(args: &Args, timeout: Duration) -> Result<(), String> {
    if args.protocol != Protocol::Dtls {
        return Err("--akma runs over DTLS (TS 24.109 K.3.2) only".into());
    }
    let (Some(k), Some(opc), Some(rand), Some(autn)) = (&args.k, &args.opc, &args.rand, &args.autn)
    else {
        return Err("--akma needs --k, --opc, --rand and --autn".into());
    };
    let usim = ue_akma::Usim { k, opc, rand, autn };
    ue_akma::run(
        &args.akma,
        &usim,
        args.connect,
        &get_request(&args.path)?,
        timeout,
    )
    .await
}

fn get_request(path: &str) -> Result<Message, String> {
    let mut request = Message::new(
        MessageType::Confirmable,
        Code::GET,
        0x0e2e,
        Token::new(b"e2m").map_err(|e| e.to_string())?,
    );
    request.set_uri_path(path).map_err(|e| e.to_string())?;
    Ok(request)
}

async fn dtls_get(
    connect: SocketAddr,
    identity: &PskIdentity,
    psk: &E2mKey,
    request: &Message,
    timeout: Duration,
) -> Result<(), String> {
    let limits = DtlsLimits {
        handshake_timeout: timeout,
        ..DtlsLimits::default()
    };
    let config = UeDtlsConfig::new(identity, psk, limits).map_err(|e| e.to_string())?;
    println!("UE: ClientHello to {connect}, TLS_PSK_WITH_AES_128_CCM_8 only (step 1)");
    let mut ue = DtlsClient::connect(connect, &config)
        .await
        .map_err(handshake_failure)?;
    println!("UE: handshake complete; fresh DTLS session keys from the PSK (steps 3, 4, 8)");
    println!("UE: CoAP GET /{}", request.uri_path());
    let answer = ue
        .request(request, timeout)
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

/// One line for a failed handshake: the EMSE's alert and what the UE should do about it.
fn handshake_failure(error: DtlsError) -> String {
    let DtlsError::Alert(alert) = error else {
        return format!("DTLS handshake failed: {error}");
    };
    let advice = match alert {
        AlertDescription::DECRYPT_ERROR => {
            "the EMSE does not share this PSK (a wrong key, or a key id its EMKS no longer \
             holds: re-authenticate)"
        }
        AlertDescription::UNKNOWN_PSK_IDENTITY => {
            "the EMSE has no key for this identity and key id: re-authenticate"
        }
        AlertDescription::HANDSHAKE_FAILURE => {
            "no common cipher suite (the EMSE serves TLS_PSK_WITH_AES_128_CCM_8 only)"
        }
        AlertDescription::INTERNAL_ERROR => {
            "the EMSE could not reach its key server: try again later"
        }
        _ => "the EMSE refused the handshake",
    };
    format!("DTLS handshake refused by the EMSE with the alert {alert}: {advice}")
}

async fn oscore_get(
    connect: SocketAddr,
    identity: &PskIdentity,
    e2m_key: &E2mKey,
    request: &Message,
    timeout: Duration,
) -> Result<(), String> {
    let context = E2mOscoreProfile::PROVISIONAL
        .ue_context(
            e2m_key,
            &identity.identity,
            identity.key_id,
            SenderSequence::volatile(),
        )
        .map_err(|e| format!("OSCORE context: {e}"))?;
    println!(
        "UE: OSCORE context from e2m_key (ID Context = application identity, Sender ID = key id {})",
        identity.key_id
    );
    let mut ue = OscoreClient::connect(connect, context)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "UE: OSCORE-protected CoAP GET /{} to {connect} (no handshake)",
        request.uri_path()
    );
    match ue.request(request, timeout).await {
        Ok(answer) => {
            println!(
                "UE: verified OSCORE response: CoAP {} \"{}\"",
                answer.code,
                String::from_utf8_lossy(&answer.payload)
            );
            Ok(())
        }
        Err(OscoreClientError::Reauthenticate) => {
            println!(
                "UE: re-authenticate: the EMSE cannot get the key of key id {} (no longer held); run AKA again for a new key id",
                identity.key_id
            );
            Err(format!(
                "re-authenticate: key id {} is no longer held",
                identity.key_id
            ))
        }
        Err(e) => Err(format!("no verified answer: {e}")),
    }
}

fn main() -> ExitCode {
    let (args, _): (Args, _) = cli::parse_or_exit("ue");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return cli::failure("ue", format!("runtime: {e}")),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => cli::failure("ue", message),
    }
}
