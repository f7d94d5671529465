//! The storage collector, run in rounds: unfinished uploads older than the upload expiry go
//! (their rows and spooled bytes), then files no message carries that are as old, then blobs
//! no file points at; last, doomed objects are deleted from the object store. Deleted
//! accounts' usernames are freed on the same rounds. What is kept
//! and why is in `store::gc`.

use crate::error::Result;
use crate::http::AppState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows and objects are collected this many at a time.
const BATCH: u64 = 500;

/// What one round collected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub uploads: u64,
    pub files: u64,
    pub blobs: u64,
    pub objects: u64,
}

/// One round: everything collectable now.
pub async fn round(state: &AppState, expiry: Duration) -> Result<Collected> {
    let store = &state.store;
    let cutoff = crate::util::now_ms() - expiry.as_millis() as i64;
    let mut done = Collected {
        uploads: crate::http::uploads::expire(state, expiry).await? as u64,
        ..Default::default()
    };
    loop {
        let n = store.collect_unsent_files(cutoff, BATCH).await?;
        done.files += n;
        if n < BATCH {
            break;
        }
    }
    loop {
        let n = store.collect_blobs(BATCH).await?;
        done.blobs += n;
        if n < BATCH {
            break;
        }
    }
    loop {
        let keys = store.doomed(BATCH).await?;
        let mut deleted = Vec::with_capacity(keys.len());
        for key in keys {
            match state.media.store.delete(&key).await {
                Ok(()) => deleted.push(key),
                Err(e) => {
                    tracing::warn!(error = %e, key, "a doomed object was not deleted; will retry")
                }
            }
        }
        if deleted.is_empty() {
            break;
        }
        store.forget_doomed(&deleted).await?;
        done.objects += deleted.len() as u64;
    }
    crate::metrics::collected(&done);
    Ok(done)
}

/// Collects every quarter of `expiry` (at most hourly) until `stop`; on each round, also
/// frees the usernames of accounts deleted longer than `name_grace` ago.
pub async fn run(state: AppState, expiry: Duration, name_grace: Duration, stop: CancellationToken) {
    let every = (expiry / 4)
        .min(name_grace / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match round(&state, expiry).await {
            Ok(c) if c != Collected::default() => tracing::info!(
                uploads = c.uploads,
                files = c.files,
                blobs = c.blobs,
                objects = c.objects,
                "storage collected"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "storage collection failed; will retry"),
        }
        match state.store.free_deleted_usernames(name_grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "usernames of deleted accounts freed"),
            Err(e) => tracing::warn!(error = %e, "deleted accounts' names not freed; will retry"),
        }
    }
}
