//! Helpers shared by the DTLS integration tests: the test key and identities, a server
//! started on loopback, bounded waits for its events, and `openssl` as a child process.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a part of the shared helpers"
)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use e2m_coap::{Code as CoapCode, Message, MessageType, Token};
use e2m_dtls::server::{DtlsServer, ServerConfig, ServerEvent, ServerHandle, default_handler};
use e2m_dtls::{DtlsLimits, PskResolver};
use e2m_kdf::E2mKey;
use e2m_keyid::{AppIdentity, KeyId, PskIdentity};
use tokio::sync::mpsc;

pub const PSK_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
/// Generous: debug builds of the RustCrypto primitives are slow, and CI shares two cores.
pub const WAIT: Duration = Duration::from_secs(30);

/// A confirmable CoAP GET for `path` with `token`.
pub fn get(path: &str, message_id: u16, token: &[u8]) -> Message {
    let mut m = Message::new(
        MessageType::Confirmable,
        CoapCode::GET,
        message_id,
        Token::new(token).expect("token"),
    );
    m.set_uri_path(path).expect("path");
    m
}

pub fn psk() -> E2mKey {
    E2mKey::from_hex(PSK_HEX).expect("test PSK")
}

pub fn identity(app: &str, key_id: u32) -> PskIdentity {
    PskIdentity::new(
        AppIdentity::new(app).expect("identity"),
        KeyId::from_u32(key_id),
    )
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

pub fn limits() -> DtlsLimits {
    DtlsLimits {
        handshake_timeout: WAIT,
        ..DtlsLimits::default()
    }
}

pub async fn start<R: PskResolver>(resolver: R) -> (ServerHandle, mpsc::Receiver<ServerEvent>) {
    start_with(
        resolver,
        ServerConfig {
            limits: limits(),
            ..ServerConfig::default()
        },
    )
    .await
}

/// A server with `config` on 127.0.0.1 and its event stream.
pub async fn start_with<R: PskResolver>(
    resolver: R,
    config: ServerConfig,
) -> (ServerHandle, mpsc::Receiver<ServerEvent>) {
    let mut server = DtlsServer::bind(localhost(), resolver, default_handler(), config)
        .await
        .expect("bind");
    let events = server.take_events().expect("events");
    (server, events)
}

/// Waits (bounded) for the first event that `pick` accepts.
pub async fn wait_for<T>(
    events: &mut mpsc::Receiver<ServerEvent>,
    mut pick: impl FnMut(&ServerEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("server stopped");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    })
    .await
    .expect("expected server event did not come")
}

pub fn openssl() -> &'static str {
    let found = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "`openssl` is not installed; CI installs it (apt-get install -y openssl)"
    );
    "openssl"
}

/// A child process killed on drop, with its stdout lines on a channel.
pub struct Proc {
    pub child: Child,
    pub lines: std_mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(openssl())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl");
        let (tx, lines) = std_mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc { child, lines }
    }

    pub fn write_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        // One write: `writeln!` on the unbuffered pipe writes the line and its newline
        // separately, and s_client then sometimes sends them as two records (17 + 1 octets).
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to openssl");
        stdin.flush().expect("flush");
    }

    /// Waits (bounded) for a line containing `needle`; returns everything read so far.
    pub fn wait_for(&self, needle: &str, seen: &mut Vec<String>) -> bool {
        let deadline = std::time::Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free UDP port on 127.0.0.1 (bound, read, released: a small race with other
/// processes, acceptable on a test machine).
pub fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}
