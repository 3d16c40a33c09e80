//! A small world for the EMKS tests: an EMKS, two EMSEs, an HSS, provisioned UEs, and a
//! record of every audit record, problem and secret the run produced.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "a helper module of test binaries: each uses a different part, and `pub` only shares it with them"
)]

use std::sync::Arc;
use std::time::Duration;

use e2m_emks::{CallbackHost, Effects, Emks, EmksConfig, Outcome, Peer, Timestamp};
use e2m_kdf::{E2mIntKey, E2mKey, E2mProfile};
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
pub use e2m_keystore::block_on;
use e2m_keystore::{IdentityMap, RetentionPolicy, SessionPolicy, SubscriptionPolicy};
use e2m_msg::{
    CallbackUri, IntermediateKeyPush, KeyIdSource, KeyRequest, KeyResponse, Problem, ProblemCause,
    Registration, SessionId, UeRef,
};

pub const T0: u64 = 1_800_000_000;
pub const MAX_AGE: u64 = 3600;
pub const SESSION_TTL: u64 = 600;

pub fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(T0 + s)
}

pub fn emse_id(name: &str) -> EmseId {
    EmseId::new(name).unwrap()
}

pub fn app(name: &str) -> AppIdentity {
    AppIdentity::new(name).unwrap()
}

pub fn imsi(n: u32) -> Imsi {
    Imsi::new(&format!("00101{n:010}")).unwrap()
}

pub fn callback(name: &str) -> CallbackUri {
    CallbackUri::new(&format!("https://{name}/e2m/v1/notifications")).unwrap()
}

pub const A: &str = "emse-a.example.com";
pub const B: &str = "emse-b.example.com";

/// Everything secret the run produced, and everything the run wrote that a peer or a log
/// could see.
#[derive(Default)]
pub struct Ledger {
    pub int_keys: Vec<[u8; 32]>,
    pub keys: Vec<[u8; 32]>,
    pub session_ids: Vec<SessionId>,
    pub audit: Vec<String>,
    pub audit_debug: Vec<String>,
    pub problems: Vec<String>,
    pub notifications: Vec<String>,
}

pub struct World {
    pub emks: Emks,
    pub a: Peer,
    pub b: Peer,
    pub hss: Peer,
    pub ledger: std::cell::RefCell<Ledger>,
    pub profile: E2mProfile<'static>,
}

impl World {
    /// UE n has identity `ue-n@a` at EMSE A and `ue-n@b` at EMSE B (n in 0..4).
    pub fn new(config: EmksConfig) -> World {
        let emks = Emks::in_memory_with(
            config,
            RetentionPolicy::new(4, Duration::from_secs(MAX_AGE)).unwrap(),
            SessionPolicy::new(Duration::from_secs(SESSION_TTL), 8, 64).unwrap(),
            SubscriptionPolicy::DEFAULT,
        );
        for n in 0..4 {
            block_on(emks.identities().provision(
                &emse_id(A),
                &app(&format!("ue-{n}@a")),
                &imsi(n),
            ))
            .unwrap();
            block_on(emks.identities().provision(
                &emse_id(B),
                &app(&format!("ue-{n}@b")),
                &imsi(n),
            ))
            .unwrap();
        }
        World {
            emks,
            // Each EMSE's certificate names its own host (its callbacks go there).
            a: Peer::emse_naming(emse_id(A), Arc::from([CallbackHost::dns(A).unwrap()])),
            b: Peer::emse_naming(emse_id(B), Arc::from([CallbackHost::dns(B).unwrap()])),
            hss: Peer::hss("hss-1"),
            ledger: Default::default(),
            profile: E2mProfile::PROVISIONAL,
        }
    }

    pub fn record<T>(&self, outcome: Outcome<T>) -> Result<T, ProblemCause> {
        self.record_effects(&outcome.effects);
        match outcome.result {
            Ok(v) => Ok(v),
            Err(p) => {
                self.record_problem(&p);
                Err(p.cause)
            }
        }
    }

