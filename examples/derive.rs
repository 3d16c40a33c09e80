//! A derivation calculator for interop work: every typed derivation of `e2m-kdf`, the raw
//! TS 33.220 B.2 KDF and MILENAGE (TS 35.206 f1–f5, f1*, f5*), inputs in hex (text where the
//! spec uses text), one `name = hex` line per output. `derive --help` lists the commands,
//! `derive <command> --help` their flags. Bad input: one line on stderr and exit status 2.
//!
//! ```text
//! cargo run --example derive -- ck-ik-prime --ck 5349fbe098649f948f5d2e973a81c00f \
//!     --ik 9744871ad32bf9bbd1dd5ce54e3e2e5a --network-name WLAN --sqn-xor-ak bb52e91c747a
//! cargo run --example derive -- milenage --k 465b5ce8b199b49faa5f0a2ee238a6bc \
//!     --op cdc202d5123e20f62b6d676ac72cb318 --rand 23553cbe9637a89d218ae64dae47bf35 \
//!     --sqn ff9bb4d0b607 --amf b9b9
//! cargo run --example derive -- oscore-context --app-identity sensor-17@iot.example.com \
//!     --key-id ae47bf35 --e2m-key 43f9e9070a6fd917f970649e08ff443f9a4f3d1d1d34ad810e46d48222cf0b39
//! # AKMA (TS 33.535): the A-KID and the DTLS psk_identity of TS 24.109 K.3.2, then K_AF
//! # for an AF serving TLS_PSK_WITH_AES_128_CCM_8 (Ua* protocol id 010001c0a8, the default):
//! cargo run --example derive -- a-kid \
//!     --kausf f2e35260f85194d4f891504d02111e56689ac23dd393bee3abbcc5bfbc013ef9 \
//!     --supi imsi-208930000000001 --routing-indicator 0 \
//!     --home-network 5gc.mnc093.mcc208.3gppnetwork.org
//! cargo run --example derive -- kaf --af-fqdn af.example.com \
//!     --kakma 0e53d2e2e2e22c5cbd216782c4828c1725717b2cd56b8e2bd777f43c860e6a2b
//! ```
//!
//! This tool prints key material by design (it is a calculator); never point it at
//! production keys on a shared terminal.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use e2m_aka::{Milenage, Opc, SubscriberKey};
use e2m_dtls::akma::{AKMA_UA_PROTOCOL, AkmaIdentityForm, akma_psk_identity};
use e2m_kdf::{
    ATid, Ck, E2mIntKey, E2mKey, E2mProfile, Fc, Ik, Kakma, Kausf, Ks, ck_ik_prime, e2m_int_key,
    kaf, kasme, kausf, kdf, ks_naf, res_star,
};
use e2m_keyid::akma::{AKid, AfId, Fqdn, Realm, RoutingIndicator, Supi, UaProtocolId};
use e2m_keyid::{AppIdentity, E2mKeyDeriver, EmseId, KeyId, PskIdentity};
use e2m_oscore::SenderSequence;
use e2m_oscore::e2m::E2mOscoreProfile;

#[path = "support/cli.rs"]
#[allow(dead_code, reason = "shared by all examples; each uses a part")]
mod cli;

use cli::{Hex, HexBytes, hex_array, hex_bytes, to_hex};

const PROGRAM: &str = "derive";

