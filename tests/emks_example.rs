//! The `emks` example as an operator runs it: `curl` with a client certificate registers,
//! fetches a key and deregisters; without a certificate it is refused. Loopback only; every
//! loop is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests"
)]

use std::path::PathBuf;

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("e2m-{tag}-{}-{nanos}", std::process::id()))
}

// ---------------------------------------------------------------------------------------
// Against the `emks` example, with curl (issue 5: "curl with a client certificate
// registers, fetches a key and deregisters against the emks example; without a
// certificate it is refused").

mod against_the_example {
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};

    use e2m_kdf::{E2mIntKey, E2mProfile};
    use e2m_keyid::E2mKeyDeriver;
    use e2m_keyid::{EmseId, Imsi, KeyId};
    use e2m_msg::{
        IntermediateKeyPush, KeyIdSource, KeyResponse, Registration, RegistrationResult, Timestamp,
        XmlMessage,
    };

    use super::temp_dir;

    /// The example binary, which `cargo test` builds with every other target. (Building
    /// it from here would need cargo's build lock, which the running `cargo test` holds.)
    fn example_binary(name: &str) -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> → target/<profile>/examples/<name>
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let path = profile_dir.join("examples").join(name);
        assert!(
            path.exists(),
            "example binary {} missing: run `cargo test` (all targets) or `cargo build --example {name}` first",
            path.display()
        );
        path
    }

    fn curl_available() -> bool {
        Command::new("curl")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Kills the server (a child of this test, by its own handle) when dropped.
    struct Server {
        child: Child,
        base: String,
        dir: PathBuf,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn start_server() -> Server {
        let emks = example_binary("emks");
        let dir = temp_dir("curl-pki");
        let out = Command::new(&emks)
            .args(["gen-pki", "--dir"])
            .arg(&dir)
            .args(["--emse", "emse-a", "--emse", "emse-b"])
            .output()
            .unwrap();
        assert!(out.status.success(), "gen-pki failed: {out:?}");
        let mut child = Command::new(&emks)
            .args(["--store", "memory", "--listen", "127.0.0.1:0", "--certs"])
            .arg(&dir)
            .args([
                "--provision",
                "emse-a,sensor-17@iot.example.com,001010123456789",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("EMKS listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, base, dir }
    }

    struct CurlOut {
        status: Option<u16>,
        headers: String,
        body: Vec<u8>,
        ok: bool,
    }

    /// Runs curl with `args`, returning status, headers and body (bounded by --max-time).
    fn curl(dir: &Path, cert: Option<&str>, args: &[&str], body: Option<&[u8]>) -> CurlOut {
        let headers = dir.join(format!("headers-{}", std::process::id()));
        let mut cmd = Command::new("curl");
        cmd.args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--noproxy",
            "*",
        ])
        .arg("--cacert")
        .arg(dir.join("ca.pem"))
        .arg("--dump-header")
        .arg(&headers);
        if let Some(stem) = cert {
            cmd.arg("--cert")
                .arg(dir.join(format!("{stem}.pem")))
                .arg("--key")
                .arg(dir.join(format!("{stem}.key")));
        }
        cmd.args(args);
        if body.is_some() {
            cmd.args(["--data-binary", "@-", "-H", "content-type: application/xml"]);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("curl");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            if let Some(body) = body {
                stdin.write_all(body).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        let header_text = std::fs::read_to_string(&headers).unwrap_or_default();
        let _ = std::fs::remove_file(&headers);
        let status = header_text
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok());
        CurlOut {
            status,
            headers: header_text,
            body: out.stdout,
            ok: out.status.success(),
        }
    }

    fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
        headers.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[test]
    fn curl_registers_fetches_and_deregisters_with_a_certificate_and_is_refused_without() {
        assert!(
            curl_available(),
            "curl is required for this test (apt-get install -y curl; .ci/run installs it)"
        );
        let server = start_server();
        let dir = server.dir.clone();
        let url = |path: &str| format!("{}{path}", server.base);

        // HSS pushes an intermediate key (its certificate; XML body from e2m-msg).
        let int_key = E2mIntKey::from_array([0x5a; 32]);
        let key_id = KeyId::from_u32(0xae47bf35);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let push = IntermediateKeyPush {
            imsi: Imsi::new("001010123456789").unwrap(),
            key_id: KeyIdSource::RandLsb32(key_id),
            int_key: int_key.copy_secret(),
            created: Timestamp::from_unix_secs(now),
        };
        let out = curl(
            &dir,
            Some("hss"),
            &[&url("/e2m/v1/intermediate-keys")],
            Some(push.encode().as_bytes()),
        );
        assert_eq!(out.status, Some(204), "push: {}", out.headers);

        // EMSE A registers: 201 + Location + session.
        let registration = Registration {
            emse_id: EmseId::new("emse-a").unwrap(),
            callback: None,
        };
        let out = curl(
            &dir,
            Some("emse-emse-a"),
            &[&url("/e2m/v1/sessions")],
            Some(registration.encode().as_bytes()),
        );
        assert_eq!(out.status, Some(201), "register: {}", out.headers);
        let result = RegistrationResult::decode(&out.body).unwrap();
        let location = header(&out.headers, "location").unwrap();
        assert_eq!(
            location,
            format!("/e2m/v1/sessions/{}", result.session_id.to_text().as_str())
        );

        // Key fetch: 200, no-store, and the key is e2m_key for emse-a (seed 6.x.2.3 step 6).
        let target =
            format!("{location}/keys?appIdentity=sensor-17%40iot.example.com&keyId={key_id}");
        let out = curl(&dir, Some("emse-emse-a"), &[&url(&target)], None);
        assert_eq!(out.status, Some(200), "fetch: {}", out.headers);
        assert_eq!(header(&out.headers, "cache-control"), Some("no-store"));
        let key = KeyResponse::decode(&out.body).unwrap();
        let expected = E2mKeyDeriver::new(&int_key, E2mProfile::PROVISIONAL)
            .unwrap()
            .derive(&EmseId::new("emse-a").unwrap())
            .unwrap();
        assert!(key.key == expected, "served key is not e2m_key for emse-a");
        assert_eq!(key.key_id, key_id);

        // Another EMSE cannot use emse-a's session (bound to the certificate identity); it
        // gets what a made-up session id gets, 404 (no existence oracle).
        let out = curl(&dir, Some("emse-emse-b"), &[&url(&target)], None);
        assert_eq!(out.status, Some(404), "{}", out.headers);

        // Without a client certificate: refused in the TLS handshake, no HTTP answer.
        let out = curl(&dir, None, &[&url(&target)], None);
        assert!(
            !out.ok && out.status.is_none(),
            "no-cert request got {:?}",
            out.status
        );

        // Deregistration: 204; the session is gone afterwards.
        let out = curl(
            &dir,
            Some("emse-emse-a"),
            &["-X", "DELETE", &url(location)],
            None,
        );
        assert_eq!(out.status, Some(204), "deregister: {}", out.headers);
        let out = curl(&dir, Some("emse-emse-a"), &[&url(&target)], None);
        assert_eq!(out.status, Some(404));
        assert_eq!(
            header(&out.headers, "content-type"),
            Some("application/problem+xml")
        );
    }
}
