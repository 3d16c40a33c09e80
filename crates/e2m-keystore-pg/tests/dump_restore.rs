//! What the operator's backup of the PostgreSQL store relies on, with PostgreSQL's own
//! tools (`pg_dump` here; `pg_basebackup` and WAL archiving work below the schema and need
//! nothing of ours): a dump of the database restored into a new cluster is served by a
//! backend with the same KEK files — every key exact, sessions and the identity map
//! included — and refused at start by a backend with other KEK files; the dump holds no
//! key in clear.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod support;

use std::time::Duration;

use e2m_keystore::conformance::test_key_bytes;
use e2m_keystore::{
    AppIdentity, E2mIntKey, EmseId, IdentityMap, Imsi, IntKeyStore, KeyId, RetentionPolicy,
    SessionPolicy, SessionStore, Timestamp,
};
use e2m_keystore_pg::{ConnectError, PgBackend, PgConfig};

fn imsi(n: u64) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

fn config(cluster: &support::Cluster) -> PgConfig {
    PgConfig::from_conninfo(&cluster.conninfo())
        .unwrap()
        .with_timeout(Duration::from_secs(5))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_restored_into_a_new_cluster_serves_every_key_with_the_same_kek_only() {
    let Some(source) = support::Cluster::start() else {
        return;
    };
    let emse = EmseId::new("emse-a.example.com").unwrap();
    let app = AppIdentity::new("sensor-1@iot.example.com").unwrap();
    let session_id = {
        let backend = PgBackend::connect(&config(&source), support::keyring(1, 0x42))
            .await
            .unwrap();
        let keys = backend.int_keys(RetentionPolicy::DEFAULT);
        for ue in 0..20 {
            for id in 1..=2u32 {
                let key = E2mIntKey::from_array(test_key_bytes(ue, id));
                keys.push(&imsi(ue), KeyId::from_u32(id), &key, at(1), at(1))
                    .await
                    .unwrap();
            }
        }
        backend
            .identities()
            .provision(&emse, &app, &imsi(3))
            .await
            .unwrap();
        let (id, _) = backend
            .sessions(SessionPolicy::DEFAULT)
            .create(&emse, at(1))
            .await
            .unwrap();
        backend.close();
        id
    };
    let dump = source.pg_dump();
    let contains = |needle: &[u8]| dump.windows(needle.len()).any(|w| w == needle);
    for ue in 0..20 {
        let key = test_key_bytes(ue, 1);
        // pg_dump writes bytea as hex: neither form of a key is in it.
        assert!(!contains(&key[..12]), "UE {ue}: key octets in the dump");
        assert!(!contains(hex::encode(key).as_bytes()));
    }
    assert!(contains(imsi(7).as_bytes()), "the search sees the rows");
    drop(source);

    let Some(target) = support::Cluster::start() else {
        return;
    };
    target.psql_script(&dump);
    // Other KEK files: refused at start, as for the original database.
    match PgBackend::connect(&config(&target), support::keyring(1, 0x43)).await {
        Err(ConnectError::Kek(_)) => {}
        other => panic!("another KEK: {:?}", other.map(|_| ())),
    }
    let backend = PgBackend::connect(&config(&target), support::keyring(1, 0x42))
        .await
        .unwrap();
    let keys = backend.int_keys(RetentionPolicy::DEFAULT);
    for ue in 0..20 {
        for id in 1..=2u32 {
            let held = keys
                .get(&imsi(ue), KeyId::from_u32(id), at(2))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("UE {ue} key {id} not restored"));
            assert_eq!(held.key.expose_secret(), &test_key_bytes(ue, id));
        }
    }
    assert_eq!(
        backend.identities().resolve(&emse, &app).await.unwrap(),
        Some(imsi(3))
    );
    assert!(
        backend
            .sessions(SessionPolicy::DEFAULT)
            .get(&session_id, at(2))
            .await
            .unwrap()
            .is_some()
    );
    backend.check_writable().await.unwrap();
}