/// Derivation calculator for e2m interop work (all binary values in hex, either case).
#[derive(Parser, Debug)]
#[command(name = "derive", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per run; the AKMA identifiers are stored inline"
)]
enum Command {
    /// Raw TS 33.220 B.2 KDF; --p and --p-text give P0, P1, … in command-line order.
    Kdf {
        /// The key (any length).
        #[arg(long, value_name = "HEX", value_parser = hex_bytes)]
        key: HexBytes,
        /// FC: one octet (`20`) or 0xFF and one octet (`ff01`).
        #[arg(long, value_name = "FC", value_parser = parse_fc)]
        fc: Fc,
        /// A binary parameter.
        #[arg(long, value_name = "HEX", value_parser = hex_bytes)]
        p: Vec<HexBytes>,
        /// A text parameter (UTF-8, NFKC).
        #[arg(long = "p-text", value_name = "TEXT")]
        p_text: Vec<String>,
    },
    /// CK'/IK' (TS 33.402 A.2).
    CkIkPrime {
        #[command(flatten)]
        ck_ik: CkIk,
        /// Access network identity (e.g. WLAN).
        #[arg(long, value_name = "TEXT")]
        network_name: String,
        /// SQN ⊕ AK (6 octets).
        #[arg(long, value_name = "HEX12", value_parser = hex_array::<6>)]
        sqn_xor_ak: Hex<6>,
    },
    /// K_ASME (TS 33.401 A.2).
    Kasme {
        #[command(flatten)]
        ck_ik: CkIk,
        /// Serving network id (PLMN id, 3 octets).
        #[arg(long, value_name = "HEX6", value_parser = hex_array::<3>)]
        sn_id: Hex<3>,
        /// SQN ⊕ AK (6 octets).
        #[arg(long, value_name = "HEX12", value_parser = hex_array::<6>)]
        sqn_xor_ak: Hex<6>,
    },
    /// K_AUSF (TS 33.501 A.2).
    Kausf {
        #[command(flatten)]
        ck_ik: CkIk,
        /// Serving network name (e.g. 5G:mnc001.mcc001.3gppnetwork.org).
        #[arg(long, value_name = "TEXT")]
        serving_network_name: String,
        /// SQN ⊕ AK (6 octets).
        #[arg(long, value_name = "HEX12", value_parser = hex_array::<6>)]
        sqn_xor_ak: Hex<6>,
    },
    /// RES* (UE) or XRES* (UDM/ARPF) (TS 33.501 A.4): the last 16 octets of
    /// KDF(CK ‖ IK, 0x6B, serving network name, RAND, RES).
    ResStar {
        #[command(flatten)]
        ck_ik: CkIk,
        /// Serving network name (e.g. 5G:mnc093.mcc208.3gppnetwork.org).
        #[arg(long, value_name = "TEXT")]
        serving_network_name: String,
        /// RAND (16 octets).
        #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
        rand: Hex<16>,
        /// RES or XRES (4 to 16 octets; 8 from MILENAGE).
        #[arg(long, value_name = "HEX", value_parser = hex_bytes)]
        res: HexBytes,
    },
    /// Ks_NAF (TS 33.220 B.3), from --ks or from --ck and --ik.
    KsNaf {
        /// Ks (32 octets).
        #[arg(long, value_name = "HEX64", value_parser = hex_array::<32>,
              conflicts_with_all = ["ck", "ik"], required_unless_present_all = ["ck", "ik"])]
        ks: Option<Hex<32>>,
        /// CK (16 octets).
        #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>, requires = "ik")]
        ck: Option<Hex<16>>,
        /// IK (16 octets).
        #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>, requires = "ck")]
        ik: Option<Hex<16>>,
        /// RAND (16 octets).
        #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
        rand: Hex<16>,
        /// IMPI.
        #[arg(long, value_name = "TEXT")]
        impi: String,
        /// NAF_Id (FQDN ‖ Ua security protocol id), binary.
        #[arg(long, value_name = "HEX", value_parser = hex_bytes)]
        naf_id: HexBytes,
    },
    /// K_AKMA (TS 33.535 A.2).
    Kakma(KausfSupi),
    /// A-TID (TS 33.535 A.3).
    ATid(KausfSupi),
    /// The A-KID (TS 33.535 §6.1; e2m's provisional username spelling, see e2m-keyid's
    /// `AKid`) and the UE's DTLS psk_identity for it (TS 24.109 K.3.2 e)), from --a-tid
    /// or from --kausf and --supi.
    AKid {
        /// The A-TID (32 octets).
        #[arg(long, value_name = "HEX64", value_parser = hex_array::<32>,
              conflicts_with_all = ["kausf", "supi"], required_unless_present_all = ["kausf", "supi"])]
        a_tid: Option<Hex<32>>,
        /// K_AUSF (32 octets): the A-TID is derived from it.
        #[arg(long, value_name = "HEX64", value_parser = hex_array::<32>, requires = "supi")]
        kausf: Option<Hex<32>>,
        /// SUPI, as in K_AKMA.
        #[arg(long, value_name = "SUPI", value_parser = parse_supi, requires = "kausf")]
        supi: Option<Supi>,
        /// Routing indicator (1 to 4 digits; TS 23.003 §2.2B).
        #[arg(long, value_name = "DIGITS", default_value = "0", value_parser = RoutingIndicator::parse)]
        routing_indicator: RoutingIndicator,
        /// Home network identifier, the A-KID's realm (e.g. 5gc.mnc093.mcc208.3gppnetwork.org).
        #[arg(long, value_name = "REALM", value_parser = Realm::parse)]
        home_network: Realm,
    },
    /// K_AF (TS 33.535 A.4), AF_ID given as octets or as FQDN and Ua* protocol id.
    Kaf {
        /// K_AKMA (32 octets).
        #[arg(long, value_name = "HEX64", value_parser = hex_array::<32>)]
        kakma: Hex<32>,
        /// AF_ID, binary (FQDN ‖ Ua* security protocol identifier).
        #[arg(long, value_name = "HEX", value_parser = hex_bytes,
              conflicts_with = "af_fqdn", required_unless_present = "af_fqdn")]
        af_id: Option<HexBytes>,
        /// The AF's FQDN (AF_ID = FQDN ‖ --ua-protocol).
        #[arg(long, value_name = "FQDN", value_parser = Fqdn::parse)]
        af_fqdn: Option<Fqdn>,
        /// Ua* security protocol identifier (TS 33.220 H.3, 5 octets; default 010001c0a8:
        /// shared-key (D)TLS 1.2 with TLS_PSK_WITH_AES_128_CCM_8, the e2m DTLS suite).
        #[arg(long, value_name = "HEX10", value_parser = hex_array::<5>, requires = "af_fqdn")]
        ua_protocol: Option<Hex<5>>,
    },
    /// e2m_int_key = KDF(CK ‖ IK, FC, "e2m_CIoT") (Solution #10, step 1).
    E2mIntKey {
        #[command(flatten)]
        ck_ik: CkIk,
        #[command(flatten)]
        profile: ProfileArgs,
    },
    /// e2m_key = KDF(e2m_int_key, FC, EMSE_Id) for each --emse-id (Solution #10, step 2).
    E2mKey {
        /// e2m_int_key (32 octets).
        #[arg(long, value_name = "HEX64", value_parser = hex_array::<32>)]
        int_key: Hex<32>,
        /// EMSE_Id (repeatable).
        #[arg(long, value_name = "TEXT", required = true)]
        emse_id: Vec<String>,
        #[command(flatten)]
        profile: ProfileArgs,
    },
    /// The key id: RAND-LSB32 from --rand, or the short hash of --int-key.
    KeyId {
        /// RAND (16 octets): key id = its last 4 octets.
        #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>,
              conflicts_with = "int_key", required_unless_present = "int_key")]
        rand: Option<Hex<16>>,
        /// e2m_int_key (32 octets): key id = the profile's short hash.
        #[arg(long, value_name = "HEX64", value_parser = hex_array::<32>)]
        int_key: Option<Hex<32>>,
        #[command(flatten)]
        profile: ProfileArgs,
    },
    /// Formats a psk_identity from an application identity and a key id.
    PskIdentity {
        /// Application identity (e.g. an NAI).
        #[arg(long, value_name = "TEXT")]
        identity: AppIdentity,
        /// Key id (8 lower-case hex digits).
        #[arg(long, value_name = "HEX8")]
        key_id: KeyId,
    },
    /// Parses a psk_identity.
    ParsePskIdentity {
        /// The psk_identity.
        #[arg(long, value_name = "TEXT", value_parser = parse_psk_identity)]
        psk_identity: PskIdentity,
    },
    /// The e2m OSCORE security context (RFC 8613 §3.2, e2m profile of e2m-oscore) for an
    /// e2m_key, application identity and key id: every input and derived value an outside
    /// OSCORE implementation needs to be keyed as the UE or as the EMSE.
    OscoreContext {
        /// e2m_key (32 octets).
        #[arg(long, value_name = "HEX64", value_parser = hex_array::<32>)]
        e2m_key: Hex<32>,
        /// The UE's application identity.
        #[arg(long, value_name = "TEXT")]
        app_identity: AppIdentity,
        /// Key id (8 hex digits).
        #[arg(long, value_name = "HEX8")]
        key_id: KeyId,
        /// FC of the Master Secret derivation (default: the provisional 0xE3).
        #[arg(long, value_name = "FC", value_parser = parse_fc)]
        master_secret_fc: Option<Fc>,
        /// Label of the Master Secret derivation (default: e2m_OSCORE).
        #[arg(long, value_name = "TEXT")]
        master_secret_label: Option<String>,
    },
    /// MILENAGE (TS 35.206): RES, CK, IK, AK, AK* for RAND; with --sqn and --amf also
    /// MAC-A (f1), MAC-S (f1*) and AUTN. To check a USIM's outputs directly.
    Milenage {
        /// K, the subscriber key (16 octets).
        #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
        k: Hex<16>,
        /// OPc (16 octets).
        #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>,
              conflicts_with = "op", required_unless_present = "op")]
        opc: Option<Hex<16>>,
        /// OP (16 octets): OPc = OP ⊕ E_K(OP) is computed and printed.
        #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
        op: Option<Hex<16>>,
        /// RAND (16 octets).
        #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
        rand: Hex<16>,
        /// SQN (6 octets), for f1 and f1*.
        #[arg(long, value_name = "HEX12", value_parser = hex_array::<6>, requires = "amf")]
        sqn: Option<Hex<6>>,
        /// AMF (2 octets), for f1 and f1*.
        #[arg(long, value_name = "HEX4", value_parser = hex_array::<2>, requires = "sqn")]
        amf: Option<Hex<2>>,
    },
}

