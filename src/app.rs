//! `courier serve`: binds every listener first (so a taken port fails fast, naming its flag),
//! then runs what its role asks for until shutdown: the broker (`all`, `broker`), the backend
//! engine, the HTTP API and media jobs (`all`, `backend`). A backend without a broker of its
//! own reaches one with `--broker`, as the service identity.

use crate::settings::{redact_url, Role, Settings};
use anyhow::Context;
use backend::edge::auth::DeviceAuthenticator;
use backend::edge::mqtt::MqttEdge;
use backend::edge::Edge;
use backend::engine::lanes::Lanes;
use backend::http::broker_hooks::BrokerHooks;
use backend::http::media::Media;
use backend::http::AppState;
use backend::jobs::JobConfig;
use backend::publisher::Publisher;
use backend::push::{PushConfig, Pusher};
use backend::shared::{Limit, Shared};
use backend::{db, Engine, EngineConfig, Store};
use broker::pace::Pacing;
use broker::tls::Tls;
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
    /// Bound by the roles that serve HTTP (`all`, `backend`).
    http: Option<TcpListener>,
    /// `/metrics` on a listener of its own (`--metrics-listen`), by the roles that serve HTTP.
    metrics: Option<TcpListener>,
    /// Bound by the roles that run the broker (`all`, `broker`): MQTT, MQTT over WebSocket,
    /// and with TLS on, MQTT over TLS.
    mqtt: Option<(TcpListener, TcpListener, Option<TcpListener>)>,
    /// The certificate of every listener, with `--tls-cert`/`--tls-key`.
    tls: Option<Arc<Tls>>,
    objects: Arc<dyn BlobStore>,
}

