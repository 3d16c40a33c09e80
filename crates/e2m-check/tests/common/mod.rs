//! What the tests share: a generated PKI, our own EMKS on loopback, provisioned with the
//! checker's plan, and the target that points the checker at it.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a helper module of test binaries: each uses a different part"
)]

use std::path::PathBuf;
use std::sync::Arc;

use e2m_check::e2m_https::emks::{EmksServer, EmksServerOptions, start_emks};
use e2m_check::e2m_https::pki::{GeneratedPki, PkiDir, PkiSpec};
use e2m_check::e2m_kdf::E2mProfile;
use e2m_check::e2m_msg::EmseId;
use e2m_check::{EmksTarget, UePlan, XmlLint};
use e2m_emks::{Emks, EmksConfig};
use e2m_keystore::{IdentityMap, IntKeyStore, NotificationOutbox, SessionStore, SubscriptionStore};

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

/// A PKI with EMSEs `emse-a` and `emse-b`, removed when dropped.
pub struct TestPki {
    pub dir: PkiDir,
}

impl TestPki {
    pub fn new() -> TestPki {
        let spec = PkiSpec::new(vec![emse("emse-a"), emse("emse-b")]).unwrap();
        let dir = GeneratedPki::generate(&spec)
            .unwrap()
            .write_to(&temp_dir("check-pki"))
            .unwrap();
        TestPki { dir }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

/// The EMKS configuration the checker's default target expects: e2m's profile, EMSE A
/// allowed to name UEs by IMSI, callbacks to the hosts an EMSE's certificate names on any
/// unprivileged port (the checker's callback endpoint listens on an ephemeral port of
/// 127.0.0.1, which EMSE A's test certificate names).
pub fn config() -> EmksConfig {
    EmksConfig::new(E2mProfile::PROVISIONAL)
        .unwrap()
        .allow_imsi(&emse("emse-a"))
        .allow_certificate_callback_ports(1024..=65535)
}

/// Provisions the checker's plan for EMSE A and EMSE B.
pub async fn provision<M: IdentityMap>(map: &M, plan: &UePlan) {
    for (emse, app, imsi) in plan.provisioning(&[emse("emse-a"), emse("emse-b")]) {
        map.provision(&emse, &app, &imsi).await.unwrap();
    }
}

/// Starts `core` on loopback.
pub async fn start<K, M, S, B>(core: Arc<Emks<K, M, S, B>>, pki: &TestPki) -> EmksServer<K, M, S, B>
where
    K: IntKeyStore + NotificationOutbox + 'static,
    M: IdentityMap + 'static,
    S: SessionStore + 'static,
    B: SubscriptionStore + 'static,
{
    let options = EmksServerOptions {
        // The expiry sweep every second, so that notify.key-retired-on-expiry runs.
        expire_every: std::time::Duration::from_secs(1),
        ..EmksServerOptions::default()
    };
    start_emks(core, &pki.dir, options).await.unwrap()
}

/// The checker's target for an EMKS at `url` with `pki`: EMSE A allowed IMSIs, xmllint
/// required (the tests fail, not skip, without it).
pub fn target(url: &str, pki: &TestPki) -> EmksTarget {
    let mut target = EmksTarget::from_pki_dir(
        url,
        &pki.dir,
        &emse("emse-a"),
        &emse("emse-b"),
        UePlan::standard().unwrap(),
    )
    .unwrap();
    target.imsi_allowed_a = true;
    target.xmllint = XmlLint::Required;
    target.expiry_notification_wait = Some(std::time::Duration::from_secs(5));
    target
}
