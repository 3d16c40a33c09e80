//! A small world for the AAnF tests: an AAnF over the in-memory store, an AUSF, AFs of each
//! kind, a NEF, and a ledger of every secret the run made and everything it wrote that a
//! peer or a log could see, searched for the secrets when the world is dropped.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a helper module of test binaries: each uses a different part; a test fails by panicking"
)]

use std::cell::RefCell;
use std::time::Duration;

use e2m_aanf::e2m_akma::{
    AkmaAfKeyData, AkmaAfKeyRequest, AkmaKeyInfo, CtxRemove, JsonBody, NefAkmaAfKeyData, NotifUri,
};
use e2m_aanf::e2m_kdf::Kakma;
use e2m_aanf::e2m_keyid::akma::{AKid, AfId, Fqdn, Gpsi, Supi, UeId};
pub use e2m_aanf::e2m_keystore::block_on;
use e2m_aanf::e2m_keystore::{AkmaOutbox, AkmaPolicy, Claim, InstanceId};
use e2m_aanf::{
    Aanf, AanfConfig, AfPolicy, Caller, Effects, Host, OutboundNotification, Outcome, Peer,
    Problem, Scopes, Timestamp,
};

pub const T0: u64 = 1_800_000_000;
/// K_AKMA's lifetime in the world.
pub const MAX_AGE: u64 = 7200;
/// K_AF's lifetime in the world.
pub const KAF_LIFETIME: u64 = 600;

pub fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(T0 + s)
}

pub fn fqdn(name: &str) -> Fqdn {
    Fqdn::parse(name).unwrap()
}

pub fn host(name: &str) -> Host {
    name.parse().unwrap()
}

/// AF inside the domain allowed the SUPI and the GPSI.
pub const A: &str = "af-a.example.com";
/// AF inside the domain allowed neither.
pub const B: &str = "af-b.example.com";
/// AF outside the domain (through the NEF), allowed the GPSI.
pub const X: &str = "af-x.example.org";
/// A configured NEF.
pub const NEF: &str = "nef.operator.example";
/// A configured AUSF.
pub const AUSF: &str = "ausf.operator.example";

pub fn af_id(name: &str) -> AfId {
    AfId::parse(&format!("{name};ua=010001c0a8")).unwrap()
}

pub fn supi(n: u32) -> UeId {
    UeId::Supi(Supi::parse(&format!("imsi-00101{n:010}")).unwrap())
}

pub fn gpsi(n: u32) -> UeId {
    UeId::Gpsi(Gpsi::parse(&format!("msisdn-3361{n:07}")).unwrap())
}

pub fn a_kid(n: u32) -> AKid {
    AKid::parse(&format!(
        "rid0.atid{n:064x}@5gc.mnc001.mcc001.3gppnetwork.org"
    ))
    .unwrap()
}

/// Distinct key octets per `n` (never all one value, so hex prefixes are distinctive).
pub fn key_bytes(n: u32) -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (n as u8)
            .wrapping_mul(31)
            .wrapping_add(i as u8)
            .wrapping_mul(97)
            ^ 0x5a;
    }
    k
}

pub fn config() -> AanfConfig {
    AanfConfig::new(Duration::from_secs(KAF_LIFETIME))
        .unwrap()
        .allow_ausf(host(AUSF))
        .allow_nef(host(NEF))
        .allow_af(fqdn(A), AfPolicy::INSIDE.with_supi().with_gpsi())
        .allow_af(fqdn(B), AfPolicy::INSIDE)
        .allow_af(fqdn(X), AfPolicy::VIA_NEF.with_gpsi())
}

/// Everything secret the run made, and everything it wrote that a peer or a log could see.
#[derive(Default)]
pub struct Ledger {
    pub secrets: Vec<[u8; 32]>,
    pub texts: Vec<String>,
}

pub struct World {
    pub aanf: Aanf,
    pub ausf: Caller,
    pub a: Caller,
    pub b: Caller,
    pub x: Caller,
    pub nef: Caller,
    pub ledger: RefCell<Ledger>,
}

impl World {
    pub fn new() -> World {
        World::with(config())
    }

    pub fn with(config: AanfConfig) -> World {
        let policy = AkmaPolicy::new(Duration::from_secs(MAX_AGE), 8).unwrap();
        World {
            aanf: Aanf::in_memory(config, policy),
            ausf: Caller::mutual_tls(Peer::new([host(AUSF)])),
            a: Caller::mutual_tls(Peer::new([host(A)])),
            b: Caller::mutual_tls(Peer::new([host(B)])),
            x: Caller::mutual_tls(Peer::new([host(X)])),
            nef: Caller::mutual_tls(Peer::new([host(NEF)])),
            ledger: RefCell::default(),
        }
    }

    /// Records what a peer or a log could see of an outcome: the audit line (both forms),
    /// the problem (both forms), and the answer's `Debug`.
    pub fn record<T: core::fmt::Debug>(&self, outcome: Outcome<T>) -> Result<T, Problem> {
        self.record_effects(&outcome.effects);
        let mut l = self.ledger.borrow_mut();
        match &outcome.result {
            Ok(v) => l.texts.push(format!("{v:?}")),
            Err(p) => {
                l.texts.push(format!("{p:?}"));
                l.texts
                    .push(String::from_utf8(p.details().to_json()).unwrap());
            }
        }
        outcome.result
    }

