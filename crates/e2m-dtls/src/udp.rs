//! A UDP socket the runtime watches for reading only, for the DTLS server and client.
//!
//! Why not `tokio::net::UdpSocket`: it registers its socket for reading *and* writing, with
//! edge-triggered epoll, and a UDP socket becomes writable again after every datagram it
//! sends (the kernel frees the sent buffer at once on loopback, and soon on any link). So
//! each flight a DTLS endpoint sends made the runtime's next `epoll_wait` return at once
//! with nothing to do but note "writable", and park again with a second call: one system
//! call and one pass of the scheduler per datagram sent, on both sides of a handshake
//! (issue 20, measured with `strace -f`). Registered for reading only, the runtime wakes
//! for datagrams alone.
//!
//! Not watched for writing, a socket whose send buffer is full (about 200 KiB by default
//! on Linux: a burst far beyond one endpoint's flights) cannot be waited on: [`Udp::send`]
//! and [`Udp::send_to`] fail at once with `WouldBlock` (the server's stateless answers
//! take that as a drop, as UDP may), and [`Udp::send_waiting`] and
//! [`Udp::send_to_waiting`] try again every [`SEND_RETRY`] for up to [`SEND_WAIT`], then
//! drop the datagram (DTLS retransmits its flights, and an application on it, such as
//! CoAP, its messages).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

#[cfg(unix)]
use tokio::io::{Interest, unix::AsyncFd};

/// How often a send that found the send buffer full is tried again.
pub(crate) const SEND_RETRY: Duration = Duration::from_millis(1);

/// How long a send waits for room in a full send buffer before the datagram is dropped.
pub(crate) const SEND_WAIT: Duration = Duration::from_millis(100);

/// A non-blocking UDP socket, watched for reading only (see the module docs).
pub(crate) struct Udp {
    #[cfg(unix)]
    fd: AsyncFd<std::net::UdpSocket>,
    /// Elsewhere, the runtime's own socket (it cannot be registered for one direction).
    #[cfg(not(unix))]
    fd: tokio::net::UdpSocket,
}

impl Udp {
    /// Registers `socket` (made non-blocking here) with the current runtime.
    ///
    /// # Errors
    /// When the socket cannot be made non-blocking or registered.
    pub(crate) fn new(socket: std::net::UdpSocket) -> io::Result<Udp> {
        socket.set_nonblocking(true)?;
        #[cfg(unix)]
        #[allow(
            deprecated,
            reason = "tokio 1.54 deprecates the safe constructor because an arbitrary `AsRawFd` \
                      could change or close its descriptor while registered; a \
                      `std::net::UdpSocket` owned by the `AsyncFd` keeps one open descriptor for \
                      its whole life, the contract of the `unsafe` replacement, which the \
                      workspace's `unsafe_code = \"forbid\"` rules out"
        )]
        let fd = AsyncFd::with_interest(socket, Interest::READABLE)?;
        #[cfg(not(unix))]
        let fd = tokio::net::UdpSocket::from_std(socket)?;
        Ok(Udp { fd })
    }

    /// A socket bound to `addr`.
    ///
    /// # Errors
    /// As [`std::net::UdpSocket::bind`] and [`Udp::new`].
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Udp> {
        Udp::new(std::net::UdpSocket::bind(addr)?)
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        #[cfg(unix)]
        return self.fd.get_ref().local_addr();
        #[cfg(not(unix))]
        return self.fd.local_addr();
    }

    /// The next datagram and its source, waiting for one.
    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        #[cfg(unix)]
        loop {
            let mut ready = self.fd.readable().await?;
            // `WouldBlock` clears the readiness, and the loop waits for the next datagram.
            if let Ok(received) = ready.try_io(|fd| fd.get_ref().recv_from(buf)) {
                return received;
            }
        }
        #[cfg(not(unix))]
        self.fd.recv_from(buf).await
    }

    /// The next datagram from the connected peer, waiting for one.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        loop {
            let mut ready = self.fd.readable().await?;
            if let Ok(received) = ready.try_io(|fd| fd.get_ref().recv(buf)) {
                return received;
            }
        }
        #[cfg(not(unix))]
        self.fd.recv(buf).await
    }

    /// Sends `datagram` to `to` now; `WouldBlock` when the send buffer is full (the
    /// datagram is dropped, see the module docs).
    pub(crate) fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        #[cfg(unix)]
        return self.fd.get_ref().send_to(datagram, to);
        #[cfg(not(unix))]
        return self.fd.try_send_to(datagram, to);
    }

    /// Sends `datagram` to the connected peer now, as [`Udp::send_to`].
    pub(crate) fn send(&self, datagram: &[u8]) -> io::Result<usize> {
        #[cfg(unix)]
        return self.fd.get_ref().send(datagram);
        #[cfg(not(unix))]
        return self.fd.try_send(datagram);
    }

    /// [`Udp::send_to`], waiting out a full send buffer for up to [`SEND_WAIT`].
    pub(crate) async fn send_to_waiting(
        &self,
        datagram: &[u8],
        to: SocketAddr,
    ) -> io::Result<usize> {
        retrying(|| self.send_to(datagram, to)).await
    }

    /// [`Udp::send`], waiting out a full send buffer for up to [`SEND_WAIT`].
    pub(crate) async fn send_waiting(&self, datagram: &[u8]) -> io::Result<usize> {
        retrying(|| self.send(datagram)).await
    }
}

/// `send` until it does not find the send buffer full, or [`SEND_WAIT`] has passed.
async fn retrying(mut send: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    let mut waited = Duration::ZERO;
    loop {
        match send() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && waited < SEND_WAIT => {
                tokio::time::sleep(SEND_RETRY).await;
                waited += SEND_RETRY;
            }
            sent => return sent,
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::expect_used,
    reason = "a test fails by panicking, with a message"
)]
mod tests {
    use super::*;

    /// Datagrams come through in both directions, and a receive waits for the next one
    /// rather than failing once the socket has been drained.
    #[tokio::test]
    async fn datagrams_arrive_and_a_drained_socket_waits_for_the_next() {
        let a = Udp::bind("127.0.0.1:0".parse().expect("addr")).expect("bind a");
        let b_std = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        b_std.connect(a.local_addr().expect("a")).expect("connect");
        let b = Udp::new(b_std).expect("register b");
        let mut buf = [0u8; 64];
        for round in 0..3u8 {
            b.send(&[round; 5]).expect("send");
            let (n, from) = a.recv_from(&mut buf).await.expect("recv_from");
            assert_eq!(
                (&buf[..n], from),
                (&[round; 5][..], b.local_addr().expect("b"))
            );
            a.send_to(&[round + 10; 7], from).expect("send_to");
            let n = b.recv(&mut buf).await.expect("recv");
            assert_eq!(&buf[..n], &[round + 10; 7][..]);
        }
        // Nothing queued: the receive must wait, not return an error.
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), a.recv_from(&mut buf)).await;
        assert!(waited.is_err(), "{waited:?}");
    }
}
