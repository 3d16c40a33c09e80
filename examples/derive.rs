//! A derivation calculator for interop work: every typed derivation of `e2m-kdf` and the raw
//! TS 33.220 B.2 KDF, inputs in hex (text where the spec uses text), one `name = hex` line
//! per output. Bad input: a message on stderr and exit status 2.
//!
//! ```text
//! cargo run --example derive -- ck-ik-prime --ck 5349fbe098649f948f5d2e973a81c00f \
//!     --ik 9744871ad32bf9bbd1dd5ce54e3e2e5a --network-name WLAN --sqn-xor-ak bb52e91c747a
//! ```
//!
//! This tool prints key material by design (it is a calculator); never point it at
//! production keys on a shared terminal.

use std::process::ExitCode;

use e2m_kdf::{
    Ck, E2mIntKey, E2mKeyDeriver, E2mProfile, Fc, Ik, Kakma, Kausf, Ks, a_tid, ck_ik_prime,
    e2m_int_key, kaf, kakma, kasme, kausf, kdf, ks_naf,
};
use e2m_keyid::{AppIdentity, KeyId, PskIdentity};

const USAGE: &str = "\
usage: derive <command> [--flag value]...

commands (all binary values in hex):
  kdf           --key K --fc FC [--p HEX | --p-text TEXT]...   raw TS 33.220 B.2 KDF;
                FC is one octet (20) or two (ff01); parameters in order P0, P1, ...
  ck-ik-prime   --ck --ik --network-name TEXT --sqn-xor-ak     TS 33.402 A.2
  kasme         --ck --ik --sn-id --sqn-xor-ak                 TS 33.401 A.2
  kausf         --ck --ik --serving-network-name TEXT --sqn-xor-ak   TS 33.501 A.2
  ks-naf        (--ks | --ck --ik) --rand --impi TEXT --naf-id  TS 33.220 B.3
  kakma         --kausf --supi TEXT                           TS 33.535 A.2
  a-tid         --kausf --supi TEXT                           TS 33.535 A.3
  kaf           --kakma --af-id                               TS 33.535 A.4
  e2m-int-key   --ck --ik [profile flags]                     Solution #10 step 1
  e2m-key       --int-key --emse-id TEXT [--emse-id TEXT]... [profile flags]   step 2
  key-id        (--rand | --int-key [profile flags])          RAND-LSB32 or short hash
  psk-identity  --identity TEXT --key-id 8HEX                 format a psk_identity
  parse-psk-identity --psk-identity TEXT                      parse one
profile flags (default: the provisional e2m profile):
  --int-fc FC --int-label TEXT --key-fc FC --key-label TEXT --key-id-fc FC --key-id-label TEXT";

/// Flags in command-line order (the raw KDF's parameters are ordered).
struct Args {
    flags: Vec<(String, String)>,
}

impl Args {
    fn parse(raw: &[String]) -> Result<Self, String> {
        let mut flags = Vec::new();
        let mut it = raw.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("expected a --flag, got {flag:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            flags.push((name.to_owned(), value.clone()));
        }
        Ok(Args { flags })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("missing --{name}"))
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn hex(&self, name: &str) -> Result<Vec<u8>, String> {
        hex_bytes(name, self.text(name)?)
    }

    fn array<const N: usize>(&self, name: &str) -> Result<[u8; N], String> {
        let bytes = self.hex(name)?;
        bytes.as_slice().try_into().map_err(|_| {
            format!(
                "--{name} must be {N} octets ({} hex digits), got {}",
                2 * N,
                bytes.len()
            )
        })
    }

    /// Rejects flags the command does not know, so a typo is not silently ignored.
    fn only(&self, known: &[&str]) -> Result<(), String> {
        match self
            .flags
            .iter()
            .find(|(n, _)| !known.contains(&n.as_str()))
        {
            Some((n, _)) => Err(format!("unknown flag --{n} for this command")),
            None => Ok(()),
        }
    }
}

