//! The DTLS server's budget of key fetches per source IP address (issue 16 item 3).
//!
//! A source that completes the cookie exchange has shown that it receives at its address,
//! but it can still name one made-up identity per handshake, and each unknown identity
//! would cost an EMKS fetch. So each source address holds a token bucket
//! ([`FetchBudgetConfig`], the same terms as the OSCORE endpoint's): a fetch takes a token
//! before it starts, and a fetch that **found a key gives it back**. What a source spends is
//! therefore its fetches that found nothing (unknown identity, key id not held, key server
//! unreachable); legitimate UEs behind one address (a carrier-grade NAT) share only the
//! bound on fetches in flight at once (`burst`). Time is an argument (milliseconds from any
//! fixed origin); the server supplies it.
//!
//! A source is an IPv4 address, or an IPv6 /64 prefix: one host usually holds a whole /64
//! and can send from any of its 2^64 addresses, so a bucket per IPv6 address would bound
//! nothing. (An IPv4-mapped IPv6 address counts as its IPv4 address.)

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use e2m_oscore::e2m::{FetchBuckets, FetchBudgetConfig};

/// The source a budget is kept for (module docs): the IPv4 address, or the IPv6 /64.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// The buckets of every source seen, bounded by [`FetchBudgetConfig::max_sources`]: the
/// token-bucket arithmetic is `e2m-oscore`'s [`FetchBuckets`] (the OSCORE endpoint's), keyed
/// by [`source_of`].
#[derive(Debug)]
pub(crate) struct FetchBudget {
    buckets: FetchBuckets<IpAddr>,
}

impl FetchBudget {
    pub(crate) fn new(config: FetchBudgetConfig) -> FetchBudget {
        FetchBudget {
            buckets: FetchBuckets::new(config),
        }
    }

    /// Takes a token for a fetch from `source`. `Err` holds how long until the refill
    /// brings one (`None`: no refill will, as with `per_minute` 0, or while the table of
    /// sources is full); a token given back may come sooner.
    pub(crate) fn take(&mut self, source: IpAddr, now_ms: u64) -> Result<(), Option<Duration>> {
        self.buckets.take(&source_of(source), now_ms)
    }

    /// Gives back the token of a fetch that found a key.
    pub(crate) fn give_back(&mut self, source: IpAddr, now_ms: u64) {
        self.buckets.give_back(&source_of(source), now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn budget(burst: u32, per_minute: u32, max_sources: usize) -> FetchBudget {
        FetchBudget::new(FetchBudgetConfig {
            burst,
            per_minute,
            max_sources,
        })
    }

    #[test]
    fn a_source_gets_its_burst_then_one_token_per_refill_period() {
        let mut b = budget(3, 30, 16);
        for n in 0..3 {
            assert_eq!(b.take(ip(2), 0), Ok(()), "token {n} of the burst");
        }
        // 30 per minute: one token every 2 s.
        assert_eq!(b.take(ip(2), 0), Err(Some(Duration::from_secs(2))));
        assert_eq!(b.take(ip(2), 1_000), Err(Some(Duration::from_secs(1))));
        assert_eq!(b.take(ip(2), 2_000), Ok(()));
        assert!(b.take(ip(2), 2_000).is_err());
        // Another source is not affected.
        assert_eq!(b.take(ip(3), 2_000), Ok(()));
    }

    #[test]
    fn a_fetch_that_found_a_key_costs_nothing() {
        let mut b = budget(2, 0, 16);
        for _ in 0..100 {
            assert_eq!(b.take(ip(2), 5), Ok(()));
            b.give_back(ip(2), 5);
        }
        // Two in flight at once at most.
        assert_eq!(b.take(ip(2), 5), Ok(()));
        assert_eq!(b.take(ip(2), 5), Ok(()));
        assert_eq!(b.take(ip(2), 5), Err(None), "no refill at 0 per minute");
        // Giving back never fills past the burst.
        for _ in 0..5 {
            b.give_back(ip(2), 5);
        }
        assert_eq!(b.take(ip(2), 5), Ok(()));
        assert_eq!(b.take(ip(2), 5), Ok(()));
        assert!(b.take(ip(2), 5).is_err());
    }

    #[test]
    fn an_ipv6_host_is_one_source_per_64() {
        let mut b = budget(1, 0, 16);
        let host = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        assert_eq!(b.take(host(1), 0), Ok(()));
        assert_eq!(
            b.take(host(2), 0),
            Err(None),
            "another address of the same /64"
        );
        let other = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
        assert_eq!(b.take(other, 0), Ok(()), "another /64");
        // An IPv4-mapped address is its IPv4 address.
        assert_eq!(b.take(ip(9), 0), Ok(()));
        let mapped = IpAddr::from([0, 0, 0, 0, 0, 0xffff, 0x7f00, 9]);
        assert_eq!(b.take(mapped, 0), Err(None));
        b.give_back(mapped, 0);
        assert_eq!(b.take(ip(9), 0), Ok(()));
    }

    #[test]
    fn the_table_of_sources_is_bounded() {
        let mut b = budget(1, 60, 2);
        assert_eq!(b.take(ip(1), 0), Ok(()));
        assert_eq!(b.take(ip(2), 0), Ok(()));
        // Both buckets are spent: a third source waits.
        assert_eq!(b.take(ip(3), 0), Err(None));
        // Once they have refilled (1 s at 60 per minute) they are forgotten to make room.
        assert_eq!(b.take(ip(3), 1_000), Ok(()));
        assert_eq!(b.buckets.sources(), 1);
    }
}