/// CK and IK.
#[derive(Args, Debug)]
struct CkIk {
    /// CK (16 octets).
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
    ck: Hex<16>,
    /// IK (16 octets).
    #[arg(long, value_name = "HEX32", value_parser = hex_array::<16>)]
    ik: Hex<16>,
}

impl CkIk {
    fn keys(&self) -> (Ck, Ik) {
        (
            Ck::from_array(*self.ck.expose()),
            Ik::from_array(*self.ik.expose()),
        )
    }
}

/// K_AUSF and SUPI.
#[derive(Args, Debug)]
struct KausfSupi {
    /// K_AUSF (32 octets).
    #[arg(long, value_name = "HEX64", value_parser = hex_array::<32>)]
    kausf: Hex<32>,
    /// SUPI: TS 29.571 form (imsi-208930000000001, nai-user@realm) or the IMSI's digits.
    /// The KDF takes the IMSI digits or the NAI (TS 33.501 A.7.0), never the prefix.
    #[arg(long, value_name = "SUPI", value_parser = parse_supi)]
    supi: Supi,
}

/// A SUPI in its TS 29.571 form, or bare digits as an IMSI.
fn parse_supi(text: &str) -> Result<Supi, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Supi::imsi(text).map_err(|e| e.to_string());
    }
    Supi::parse(text).map_err(|e| e.to_string())
}

