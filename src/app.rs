//! `courier serve`: binds every listener first (so a taken port fails fast, naming its flag),
//! then runs the broker, the backend engine and the HTTP API until shutdown.

use crate::settings::{redact_url, Settings};
use anyhow::Context;
use backend::embedded_broker::DeviceAuthenticator;
use backend::http::media::Media;
use backend::http::{AppState, Kicker};
use backend::jobs::JobConfig;
use backend::publisher::Connections;
use backend::push::{PushConfig, Pusher};
use backend::{db, Engine, EngineConfig, Store};
use broker::{Broker, BrokerConfig};
use media_worker::{BlobStore, LocalStore, S3Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A server with its listeners bound and its database migrated, ready to [`App::run`].
pub struct App {
    settings: Settings,
    store: Store,
    http: TcpListener,
    mqtt: TcpListener,
    mqtt_ws: TcpListener,
    objects: Arc<dyn BlobStore>,
}

#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    pub mqtt_ws: SocketAddr,
}

async fn bind(addr: SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::AddrInUse {
            "is in use".to_owned()
        } else {
            format!("cannot be bound ({e})")
        };
        anyhow::anyhow!("{what} address {addr} {why}; choose another with {flag}")
    })
}

impl App {
    pub async fn bind(settings: Settings) -> anyhow::Result<Self> {
        let http = bind(settings.http, "HTTP", "--http").await?;
        let mqtt = bind(settings.mqtt, "MQTT", "--mqtt").await?;
        let mqtt_ws = bind(settings.mqtt_ws, "MQTT WebSocket", "--mqtt-ws").await?;
        let store = open_store(&settings).await?;
        let objects = open_objects(&settings).await?;
        Ok(Self {
            settings,
            objects,
            store,
            http,
            mqtt,
            mqtt_ws,
        })
    }

    pub fn addrs(&self) -> Addrs {
        Addrs {
            http: self.http.local_addr().expect("bound"),
            mqtt: self.mqtt.local_addr().expect("bound"),
            mqtt_ws: self.mqtt_ws.local_addr().expect("bound"),
        }
    }

    /// Serves until `shutdown` is cancelled, then lets every task finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addrs = self.addrs();
        let s = &self.settings;
        let secret = s
            .service_secret
            .clone()
            .unwrap_or_else(backend::util::new_token);
        let auth = Arc::new(DeviceAuthenticator {
            store: self.store.clone(),
            service_secret: secret.clone(),
        });
        let broker_config = BrokerConfig {
            max_packet_size: s.max_packet_size,
            connect_timeout: s.connect_timeout,
            ..Default::default()
        };
        let broker = Broker::start(broker_config, auth, shutdown.clone())?;
        let mut tasks = tokio::task::JoinSet::new();
        let b = broker.clone();
        tasks.spawn(async move { b.serve_tcp(self.mqtt).await });
        let b = broker.clone();
        tasks.spawn(async move { b.serve_ws(self.mqtt_ws).await });

        let opts = backend::mqtt_options("127.0.0.1", addrs.mqtt.port(), &secret);
        let (client, eventloop) = backend::mqtt_client(opts);
        let connections: Arc<dyn Connections> = Arc::new(broker.clone());
        let mut publisher =
            backend::publisher::Publisher::new(client, self.store.clone(), Some(connections));
        if let Some(url) = &s.push_webhook {
            let config = PushConfig::new(url.clone(), s.push_webhook_token.clone());
            publisher = publisher.with_push(Pusher::start(self.store.clone(), config));
        }
        let engine_config = EngineConfig {
            max_request_bytes: s.max_request_size,
            edit_window: s.edit_window,
            ..Default::default()
        };
        // This process's broker has just started: nobody is connected.
        self.store.reset_presence(backend::util::now_ms()).await?;
        tasks.spawn(trim_logs(
            self.store.clone(),
            s.log_retention,
            s.trim_interval,
            shutdown.clone(),
        ));
        let engine = Engine::new(self.store.clone(), publisher.clone(), engine_config);
        let engine_ready = engine.ready.clone();
        tasks.spawn(engine.run(eventloop, shutdown.clone()));

