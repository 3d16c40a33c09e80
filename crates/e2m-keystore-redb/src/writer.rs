//! Group commit: one writer thread owns every write transaction. It takes whatever
//! operations are queued (up to [`MAX_BATCH`]), applies them in arrival order in one write
//! transaction, commits once (durably: redb's `Durability::Immediate`, the default, returns
//! from `commit` only after the data is on disk), and only then answers each caller. While
//! it commits, new operations queue up and form the next batch, so N concurrent pushers
//! share one disk flush instead of waiting for N.
//!
//! Every operation checks before it writes: a refusal (a limit, a conflicting import row)
//! returns before anything of that operation is written, so the other operations of the
//! batch are unaffected. A redb failure abandons the whole batch (nothing of it is
//! committed) and every caller in it gets the error.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;

use e2m_keystore::StoreError;
use redb::WriteTransaction;
use tokio::sync::oneshot;

use crate::RedbStoreError;
use crate::error::{DbResult, redb_err};
use crate::handle::{Handle, Retry};

/// The most operations committed in one transaction: bounds the time a caller at the
/// back of a batch waits for the ones before it.
pub(crate) const MAX_BATCH: usize = 1024;

/// What a batch's commit came to, for each operation's completion.
type Outcome<'a> = Option<&'a Arc<RedbStoreError>>;

/// An operation's answer, to send once the batch's outcome is known.
type Completion = Box<dyn FnOnce(Outcome<'_>) + Send>;

/// What an operation did in the transaction.
struct Step {
    /// A redb failure: the batch must be abandoned.
    failed: Option<RedbStoreError>,
    complete: Completion,
}

/// One queued operation. Called with the batch's transaction, or with `None` if an earlier
/// operation of the batch already failed (then it must not run, only answer).
type Job = Box<dyn FnOnce(Option<&WriteTransaction>) -> Step + Send>;

/// The handle of the writer thread: queue operations, and stop the thread on drop.
pub(crate) struct Writer {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread over `db`.
    pub(crate) fn start(db: Arc<Handle>, quick_repair: bool) -> DbResult<Writer> {
        let (jobs, queue) = channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("e2m-redb-writer".into())
            .spawn(move || run(&db, &queue, quick_repair))
            .map_err(RedbStoreError::DataDir)?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues `op` for the next batch and waits, without blocking the thread, until the
    /// batch holding it has committed; returns what `op` returned. `op` runs on the writer
    /// thread inside the batch's transaction; it returns `Ok(Err(..))` to refuse (having
    /// written nothing) and `Err(..)` for a redb failure.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> DbResult<Result<T, StoreError>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |txn| {
            let Some(txn) = txn else {
                return Step {
                    failed: None,
                    complete: Box::new(move |outcome| {
                        let _ = answer.send(Err(batch_error(outcome)));
                    }),
                };
            };
            match op(txn) {
                Err(e) => Step {
                    failed: Some(e),
                    complete: Box::new(move |outcome| {
                        let _ = answer.send(Err(batch_error(outcome)));
                    }),
                },
                Ok(result) => Step {
                    failed: None,
                    complete: Box::new(move |outcome| {
                        let _ = answer.send(match outcome {
                            None => result,
                            Some(_) => Err(batch_error(outcome)),
                        });
                    }),
                },
            }
        });
        let Some(jobs) = &self.jobs else {
            return Err(RedbStoreError::WriterStopped.into());
        };
        jobs.send(job)
            .map_err(|_| StoreError::from(RedbStoreError::WriterStopped))?;
        answered
            .await
            .map_err(|_| StoreError::from(RedbStoreError::WriterStopped))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread after it has committed what was queued; joining
        // it releases its handle on the database, so that the file can be opened again.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn batch_error(outcome: Outcome<'_>) -> StoreError {
    match outcome {
        Some(e) => RedbStoreError::Batch(Arc::clone(e)).into(),
        None => RedbStoreError::WriterStopped.into(),
    }
}

/// The writer thread: batch, apply, commit, answer; until the queue closes. While the
/// store is failed after an I/O error, it also runs the recovery attempts (see
/// [`crate::handle`]), between batches, whether or not anything is queued.
fn run(db: &Handle, queue: &Receiver<Job>, quick_repair: bool) {
    let mut retry = Retry::default();
    loop {
        let first = if db.is_failed() {
            let wait = retry.until_due();
            if wait.is_zero() {
                if db.recover() {
                    retry.succeeded();
                } else {
                    retry.failed();
                }
                continue;
            }
            match queue.recv_timeout(wait) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match queue.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        };
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut completions = Vec::with_capacity(batch.len());
        let outcome = match db.begin_write() {
            Err(e) => {
                for job in batch {
                    completions.push(job(None).complete);
                }
                Err(Arc::new(e))
            }
            Ok(mut txn) => {
                // See `RedbStoreConfig::quick_repair`.
                txn.set_quick_repair(quick_repair);
                let mut failure = None;
                for job in batch {
                    let step = job(if failure.is_none() { Some(&txn) } else { None });
                    if let (None, Some(e)) = (&failure, step.failed) {
                        failure = Some(e);
                    }
                    completions.push(step.complete);
                }
                match failure {
                    Some(e) => {
                        let _ = txn.abort();
                        Err(Arc::new(e))
                    }
                    None => txn.commit().map_err(|e| Arc::new(redb_err(e))),
                }
            }
        };
        let outcome = outcome.err();
        if let Some(e) = &outcome
            && db.note_failure(e)
        {
            // The first recovery attempt comes at once (before the next batch).
            retry.succeeded();
        }
        for complete in completions {
            complete(outcome.as_ref());
        }
    }
}
