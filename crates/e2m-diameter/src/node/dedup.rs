//! Duplicate detection for received requests (RFC 6733 §3 End-to-End Identifier, §5.5.4,
//! Appendix C): a bounded cache keyed by (Origin-Host, End-to-End id).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::IncomingId;

/// What the cache knows of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// Delivered to the application, not answered yet.
    Pending(IncomingId),
    /// Answered with these octets (Hop-by-Hop id to be replaced on a resend), wiped when
    /// evicted.
    Answered(Zeroizing<Vec<u8>>),
}

/// A key: Origin-Host in lower case (DiameterIdentities compare case-insensitively) and the
/// End-to-End id.
pub(super) type Key = (Box<str>, u32);

pub(super) struct DedupCache {
    map: HashMap<Key, (Instant, Seen)>,
    order: VecDeque<(Instant, Key)>,
    bytes: usize,
    capacity: usize,
    max_bytes: usize,
    lifetime: Duration,
}

impl DedupCache {
    pub(super) fn new(capacity: usize, max_bytes: usize, lifetime: Duration) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            capacity,
            max_bytes,
            lifetime,
        }
    }

    pub(super) fn key(origin_host: &str, end_to_end: u32) -> Key {
        (
            origin_host.to_ascii_lowercase().into_boxed_str(),
            end_to_end,
        )
    }

    pub(super) fn get(&self, key: &Key) -> Option<&Seen> {
        self.map.get(key).map(|(_, seen)| seen)
    }

    pub(super) fn insert_pending(&mut self, key: Key, id: IncomingId, now: Instant) {
        self.expire(now);
        if self.capacity == 0 {
            return;
        }
        self.order.push_back((now, key.clone()));
        self.map.insert(key, (now, Seen::Pending(id)));
        self.evict();
    }

    /// Records the answer; an entry evicted meanwhile is not recreated.
    pub(super) fn answered(&mut self, key: &Key, answer: &[u8]) {
        if let Some((_, seen)) = self.map.get_mut(key) {
            if let Seen::Answered(old) = seen {
                self.bytes -= old.len();
            }
            self.bytes += answer.len();
            *seen = Seen::Answered(Zeroizing::new(answer.to_vec()));
            self.evict();
        }
    }

    /// Forgets a request: a duplicate of it is delivered again, as a new one.
    pub(super) fn forget(&mut self, key: &Key) {
        if let Some((_, Seen::Answered(old))) = self.map.remove(key) {
            self.bytes -= old.len();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.lifetime {
                break;
            }
            self.pop_oldest();
        }
    }

    fn evict(&mut self) {
        while self.map.len() > self.capacity || self.bytes > self.max_bytes {
            if !self.pop_oldest() {
                break;
            }
        }
    }

    fn pop_oldest(&mut self) -> bool {
        let Some((at, key)) = self.order.pop_front() else {
            return false;
        };
        // A key forgotten and inserted again later has a newer entry: keep it.
        if self.map.get(&key).is_some_and(|(t, _)| *t == at)
            && let Some((_, Seen::Answered(old))) = self.map.remove(&key)
        {
            self.bytes -= old.len();
        }
        true
    }
}
