//! A key store of one's own that is not a `NotificationOutbox` plugs into the core as it is
//! (issue 16, "two things a new user hit"): the EMKS without notifications. That such a
//! core offers no `subscribe` is checked at compile time by the `compile_fail` example in
//! the crate README.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking, with a message"
)]

use std::sync::atomic::{AtomicUsize, Ordering};

use e2m_emks::{Emks, EmksConfig, Peer, Timestamp};
use e2m_kdf::{E2mIntKey, E2mProfile};
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId, e2m_key};
use e2m_keystore::{
    HeldKey, IdentityMap, IntKeyStore, KeyInfo, MemoryIdentityMap, MemoryIntKeyStore,
    MemorySessionStore, MemorySubscriptionStore, PushOutcome, RetentionPolicy, SessionPolicy,
    StoreError, SubscriptionPolicy, block_on,
};
use e2m_msg::{IntermediateKeyPush, KeyIdSource, KeyRequest, ProblemCause, Registration, UeRef};

/// A store of one's own: the four-method-short key store an operator might write over its
/// database. Here it keeps the keys in the in-memory store and counts what the core asks,
/// so that the test sees the core use it (and nothing else) for keys.
struct OwnKeyStore {
    inner: MemoryIntKeyStore,
    calls: AtomicUsize,
}

impl OwnKeyStore {
    fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

impl IntKeyStore for OwnKeyStore {
    fn retention(&self) -> RetentionPolicy {
        self.inner.retention()
    }

    async fn push(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        key: &E2mIntKey,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<PushOutcome, StoreError> {
        self.call();
        self.inner.push(imsi, key_id, key, created, now).await
    }

    async fn get(
        &self,
        imsi: &Imsi,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<Option<HeldKey>, StoreError> {
        self.call();
        self.inner.get(imsi, key_id, now).await
    }

    async fn latest(&self, imsi: &Imsi, now: Timestamp) -> Result<Option<HeldKey>, StoreError> {
        self.call();
        self.inner.latest(imsi, now).await
    }

    async fn held(&self, imsi: &Imsi, now: Timestamp) -> Result<Vec<KeyInfo>, StoreError> {
        self.call();
        self.inner.held(imsi, now).await
    }

    async fn remove_ue(&self, imsi: &Imsi) -> Result<usize, StoreError> {
        self.call();
        self.inner.remove_ue(imsi).await
    }

    async fn sweep(&self, now: Timestamp) -> Result<Vec<(Imsi, KeyInfo)>, StoreError> {
        self.call();
        self.inner.sweep(now).await
    }
}

#[test]
fn a_key_store_without_an_outbox_serves_the_whole_key_flow() {
    let profile = E2mProfile::PROVISIONAL;
    let keys = OwnKeyStore {
        inner: MemoryIntKeyStore::new(RetentionPolicy::DEFAULT),
        calls: AtomicUsize::new(0),
    };
    let emks = Emks::new(
        EmksConfig::new(profile).unwrap(),
        keys,
        MemoryIdentityMap::new(),
        MemorySessionStore::new(SessionPolicy::DEFAULT),
        MemorySubscriptionStore::new(SubscriptionPolicy::DEFAULT),
    );
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let emse_id = EmseId::new("emse-a.example.com").unwrap();
    let app = AppIdentity::new("sensor-1@iot.example.com").unwrap();
    let imsi = Imsi::new("001010000000001").unwrap();
    let key_id = KeyId::from_u32(0x0102_0304);
    let int_key = [0x5a; 32];

    block_on(async {
        emks.identities()
            .provision(&emse_id, &app, &imsi)
            .await
            .unwrap();
        let push = IntermediateKeyPush {
            imsi: imsi.clone(),
            key_id: KeyIdSource::RandLsb32(key_id),
            int_key: E2mIntKey::from_array(int_key),
            created: now,
        };
        emks.push_intermediate_key(&Peer::hss("hss"), &push, now)
            .await
            .result
            .unwrap();
        let emse = Peer::emse(emse_id.clone());
        let registration = Registration {
            emse_id: emse_id.clone(),
            callback: None,
        };
        let session_id = emks
            .register(&emse, &registration, now)
            .await
            .result
            .unwrap()
            .session_id;
        let request = KeyRequest {
            session_id,
            ue: UeRef::AppIdentity(app.clone()),
            key_id,
        };
        let response = emks.fetch_key(&emse, &request, now).await.result.unwrap();
        let expected = e2m_key(&E2mIntKey::from_array(int_key), &emse_id, &profile).unwrap();
        assert!(
            response.key == expected,
            "the key derived from the pushed one"
        );

        // A key id the store does not hold: the usual refusal.
        let missing = KeyRequest {
            key_id: KeyId::from_u32(7),
            ..request
        };
        let refused = emks.fetch_key(&emse, &missing, now).await.result;
        assert_eq!(
            refused.unwrap_err().cause(),
            ProblemCause::KeyNotAvailable,
            "an unknown key id"
        );
        // Upkeep runs over the store too.
        let _ = emks.expire(now).await;
    });
    assert!(
        emks.keys().calls.load(Ordering::Relaxed) >= 4,
        "push, two reads and a sweep went to the store of one's own"
    );
}