/// The e2m profile (default: the provisional profile; the e2m FCs are not allocated by
/// 3GPP).
#[derive(Args, Debug)]
struct ProfileArgs {
    /// FC of e2m_int_key.
    #[arg(long, value_name = "FC", value_parser = parse_fc)]
    int_fc: Option<Fc>,
    /// Label of e2m_int_key.
    #[arg(long, value_name = "TEXT")]
    int_label: Option<String>,
    /// FC of e2m_key.
    #[arg(long, value_name = "FC", value_parser = parse_fc)]
    key_fc: Option<Fc>,
    /// Optional string of e2m_key.
    #[arg(long, value_name = "TEXT")]
    key_label: Option<String>,
    /// FC of the short-hash key id.
    #[arg(long, value_name = "FC", value_parser = parse_fc)]
    key_id_fc: Option<Fc>,
    /// Label of the short-hash key id.
    #[arg(long, value_name = "TEXT")]
    key_id_label: Option<String>,
}

impl ProfileArgs {
    fn profile(&self) -> Result<E2mProfile<'_>, String> {
        let mut p = E2mProfile::PROVISIONAL;
        if let Some(fc) = self.int_fc {
            p.int_key_fc = fc;
        }
        if let Some(fc) = self.key_fc {
            p.key_fc = fc;
        }
        if let Some(fc) = self.key_id_fc {
            p.key_id_fc = fc;
        }
        if let Some(v) = &self.int_label {
            p.int_key_label = v;
        }
        if let Some(v) = &self.key_label {
            p.key_label = Some(v);
        }
        if let Some(v) = &self.key_id_label {
            p.key_id_label = v;
        }
        p.validate().map_err(|e| format!("profile: {e}"))?;
        Ok(p)
    }
}

