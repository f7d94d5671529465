//! `courier serve --role media-worker`: a process that only runs media jobs. It shares the
//! server's PostgreSQL database (the job queue, claimed with `FOR UPDATE SKIP LOCKED`) and
//! object store, and publishes the `media` updates it produces through the broker as the
//! service identity. Updates are in the recipients' logs before they are published, so a
//! broker outage delays them and loses none.

use crate::app::{broker_address, job_config, open_objects, open_store};
use crate::settings::{redact_url, Settings};
use backend::edge::mqtt::MqttEdge;
use backend::publisher::Publisher;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs `settings.media_jobs` job runners until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    settings.check_secrets()?;
    settings.check_split_role()?;
    let secret = settings.service_secret.clone().expect("checked");
    let (host, port) = broker_address(&settings)?;
    let broker = format!("{host}:{port}");
    let store = open_store(&settings).await?;
    let objects = open_objects(&settings).await?;

    let (client, eventloop) = backend::mqtt_client(backend::mqtt_options(&host, port, &secret));
    let publisher = Publisher::new(Arc::new(MqttEdge { client }), store.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(backend::keep_connected(
        eventloop,
        broker.clone(),
        shutdown.clone(),
    ));
    let runner = backend::jobs::Runner::new(
        store,
        objects,
        publisher,
        settings.data_dir.join("spool").join("jobs"),
        job_config(&settings),
    );
    // Nothing in this process queues jobs: the runners poll the queue.
    let wake = Arc::new(tokio::sync::Notify::new());
    for _ in 0..settings.media_jobs.max(1) {
        tasks.spawn(runner.clone().run(wake.clone(), shutdown.clone()));
    }
    tracing::info!(
        jobs = settings.media_jobs.max(1), broker = %broker,
        database = %redact_url(&settings.database_url()), "courier media worker is running"
    );
    while tasks.join_next().await.is_some() {}
    Ok(())
}
