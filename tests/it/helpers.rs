//! `spawn_app` and friends: a fresh server per test and helpers to drive it.

use courier::{Addrs, App, Settings};
use courier_client::protocol::http::{GroupAdds, Session};
use courier_client::protocol::{ConvId, Update, UpdateBody};
use courier_client::{Api, Client, ClientOptions, Event};
use sea_orm::ConnectionTrait;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Where a test server keeps media objects.
#[derive(Clone, Copy, Debug)]
pub enum Objects {
    /// Files under the data dir (the default).
    Local,
    /// A bucket on an in-process S3 endpoint ([`crate::s3_endpoint`]).
    S3,
}

/// How a test server is set up: its database and its object store.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub db: Db,
    pub objects: Objects,
}

impl From<Db> for Setup {
    fn from(db: Db) -> Self {
        Setup {
            db,
            objects: Objects::Local,
        }
    }
}

/// Runs each listed scenario (an `async fn(Db)` or `async fn(Setup)`) once on SQLite and once
/// on PostgreSQL. Scenarios listed after `with_s3:` (taking a `Setup`) also run a third time,
/// on PostgreSQL with media objects in S3.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* ; with_s3: $($s3:ident),+) => {
        $crate::on_both_databases!($($name,)* $($s3),+);
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $s3() {
                super::$s3($crate::helpers::Setup {
                    db: $crate::helpers::Db::Postgres,
                    objects: $crate::helpers::Objects::S3,
                })
                .await
            })+
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name($crate::helpers::Db::Sqlite.into()).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name($crate::helpers::Db::Postgres.into()).await })*
        }
    };
}

pub struct TestApp {
    pub addrs: Addrs,
    pub api: Api,
    shutdown: CancellationToken,
    /// Where media objects lie on disk (the local store's root, or the S3 bucket's).
    pub objects_dir: std::path::PathBuf,
    /// The server's settings as it started (database URL, data dir, …).
    pub settings: Settings,
    /// The per-test PostgreSQL database, dropped with the app.
    _pg_database: Option<PgDatabase>,
    /// The per-test S3 endpoint, stopped with the app.
    _s3: Option<crate::s3_endpoint::S3Endpoint>,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A test's own PostgreSQL database; dropped (with its connections) when this is.
pub struct PgDatabase(String);

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.0.clone();
        // Drop is synchronous and runs inside the test's runtime: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let admin = sea_orm::Database::connect(postgres_base()).await?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map(drop)
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test database: {dropped:?}");
        }
    }
}

fn postgres_base() -> String {
    std::env::var("COURIER_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty PostgreSQL database (its URL, and the guard that drops it); panics (failing
/// the test) when PostgreSQL is unreachable.
pub async fn fresh_postgres() -> (String, PgDatabase) {
    let base = postgres_base();
    let admin = sea_orm::Database::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base} is required for these tests: {e}"));
    let name = format!("courier_test_{}", backend::util::new_id('t'));
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let (root, _) = base.rsplit_once('/').expect("database url has a path");
    (format!("{root}/{name}"), PgDatabase(name))
}

pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::defaults();
    s.http = "127.0.0.1:0".parse().unwrap();
    s.mqtt = "127.0.0.1:0".parse().unwrap();
    s.mqtt_ws = "127.0.0.1:0".parse().unwrap();
    s.data_dir = dir.to_path_buf();
    s.connect_timeout = Duration::from_secs(2);
    // Media jobs run in child processes of the real binary, as under `courier serve`.
    s.media_job_program = Some(env!("CARGO_BIN_EXE_courier").into());
    // Scenarios send in bursts from one device and log in many devices from one address;
    // the rate-limit tests turn limits on.
    s.limits = backend::shared::Limits::default();
    s
}

pub async fn spawn_app(setup: impl Into<Setup>) -> TestApp {
    spawn_app_with(setup, |_| {}).await
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

pub async fn spawn_app_with(setup: impl Into<Setup>, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    init_tracing();
    let setup = setup.into();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(dir.path());
    let mut pg_database = None;
    if let Db::Postgres = setup.db {
        let (url, name) = fresh_postgres().await;
        settings.database_url = Some(url);
        pg_database = Some(name);
    }
    let mut s3 = None;
    let objects_dir = match setup.objects {
        Objects::Local => dir.path().join("objects"),
        Objects::S3 => {
            let endpoint = crate::s3_endpoint::S3Endpoint::start().await;
            let config = crate::s3_endpoint::config(&endpoint);
            let bucket = endpoint.bucket_dir(&config.bucket);
            settings.set_s3(config);
            s3 = Some(endpoint);
            bucket
        }
    };
    tweak(&mut settings);
    let app = App::bind(settings.clone()).await.expect("server starts");
    let addrs = app.addrs();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = app.run(stop).await {
            panic!("server failed: {e:#}");
        }
    });
    // With TLS on, the test's CA sits next to the certificate as `ca.pem` (see tls.rs).
    let (base, http) = match &settings.tls_cert {
        None => (format!("http://{}", addrs.http), reqwest::Client::new()),
        Some(cert) => {
            let ca = std::fs::read(cert.with_file_name("ca.pem")).expect("the test CA");
            let client = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .build()
                .unwrap();
            (format!("https://localhost:{}", addrs.http.port()), client)
        }
    };
    let api = Api::new(&base).with_http(http.clone());
    wait_for_backend(&base, &http).await;
    TestApp {
        addrs,
        api,
        shutdown,
        objects_dir,
        settings,
        _pg_database: pg_database,
        _s3: s3,
        _dir: dir,
    }
}

