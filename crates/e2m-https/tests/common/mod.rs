//! What the outbox tests share: a generated PKI, clients, EMSE endpoints, pushes.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "a helper module of test binaries: each uses a different part"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use e2m_emks::EmksConfig;
use e2m_https::client::EmksClient;
use e2m_https::delivery::DeliveryOptions;
use e2m_https::emks::EmksServerOptions;
use e2m_https::notify::{NotificationServer, endpoint_limits, start_notification_endpoint};
use e2m_https::pki::{GeneratedPki, PkiDir, PkiSpec};
use e2m_https::server::Limits;
use e2m_kdf::E2mIntKey;
use e2m_keyid::{EmseId, Imsi, KeyId};
use e2m_msg::{IntermediateKeyPush, KeyIdSource, Notification, Timestamp};
use tokio::net::TcpListener;

pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("e2m-{tag}-{}-{nanos}", std::process::id()))
}

pub fn emse(id: &str) -> EmseId {
    EmseId::new(id).unwrap()
}

pub fn imsi(n: u64) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

/// The EMKS configuration of tests whose EMSE endpoints listen on ephemeral ports of
/// 127.0.0.1 (which the test certificates name): certificate-named hosts may use any port
/// from 1024 up, not only 443.
pub fn loopback_config() -> EmksConfig {
    EmksConfig::default().allow_certificate_callback_ports(1024..=65535)
}

/// Retries after 1 s, then 2 s at most, and a short lease: a test sees recovery in seconds.
pub fn fast_delivery() -> EmksServerOptions {
    EmksServerOptions {
        delivery: DeliveryOptions {
            lease: Duration::from_secs(20),
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(2),
            poll: Duration::from_millis(500),
            ..DeliveryOptions::default()
        },
        ..EmksServerOptions::default()
    }
}

pub struct TestPki {
    pub dir: PkiDir,
}

impl TestPki {
    pub fn new() -> TestPki {
        let spec = PkiSpec::new(vec![emse("emse-a"), emse("emse-b")]).unwrap();
        let dir = GeneratedPki::generate(&spec)
            .unwrap()
            .write_to(&temp_dir("pki"))
            .unwrap();
        TestPki { dir }
    }

    pub fn client_at(&self, base_url: &str, who: &str) -> EmksClient {
        let ca = self.dir.ca_certificates().unwrap();
        EmksClient::new(base_url, &self.dir.emse(&emse(who)).unwrap(), &ca).unwrap()
    }

    pub fn hss_at(&self, base_url: &str) -> EmksClient {
        let ca = self.dir.ca_certificates().unwrap();
        EmksClient::new(base_url, &self.dir.hss().unwrap(), &ca).unwrap()
    }

    /// EMSE `who`'s notification endpoint, listening on `addr`.
    pub async fn endpoint_on(&self, addr: SocketAddr, who: &str) -> NotificationServer {
        self.endpoint_with(addr, who, endpoint_limits()).await
    }

    /// EMSE `who`'s notification endpoint, listening on `addr`, under `limits`.
    pub async fn endpoint_with(
        &self,
        addr: SocketAddr,
        who: &str,
        limits: Limits,
    ) -> NotificationServer {
        let ca = self.dir.ca_certificates().unwrap();
        start_notification_endpoint(
            TcpListener::bind(addr).await.unwrap(),
            &self.dir.emse_callback(&emse(who)).unwrap(),
            &ca,
            limits,
        )
        .unwrap()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

/// The HSS pushes key `n` (key id `n`, octets from `n`) for `imsi`.
pub async fn push(hss: &EmksClient, imsi: &Imsi, n: u32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(&n.to_be_bytes());
    key[31] = 0x5a;
    hss.push_intermediate_key(&IntermediateKeyPush {
        imsi: imsi.clone(),
        key_id: KeyIdSource::RandLsb32(KeyId::from_u32(n)),
        int_key: E2mIntKey::from_array(key),
        created: Timestamp::from_unix_secs(secs),
    })
    .await
    .unwrap();
}

/// Up to `n` notifications from `endpoint`, waiting at most `within` in all.
pub async fn receive(
    endpoint: &mut NotificationServer,
    n: usize,
    within: Duration,
) -> Vec<Notification> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout_at(deadline, endpoint.notifications.recv()).await {
            Ok(Some(received)) => got.push(received.notification),
            _ => break,
        }
    }
    got
}
