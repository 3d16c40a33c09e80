//! `PgBackend::check_writable` (what an EMKS's readiness reports): true while the primary
//! takes writes, false while the database is down and on a read-only standby, true again
//! once the database is back, without reconnecting the backend by hand.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod support;

use std::time::{Duration, Instant};

use e2m_keystore::conformance::test_key_bytes;
use e2m_keystore::{E2mIntKey, Imsi, IntKeyStore, KeyId, RetentionPolicy, Timestamp};
use e2m_keystore_pg::{PgBackend, PgConfig};

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

/// The check, bounded as an EMKS bounds it.
async fn writable(backend: &PgBackend) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(3), backend.check_writable()).await,
        Ok(Ok(()))
    )
}

async fn wait_until(backend: &PgBackend, want: bool, within: Duration) {
    let deadline = Instant::now() + within;
    while writable(backend).await != want {
        assert!(
            Instant::now() < deadline,
            "check_writable did not become {want} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writable_while_up_not_while_down_or_on_a_standby_and_again_after_a_restart() {
    let Some(primary) = support::Cluster::start() else {
        return;
    };
    let config = PgConfig::from_conninfo(&primary.conninfo())
        .unwrap()
        .with_timeout(Duration::from_secs(2))
        .unwrap();
    let backend = PgBackend::connect(&config, support::keyring(1, 0x42))
        .await
        .unwrap();
    let keys = backend.int_keys(RetentionPolicy::DEFAULT);
    let imsi = Imsi::new("001010000000001").unwrap();
    let push = |id: u32| {
        let key = E2mIntKey::from_array(test_key_bytes(1, id));
        let keys = &keys;
        let imsi = &imsi;
        async move {
            keys.push(imsi, KeyId::from_u32(id), &key, at(0), at(0))
                .await
        }
    };
    assert!(writable(&backend).await);
    push(1).await.unwrap();

    // The database goes down: the check fails (within the pool's timeout), as pushes do.
    primary.stop_immediate();
    wait_until(&backend, false, Duration::from_secs(10)).await;
    assert!(push(2).await.is_err());

    // Back on the same port: the pool heals and the check passes again.
    primary.pg_ctl_start();
    wait_until(&backend, true, Duration::from_secs(30)).await;
    push(3).await.unwrap();

    // A standby answers queries but takes no writes: not writable.
    let standby = primary.start_standby("");
    let on_standby = PgConfig::from_conninfo(&standby.conninfo())
        .unwrap()
        .with_timeout(Duration::from_secs(2))
        .unwrap();
    // Connecting runs the schema statements, which a standby refuses: a backend on it is
    // refused at start (what `emks --store postgres` reports), so the check is made on a
    // backend whose database became read-only after it connected.
    assert!(
        PgBackend::connect(&on_standby, support::keyring(1, 0x42))
            .await
            .is_err()
    );
    primary.psql("ALTER SYSTEM SET default_transaction_read_only = on");
    primary.psql("SELECT pg_reload_conf()");
    // New connections see the setting; the pooled ones keep theirs, so the pool is
    // renewed by a restart of the server.
    primary.stop_immediate();
    primary.pg_ctl_start();
    wait_until(&backend, false, Duration::from_secs(30)).await;
    let refused = backend.check_writable().await.unwrap_err();
    let mut why = refused.to_string();
    let mut source = std::error::Error::source(&refused);
    while let Some(cause) = source {
        why.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(why.contains("read-only"), "the error says why: {why}");
    drop(standby);
}
