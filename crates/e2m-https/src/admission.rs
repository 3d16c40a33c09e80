//! Bounded pools of connections that have not finished their TLS handshake, with fairness
//! between sources (issue 16 item 2).
//!
//! Public so that other server stacks over this crate's TLS (the SBI's HTTP/2 server of
//! `e2m-sbi`) admit connections by the same rules.
//!
//! The server keeps two ([`super::server`]): connections waiting for their ClientHello
//! (cheap: a socket and a task; a large pool) and handshakes in progress (the server's
//! key exchange and signature; a small pool). Each pool bounds its connections in all and
//! per source. When a pool is full, a connection from a source holding fewer connections
//! than the source holding the most takes the place of that source's oldest one (which is
//! told to close, [`Ticket::evicted`]): a flood from some addresses then slows only
//! itself, and a source holding nothing gets in as long as any source holds two or more
//! (a flood from as many addresses as the pool has places, one connection each, is the
//! limit of what counting by source can tell apart). A newcomer from a source that holds
//! as many as any other, less one, is refused (closed at once), so the flood pays for its
//! own churn.
//!
//! A *source* is an IPv4 address, or an IPv6 /64 prefix (the smallest block one host is
//! usually given: counting single IPv6 addresses would let one host appear as 2^64
//! sources). IPv4-mapped IPv6 addresses count as their IPv4 address.
//!
//! The state is one mutex per pool, held for a hash-map look-up and a few ordered-set
//! updates per admission and release (logarithmic in the number of sources and in the
//! connections of one source).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// The unit of fairness: an IPv4 address or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// An IPv4 address (IPv4-mapped IPv6 addresses included).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl Source {
    /// The source `ip` counts as.
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let octets = v6.octets();
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&octets[..8]);
                Source::V6(prefix)
            }
        }
    }
}

/// Why a pool did not admit a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its source already holds [`Pool::new`]'s `max_per_source`.
    SourceFull,
    /// The pool is full and no source holds at least two more than this one.
    Full,
}

/// A bounded pool with fairness between sources (see the module docs).
#[derive(Debug)]
pub struct Pool {
    max_total: usize,
    max_per_source: usize,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    total: usize,
    next_id: u64,
    /// Each source's connections, oldest first, with the way to tell each to close.
    sources: HashMap<Source, BTreeMap<u64, oneshot::Sender<()>>>,
    /// `(connections held, source)` of every source holding any: the last is the heaviest.
    load: BTreeSet<(usize, Source)>,
}

impl PoolState {
    fn held(&self, source: Source) -> usize {
        self.sources.get(&source).map_or(0, BTreeMap::len)
    }

    /// Records that `source` went from `before` connections to `after`.
    fn reload(&mut self, source: Source, before: usize, after: usize) {
        if before > 0 {
            self.load.remove(&(before, source));
        }
        if after > 0 {
            self.load.insert((after, source));
        }
    }

    /// Removes connection `id` of `source`; returns its close signal if it was still held.
    fn remove(&mut self, source: Source, id: u64) -> Option<oneshot::Sender<()>> {
        let held = self.sources.get_mut(&source)?;
        let before = held.len();
        let signal = held.remove(&id)?;
        let after = held.len();
        if after == 0 {
            self.sources.remove(&source);
        }
        self.reload(source, before, after);
        self.total -= 1;
        Some(signal)
    }

    /// Tells the oldest connection of the heaviest source to close, if that source holds at
    /// least `at_least`; returns whether one was told.
    fn evict_heaviest(&mut self, at_least: usize) -> bool {
        let Some(&(held, source)) = self.load.last() else {
            return false;
        };
        if held < at_least.max(1) {
            return false;
        }
        let oldest = self
            .sources
            .get(&source)
            .and_then(|held| held.first_key_value())
            .map(|(&id, _)| id);
        match oldest.and_then(|id| self.remove(source, id)) {
            Some(signal) => {
                // The receiver may be gone already (its task is ending): nothing to tell.
                let _ = signal.send(());
                true
            }
            None => false,
        }
    }
}