fn hex_bytes(name: &str, text: &str) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; text.len() / 2];
    if !text.len().is_multiple_of(2) {
        return Err(format!("--{name}: odd number of hex digits"));
    }
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| format!("--{name}: not hex"))?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| format!("--{name}: not hex: {s:?}"))?;
    }
    Ok(out)
}

fn fc(name: &str, text: &str) -> Result<Fc, String> {
    match hex_bytes(name, text)?.as_slice() {
        [0xFF, two] => Ok(Fc::extended(*two)),
        [one] => Fc::new(*one).map_err(|e| format!("--{name}: {e}")),
        _ => Err(format!("--{name}: FC is one octet or 0xFF plus one octet")),
    }
}

fn out(name: &str, bytes: &[u8]) {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    println!("{name} = {hex}");
}

const PROFILE_FLAGS: [&str; 6] = [
    "int-fc",
    "int-label",
    "key-fc",
    "key-label",
    "key-id-fc",
    "key-id-label",
];

fn profile(args: &Args) -> Result<E2mProfile<'_>, String> {
    let mut p = E2mProfile::PROVISIONAL;
    if let Some(v) = args.get("int-fc") {
        p.int_key_fc = fc("int-fc", v)?;
    }
    if let Some(v) = args.get("key-fc") {
        p.key_fc = fc("key-fc", v)?;
    }
    if let Some(v) = args.get("key-id-fc") {
        p.key_id_fc = fc("key-id-fc", v)?;
    }
    if let Some(v) = args.get("int-label") {
        p.int_key_label = v;
    }
    if let Some(v) = args.get("key-label") {
        p.key_label = Some(v);
    }
    if let Some(v) = args.get("key-id-label") {
        p.key_id_label = v;
    }
    p.validate().map_err(|e| format!("profile: {e}"))?;
    Ok(p)
}

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

