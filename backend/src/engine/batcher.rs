//! Group commit for `send`: requests from every device queue here, and a batcher stores
//! whatever is queued in one transaction (one commit, one fsync) — so a busy server commits
//! dozens of messages for the price of one, while each request still gets its own answer.
//!
//! SQLite runs one batcher (one writer); PostgreSQL runs several, which also lets batches
//! overlap. A batch whose commit fails (a deadlock, a lost connection) is retried whole, a
//! few times, before every request in it gets the error: nothing is acknowledged that is not
//! committed.

use crate::error::{Error, Result};
use crate::store::messages::{SendJob, Sent};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Most sends stored in one transaction.
const MAX_BATCH: usize = 256;
const ATTEMPTS: u32 = 3;

type Job = (SendJob, oneshot::Sender<Result<Sent>>);
/// Jobs that go into one batch together, in order: one device's consecutive sends.
type Unit = Vec<Job>;

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Unit>,
}

impl Batcher {
    pub fn start(store: Store, workers: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            tokio::spawn(run(store.clone(), rx.clone()));
        }
        Self { tx }
    }

    /// Queues `jobs` for the next batch, all in the same batch and in this order (so one
    /// device's sends keep their order even when several batches commit at once); each
    /// receiver gets its job's outcome after the commit.
    pub fn enqueue(&self, jobs: Vec<SendJob>) -> Result<Vec<Committing>> {
        let (unit, answers): (Unit, Vec<Committing>) = jobs
            .into_iter()
            .map(|job| {
                let (reply, answer) = oneshot::channel();
                ((job, reply), Committing(answer))
            })
            .unzip();
        self.tx
            .send(unit)
            .map_err(|_| Error::Internal("send batcher stopped".into()))?;
        Ok(answers)
    }
}

/// A send waiting for its batch's commit.
pub struct Committing(oneshot::Receiver<Result<Sent>>);

impl Committing {
    pub async fn outcome(self) -> Result<Sent> {
        self.0
            .await
            .map_err(|_| Error::Internal("send batcher dropped a request".into()))?
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
        let (jobs, replies): (Vec<SendJob>, Vec<_>) = batch.into_iter().unzip();
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let results = loop {
            attempt += 1;
            match store.send_batch_ref(&jobs).await {
                Ok(results) => break Ok(results),
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, size = jobs.len(), "send batch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(e) => break Err(e),
            }
        };
        tracing::debug!(
            size = jobs.len(),
            took_us = started.elapsed().as_micros() as u64,
            "send batch"
        );
        match results {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                let body = e.body();
                for reply in replies {
                    let _ = reply.send(Err(Error::Client(body.clone())));
                }
            }
        }
    }
}