    pub fn record_effects(&self, effects: &Effects) {
        let mut l = self.ledger.borrow_mut();
        l.texts.push(effects.audit.to_string());
        l.texts.push(format!("{effects:?}"));
    }

    pub fn register(&self, ue: UeId, n: u32, now: Timestamp) -> Result<AkmaKeyInfo, Problem> {
        self.register_as(&self.ausf.clone(), ue, n, now)
    }

    pub fn register_as(
        &self,
        caller: &Caller,
        ue: UeId,
        n: u32,
        now: Timestamp,
    ) -> Result<AkmaKeyInfo, Problem> {
        self.ledger.borrow_mut().secrets.push(key_bytes(n));
        let info = AkmaKeyInfo {
            ue,
            a_kid: a_kid(n),
            k_akma: Kakma::from_array(key_bytes(n)),
            supp_feat: None,
        };
        self.record(block_on(self.aanf.register_anchor_key(caller, &info, now)))
    }

    pub fn request(af: &str, n: u32) -> AkmaAfKeyRequest {
        AkmaAfKeyRequest {
            af_id: af_id(af),
            a_kid: a_kid(n),
            notif_uri: None,
            anon_ind: false,
            supp_feat: None,
        }
    }

    pub fn with_notify(mut request: AkmaAfKeyRequest, uri: &str) -> AkmaAfKeyRequest {
        request.notif_uri = Some(NotifUri::parse(uri).unwrap());
        request
    }

    /// A retrieval; the K_AF of a granted one goes on the secrets list.
    pub fn retrieve(
        &self,
        caller: &Caller,
        request: &AkmaAfKeyRequest,
        now: Timestamp,
    ) -> Result<Option<AkmaAfKeyData>, Problem> {
        let out = self.record(block_on(
            self.aanf.retrieve_application_key(caller, request, now),
        ));
        if let Ok(Some(data)) = &out {
            self.ledger
                .borrow_mut()
                .secrets
                .push(*data.kaf.expose_secret());
        }
        out
    }

    pub fn nef_retrieve(
        &self,
        caller: &Caller,
        request: &AkmaAfKeyRequest,
        now: Timestamp,
    ) -> Result<Option<NefAkmaAfKeyData>, Problem> {
        let out = self.record(block_on(self.aanf.nef_retrieve(caller, request, now)));
        if let Ok(Some(data)) = &out {
            self.ledger
                .borrow_mut()
                .secrets
                .push(*data.kaf.expose_secret());
        }
        out
    }

    pub fn remove(&self, caller: &Caller, supi_n: u32, now: Timestamp) -> Outcome<()> {
        let UeId::Supi(supi) = supi(supi_n) else {
            unreachable!()
        };
        block_on(self.aanf.remove_context(caller, &CtxRemove { supi }, now))
    }

    /// The notifications due at `now`, as the core builds them for the binding, settled as
    /// delivered (a deliverer with a perfect network); their JSON and `Debug` go in the
    /// ledger.
    pub fn sent(&self, now: Timestamp) -> Vec<OutboundNotification> {
        let claim = Claim {
            instance: InstanceId::from_u64(1),
            now,
            lease: Duration::from_secs(60),
            max: 1000,
            per_emse: 1000,
            skip: &[],
        };
        let store = self.aanf.contexts();
        let mut out = Vec::new();
        for pending in block_on(store.claim_due(&claim)).unwrap() {
            if let Some(n) = self.aanf.outbound(&pending) {
                let mut l = self.ledger.borrow_mut();
                l.texts.push(format!("{n:?}"));
                l.texts
                    .push(String::from_utf8(n.body.to_json().to_vec()).unwrap());
                out.push(n);
            }
            assert!(block_on(store.delivered(pending.id)).unwrap());
        }
        out
    }

    /// Every place a secret of the run shows in the texts: full hex (either case) or its
    /// first 16 digits.
    pub fn leaks(&self) -> Vec<String> {
        let l = self.ledger.borrow();
        let mut hits = Vec::new();
        for secret in &l.secrets {
            let lower = base16ct::lower::encode_string(secret);
            let upper = base16ct::upper::encode_string(secret);
            for text in &l.texts {
                for needle in [
                    &lower,
                    &upper,
                    &lower[..16].to_owned(),
                    &upper[..16].to_owned(),
                ] {
                    if text.contains(needle.as_str()) {
                        hits.push(format!("{needle} in {text}"));
                    }
                }
                let bytes: &[u8] = secret;
                if text.as_bytes().windows(32).any(|w| w == bytes) {
                    hits.push(format!("raw key octets in {text:?}"));
                }
            }
        }
        hits
    }

    /// (secrets, texts) the search had.
    pub fn captured(&self) -> (usize, usize) {
        let l = self.ledger.borrow();
        (l.secrets.len(), l.texts.len())
    }
}

impl Drop for World {
    /// Every test is a leak test too.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let hits = self.leaks();
        assert!(hits.is_empty(), "secrets in output: {hits:#?}");
    }
}

/// Scopes of a token from a claim.
pub fn scopes(claim: &str) -> Scopes {
    Scopes::parse(claim)
}
