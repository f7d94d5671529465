//! CPU-heavy work of requests — password hashes, stripping an uploaded image's metadata,
//! hashing a finished resumable upload — runs off the async workers, at most half the cores'
//! worth at once (a fair, first-come queue for the rest).
//!
//! A burst of it then costs a queue for that work, not the whole machine: the message path
//! keeps at least half the cores. Before, every such job took a blocking-pool thread of its
//! own at once, and fifty of them shared the cores evenly with the two threads delivering
//! messages.

use crate::error::{Error, Result};
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

fn gate() -> &'static Arc<Semaphore> {
    static GATE: OnceLock<Arc<Semaphore>> = OnceLock::new();
    GATE.get_or_init(|| Arc::new(Semaphore::new(permits())))
}

/// How many heavy jobs run at once: half the cores, at least one.
pub fn permits() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .div_ceil(2)
}

/// Runs `f` on the blocking pool once a permit is free. The permit goes with `f`: a request
/// dropped while its job runs (a client that hangs up) frees nothing early, so no more jobs
/// run at once than there are permits.
pub async fn heavy<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let permit = gate()
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_run_at_once_than_permits() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs = (0..4 * permits() + 3).map(|_| {
            let (running, most) = (running.clone(), most.clone());
            heavy(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                running.fetch_sub(1, Ordering::SeqCst);
            })
        });
        for done in futures_util::future::join_all(jobs).await {
            done.unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= permits());
        assert!(most.load(Ordering::SeqCst) >= 1);
    }
}