/// FC: one octet, or 0xFF followed by one octet (TS 33.220 B.2.2).
fn parse_fc(text: &str) -> Result<Fc, String> {
    match hex_bytes(text).map_err(|e| e.to_string())?.expose() {
        [0xFF, two] => Ok(Fc::extended(*two)),
        [one] => Fc::new(*one).map_err(|e| e.to_string()),
        _ => Err("FC is one octet or 0xFF plus one octet".into()),
    }
}

fn parse_psk_identity(text: &str) -> Result<PskIdentity, String> {
    PskIdentity::parse(text.as_bytes()).map_err(|e| e.to_string())
}

fn out(name: &str, bytes: &[u8]) {
    println!("{name} = {}", to_hex(bytes));
}

/// The parameters of `kdf` in command-line order, --p and --p-text interleaved.
fn kdf_params(matches: &clap::ArgMatches) -> Result<Vec<Vec<u8>>, String> {
    let Some(("kdf", sub)) = matches.subcommand() else {
        return Ok(Vec::new());
    };
    let mut ordered: Vec<(usize, Vec<u8>)> = Vec::new();
    if let (Some(indices), Some(values)) = (sub.indices_of("p"), sub.get_many::<HexBytes>("p")) {
        for (i, v) in indices.zip(values) {
            ordered.push((i, v.expose().to_vec()));
        }
    }
    if let (Some(indices), Some(values)) =
        (sub.indices_of("p_text"), sub.get_many::<String>("p_text"))
    {
        for (i, v) in indices.zip(values) {
            let bytes = e2m_kdf::text_param(v).map_err(|e| format!("--p-text: {e}"))?;
            ordered.push((i, bytes.to_vec()));
        }
    }
    ordered.sort_by_key(|(i, _)| *i);
    Ok(ordered.into_iter().map(|(_, v)| v).collect())
}

