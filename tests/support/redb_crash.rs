//! Helpers of the `kill -9` tests of the `emks` example on its redb store
//! (`tests/emks_redb_crash.rs` over HTTPS, `tests/diameter_redb_crash.rs` over Diameter):
//! the UEs' identities and keys, the prepared directory (certificates, KEK, identity
//! file), the example started on it, and the check that a key is served exactly.

#![allow(dead_code, reason = "each test file uses a part of the helpers")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use e2m_https::client::EmksClient;
use e2m_kdf::{E2mIntKey, E2mProfile};
use e2m_keyid::{AppIdentity, E2mKeyDeriver, EmseId, Imsi, KeyId};
use e2m_keystore::conformance::test_key_bytes;
use e2m_msg::{KeyRequest, SessionId, Timestamp, UeRef};

use super::support::{example_binary, kill};

pub(crate) fn app(ue: u64) -> AppIdentity {
    AppIdentity::new(&format!("ue-{ue}@crash.example")).unwrap()
}

pub(crate) fn imsi(ue: u64) -> Imsi {
    Imsi::new(&format!("00101{ue:010}")).unwrap()
}

pub(crate) fn key_id(ue: u64) -> KeyId {
    KeyId::from_u32(ue as u32 + 1)
}

/// The key pushed for `ue`: distinct per UE, so a served key from another row shows.
pub(crate) fn int_key(ue: u64) -> E2mIntKey {
    E2mIntKey::from_array(test_key_bytes(ue, key_id(ue).as_u32()))
}

/// The `emks` example, killed (SIGKILL, by its own handle) when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    /// The stdout lines after the first (e.g. `Diameter listening on …`).
    pub(crate) lines: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Starts the example on `dir`'s data directory with `extra` flags; returns once it printed
/// `EMKS listening on` and `wait_for` more lines. Its stdout is read until it ends, so that
/// a later line never meets a closed pipe.
pub(crate) fn start(dir: &Path, extra: &[&str], wait_for: usize) -> Server {
    let mut child = Command::new(example_binary("emks"))
        .args(["--listen", "127.0.0.1:0", "--certs"])
        .arg(dir.join("pki"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--kek-file")
        .arg(dir.join("kek-1"))
        .arg("--provision-file")
        .arg(dir.join("identities.csv"))
        // The per-peer limiter must not answer the test's pushes with 429.
        .args(["--rate", "1000000", "--burst", "1000000"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let base = first
        .trim()
        .strip_prefix("EMKS listening on ")
        .unwrap_or_else(|| panic!("emks did not start: first line {first:?}"))
        .to_owned();
    let lines = (0..wait_for)
        .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    Server { child, base, lines }
}

/// Certificates, a KEK file and the identity file of `ues` UEs for EMSE `emse-a`.
pub(crate) fn prepare(dir: &Path, ues: u64) {
    let emks = example_binary("emks");
    let out = Command::new(&emks)
        .args(["gen-pki", "--dir"])
        .arg(dir.join("pki"))
        .args(["--emse", "emse-a"])
        .output()
        .unwrap();
    assert!(out.status.success(), "gen-pki: {out:?}");
    let out = Command::new(&emks)
        .args(["gen-kek", "--out"])
        .arg(dir.join("kek-1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "gen-kek: {out:?}");
    let mut csv = String::from("emse_id,app_identity,imsi\n");
    for ue in 0..ues {
        csv.push_str(&format!("emse-a,{},{}\n", app(ue), imsi(ue)));
    }
    std::fs::write(dir.join("identities.csv"), csv).unwrap();
}

pub(crate) fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp::from_unix_secs(secs)
}

/// Checks that `ue`'s key is served exactly (`must`), or is absent or exact (`!must`).
pub(crate) async fn check_key(emse: &EmksClient, session: &SessionId, ue: u64, must: bool) {
    let request = KeyRequest {
        session_id: SessionId::from_array(*session.expose_secret()),
        ue: UeRef::AppIdentity(app(ue)),
        key_id: key_id(ue),
    };
    match emse.fetch_key(&request).await {
        Ok(key) => {
            let expected = E2mKeyDeriver::new(&int_key(ue), E2mProfile::PROVISIONAL)
                .unwrap()
                .derive(&EmseId::new("emse-a").unwrap())
                .unwrap();
            assert!(
                key.key == expected,
                "UE {ue}: served key differs (torn or mixed up)"
            );
            assert_eq!(key.key_id, key_id(ue), "UE {ue}: key id");
        }
        Err(e) if !must => {
            // In flight at the kill: not stored, which is fine, but never a server fault.
            assert!(e.problem_cause().is_some(), "UE {ue}: {e}");
        }
        Err(e) => panic!("UE {ue}: acknowledged push not fetchable after a restart: {e}"),
    }
}
