//! Group commit: sends (and, on SQLite, acks and reads) from every device queue here, and a
//! batcher stores whatever is queued in one transaction (one commit, one fsync; see
//! `store::batch`) — so a busy server commits dozens of writes for the price of one, while
//! each request still gets its own answer.
//!
//! SQLite runs one batcher (its one writer), and acks, reads and presence join the batches: alone, each
//! would wait for the connection and pay a commit. It runs on a thread of its own: a batch
//! is a dozen statements, each a round trip to SQLite's worker thread, and a task woken from
//! there on the shared runtime waits its turn behind every connection's work each time. Its
//! batches commit in the order their writes were queued, so a device's next run may be
//! queued while its last one commits (see `lanes`).
//!
//! PostgreSQL runs several batchers, which lets batches overlap (so a device's writes wait
//! for their commit before its next ones are queued); its acks and reads commit on their own
//! pooled connections. A batch whose commit fails is stored in halves, so a write the database
//! refuses fails alone; an unreachable database is retried a few times before every request
//! gets the error (see [`store_apart`]): nothing is acknowledged that is not committed.

use crate::error::{Error, Result};
use crate::store::batch::{Write, Written};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Most writes stored in one transaction.
const MAX_BATCH: usize = 256;
const ATTEMPTS: u32 = 3;

type Job = (Write, oneshot::Sender<Result<Written>>);
/// Jobs that go into one batch together, in order: one device's consecutive writes.
type Unit = Vec<Job>;

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Unit>,
    /// One writer: acks and reads join the batches too, and batches commit in queue order.
    single: bool,
}

/// PostgreSQL's batchers: more than one lets batches overlap; fewer or more measured slower
/// (docs/benchmarks.md).
const POSTGRES_BATCHERS: usize = 4;

impl Batcher {
    /// SQLite has one writer; PostgreSQL commits several batches at once.
    pub fn start(store: Store) -> Self {
        let single = store.db.get_database_backend() == sea_orm::DbBackend::Sqlite;
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        if single {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the batcher");
            std::thread::Builder::new()
                .name("courier-batcher".into())
                .spawn(move || rt.block_on(run(store, rx)))
                .expect("a thread for the batcher");
        } else {
            for _ in 0..POSTGRES_BATCHERS {
                tokio::spawn(run(store.clone(), rx.clone()));
            }
        }
        Self { tx, single }
    }

    /// Whether there is one writer: acks and reads go through the batches (else each commits
    /// on its own), and writes commit in the order they were queued.
    pub fn is_single(&self) -> bool {
        self.single
    }

    /// Queues `jobs` for the next batch, all in the same batch and in this order (so one
    /// device's writes keep their order even when several batches commit at once); each
    /// receiver gets its job's outcome after the commit.
    pub fn enqueue(&self, jobs: Vec<Write>) -> Result<Vec<Committing>> {
        let (unit, answers): (Unit, Vec<Committing>) = jobs
            .into_iter()
            .map(|job| {
                let (reply, answer) = oneshot::channel();
                ((job, reply), Committing(answer))
            })
            .unzip();
        self.tx
            .send(unit)
            .map_err(|_| Error::Internal("write batcher stopped".into()))?;
        Ok(answers)
    }
}

/// A write waiting for its batch's commit.
pub struct Committing(oneshot::Receiver<Result<Written>>);

impl Committing {
    pub async fn outcome(self) -> Result<Written> {
        self.0
            .await
            .map_err(|_| Error::Internal("write batcher dropped a request".into()))?
    }
}

async fn run(store: Store, rx: Arc<Mutex<mpsc::UnboundedReceiver<Unit>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(unit) => batch.extend(unit),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(unit) => batch.extend(unit),
                    Err(_) => break,
                }
            }
        }
        let (jobs, replies): (Vec<Write>, Vec<_>) = batch.into_iter().unzip();
        let started = std::time::Instant::now();
        let results = store_apart(&store, &jobs).await;
        tracing::debug!(
            size = jobs.len(),
            took_us = started.elapsed().as_micros() as u64,
            "write batch"
        );
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Stores `jobs` in one transaction, or, when that fails for any reason but an unreachable
/// database, in two halves, and so on down: a write the database refuses (a value it cannot
/// store that no check caught) fails alone, after about 2·log2(n) transactions, instead of
/// failing every other device's write in its batch. Halves commit in order, so writes still
/// take effect in queue order. A lone write, or a database that is unreachable, is retried a
/// few times before its requests get the error: nothing is acknowledged that is not committed.
async fn store_apart(store: &Store, jobs: &[Write]) -> Vec<Result<Written>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let e = match store.write_batch(jobs).await {
            Ok(results) => return results,
            Err(e) => e,
        };
        let unreachable = e.code() == protocol::ErrorCode::Unavailable;
        if jobs.len() > 1 && !unreachable {
            tracing::warn!(error = %e, size = jobs.len(), "write batch failed; storing it in halves");
            let (first, second) = jobs.split_at(jobs.len() / 2);
            let mut results = Box::pin(store_apart(store, first)).await;
            results.extend(Box::pin(store_apart(store, second)).await);
            return results;
        }
        if attempt >= ATTEMPTS {
            let body = e.body();
            return jobs
                .iter()
                .map(|_| Err(Error::Client(body.clone())))
                .collect();
        }
        tracing::warn!(error = %e, attempt, size = jobs.len(), "write batch failed; retrying");
        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
    }
}
