//! Ending an established server-side TLS connection with `close_notify` and a short
//! lingering close (issue 16 item 8): [`ClosingStream`], under every connection of the
//! server stack ([`crate::server`]).

/// How long a closed connection still reads (and drops) what the client sends, at most.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// How much a closed connection reads (and drops) at most.
const LINGER_MAX: usize = 64 * 1024;

/// Closed connections lingering at once, at most (each holds a file descriptor, outside
/// the server's connection bounds); beyond, a connection is closed without lingering.
const MAX_LINGERING: usize = 1024;

/// Closed connections lingering now (in this process).
static LINGERING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An established server-side TLS connection that ends with `close_notify` (issue 16
/// item 8).
///
/// A connection that is simply dropped (an idle timer, an error, the end of the shutdown
/// grace) ends its TCP stream without `close_notify`, and the client sees "peer closed
/// connection without sending TLS close_notify", which it cannot tell from a truncation
/// (so it was when hyper served the connections: it shut down only the connections it
/// ended itself after an answer). The server's HTTP/1.1 ends every connection by dropping
/// it, so every end goes through here. Dropping this stream
/// queues `close_notify` (rustls sends it at most once), writes what it can without
/// waiting, then hands the socket to a short task that closes the sending side and reads
/// and drops what the client still sends for up to [`LINGER`] (or [`LINGER_MAX`] octets):
/// closing a socket with unread input resets the connection, and the client would then
/// lose the `close_notify` with the rest (RFC 9112 §9.6). At most [`MAX_LINGERING`]
/// connections linger at once.
pub(crate) struct ClosingStream {
    /// `None` only once dropped.
    stream: Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
}

impl ClosingStream {
    /// Wraps an established connection.
    pub(crate) fn new(stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Self {
        ClosingStream {
            stream: Some(stream),
        }
    }

    fn stream(
        self: std::pin::Pin<&mut Self>,
    ) -> std::io::Result<std::pin::Pin<&mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>
    {
        match self.get_mut().stream.as_mut() {
            Some(stream) => Ok(std::pin::Pin::new(stream)),
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

impl tokio::io::AsyncRead for ClosingStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.stream() {
            Ok(stream) => stream.poll_read(cx, buf),
            Err(error) => std::task::Poll::Ready(Err(error)),
        }
    }
}

impl tokio::io::AsyncWrite for ClosingStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.stream() {
            Ok(stream) => stream.poll_write(cx, buf),
            Err(error) => std::task::Poll::Ready(Err(error)),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.stream() {
            Ok(stream) => stream.poll_write_vectored(cx, bufs),
            Err(error) => std::task::Poll::Ready(Err(error)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(tokio::io::AsyncWrite::is_write_vectored)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.stream() {
            Ok(stream) => stream.poll_flush(cx),
            Err(error) => std::task::Poll::Ready(Err(error)),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.stream() {
            Ok(stream) => stream.poll_shutdown(cx),
            Err(error) => std::task::Poll::Ready(Err(error)),
        }
    }
}

impl Drop for ClosingStream {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let (tcp, mut tls) = stream.into_inner();
        // A no-op if it was sent already, or after a fatal alert.
        tls.send_close_notify();
        let mut socket = WriteNow(&tcp);
        while tls.wants_write() {
            match tls.write_tls(&mut socket) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        drop(tls);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(place) = Lingering::take() else {
            return;
        };
        runtime.spawn(async move {
            linger(tcp).await;
            drop(place);
        });
    }
}

/// A place among the [`MAX_LINGERING`] lingering connections, given back when dropped
/// (also when the runtime drops the lingering task unfinished).
struct Lingering;

impl Lingering {
    fn take() -> Option<Lingering> {
        use std::sync::atomic::Ordering;
        if LINGERING.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
            LINGERING.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Lingering)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        LINGERING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Writes to a socket without waiting (what does not fit in its buffer now is not sent).
struct WriteNow<'a>(&'a tokio::net::TcpStream);

impl std::io::Write for WriteNow<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Closes the sending side of a closed connection, then reads and drops the client's
/// remaining input until it closes too, for at most [`LINGER`] and [`LINGER_MAX`] octets.
async fn linger(mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_MAX {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
