//! A minimal executor: runs one future to completion on the calling thread.
//!
//! The store traits are async so that a networked backend does not block an async
//! runtime's workers, yet the in-memory stores answer at once (their futures complete at
//! their first poll). Synchronous callers — tests, benchmarks, the conformance suite's
//! stress threads, a command-line tool provisioning the identity map — need a way to wait
//! for such a future without depending on an async runtime; this is it, in a few lines of
//! `std` (`std::task::Wake`, no `unsafe`).
//!
//! It parks the thread while the future is pending and unparks it when the future's waker
//! is woken. That is enough for any future whose I/O is driven elsewhere (for example a
//! `tokio-postgres` client whose connection task runs on a runtime's worker threads), but
//! not for a future that needs a runtime's reactor on *this* thread: call such a backend
//! from its runtime (or from `tokio::task::spawn_blocking`).

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::sync::Arc;
use std::task::Wake;
use std::thread::{self, Thread};

/// Wakes the thread that is blocked on the future.
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    /// This thread's waker, made once: a fetch decision must not allocate a waker per call.
    static WAKER: Waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
}

/// Runs `future` to completion on the calling thread, parking it while the future is
/// pending, and returns its output.
///
/// ```
/// use e2m_keystore::{block_on, Imsi, IntKeyStore, KeyId, MemoryIntKeyStore, Timestamp};
///
/// let store = MemoryIntKeyStore::default();
/// let imsi = Imsi::new("001010123456789").unwrap();
/// let now = Timestamp::from_unix_secs(1_800_000_000);
/// let found = block_on(store.get(&imsi, KeyId::from_u32(1), now));
/// assert!(matches!(found, Ok(None)));
/// ```
///
/// A spurious unpark (another part of the program unparking this thread) only causes one
/// more poll, which a future must tolerate.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    // The first poll needs no waker: a ready future (every in-memory store's) completes
    // without touching this thread's waker. A future that is pending has registered the
    // no-op waker, so it is polled again at once with the real one (a future must wake the
    // waker of its latest poll; an extra poll is always allowed).
    if let Poll::Ready(output) = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return output;
    }
    WAKER.with(|waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            thread::park();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A future completed by another thread, as a networked backend's would be.
    #[derive(Default)]
    struct Shared {
        value: Option<u32>,
        waker: Option<Waker>,
    }

    struct FromThread(Arc<Mutex<Shared>>);

    impl Future for FromThread {
        type Output = u32;
        fn poll(self: core::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            let mut shared = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match shared.value {
                Some(v) => Poll::Ready(v),
                None => {
                    shared.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }

    #[test]
    fn waits_for_a_future_completed_elsewhere() {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let other = shared.clone();
        let worker = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            let mut s = other
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.value = Some(42);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        });
        assert_eq!(block_on(FromThread(shared)), 42);
        assert!(worker.join().is_ok());
    }

    #[test]
    fn ready_futures_complete_at_once() {
        assert_eq!(block_on(core::future::ready(7)), 7);
        assert_eq!(block_on(async { 1 + 1 }), 2);
    }
}