    pub fn record_problem(&self, p: &Problem) {
        use e2m_msg::XmlMessage;
        let mut l = self.ledger.borrow_mut();
        l.problems.push(p.encode().to_string());
        l.problems.push(format!("{p:?}"));
    }

    pub fn record_effects(&self, e: &Effects) {
        let mut l = self.ledger.borrow_mut();
        for r in &e.audit {
            l.audit.push(r.to_string());
            l.audit_debug.push(format!("{r:?}"));
        }
    }

    /// The notifications due at `now` in the store's outbox, as the core builds them for
    /// the transport, settled as delivered (what a deliverer with a perfect network does);
    /// recorded in the ledger (their `Debug` and wire forms) for the leak search.
    pub fn sent(&self, now: Timestamp) -> Vec<e2m_emks::OutboundNotification> {
        use e2m_keystore::{Claim, InstanceId, NotificationOutbox};
        use e2m_msg::XmlMessage;
        let claim = Claim {
            instance: InstanceId::from_u64(1),
            now,
            lease: Duration::from_secs(60),
            max: 10_000,
            per_emse: 10_000,
            skip: &[],
        };
        let claimed = block_on(self.emks.keys().claim_due(&claim)).unwrap();
        let mut out = Vec::new();
        let mut l = self.ledger.borrow_mut();
        for pending in claimed {
            assert!(block_on(self.emks.keys().delivered(pending.id)).unwrap());
            if let Some(n) = self.emks.outbound(&pending) {
                l.notifications.push(format!("{n:?}"));
                l.notifications.push(n.notification.encode().to_string());
                out.push(n);
            }
        }
        out
    }