/// The HTTP API answers before the backend's MQTT session is up; wait for `/readyz`.
async fn wait_for_backend(base: &str, http: &reqwest::Client) {
    let url = format!("{base}/readyz");
    for _ in 0..500 {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server never became ready");
}

pub struct Device {
    pub session: Session,
    pub client: Client,
    pub events: UnboundedReceiver<Event>,
}

impl TestApp {
    /// The server's data directory (SQLite file, local object store).
    /// Uploaded contents (not derivatives) in the object store, S3 or local.
    pub fn stored_blobs(&self) -> usize {
        self.stored_objects("blobs")
    }

    /// Objects under `dir` (`blobs`, `derived`) of the object store, S3 or local.
    pub fn stored_objects(&self, dir: &str) -> usize {
        fn walk(p: &std::path::Path) -> usize {
            std::fs::read_dir(p)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| {
                            if e.path().is_dir() {
                                walk(&e.path())
                            } else {
                                1
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.objects_dir.join(dir))
    }

    /// This server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.addrs.http);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub async fn user(&self, name: &str) -> String {
        self.api
            .sign_up(name, "correct horse battery")
            .await
            .expect("sign up");
        name.to_owned()
    }

    pub async fn users(&self, names: &[&str]) {
        for n in names {
            self.user(n).await;
        }
    }

    /// The direct conversation between two devices' users, created by the first.
    pub async fn direct(&self, a: &Device, b: &Device) -> ConvId {
        self.api
            .create_direct(a.token(), &b.session.user)
            .await
            .expect("create direct conversation")
            .id
    }

    /// A group `title` made by `owner` with the users of `members`, who first let anyone add
    /// them to groups (the default is contacts only).
    pub async fn group(&self, owner: &Device, title: &str, members: &[&Device]) -> ConvId {
        for m in members {
            self.accept_group_adds(m.token()).await;
        }
        let users: Vec<_> = members.iter().map(|d| d.session.user.clone()).collect();
        self.api
            .create_group(owner.token(), title, &users)
            .await
            .expect("create group")
            .id
    }

    /// The token's user lets anyone add them to groups.
    pub async fn accept_group_adds(&self, token: &str) {
        self.api
            .set_group_adds(token, GroupAdds::Everyone)
            .await
            .expect("accept group adds from everyone");
    }

    pub async fn session(&self, name: &str, device: &str) -> Session {
        self.api
            .log_in(name, "correct horse battery", device, "test")
            .await
            .expect("log in")
    }

    pub async fn device(
        &self,
        name: &str,
        device: &str,
        opts: impl FnOnce(&Session) -> ClientOptions,
    ) -> Device {
        let session = self.session(name, device).await;
        let (client, events) = Client::connect(opts(&session)).await.expect("MQTT connect");
        Device {
            session,
            client,
            events,
        }
    }

    pub async fn tcp_device(&self, name: &str, device: &str) -> Device {
        self.device(name, device, ClientOptions::tcp).await
    }
}

/// The typed error a refused call got.
pub fn refusal<T: std::fmt::Debug>(
    r: Result<T, courier_client::ClientError>,
) -> Option<courier_client::protocol::ErrorCode> {
    r.expect_err("refused").code()
}

pub const WAIT: Duration = Duration::from_secs(10);

impl Device {
    /// The next update satisfying `pred`, skipping others; panics after [`WAIT`].
    pub async fn next_update(&mut self, mut pred: impl FnMut(&Update) -> bool) -> Update {
        let ev = self
            .next_event(|e| matches!(e, Event::Update(u) if pred(u)))
            .await;
        let Event::Update(u) = ev else { unreachable!() };
        u
    }

    /// The next event satisfying `pred`, skipping others; panics after [`WAIT`].
    pub async fn next_event(&mut self, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("{}: no matching event within {WAIT:?}", self.session.device)
                })
                .expect("event stream open");
            if pred(&ev) {
                return ev;
            }
        }
    }

    pub async fn next_message(&mut self) -> Update {
        self.next_update(|u| matches!(u.body, UpdateBody::Message { .. }))
            .await
    }

    /// Collects events for `dur`.
    pub async fn drain_for(&mut self, dur: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + dur;
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            out.push(ev);
        }
        out
    }

    /// Asserts that the server closes this device's connection within 1.5 s (revoked,
    /// signed out), then stops the client so that it does not come back.
    pub async fn expect_closed(&mut self, why: &str) {
        let events = self.drain_for(Duration::from_millis(1500)).await;
        assert!(
            events.iter().any(|e| matches!(e, Event::Disconnected(_))),
            "{why}: {events:?}"
        );
        self.client.disconnect().await;
    }

    pub fn token(&self) -> &str {
        &self.session.token
    }
}