fn run(command: &Command, matches: &clap::ArgMatches) -> Result<(), String> {
    let e = |err: &dyn std::fmt::Display| err.to_string();
    match command {
        Command::Kdf { key, fc, .. } => {
            let params = kdf_params(matches)?;
            let refs: Vec<&[u8]> = params.iter().map(Vec::as_slice).collect();
            out(
                "derived",
                kdf(key.expose(), *fc, &refs)
                    .map_err(|x| e(&x))?
                    .expose_secret(),
            );
        }
        Command::CkIkPrime {
            ck_ik,
            network_name,
            sqn_xor_ak,
        } => {
            let (ck, ik) = ck_ik.keys();
            let (ckp, ikp) =
                ck_ik_prime(&ck, &ik, network_name, sqn_xor_ak.expose()).map_err(|x| e(&x))?;
            out("ck_prime", ckp.expose_secret());
            out("ik_prime", ikp.expose_secret());
        }
        Command::Kasme {
            ck_ik,
            sn_id,
            sqn_xor_ak,
        } => {
            let (ck, ik) = ck_ik.keys();
            let k = kasme(&ck, &ik, sn_id.expose(), sqn_xor_ak.expose());
            out("kasme", k.expose_secret());
        }
        Command::Kausf {
            ck_ik,
            serving_network_name,
            sqn_xor_ak,
        } => {
            let (ck, ik) = ck_ik.keys();
            let k =
                kausf(&ck, &ik, serving_network_name, sqn_xor_ak.expose()).map_err(|x| e(&x))?;
            out("kausf", k.expose_secret());
        }
        Command::KsNaf {
            ks,
            ck,
            ik,
            rand,
            impi,
            naf_id,
        } => {
            let ks = match (ks, ck, ik) {
                (Some(ks), _, _) => Ks::from_array(*ks.expose()),
                (None, Some(ck), Some(ik)) => {
                    Ks::from_ck_ik(&Ck::from_array(*ck.expose()), &Ik::from_array(*ik.expose()))
                }
                _ => return Err("give --ks, or --ck and --ik".into()),
            };
            let k = ks_naf(&ks, rand.expose(), impi, naf_id.expose()).map_err(|x| e(&x))?;
            out("ks_naf", k.expose_secret());
        }
        Command::ResStar {
            ck_ik,
            serving_network_name,
            rand,
            res,
        } => {
            let (ck, ik) = ck_ik.keys();
            let r = res_star(&ck, &ik, serving_network_name, rand.expose(), res.expose())
                .map_err(|x| e(&x))?;
            out("res_star", r.expose_secret());
        }
        Command::Kakma(KausfSupi { kausf, supi }) => {
            let k = Kausf::from_array(*kausf.expose());
            let kakma = e2m_keyid::akma::kakma(&k, supi).map_err(|x| e(&x))?;
            out("kakma", kakma.expose_secret());
        }
        Command::ATid(KausfSupi { kausf, supi }) => {
            let k = Kausf::from_array(*kausf.expose());
            out(
                "a_tid",
                &e2m_keyid::akma::a_tid(&k, supi).map_err(|x| e(&x))?.0,
            );
        }
        Command::AKid {
            a_tid,
            kausf,
            supi,
            routing_indicator,
            home_network,
        } => {
            let tid = match (a_tid, kausf, supi) {
                (Some(tid), _, _) => ATid(*tid.expose()),
                (None, Some(kausf), Some(supi)) => {
                    let k = Kausf::from_array(*kausf.expose());
                    e2m_keyid::akma::a_tid(&k, supi).map_err(|x| e(&x))?
                }
                _ => return Err("give --a-tid, or --kausf and --supi".into()),
            };
            let a_kid = AKid::new(routing_indicator, &tid, home_network).map_err(|x| e(&x))?;
            println!("a_kid = {a_kid}");
            println!(
                "psk_identity = {}",
                akma_psk_identity(&a_kid, AkmaIdentityForm::Prefixed)
            );
        }
        Command::Kaf {
            kakma,
            af_id,
            af_fqdn,
            ua_protocol,
        } => {
            let k = Kakma::from_array(*kakma.expose());
            let key = match (af_id, af_fqdn) {
                (Some(af_id), _) => kaf(&k, af_id.expose()).map_err(|x| e(&x))?,
                (None, Some(fqdn)) => {
                    let ua = ua_protocol
                        .as_ref()
                        .map_or(AKMA_UA_PROTOCOL, |ua| UaProtocolId(*ua.expose()));
                    let af = AfId::new(*fqdn, ua);
                    println!("af_id = {af}");
                    out("af_id_octets", &af.kdf_param());
                    e2m_keyid::akma::kaf(&k, &af).map_err(|x| e(&x))?
                }
                (None, None) => return Err("give --af-id, or --af-fqdn".into()),
            };
            out("kaf", key.expose_secret());
        }
        Command::E2mIntKey { ck_ik, profile } => {
            let (ck, ik) = ck_ik.keys();
            let k = e2m_int_key(&ck, &ik, &profile.profile()?).map_err(|x| e(&x))?;
            out("e2m_int_key", k.expose_secret());
        }
        Command::E2mKey {
            int_key,
            emse_id,
            profile,
        } => {
            let int_key = E2mIntKey::from_array(*int_key.expose());
            let deriver = E2mKeyDeriver::new(&int_key, profile.profile()?).map_err(|x| e(&x))?;
            for emse in emse_id {
                // Typed text is normalised to NFKC first (TS 33.220 B.2.1.2), so that a
                // fullwidth or decomposed spelling derives what the EMKS derives.
                let k = EmseId::new_normalized(emse)
                    .map_err(|x| x.to_string())
                    .and_then(|id| deriver.derive(&id).map_err(|x| x.to_string()))
                    .map_err(|x| {
                        format!("--emse-id {:?}: {x}", cli::clip(emse, cli::ECHO_LIMIT))
                    })?;
                out(&format!("e2m_key[{emse}]"), k.expose_secret());
            }
        }
        Command::KeyId {
            rand,
            int_key,
            profile,
        } => match (rand, int_key) {
            (Some(rand), _) => {
                println!("key_id = {}", KeyId::from_rand_lsb32(rand.expose()));
            }
            (None, Some(int_key)) => {
                let int_key = E2mIntKey::from_array(*int_key.expose());
                println!(
                    "key_id = {}",
                    KeyId::short_hash(&int_key, &profile.profile()?).map_err(|x| e(&x))?
                );
            }
            (None, None) => return Err("give --rand or --int-key".into()),
        },
        Command::PskIdentity { identity, key_id } => {
            println!(
                "psk_identity = {}",
                PskIdentity::new(identity.clone(), *key_id)
            );
        }
        Command::ParsePskIdentity { psk_identity } => {
            println!("identity = {}", psk_identity.identity);
            println!("key_id = {}", psk_identity.key_id);
        }
        Command::OscoreContext {
            e2m_key,
            app_identity,
            key_id,
            master_secret_fc,
            master_secret_label,
        } => oscore_context(
            &E2mKey::from_array(*e2m_key.expose()),
            app_identity,
            *key_id,
            *master_secret_fc,
            master_secret_label.as_deref(),
        )?,
        Command::Milenage {
            k,
            opc,
            op,
            rand,
            sqn,
            amf,
        } => milenage(
            k,
            opc.as_ref(),
            op.as_ref(),
            rand,
            sqn.as_ref().zip(amf.as_ref()),
        ),
    }
    Ok(())
}