fn run(command: &str, args: &Args) -> Result<(), String> {
    let e = |err: &dyn std::fmt::Display| err.to_string();
    let ck = || Ck::from_hex(args.text("ck")?).map_err(|err| format!("--ck: {err}"));
    let ik = || Ik::from_hex(args.text("ik")?).map_err(|err| format!("--ik: {err}"));
    match command {
        "kdf" => {
            args.only(&["key", "fc", "p", "p-text"])?;
            let key = args.hex("key")?;
            let fc = fc("fc", args.text("fc")?)?;
            let mut params = Vec::new();
            for (name, value) in &args.flags {
                match name.as_str() {
                    "p" => params.push(hex_bytes("p", value)?),
                    "p-text" => {
                        params.push(e2m_kdf::text_param(value).map_err(|x| e(&x))?.to_vec())
                    }
                    _ => {}
                }
            }
            let refs: Vec<&[u8]> = params.iter().map(Vec::as_slice).collect();
            out(
                "derived",
                kdf(&key, fc, &refs).map_err(|x| e(&x))?.expose_secret(),
            );
        }
        "ck-ik-prime" => {
            args.only(&["ck", "ik", "network-name", "sqn-xor-ak"])?;
            let (ckp, ikp) = ck_ik_prime(
                &ck()?,
                &ik()?,
                args.text("network-name")?,
                &args.array("sqn-xor-ak")?,
            )
            .map_err(|x| e(&x))?;
            out("ck_prime", ckp.expose_secret());
            out("ik_prime", ikp.expose_secret());
        }
        "kasme" => {
            args.only(&["ck", "ik", "sn-id", "sqn-xor-ak"])?;
            let k = kasme(
                &ck()?,
                &ik()?,
                &args.array("sn-id")?,
                &args.array("sqn-xor-ak")?,
            );
            out("kasme", k.expose_secret());
        }
        "kausf" => {
            args.only(&["ck", "ik", "serving-network-name", "sqn-xor-ak"])?;
            let k = kausf(
                &ck()?,
                &ik()?,
                args.text("serving-network-name")?,
                &args.array("sqn-xor-ak")?,
            )
            .map_err(|x| e(&x))?;
            out("kausf", k.expose_secret());
        }
        "ks-naf" => {
            args.only(&["ks", "ck", "ik", "rand", "impi", "naf-id"])?;
            let ks = match args.get("ks") {
                Some(v) => Ks::from_hex(v).map_err(|err| format!("--ks: {err}"))?,
                None => Ks::from_ck_ik(&ck()?, &ik()?),
            };
            let k = ks_naf(
                &ks,
                &args.array("rand")?,
                args.text("impi")?,
                &args.hex("naf-id")?,
            )
            .map_err(|x| e(&x))?;
            out("ks_naf", k.expose_secret());
        }
        "kakma" | "a-tid" => {
            args.only(&["kausf", "supi"])?;
            let k =
                Kausf::from_hex(args.text("kausf")?).map_err(|err| format!("--kausf: {err}"))?;
            if command == "kakma" {
                out(
                    "kakma",
                    kakma(&k, args.text("supi")?)
                        .map_err(|x| e(&x))?
                        .expose_secret(),
                );
            } else {
                out(
                    "a_tid",
                    &a_tid(&k, args.text("supi")?).map_err(|x| e(&x))?.0,
                );
            }
        }
        "kaf" => {
            args.only(&["kakma", "af-id"])?;
            let k =
                Kakma::from_hex(args.text("kakma")?).map_err(|err| format!("--kakma: {err}"))?;
            out(
                "kaf",
                kaf(&k, &args.hex("af-id")?)
                    .map_err(|x| e(&x))?
                    .expose_secret(),
            );
        }
        "e2m-int-key" => {
            args.only(&with(&["ck", "ik"], &PROFILE_FLAGS))?;
            let k = e2m_int_key(&ck()?, &ik()?, &profile(args)?).map_err(|x| e(&x))?;
            out("e2m_int_key", k.expose_secret());
        }
        "e2m-key" => {
            args.only(&with(&["int-key", "emse-id"], &PROFILE_FLAGS))?;
            let int_key = E2mIntKey::from_hex(args.text("int-key")?)
                .map_err(|err| format!("--int-key: {err}"))?;
            let deriver = E2mKeyDeriver::new(&int_key, profile(args)?).map_err(|x| e(&x))?;
            let emses = args.all("emse-id");
            if emses.is_empty() {
                return Err("missing --emse-id".into());
            }
            for emse in emses {
                let k = deriver
                    .derive(emse)
                    .map_err(|x| format!("--emse-id {emse:?}: {x}"))?;
                out(&format!("e2m_key[{emse}]"), k.expose_secret());
            }
        }
        "key-id" => {
            args.only(&with(&["rand", "int-key"], &PROFILE_FLAGS))?;
            if args.get("rand").is_some() {
                println!("key_id = {}", KeyId::from_rand_lsb32(&args.array("rand")?));
            } else {
                let int_key = E2mIntKey::from_hex(args.text("int-key")?)
                    .map_err(|err| format!("--int-key: {err}"))?;
                println!(
                    "key_id = {}",
                    KeyId::short_hash(&int_key, &profile(args)?).map_err(|x| e(&x))?
                );
            }
        }
        "psk-identity" => {
            args.only(&["identity", "key-id"])?;
            let identity = AppIdentity::new(args.text("identity")?)
                .map_err(|err| format!("--identity: {err}"))?;
            let key_id: KeyId = args
                .text("key-id")?
                .parse()
                .map_err(|err| format!("--key-id: {err}"))?;
            println!("psk_identity = {}", PskIdentity::new(identity, key_id));
        }
        "parse-psk-identity" => {
            args.only(&["psk-identity"])?;
            let parsed =
                PskIdentity::parse(args.text("psk-identity")?.as_bytes()).map_err(|x| e(&x))?;
            println!("identity = {}", parsed.identity);
            println!("key_id = {}", parsed.key_id);
        }
        other => return Err(format!("unknown command {other:?}")),
    }
    Ok(())
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = raw.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if command == "-h" || command == "--help" || command == "help" {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match Args::parse(rest).and_then(|args| run(command, &args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("derive {command}: {message}");
            eprintln!("(run `derive --help` for usage)");
            ExitCode::from(2)
        }
    }
}