impl TestApp {
    /// alice on a [`RawDevice`], bob on an SDK device, and their direct conversation.
    pub async fn raw_alice_and_bob(&self) -> (RawDevice, Device, ConvId) {
        self.users(&["alice", "bob"]).await;
        let b = self.tcp_device("bob", "phone").await;
        let s = self.session("alice", "phone").await;
        let conv = self
            .api
            .create_direct(&s.token, &b.session.user)
            .await
            .unwrap()
            .id;
        (RawDevice::connect(self, &s).await, b, conv)
    }
}

/// A device driven by a bare rumqttc client (no SDK), subscribed to its `rsp`: for requests
/// published back to back, without waiting for answers, so they share a run and a batch.
pub struct RawDevice {
    pub client: rumqttc::AsyncClient,
    events: rumqttc::EventLoop,
    base: String,
    pub token: String,
}

impl RawDevice {
    pub async fn connect(app: &TestApp, s: &Session) -> Self {
        use rumqttc::{AsyncClient, Event as V4Event, MqttOptions, Packet, QoS};
        let mut o = MqttOptions::new(s.device.to_string(), "127.0.0.1", app.addrs.mqtt.port());
        o.set_credentials(s.device.to_string(), s.token.clone())
            .set_inflight(200)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(o, 200);
        let base = format!("u/{}/d/{}", s.user, s.device);
        client
            .subscribe(format!("{base}/rsp"), QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            let ev = tokio::time::timeout(WAIT, events.poll()).await;
            if let V4Event::Incoming(Packet::SubAck(_)) = ev.expect("SUBACK").expect("connected") {
                break;
            }
        }
        Self {
            client,
            events,
            base,
            token: s.token.clone(),
        }
    }

    /// Publishes each `(op, body)` without waiting, then returns the next `requests.len()`
    /// answers, in the order they came.
    pub async fn requests(
        &mut self,
        requests: &[(&str, serde_json::Value)],
    ) -> Vec<serde_json::Value> {
        let publisher = self.publish_all(requests);
        let mut answers = Vec::new();
        while answers.len() < requests.len() {
            answers.push(self.next_answer().await.expect("connected"));
        }
        publisher.await.unwrap();
        answers
    }

    /// Publishes each `(op, body)` in order from a task of its own, stopping if the
    /// connection goes.
    pub fn publish_all(
        &self,
        requests: &[(&str, serde_json::Value)],
    ) -> tokio::task::JoinHandle<()> {
        let c = self.client.clone();
        let all: Vec<(String, String)> = requests
            .iter()
            .map(|(op, body)| (format!("{}/req/{op}", self.base), body.to_string()))
            .collect();
        tokio::spawn(async move {
            for (topic, body) in all {
                let qos = rumqttc::QoS::AtLeastOnce;
                if c.publish(topic, qos, false, body).await.is_err() {
                    return;
                }
            }
        })
    }

    /// The next answer on `rsp`; `None` once the connection is gone.
    pub async fn next_answer(&mut self) -> Option<serde_json::Value> {
        use rumqttc::{Event as V4Event, Packet};
        loop {
            match tokio::time::timeout(WAIT, self.events.poll())
                .await
                .expect("an answer")
            {
                Ok(V4Event::Incoming(Packet::Publish(p))) => {
                    return Some(serde_json::from_slice(&p.payload).unwrap())
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(error = %e, "raw device's connection ended");
                    return None;
                }
            }
        }
    }
}

/// The code of a refusal; panics on success or on a failure that is not the server's answer.
pub fn refused<T: std::fmt::Debug>(
    r: Result<T, courier_client::ClientError>,
) -> courier_client::protocol::ErrorCode {
    match r {
        Err(courier_client::ClientError::Server(e)) => e.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}