/// The e2m OSCORE context from both ends: the five RFC 8613 §3.2 inputs and what they
/// derive. `ue_sender_key` is the EMSE's recipient key and `emse_sender_key` the UE's
/// recipient key; an outside implementation keyed as the UE uses sender ID = `ue_sender_id`,
/// recipient ID = `emse_sender_id`, and the reverse as the EMSE.
fn oscore_context(
    e2m_key: &E2mKey,
    identity: &AppIdentity,
    key_id: KeyId,
    fc: Option<Fc>,
    label: Option<&str>,
) -> Result<(), String> {
    let mut profile = E2mOscoreProfile::PROVISIONAL;
    if let Some(fc) = fc {
        profile.master_secret_fc = fc;
    }
    if let Some(label) = label {
        profile.master_secret_label = label;
    }
    profile
        .validate(&E2mProfile::PROVISIONAL)
        .map_err(|x| format!("profile: {x}"))?;
    let master_secret = profile.master_secret(e2m_key).map_err(|x| x.to_string())?;
    let ue = profile
        .ue_context(e2m_key, identity, key_id, SenderSequence::volatile())
        .map_err(|x| x.to_string())?;
    out("master_secret", master_secret.expose_secret());
    out("master_salt", &[]);
    out("id_context", &e2m_oscore::e2m::id_context(identity));
    out("ue_sender_id", ue.sender_id());
    out("emse_sender_id", ue.recipient_id());
    println!("aead_algorithm = 10 (AES-CCM-16-64-128)");
    println!("hkdf = SHA-256");
    out("ue_sender_key", ue.sender_key().expose_secret());
    out("emse_sender_key", ue.recipient_key().expose_secret());
    out("common_iv", ue.common_iv().expose_secret());
    Ok(())
}

/// TS 35.206 §4.1 for one RAND (and SQN/AMF when given): every output a USIM computes.
fn milenage(
    k: &Hex<16>,
    opc: Option<&Hex<16>>,
    op: Option<&Hex<16>>,
    rand: &Hex<16>,
    sqn_amf: Option<(&Hex<6>, &Hex<2>)>,
) {
    let k = SubscriberKey::from_array(*k.expose());
    let opc = match (opc, op) {
        (Some(opc), _) => Opc::from_array(*opc.expose()),
        (None, Some(op)) => {
            let opc = Milenage::opc_from_op(&k, op.expose());
            out("opc", opc.expose_secret());
            opc
        }
        // clap requires one of the two.
        (None, None) => return,
    };
    let m = Milenage::new(&k, &opc);
    let rand = rand.expose();
    let outputs = m.f2345(rand);
    if let Some((sqn, amf)) = sqn_amf {
        let mac_a = m.f1(rand, sqn.expose(), amf.expose());
        out("mac_a", &mac_a);
        out("mac_s", &m.f1_star(rand, sqn.expose(), amf.expose()));
        // AUTN = SQN ⊕ AK ‖ AMF ‖ MAC-A (TS 33.102 §6.3.2).
        let mut autn = [0u8; 16];
        for (i, slot) in autn[..6].iter_mut().enumerate() {
            *slot = sqn.expose()[i] ^ outputs.ak[i];
        }
        autn[6..8].copy_from_slice(amf.expose());
        autn[8..].copy_from_slice(&mac_a);
        out("autn", &autn);
    }
    out("res", outputs.res.expose());
    out("ck", outputs.ck.expose_secret());
    out("ik", outputs.ik.expose_secret());
    out("ak", &outputs.ak);
    out("ak_star", &m.f5_star(rand));
}

fn main() -> ExitCode {
    let (cli, matches): (Cli, _) = cli::parse_or_exit(PROGRAM);
    match run(&cli.command, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let name = matches.subcommand_name().unwrap_or_default();
            cli::usage_error(&format!("{PROGRAM} {name}"), message)
        }
    }
}