#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    pub mqtt_ws: SocketAddr,
    /// MQTT over TLS, with TLS on.
    pub mqtts: Option<SocketAddr>,
    /// Where `/metrics` is served when not on `http`.
    pub metrics: Option<SocketAddr>,
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
        let role = settings.role;
        anyhow::ensure!(
            role != Role::MediaWorker,
            "--role media-worker runs with courier::worker"
        );
        settings.check_secrets()?;
        if role != Role::All {
            settings.check_split_role()?;
        }
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::load(cert, key)?),
            _ => None,
        };
        let http = match role.serves_http() {
            true => Some(bind(settings.http, "HTTP", "--http").await?),
            false => None,
        };
        let metrics = match (role.serves_http(), settings.metrics_listen) {
            (true, Some(addr)) => Some(bind(addr, "metrics", "--metrics-listen").await?),
            _ => None,
        };
        let mqtt = match role.runs_broker() {
            true => Some((
                bind(settings.mqtt, "MQTT", "--mqtt").await?,
                bind(settings.mqtt_ws, "MQTT WebSocket", "--mqtt-ws").await?,
                match tls {
                    Some(_) => Some(bind(settings.mqtts, "MQTT over TLS", "--mqtts").await?),
                    None => None,
                },
            )),
            false => None,
        };
        let store = open_store(&settings).await?;
        let objects = open_objects(&settings).await?;
        Ok(Self {
            settings,
            objects,
            store,
            http,
            metrics,
            mqtt,
            tls,
        })
    }

    /// Where this process listens; for what another role serves, the configured address
    /// (a backend advertises the broker's ports to devices from `--mqtt` and `--mqtt-ws`).
    pub fn addrs(&self) -> Addrs {
        let s = &self.settings;
        let local = |l: &TcpListener| l.local_addr().expect("bound");
        Addrs {
            http: self.http.as_ref().map_or(s.http, local),
            mqtt: self.mqtt.as_ref().map_or(s.mqtt, |(t, _, _)| local(t)),
            mqtt_ws: self.mqtt.as_ref().map_or(s.mqtt_ws, |(_, w, _)| local(w)),
            mqtts: match &self.mqtt {
                Some((_, _, tls)) => tls.as_ref().map(local),
                None => self.tls.as_ref().map(|_| s.mqtts),
            },
            metrics: self.metrics.as_ref().map(local),
        }
    }

    /// Serves until `shutdown` is cancelled, then lets every task finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addrs = self.addrs();
        let Self {
            settings: s,
            store,
            http,
            metrics,
            mqtt,
            objects,
            tls,
        } = self;
        if let Some(tls) = &tls {
            tokio::spawn(tls.clone().watch(Duration::from_secs(5), shutdown.clone()));
        }
        let acceptor = |alpn: &[&[u8]]| tls.as_ref().map(|t| t.acceptor(alpn));
        let secret = s
            .service_secret
            .clone()
            .unwrap_or_else(backend::util::new_token);
        let mut tasks = tokio::task::JoinSet::new();
        let broker = match mqtt {
            Some((tcp, ws, mqtts)) => {
                let auth = Arc::new(DeviceAuthenticator::new(store.clone(), secret.clone()));
                let broker_config = BrokerConfig {
                    max_packet_size: s.max_packet_size,
                    connect_timeout: s.connect_timeout,
                    device_pacing: s.limits.get(Limit::Packets).map(|r| Pacing {
                        count: r.count,
                        per: r.per,
                    }),
                    ..Default::default()
                };
                let broker = Broker::start(broker_config, auth, shutdown.clone());
                // This process's broker has just started: nobody is connected.
                store.reset_presence(backend::util::now_ms()).await?;
                Some((broker, tcp, ws, mqtts))
            }
            None => None,
        };
        // Plain MQTT stays on --mqtt (for the backends and the local network); with TLS on,
        // the WebSocket listener speaks wss:// and --mqtts MQTT over TLS.
        let serve =
            |tasks: &mut tokio::task::JoinSet<()>,
             (broker, tcp, ws, mqtts): (Broker, _, _, Option<TcpListener>)| {
                let b = broker.clone();
                tasks.spawn(async move { b.serve_tcp(tcp, None).await });
                if let Some(listener) = mqtts {
                    let (b, tls) = (broker.clone(), acceptor(&[]));
                    tasks.spawn(async move { b.serve_tcp(listener, tls).await });
                }
                let tls = acceptor(&[b"http/1.1"]);
                tasks.spawn(async move { broker.serve_ws(ws, tls).await });
            };
        let Some(http) = http else {
            // `--role broker`: requests go to the backends that subscribe as services.
            if let Some(edge) = broker {
                serve(&mut tasks, edge);
            }
            tracing::info!(mqtt = %addrs.mqtt, mqtt_ws = %addrs.mqtt_ws, "courier broker is serving");
            while tasks.join_next().await.is_some() {}
            return Ok(());
        };

        // The edge the engine talks to: the broker in this process, or an MQTT client of
        // another one (which cannot tell who is connected: everything is published and the
        // broker drops what nobody subscribed to).
        let (edge, mqtt): (Arc<dyn Edge>, _) = match &broker {
            Some((b, _, _, _)) => (Arc::new(b.clone()), None),
            None => {
                let (host, port) = broker_address(&s)?;
                let opts = backend::mqtt_options(&host, port, &secret);
                let (client, eventloop) = backend::mqtt_client(opts);
                let edge = Arc::new(MqttEdge {
                    client: client.clone(),
                });
                (edge, Some((client, eventloop, format!("{host}:{port}"))))
            }
        };
        let mut publisher = Publisher::new(edge, store.clone());
        if let Some(url) = &s.push_webhook {
            let config = PushConfig::new(
                url.clone(),
                s.push_format.into(),
                s.push_webhook_token.clone(),
            );
            publisher = publisher.with_push(Pusher::start(store.clone(), config));
        }
        let engine_config = EngineConfig {
            max_request_bytes: s.max_request_size,
            edit_window: s.edit_window,
            ..Default::default()
        };
        tasks.spawn(trim_logs(
            store.clone(),
            s.log_retention,
            s.trim_interval,
            shutdown.clone(),
        ));
        backend::metrics::handle();
        let connections = broker.as_ref().map(|(b, _, _, _)| {
            let b = b.clone();
            Box::new(move || b.connection_count()) as Box<dyn Fn() -> usize + Send + Sync>
        });
        tasks.spawn(backend::metrics::sample(
            store.clone(),
            connections,
            Duration::from_secs(15),
            shutdown.clone(),
        ));
        let engine = Engine::new(store.clone(), publisher.clone(), engine_config);
        let engine_ready = engine.ready.clone();
        let upstream = match mqtt {
            Some((client, eventloop, remote)) => {
                let run = backend::edge::mqtt::run(engine, client, eventloop, shutdown.clone());
                tasks.spawn(run);
                remote
            }
            None => {
                let (b, _, _, _) = broker.as_ref().expect("all-in-one runs a broker");
                b.attach_engine(Arc::new(Lanes::new(engine)));
                engine_ready.store(true, std::sync::atomic::Ordering::Relaxed);
                "in process".to_owned()
            }
        };
        if let Some(edge) = broker {
            serve(&mut tasks, edge);
        }

        let media = Media {
            store: objects,
            spool: s.data_dir.join("spool"),
            max_upload: s.max_upload_size,
            quota: backend::store::gc::Usage {
                bytes: s.quota_bytes,
                files: s.quota_files,
            },
            jobs: Arc::new(tokio::sync::Notify::new()),
            slots: Default::default(),
        };
        let runner = backend::jobs::Runner::new(
            store.clone(),
            media.store.clone(),
            publisher.clone(),
            media.spool.join("jobs"),
            job_config(&s),
        );
        for _ in 0..s.media_jobs {
            tasks.spawn(runner.clone().run(media.jobs.clone(), shutdown.clone()));
        }
        let state = AppState {
            store: store.clone(),
            publisher,
            mqtt: backend::http::MqttPorts {
                public_host: s.public_host.clone(),
                tcp: addrs.mqtt.port(),
                ws: addrs.mqtt_ws.port(),
                tls: addrs.mqtts.map(|a| a.port()),
            },
            engine_ready,
            media: media.clone(),
            signup: s.signup.into(),
            broker_hooks: s.broker_hook_secret.clone().map(|hook_secret| {
                Arc::new(BrokerHooks {
                    auth: DeviceAuthenticator::new(store.clone(), secret.clone()),
                    secret: hook_secret,
                })
            }),
        };
        tasks.spawn(backend::gc::run(
            state.clone(),
            s.upload_expiry,
            s.deleted_name_grace,
            shutdown.clone(),
        ));
        tasks.spawn(backend::revocations::watch(state.clone(), shutdown.clone()));
        let router = backend::http::router(state, metrics.is_none());
        if let Some(listener) = metrics {
            let (limits, stop) = (s.http_limits(), shutdown.clone());
            tasks.spawn(async move {
                let only_metrics = backend::http::metrics_router();
                if let Err(e) =
                    backend::http::serve::serve(listener, only_metrics, limits, None, stop).await
                {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
        }
        tracing::info!(
            role = s.role.name(), http = %addrs.http, mqtt = %addrs.mqtt, mqtt_ws = %addrs.mqtt_ws,
            engine = %upstream,
            database = %redact_url(&s.database_url()), "courier is serving"
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("web chat: {scheme}://{}/", addrs.http);
        let tls = acceptor(&[b"http/1.1"]);
        backend::http::serve::serve(http, router, s.http_limits(), tls, shutdown.clone()).await?;
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// `--broker host:port` (default: 127.0.0.1 and the `--mqtt` port).
pub(crate) fn broker_address(s: &Settings) -> anyhow::Result<(String, u16)> {
    let broker = s
        .broker
        .clone()
        .unwrap_or_else(|| format!("127.0.0.1:{}", s.mqtt.port()));
    broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--broker {broker:?} is not host:port"))
}

/// The database, created (SQLite) and migrated.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    if settings.database_url().starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    }
    let db = db::open(&settings.database_url()).await.with_context(|| {
        format!(
            "cannot open database {}",
            redact_url(&settings.database_url())
        )
    })?;
    let shared = match &settings.redis_url {
        Some(url) => Shared::redis(
            settings.limits,
            backend::shared::connect_redis(url, &settings.redis_prefix)
                .await
                .with_context(|| {
                    format!("cannot reach Redis at {} (--redis-url)", redact_url(url))
                })?,
        ),
        None => Shared::memory(settings.limits, settings.role == Role::All),
    };
    let mut store = Store::new(db);
    if let Some(read) = db::connect_reader(&settings.database_url()).await? {
        store = store.with_reader(read);
    }
    Ok(store
        .with_shared(shared)
        .with_token_idle_ttl(settings.token_idle_ttl))
}

/// The media object store: S3/MinIO when configured (its bucket created if missing), else
/// files under the data dir.
pub(crate) async fn open_objects(settings: &Settings) -> anyhow::Result<Arc<dyn BlobStore>> {
    let Some(s3) = settings.s3() else {
        return Ok(Arc::new(LocalStore::new(settings.data_dir.join("objects"))));
    };
    anyhow::ensure!(
        !s3.access_key.is_empty() && !s3.secret_key.is_empty(),
        "--s3-endpoint needs --s3-access-key and --s3-secret-key"
    );
    let what = format!("cannot use S3 bucket {} at {}", s3.bucket, s3.endpoint);
    let store = S3Store::connect(&s3).await.context(what)?;
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
    process.limits.confinement = settings.media_sandbox.into();
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