impl Pool {
    /// A pool of at most `max_total` connections, at most `max_per_source` from one source
    /// (each at least 1).
    pub fn new(max_total: usize, max_per_source: usize) -> Self {
        Pool {
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
            state: Mutex::new(PoolState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one connection from `source`, taking the oldest place of the heaviest
    /// source when the pool is full and that source holds at least two more than
    /// `source`; or why not.
    pub fn admit(self: &Arc<Self>, source: Source) -> Result<Ticket, Refusal> {
        let mut state = self.lock();
        let held = state.held(source);
        if held >= self.max_per_source {
            return Err(Refusal::SourceFull);
        }
        // After the swap the victim's source still holds at least as many as this one.
        if state.total >= self.max_total && !state.evict_heaviest(held + 2) {
            return Err(Refusal::Full);
        }
        let id = state.next_id;
        state.next_id += 1;
        let (signal, evicted) = oneshot::channel();
        state.sources.entry(source).or_default().insert(id, signal);
        state.reload(source, held, held + 1);
        state.total += 1;
        Ok(Ticket {
            pool: Arc::clone(self),
            source,
            id,
            evicted,
        })
    }

    /// Tells the oldest connection of the heaviest source to close (e.g. to free a file
    /// descriptor when the process has none left); returns whether there was one.
    pub fn evict_one(&self) -> bool {
        self.lock().evict_heaviest(1)
    }

    /// Connections held.
    #[cfg(test)]
    fn total(&self) -> usize {
        self.lock().total
    }
}

/// One connection's place in a [`Pool`], given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    pool: Arc<Pool>,
    source: Source,
    id: u64,
    evicted: oneshot::Receiver<()>,
}

impl Ticket {
    /// Completes when the pool took this place back for a connection from a lighter
    /// source (the connection must then close); pending for as long as it holds it.
    pub async fn evicted(&mut self) {
        // A closed channel without a send cannot happen while the ticket lives (the sender
        // is removed from the pool only by an eviction, which sends, or by this ticket's
        // drop); treat it as an eviction anyway.
        let _ = (&mut self.evicted).await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = self.pool.lock().remove(self.source, self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;

    fn v4(last: u8) -> Source {
        Source::of(IpAddr::from([10, 0, 0, last]))
    }

    fn is_evicted(ticket: &mut Ticket) -> bool {
        ticket.evicted.try_recv().is_ok()
    }

    #[test]
    fn sources_are_addresses_and_ipv6_prefixes() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Source::of(mapped), Source::of(IpAddr::from([192, 0, 2, 7])));
        assert_ne!(v4(1), v4(2));
    }

    #[test]
    fn per_source_and_total_bounds() {
        let pool = Arc::new(Pool::new(4, 2));
        let a1 = pool.admit(v4(1)).unwrap();
        let _a2 = pool.admit(v4(1)).unwrap();
        assert_eq!(pool.admit(v4(1)).unwrap_err(), Refusal::SourceFull);
        let _b1 = pool.admit(v4(2)).unwrap();
        let _b2 = pool.admit(v4(2)).unwrap();
        // Full, and every source holds as many as the newcomer's would after it: refused.
        assert_eq!(pool.admit(v4(2)).unwrap_err(), Refusal::SourceFull);
        drop(a1);
        assert_eq!(pool.total(), 3);
        let _a3 = pool.admit(v4(1)).unwrap();
        assert_eq!(pool.total(), 4);
    }

    #[test]
    fn a_lighter_source_takes_the_oldest_place_of_the_heaviest() {
        let pool = Arc::new(Pool::new(5, 10));
        let mut heavy: Vec<Ticket> = (0..4).map(|_| pool.admit(v4(1)).unwrap()).collect();
        let mut light = pool.admit(v4(2)).unwrap();
        // Full (5). Source 1 holds 4, a new source 0: the oldest of source 1 goes.
        let newcomer = pool.admit(v4(3)).unwrap();
        assert!(is_evicted(&mut heavy[0]));
        assert!(heavy[1..].iter_mut().all(|t| !is_evicted(t)));
        assert_eq!(pool.total(), 5);
        // Dropping an evicted ticket gives nothing back twice.
        drop(heavy.remove(0));
        assert_eq!(pool.total(), 5);
        // Source 1 holds 3, source 2 holds 1: another from source 2 (1 + 2 ≤ 3) evicts.
        let _second = pool.admit(v4(2)).unwrap();
        assert!(is_evicted(&mut heavy[0]));
        drop(heavy.remove(0));
        // Now 2, 2, 1: a third from source 2 (2 + 2 > 2) is refused, and so is one
        // from source 1.
        assert_eq!(pool.admit(v4(2)).unwrap_err(), Refusal::Full);
        assert_eq!(pool.admit(v4(1)).unwrap_err(), Refusal::Full);
        assert!(!is_evicted(&mut light));
        drop(newcomer);
        assert_eq!(pool.total(), 4);
    }

    #[test]
    fn a_flood_from_many_sources_leaves_room_for_a_new_one() {
        // 60 sources fill the pool and keep trying; a 61st always gets in, and is never
        // the one evicted while the others hold more.
        let pool = Arc::new(Pool::new(600, 64));
        let mut flood = Vec::new();
        for round in 0..20 {
            for source in 0..60 {
                if let Ok(ticket) = pool.admit(v4(source)) {
                    flood.push(ticket);
                }
            }
            assert!(pool.total() <= 600, "round {round}");
        }
        let mut legitimate = pool.admit(v4(200)).unwrap();
        for source in 0..60 {
            let _ = pool.admit(v4(source)).map(|t| flood.push(t));
        }
        assert!(!is_evicted(&mut legitimate));
        assert!(pool.total() <= 600);
    }

    #[test]
    fn evict_one_frees_a_place_of_the_heaviest() {
        let pool = Arc::new(Pool::new(10, 10));
        let mut a = pool.admit(v4(1)).unwrap();
        let mut b1 = pool.admit(v4(2)).unwrap();
        let _b2 = pool.admit(v4(2)).unwrap();
        assert!(pool.evict_one());
        assert!(is_evicted(&mut b1));
        assert!(!is_evicted(&mut a));
        assert_eq!(pool.total(), 2);
        let empty = Arc::new(Pool::new(1, 1));
        assert!(!empty.evict_one());
    }
}
