//! Prometheus metrics, served at `GET /metrics`. Every name starts with `courier_`:
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `courier_connections` | gauge | | MQTT connections to this process's broker |
//! | `courier_requests_total` | counter | `op` | device requests handled |
//! | `courier_errors_total` | counter | `code`, `via` (`mqtt`/`http`) | error answers by code |
//! | `courier_messages_stored_total` | counter | | messages committed by `send` |
//! | `courier_updates_published_total` | counter | `stream` (`in`/`rsp`/`eph`) | publishes to devices |
//! | `courier_send_deliver_seconds` | histogram | | a `send` request's arrival → its update published to every recipient device |
//! | `courier_sync_pages_total` | counter | | `sync` pages served |
//! | `courier_log_entries` | gauge | | update-log entries kept (sampled) |
//! | `courier_media_jobs_queued` | gauge | | media jobs waiting or running (sampled) |
//! | `courier_media_job_seconds` | histogram | `kind`, `outcome` | media job durations |
//! | `courier_push_notices_total` | counter | `outcome` | push webhook POSTs |
//! | `courier_redis_errors_total` | counter | | Redis calls that failed (and fell back) |
//!
//! One recorder per process (the first call to [`handle`] installs it).

use crate::store::Store;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Latency buckets, in seconds: 1 ms to 2 min.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        handle
    })
}

pub fn request(op: &'static str) {
    metrics::counter!("courier_requests_total", "op" => op).increment(1);
}

pub fn error(code: protocol::ErrorCode, via: &'static str) {
    metrics::counter!("courier_errors_total", "code" => code.as_str(), "via" => via).increment(1);
}

pub fn messages_stored(n: u64) {
    metrics::counter!("courier_messages_stored_total").increment(n);
}

pub fn published(stream: &'static str) {
    metrics::counter!("courier_updates_published_total", "stream" => stream).increment(1);
}

pub fn send_delivered(took: Duration) {
    metrics::histogram!("courier_send_deliver_seconds").record(took.as_secs_f64());
}

pub fn sync_page() {
    metrics::counter!("courier_sync_pages_total").increment(1);
}

pub fn media_job(kind: &str, outcome: &'static str, took: Duration) {
    metrics::histogram!("courier_media_job_seconds", "kind" => kind.to_owned(), "outcome" => outcome)
        .record(took.as_secs_f64());
}

pub fn collected(c: &crate::gc::Collected) {
    for (what, n) in [
        ("upload", c.uploads),
        ("file", c.files),
        ("blob", c.blobs),
        ("object", c.objects),
    ] {
        metrics::counter!("courier_storage_collected_total", "what" => what).increment(n);
    }
}

pub fn push_notice(outcome: &'static str) {
    metrics::counter!("courier_push_notices_total", "outcome" => outcome).increment(1);
}

/// Samples the gauges that need a query (or a look at the broker) every `every`.
pub async fn sample(
    store: Store,
    connections: Option<Box<dyn Fn() -> usize + Send + Sync>>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut redis_errors_seen = 0;
    loop {
        if let Some(count) = &connections {
            metrics::gauge!("courier_connections").set(count() as f64);
        }
        match store.queue_depths().await {
            Ok((log, jobs)) => {
                metrics::gauge!("courier_log_entries").set(log as f64);
                metrics::gauge!("courier_media_jobs_queued").set(jobs as f64);
            }
            Err(e) => tracing::debug!(error = %e, "queue depths not sampled"),
        }
        match store.stored().await {
            Ok((bytes, doomed)) => {
                metrics::gauge!("courier_storage_bytes").set(bytes as f64);
                metrics::gauge!("courier_storage_doomed_objects").set(doomed as f64);
            }
            Err(e) => tracing::debug!(error = %e, "storage not sampled"),
        }
        let errors = store
            .shared
            .redis_errors
            .load(std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("courier_redis_errors_total").increment(errors - redis_errors_seen);
        redis_errors_seen = errors;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