        let media = Media {
            store: self.objects.clone(),
            spool: s.data_dir.join("spool"),
            max_upload: s.max_upload_size,
            jobs: Arc::new(tokio::sync::Notify::new()),
        };
        let runner = backend::jobs::Runner::new(
            self.store.clone(),
            media.store.clone(),
            publisher.clone(),
            media.spool.join("jobs"),
            job_config(s),
        );
        for _ in 0..s.media_jobs {
            tasks.spawn(runner.clone().run(media.jobs.clone(), shutdown.clone()));
        }
        let state = AppState {
            store: self.store.clone(),
            publisher,
            mqtt: backend::http::MqttPorts {
                public_host: s.public_host.clone(),
                tcp: addrs.mqtt.port(),
                ws: addrs.mqtt_ws.port(),
            },
            kicker: Some(Arc::new(broker) as Arc<dyn Kicker>),
            engine_ready,
            media: media.clone(),
        };
        tasks.spawn(expire_uploads(
            state.clone(),
            s.upload_expiry,
            shutdown.clone(),
        ));
        let router = backend::http::router(state);
        tracing::info!(
            http = %addrs.http, mqtt = %addrs.mqtt, mqtt_ws = %addrs.mqtt_ws,
            database = %redact_url(&s.database_url), "courier is serving"
        );
        let stop = shutdown.clone();
        axum::serve(self.http, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await?;
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// The database, created (SQLite) and migrated.
pub(crate) async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    if settings.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    }
    let db = db::open(&settings.database_url).await.with_context(|| {
        format!(
            "cannot open database {}",
            redact_url(&settings.database_url)
        )
    })?;
    Ok(Store::new(db))
}

/// The media object store: S3/MinIO when configured (its bucket created if missing), else
/// files under the data dir.
pub(crate) async fn open_objects(settings: &Settings) -> anyhow::Result<Arc<dyn BlobStore>> {
    let Some(s3) = &settings.s3 else {
        return Ok(Arc::new(LocalStore::new(settings.data_dir.join("objects"))));
    };
    anyhow::ensure!(
        !s3.access_key.is_empty() && !s3.secret_key.is_empty(),
        "--s3-endpoint needs --s3-access-key and --s3-secret-key"
    );
    let store = S3Store::connect(s3)
        .await
        .with_context(|| format!("cannot use S3 bucket {} at {}", s3.bucket, s3.endpoint))?;
    Ok(Arc::new(store))
}

/// How media jobs run: each task in a process forked by a `courier media-job` host, under the
/// limits.
pub(crate) fn job_config(settings: &Settings) -> JobConfig {
    let defaults = JobConfig::default();
    let mut process = defaults.process.clone();
    if let Some(program) = &settings.media_job_program {
        process.program = program.clone();
    }
    process.limits.memory = settings.media_job_memory;
    // Every thread's CPU time counts: allow the whole machine for the whole budget.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    process.limits.cpu_seconds = defaults.budget.as_secs() * cores + 1;
    JobConfig {
        process,
        ..defaults
    }
}

/// Trims the update logs every `every` (see `store/trim.rs`), starting one period after start.
async fn trim_logs(store: Store, retention: Duration, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match store.trim_logs(retention, backend::util::now_ms()).await {
            Ok(t) if t.entries > 0 => {
                tracing::info!(users = t.users, entries = t.entries, "trimmed update logs")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "log trimming failed; will retry"),
        }
    }
}

/// Drops unfinished resumable uploads older than `expiry`, checking every quarter of it
/// (at most hourly).
async fn expire_uploads(state: AppState, expiry: Duration, stop: CancellationToken) {
    let every = (expiry / 4).clamp(Duration::from_millis(100), Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match backend::http::uploads::expire(&state, expiry).await {
            Ok(n) if n > 0 => tracing::info!(uploads = n, "expired unfinished uploads"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "expiring uploads failed; will retry"),
        }
    }
}