    /// The key the HSS pushes for (UE, key id, variant).
    pub fn int_key_bytes(ue: u32, id: u32, variant: u8) -> [u8; 32] {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = (ue as u8).wrapping_mul(31)
                ^ (id as u8).wrapping_mul(7)
                ^ (i as u8)
                ^ variant.wrapping_mul(101)
                ^ 0x5a;
        }
        k[0] = 0xe2;
        k[1] = variant;
        k
    }

    pub fn push(
        &self,
        ue: u32,
        id: u32,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<(), ProblemCause> {
        self.push_variant(ue, id, 0, created, now)
    }

    pub fn push_variant(
        &self,
        ue: u32,
        id: u32,
        variant: u8,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<(), ProblemCause> {
        let bytes = Self::int_key_bytes(ue, id, variant);
        self.ledger.borrow_mut().int_keys.push(bytes);
        let push = IntermediateKeyPush {
            imsi: imsi(ue),
            key_id: KeyIdSource::RandLsb32(KeyId::from_u32(id)),
            int_key: E2mIntKey::from_array(bytes),
            created,
        };
        let out = block_on(self.emks.push_intermediate_key(&self.hss, &push, now));
        self.record(out)
    }

    pub fn register(&self, peer: &Peer, now: Timestamp) -> Result<SessionId, ProblemCause> {
        let emse_id = match peer {
            Peer::Emse(emse) => emse.id().clone(),
            _ => emse_id(A),
        };
        let out = block_on(self.emks.register(
            peer,
            &Registration {
                emse_id,
                callback: None,
            },
            now,
        ));
        let r = self.record(out)?;
        self.ledger
            .borrow_mut()
            .session_ids
            .push(r.session_id.copy_secret());
        Ok(r.session_id)
    }

    pub fn fetch(
        &self,
        peer: &Peer,
        session: &SessionId,
        ue: UeRef,
        id: u32,
        now: Timestamp,
    ) -> Result<KeyResponse, ProblemCause> {
        let out = block_on(self.emks.fetch_key(
            peer,
            &KeyRequest {
                session_id: session.copy_secret(),
                ue,
                key_id: KeyId::from_u32(id),
            },
            now,
        ));
        let r = self.record(out)?;
        self.ledger.borrow_mut().keys.push(*r.key.expose_secret());
        Ok(r)
    }

    /// The `e2m_key` the UE's ME would derive for `emse`.
    pub fn expected_key(&self, ue: u32, id: u32, variant: u8, emse: &str) -> E2mKey {
        let int_key = E2mIntKey::from_array(Self::int_key_bytes(ue, id, variant));
        e2m_keyid::e2m_key(&int_key, &EmseId::new(emse).unwrap(), &self.profile).unwrap()
    }
}

/// Standard base64 (RFC 4648 §4) with padding, and the URL-safe alphabet (§5) without.
fn base64(bytes: &[u8], url: bool) -> String {
    let alphabet: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[(n >> (18 - 6 * i) & 63) as usize]));
        }
        if !url {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// The 16 octets behind a wire session id (22 characters, 6 bits each, big-endian).
fn session_bytes(id: &SessionId) -> [u8; 16] {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut v: u128 = 0;
    for c in id.to_text().bytes() {
        let d = alphabet.iter().position(|a| *a == c).unwrap() as u128;
        v = v << 6 | d;
    }
    v.to_be_bytes()
}

/// Every spelling of `secret` that could appear in a log or a response.
fn spellings(secret: &[u8]) -> Vec<Vec<u8>> {
    let hex = base16ct::lower::encode_string(secret);
    let mut forms = vec![
        secret.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        // A prefix is a leak too: the first 8 octets in hex.
        hex.as_bytes()[..16].to_vec(),
        base64(secret, false).into_bytes(),
        base64(secret, false)
            .trim_end_matches('=')
            .as_bytes()
            .to_vec(),
        base64(secret, true).into_bytes(),
        format!("{secret:?}").into_bytes(),
    ];
    forms.dedup();
    forms
}

impl World {
    /// Searches every audit record, problem and notification the run produced for every
    /// key and session id it created, in every spelling; returns the hits.
    pub fn leaks(&self) -> Vec<String> {
        let l = self.ledger.borrow();
        let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
        for k in &l.int_keys {
            secrets.push(("intermediate key".into(), k.to_vec()));
        }
        for k in &l.keys {
            secrets.push(("e2m_key".into(), k.to_vec()));
        }
        for s in &l.session_ids {
            secrets.push(("session id".into(), session_bytes(s).to_vec()));
            secrets.push(("session id text".into(), s.to_text().as_bytes().to_vec()));
        }
        let texts = l
            .audit
            .iter()
            .chain(&l.audit_debug)
            .chain(&l.problems)
            .chain(&l.notifications);
        let forms: Vec<(&String, Vec<Vec<u8>>)> = secrets
            .iter()
            .map(|(what, s)| (what, spellings(s)))
            .collect();
        let mut hits = Vec::new();
        for text in texts {
            for (what, spelled) in &forms {
                for form in spelled {
                    // Text forms through std's substring search (fast even in a debug
                    // build); raw octets, which are rarely UTF-8, window by window.
                    let found = match std::str::from_utf8(form) {
                        Ok(f) => text.contains(f),
                        Err(_) => text
                            .as_bytes()
                            .windows(form.len())
                            .any(|w| w == form.as_slice()),
                    };
                    if found {
                        hits.push(format!("{what} in: {text}"));
                    }
                }
            }
        }
        hits
    }

    /// How much the run captured: (secrets, texts searched).
    pub fn captured(&self) -> (usize, usize) {
        let l = self.ledger.borrow();
        (
            l.int_keys.len() + l.keys.len() + l.session_ids.len(),
            l.audit.len() + l.audit_debug.len() + l.problems.len() + l.notifications.len(),
        )
    }
}

impl Drop for World {
    /// Every test's world is searched for leaks when it ends, so the whole suite is.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let hits = self.leaks();
            assert!(hits.is_empty(), "secrets leaked: {hits:#?}");
        }
    }
}

pub fn app_ue(n: u32, emse: &str) -> UeRef {
    let suffix = if emse == A { "a" } else { "b" };
    UeRef::AppIdentity(app(&format!("ue-{n}@{suffix}")))
}
