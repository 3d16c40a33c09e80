//! Failover without loss: a primary with a synchronous standby on loopback; pushes through
//! the store while the primary is killed (SIGKILL, every process); the standby is promoted
//! and a store reconnected to it serves every push that was acknowledged.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2m_keystore::conformance::test_key_bytes;
use e2m_keystore::{E2mIntKey, Imsi, IntKeyStore, KeyId, PushOutcome, RetentionPolicy, Timestamp};
use e2m_keystore_pg::{PgBackend, PgConfig};

fn imsi(n: u64) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_push_survives_the_loss_of_the_primary() {
    let started = Instant::now();
    // Commits wait until one standby (any) has flushed them.
    let Some(primary) = support::Cluster::start_with("synchronous_standby_names = 'ANY 1 (*)'")
    else {
        return;
    };
    // The standby must not wait for a standby of its own once promoted.
    let standby = primary.start_standby("synchronous_standby_names = ''");
    for _ in 0..200 {
        let state = primary.psql("SELECT sync_state FROM pg_stat_replication");
        if state.trim() == "quorum" || state.trim() == "sync" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = primary.psql("SELECT sync_state FROM pg_stat_replication");
    assert!(
        matches!(state.trim(), "quorum" | "sync"),
        "standby not synchronous: {state:?}"
    );
    println!(
        "primary + synchronous standby up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let policy = RetentionPolicy::new(4, Duration::from_secs(3600)).unwrap();
    let config = PgConfig::from_conninfo(&primary.conninfo())
        .unwrap()
        .with_timeout(Duration::from_secs(2))
        .unwrap();
    let backend = PgBackend::connect(&config, support::keyring(1, 0x42))
        .await
        .unwrap();
    let store = Arc::new(backend.int_keys(policy));

    // Eight pushers, each on its own UEs, push until the database fails under them.
    let acked_total = Arc::new(AtomicU64::new(0));
    let mut pushers = Vec::new();
    for p in 0..8u64 {
        let store = store.clone();
        let acked_total = acked_total.clone();
        pushers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut errors = 0;
            for i in 0..100_000u64 {
                let ue = p * 1_000_000 + i;
                let id = u32::try_from(i % 1000).unwrap();
                let key = E2mIntKey::from_array(test_key_bytes(ue, id));
                match store
                    .push(&imsi(ue), KeyId::from_u32(id), &key, at(0), at(0))
                    .await
                {
                    Ok(out) => {
                        assert_eq!(out, PushOutcome::Stored { evicted: None });
                        acknowledged.push((ue, id));
                        acked_total.fetch_add(1, Ordering::Relaxed);
                    }
                    // Not acknowledged: may or may not have committed, both are fine.
                    Err(_) => {
                        errors += 1;
                        if errors >= 3 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            acknowledged
        }));
    }
    while acked_total.load(Ordering::Relaxed) < 400 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The primary's machine is lost while pushes are in flight.
    primary.kill();
    let mut acknowledged = Vec::new();
    for p in pushers {
        acknowledged.extend(p.await.unwrap());
    }
    backend.close();
    assert!(
        acknowledged.len() >= 400,
        "{} acknowledged",
        acknowledged.len()
    );

    let promote_started = Instant::now();
    standby.promote();
    let config = PgConfig::from_conninfo(&standby.conninfo()).unwrap();
    let promoted = PgBackend::connect(&config, support::keyring(1, 0x42))
        .await
        .expect("reconnect to the promoted standby");
    let store = promoted.int_keys(policy);
    println!(
        "standby promoted and store reconnected in {:.2} s",
        promote_started.elapsed().as_secs_f64()
    );
    let mut missing = Vec::new();
    for (ue, id) in &acknowledged {
        match store
            .get(&imsi(*ue), KeyId::from_u32(*id), at(1))
            .await
            .unwrap()
        {
            Some(held) => assert!(held.key == E2mIntKey::from_array(test_key_bytes(*ue, *id))),
            None => missing.push((*ue, *id)),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged pushes lost: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(5)]
    );
    // The promoted primary takes new pushes.
    let out = store
        .push(
            &imsi(9),
            KeyId::from_u32(1),
            &E2mIntKey::from_array([9; 32]),
            at(1),
            at(1),
        )
        .await
        .unwrap();
    assert_eq!(out, PushOutcome::Stored { evicted: None });
    println!(
        "{} acknowledged pushes before the kill, all served by the promoted standby",
        acknowledged.len()
    );
}
