//! `courier serve` settings, layered: defaults → TOML file (`--config`) → environment
//! (`COURIER_…`) → command-line flags. Secrets are never printed.

use backend::http::serve::HttpLimits;
use backend::shared::Limits;
pub use backend::util::parse_duration;
use clap::Args;
use media_worker::S3Config;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Flags (each also an environment variable) and, with the same names in snake_case, the
/// keys of the TOML file. Unset ones fall back to the file, then to the defaults. Durations
/// take a unit (`250ms`, `10s`, `15m`, `48h`, `30d`); a bare number is seconds.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// What this process runs: `all` (broker, backend, HTTP API and media jobs), `broker`,
    /// `backend` (engine, HTTP API, media jobs; reaches the broker at --broker) or
    /// `media-worker` (media jobs only) [default: all]
    #[arg(long, env = "COURIER_ROLE", global = true, value_enum)]
    pub role: Option<Role>,
    /// HTTP API address
    #[arg(long, env = "COURIER_HTTP", global = true)]
    pub http: Option<SocketAddr>,
    /// MQTT over TCP address
    #[arg(long, env = "COURIER_MQTT", global = true)]
    pub mqtt: Option<SocketAddr>,
    /// MQTT over WebSocket address (path /mqtt)
    #[arg(long = "mqtt-ws", env = "COURIER_MQTT_WS", global = true)]
    pub mqtt_ws: Option<SocketAddr>,
    /// Directory for the SQLite database and other local state
    #[arg(long = "data-dir", env = "COURIER_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://path?mode=rwc or postgres://user@host/db (default: SQLite in the data dir)
    #[arg(long = "database-url", env = "COURIER_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Host name clients should use for MQTT (default: the Host the client used for HTTP)
    #[arg(long = "public-host", env = "COURIER_PUBLIC_HOST", global = true)]
    pub public_host: Option<String>,
    /// Password of the backend's MQTT service identity (default: random per start)
    #[arg(
        long = "service-secret",
        env = "COURIER_SERVICE_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub service_secret: Option<String>,
    /// Largest MQTT packet in bytes
    #[arg(
        long = "max-packet-size",
        env = "COURIER_MAX_PACKET_SIZE",
        global = true
    )]
    pub max_packet_size: Option<usize>,
    /// Largest request payload the backend handles, in bytes
    #[arg(
        long = "max-request-size",
        env = "COURIER_MAX_REQUEST_SIZE",
        global = true
    )]
    pub max_request_size: Option<usize>,
    /// Largest media upload in bytes [default: 104857600 (100 MiB)]
    #[arg(
        long = "max-upload-size",
        env = "COURIER_MAX_UPLOAD_SIZE",
        global = true
    )]
    pub max_upload_size: Option<u64>,
    /// Storage each user may hold, in bytes: their files plus unfinished uploads
    /// [default: 2147483648 (2 GiB)]
    #[arg(long = "quota-bytes", env = "COURIER_QUOTA_BYTES", global = true)]
    pub quota_bytes: Option<u64>,
    /// Files each user may hold [default: 20000]
    #[arg(long = "quota-files", env = "COURIER_QUOTA_FILES", global = true)]
    pub quota_files: Option<u64>,
    /// Unfinished resumable uploads are dropped after this long, and so are files no message
    /// carries [default: 24h]
    #[arg(long = "upload-expiry", env = "COURIER_UPLOAD_EXPIRY", global = true, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub upload_expiry: Option<Duration>,
    /// A device's token unused for this long stops working (every HTTP request and MQTT
    /// connect is a use, and a connected device is in use) [default: 90d]
    #[arg(long = "token-idle-ttl", env = "COURIER_TOKEN_IDLE_TTL", global = true, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub token_idle_ttl: Option<Duration>,
    /// A deleted account's username stays taken this long, so nobody can pose as it to its
    /// contacts at once [default: 30d]
    #[arg(long = "deleted-name-grace", env = "COURIER_DELETED_NAME_GRACE", global = true, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub deleted_name_grace: Option<Duration>,
    /// Time allowed for the WebSocket handshake and for CONNECT [default: 10s]
    #[arg(long = "connect-timeout", env = "COURIER_CONNECT_TIMEOUT", global = true, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub connect_timeout: Option<Duration>,
    /// Serve `/metrics` on this address instead of on `--http` (e.g. 127.0.0.1:9100, reachable
    /// only by the monitoring) [default: on --http]
    #[arg(long = "metrics-listen", env = "COURIER_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,
    /// Who may sign up: `open`, `invite` (with a code from `courier invite create`) or `closed` [default: open]
    #[arg(long = "signup", env = "COURIER_SIGNUP", global = true, value_enum)]
    pub signup: Option<SignupMode>,
    /// Most HTTP API connections open at once; past it, new ones wait to be accepted [default: 10000]
    #[arg(
        long = "http-max-connections",
        env = "COURIER_HTTP_MAX_CONNECTIONS",
        global = true
    )]
    pub http_max_connections: Option<usize>,
    /// An HTTP connection that moves less than 1 KiB in this long is closed [default: 60s]
    #[arg(long = "http-idle-timeout", env = "COURIER_HTTP_IDLE_TIMEOUT", global = true, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub http_idle_timeout: Option<Duration>,
    /// How long after sending a sender may edit a message or delete it for everyone [default: 48h]
    #[arg(long = "edit-window", env = "COURIER_EDIT_WINDOW", global = true, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub edit_window: Option<Duration>,
    /// Keep update-log entries at least this long; older ones are trimmed once every active device acknowledged them [default: 30d]
    #[arg(long = "log-retention", env = "COURIER_LOG_RETENTION", global = true, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub log_retention: Option<Duration>,
    /// How often the log trimmer runs [default: 1h]
    #[arg(long = "trim-interval", env = "COURIER_TRIM_INTERVAL", global = true, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub trim_interval: Option<Duration>,
    /// URL that gets a POST for each new message to a user with no connected device (off when unset)
    #[arg(long = "push-webhook", env = "COURIER_PUSH_WEBHOOK", global = true)]
    pub push_webhook: Option<String>,
    /// Bearer token sent to the push webhook
    #[arg(
        long = "push-webhook-token",
        env = "COURIER_PUSH_WEBHOOK_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub push_webhook_token: Option<String>,
    /// S3/MinIO endpoint for media objects, e.g. http://minio:9000 (default: files under the data dir)
    #[arg(long = "s3-endpoint", env = "COURIER_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,
    /// The S3 endpoint as clients reach it, for presigned download URLs [default: --s3-endpoint]
    #[arg(
        long = "s3-public-endpoint",
        env = "COURIER_S3_PUBLIC_ENDPOINT",
        global = true
    )]
    pub s3_public_endpoint: Option<String>,
    /// S3 bucket for media objects, created if missing [default: courier]
    #[arg(long = "s3-bucket", env = "COURIER_S3_BUCKET", global = true)]
    pub s3_bucket: Option<String>,
    /// S3 region used for signing [default: us-east-1]
    #[arg(long = "s3-region", env = "COURIER_S3_REGION", global = true)]
    pub s3_region: Option<String>,
    /// S3 access key
    #[arg(long = "s3-access-key", env = "COURIER_S3_ACCESS_KEY", global = true)]
    pub s3_access_key: Option<String>,
    /// S3 secret key
    #[arg(
        long = "s3-secret-key",
        env = "COURIER_S3_SECRET_KEY",
        hide_env_values = true,
        global = true
    )]
    pub s3_secret_key: Option<String>,
    /// How long a presigned S3 download URL stays valid [default: 5m]
    #[arg(long = "s3-url-ttl", env = "COURIER_S3_URL_TTL", global = true, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub s3_url_ttl: Option<Duration>,
    /// Media jobs this process runs at once; 0 leaves them to `--role media-worker` processes [default: 1]
    #[arg(long = "media-jobs", env = "COURIER_MEDIA_JOBS", global = true)]
    pub media_jobs: Option<usize>,
    /// Address-space limit of each media job process, in bytes [default: 2147483648 (2 GiB)]
    #[arg(
        long = "media-job-memory",
        env = "COURIER_MEDIA_JOB_MEMORY",
        global = true
    )]
    pub media_job_memory: Option<u64>,
    /// How media jobs are confined: `required` (Landlock must confine each job to its own
    /// files, or no job runs) or `best-effort` (without Landlock, only seccomp and the limits)
    /// [default: required]
    #[arg(
        long = "media-sandbox",
        env = "COURIER_MEDIA_SANDBOX",
        global = true,
        value_enum
    )]
    pub media_sandbox: Option<MediaSandbox>,
    /// MQTT broker (host:port) a backend or media worker connects to, as the service identity
    /// (`--service-secret`) [default: 127.0.0.1 and the --mqtt port]
    #[arg(long, env = "COURIER_BROKER", global = true)]
    pub broker: Option<String>,
    /// Bearer secret an external broker presents to the auth/ACL hooks under /v1/broker (the
    /// hooks are off when unset)
    #[arg(
        long = "broker-hook-secret",
        env = "COURIER_BROKER_HOOK_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub broker_hook_secret: Option<String>,
    /// Log lines as `text` or `json` (one object per line) [default: text]
    #[arg(
        long = "log-format",
        env = "COURIER_LOG_FORMAT",
        global = true,
        value_enum
    )]
    pub log_format: Option<crate::telemetry::LogFormat>,
    /// Redis for state the instances share: presence, rate limits, the history cache, e.g.
    /// redis://127.0.0.1:6379/0 (default: this process's memory)
    #[arg(long = "redis-url", env = "COURIER_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so deployments can share a Redis [default: courier:]
    #[arg(long = "redis-prefix", env = "COURIER_REDIS_PREFIX", global = true)]
    pub redis_prefix: Option<String>,
    /// A rate limit as NAME=count/period or NAME=off, e.g. `--rate sync=60/1m --rate
    /// typing=off` (comma-separated in the environment). Names and defaults: docs/protocol.md,
    /// "Rate limits"
    #[arg(
        long = "rate",
        env = "COURIER_RATE",
        global = true,
        value_delimiter = ',',
        value_parser = parse_limit
    )]
    #[serde(default, deserialize_with = "limit_settings")]
    pub rate: Vec<String>,
}

/// One `--rate` setting, checked.
fn parse_limit(s: &str) -> Result<String, String> {
    Limits::standard().apply(s).map(|_| s.to_owned())
}

fn limit_settings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let all = Vec::<String>::deserialize(d)?;
    for s in &all {
        parse_limit(s).map_err(serde::de::Error::custom)?;
    }
    Ok(all)
}

/// `--signup`: who may create an account over HTTP.
#[derive(clap::ValueEnum, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SignupMode {
    /// Anyone (within the sign-up rate limits).
    #[default]
    Open,
    /// Only with a code from `courier invite create`.
    Invite,
    /// Nobody.
    Closed,
}

impl From<SignupMode> for backend::store::invites::Signup {
    fn from(m: SignupMode) -> Self {
        match m {
            SignupMode::Open => Self::Open,
            SignupMode::Invite => Self::Invite,
            SignupMode::Closed => Self::Closed,
        }
    }
}

/// `--media-sandbox`: see `media_worker::sandbox`.
#[derive(clap::ValueEnum, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MediaSandbox {
    #[default]
    Required,
    BestEffort,
}

impl From<MediaSandbox> for media_worker::sandbox::Confinement {
    fn from(m: MediaSandbox) -> Self {
        match m {
            MediaSandbox::Required => Self::Required,
            MediaSandbox::BestEffort => Self::BestEffort,
        }
    }
}

/// What a `courier serve` process runs.
#[derive(clap::ValueEnum, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The broker, the backend, the HTTP API and media jobs, in one process.
    #[default]
    All,
    /// Courier's MQTT broker only (device authentication, ACL, presence events).
    Broker,
    /// The delivery engine, the HTTP API and media jobs, against a broker given by `--broker`.
    Backend,
    /// Media processing jobs only.
    MediaWorker,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Broker => "broker",
            Role::Backend => "backend",
            Role::MediaWorker => "media-worker",
        }
    }

    pub fn runs_broker(self) -> bool {
        matches!(self, Role::All | Role::Broker)
    }

    pub fn serves_http(self) -> bool {
        matches!(self, Role::All | Role::Backend)
    }
}

impl Settings {
    /// A role other than `all` shares the database with the other processes and talks to them
    /// as the service identity: it needs PostgreSQL and the common `--service-secret`.
    /// The shared secrets, when set, are long enough not to be guessed (16 bytes or more) and
    /// are not the placeholders of an example file.
    pub fn check_secrets(&self) -> anyhow::Result<()> {
        for (flag, secret) in [
            ("--service-secret", &self.service_secret),
            ("--broker-hook-secret", &self.broker_hook_secret),
        ] {
            let Some(secret) = secret else { continue };
            anyhow::ensure!(
                secret.len() >= 16 && !secret.to_ascii_lowercase().contains("change-me"),
                "{flag} must be at least 16 bytes and not a placeholder \
                 (make one with: openssl rand -hex 32)"
            );
        }
        Ok(())
    }

    pub fn check_split_role(&self) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        if !self.database_url.starts_with("postgres") {
            missing.push(
                "the PostgreSQL database it shares with the other roles \
                 (--database-url postgres://…)",
            );
        }
        if self.service_secret.is_none() {
            missing.push(
                "the --service-secret all roles share (it talks to them as the service identity)",
            );
        }
        anyhow::ensure!(
            missing.is_empty(),
            "--role {} needs {}",
            self.role.name(),
            missing.join(" and ")
        );
        Ok(())
    }
}

/// A TOML duration: a string with a unit, or an integer number of seconds.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(n) => Ok(Some(Duration::from_secs(n))),
        Raw::Text(t) => parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[derive(Clone)]
pub struct Settings {
    pub role: Role,
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    pub mqtt_ws: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub public_host: Option<String>,
    pub service_secret: Option<String>,
    pub max_packet_size: usize,
    pub max_request_size: usize,
    pub max_upload_size: u64,
    pub quota_bytes: u64,
    pub quota_files: u64,
    pub upload_expiry: Duration,
    pub token_idle_ttl: Duration,
    pub deleted_name_grace: Duration,
    pub connect_timeout: Duration,
    pub http_limits: HttpLimits,
    pub metrics_listen: Option<SocketAddr>,
    pub signup: SignupMode,
    pub edit_window: Duration,
    pub log_retention: Duration,
    pub trim_interval: Duration,
    pub push_webhook: Option<String>,
    pub push_webhook_token: Option<String>,
    /// Media objects in S3/MinIO instead of under the data dir.
    pub s3: Option<S3Config>,
    pub media_jobs: usize,
    pub media_job_memory: u64,
    pub media_sandbox: MediaSandbox,
    /// The program each media job runs in (`<program> media-job`); `None` is this executable.
    /// Not a flag: embedders and tests set it.
    pub media_job_program: Option<PathBuf>,
    pub broker: Option<String>,
    pub broker_hook_secret: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub log_format: crate::telemetry::LogFormat,
    pub limits: Limits,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("role", &self.role)
            .field("http", &self.http)
            .field("mqtt", &self.mqtt)
            .field("mqtt_ws", &self.mqtt_ws)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("public_host", &self.public_host)
            .field(
                "service_secret",
                &self.service_secret.as_ref().map(|_| "<set>"),
            )
            .field("max_packet_size", &self.max_packet_size)
            .field("max_request_size", &self.max_request_size)
            .field("max_upload_size", &self.max_upload_size)
            .field("quota_bytes", &self.quota_bytes)
            .field("quota_files", &self.quota_files)
            .field("upload_expiry", &self.upload_expiry)
            .field("token_idle_ttl", &self.token_idle_ttl)
            .field("deleted_name_grace", &self.deleted_name_grace)
            .field("connect_timeout", &self.connect_timeout)
            .field("http_limits", &self.http_limits)
            .field("signup", &self.signup)
            .field("metrics_listen", &self.metrics_listen)
            .field("edit_window", &self.edit_window)
            .field("log_retention", &self.log_retention)
            .field("trim_interval", &self.trim_interval)
            .field("push_webhook", &self.push_webhook)
            .field(
                "push_webhook_token",
                &self.push_webhook_token.as_ref().map(|_| "<set>"),
            )
            .field("s3", &self.s3)
            .field("media_jobs", &self.media_jobs)
            .field("media_job_memory", &self.media_job_memory)
            .field("media_sandbox", &self.media_sandbox)
            .field("media_job_program", &self.media_job_program)
            .field("broker", &self.broker)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("log_format", &self.log_format)
            .field("limits", &self.limits)
            .field(
                "broker_hook_secret",
                &self.broker_hook_secret.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("invalid config file {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
}

impl Settings {
    pub fn defaults() -> Self {
        Self::resolve(ServeArgs::default(), ServeArgs::default())
    }

    /// Flags/env over the file (if any) over the defaults.
    pub fn load(args: ServeArgs, config: Option<&Path>) -> Result<Self, SettingsError> {
        let file = match config {
            None => ServeArgs::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| SettingsError::Read(path.into(), e))?;
                toml::from_str(&text).map_err(|e| SettingsError::Parse(path.into(), e))?
            }
        };
        Ok(Self::resolve(args, file))
    }

    fn resolve(a: ServeArgs, f: ServeArgs) -> Self {
        let data_dir = a
            .data_dir
            .or(f.data_dir)
            .unwrap_or_else(|| "courier-data".into());
        let database_url = a.database_url.or(f.database_url).unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("courier.db").display()
            )
        });
        Self {
            role: a.role.or(f.role).unwrap_or_default(),
            http: a.http.or(f.http).unwrap_or(([127, 0, 0, 1], 8080).into()),
            mqtt: a.mqtt.or(f.mqtt).unwrap_or(([0, 0, 0, 0], 1883).into()),
            mqtt_ws: a
                .mqtt_ws
                .or(f.mqtt_ws)
                .unwrap_or(([0, 0, 0, 0], 8083).into()),
            data_dir,
            database_url,
            public_host: a.public_host.or(f.public_host),
            service_secret: a.service_secret.or(f.service_secret),
            max_packet_size: a
                .max_packet_size
                .or(f.max_packet_size)
                .unwrap_or(1024 * 1024),
            max_request_size: a
                .max_request_size
                .or(f.max_request_size)
                .unwrap_or(64 * 1024),
            max_upload_size: a
                .max_upload_size
                .or(f.max_upload_size)
                .unwrap_or(100 * 1024 * 1024),
            quota_bytes: a.quota_bytes.or(f.quota_bytes).unwrap_or(2 << 30),
            quota_files: a.quota_files.or(f.quota_files).unwrap_or(20_000),
            upload_expiry: a
                .upload_expiry
                .or(f.upload_expiry)
                .unwrap_or(Duration::from_secs(24 * 3600)),
            token_idle_ttl: a
                .token_idle_ttl
                .or(f.token_idle_ttl)
                .unwrap_or(Duration::from_secs(90 * 24 * 3600)),
            deleted_name_grace: a
                .deleted_name_grace
                .or(f.deleted_name_grace)
                .unwrap_or(Duration::from_secs(30 * 24 * 3600)),
            connect_timeout: a
                .connect_timeout
                .or(f.connect_timeout)
                .unwrap_or(Duration::from_secs(10)),
            signup: a.signup.or(f.signup).unwrap_or_default(),
            metrics_listen: a.metrics_listen.or(f.metrics_listen),
            http_limits: {
                let standard = HttpLimits::default();
                HttpLimits {
                    max_connections: a
                        .http_max_connections
                        .or(f.http_max_connections)
                        .unwrap_or(standard.max_connections)
                        .max(1),
                    idle_timeout: a
                        .http_idle_timeout
                        .or(f.http_idle_timeout)
                        .unwrap_or(standard.idle_timeout)
                        .max(Duration::from_secs(1)),
                }
            },
            edit_window: a
                .edit_window
                .or(f.edit_window)
                .unwrap_or(Duration::from_secs(48 * 3600)),
            log_retention: a
                .log_retention
                .or(f.log_retention)
                .unwrap_or(Duration::from_secs(30 * 86_400)),
            trim_interval: a
                .trim_interval
                .or(f.trim_interval)
                .unwrap_or(Duration::from_secs(3600)),
            push_webhook: a.push_webhook.or(f.push_webhook),
            push_webhook_token: a.push_webhook_token.or(f.push_webhook_token),
            s3: a.s3_endpoint.or(f.s3_endpoint).map(|endpoint| S3Config {
                endpoint,
                public_endpoint: a.s3_public_endpoint.or(f.s3_public_endpoint),
                bucket: a
                    .s3_bucket
                    .or(f.s3_bucket)
                    .unwrap_or_else(|| "courier".into()),
                region: a
                    .s3_region
                    .or(f.s3_region)
                    .unwrap_or_else(|| "us-east-1".into()),
                access_key: a.s3_access_key.or(f.s3_access_key).unwrap_or_default(),
                secret_key: a.s3_secret_key.or(f.s3_secret_key).unwrap_or_default(),
                url_ttl: a
                    .s3_url_ttl
                    .or(f.s3_url_ttl)
                    .unwrap_or(Duration::from_secs(300)),
            }),
            media_jobs: a.media_jobs.or(f.media_jobs).unwrap_or(1),
            media_job_memory: a.media_job_memory.or(f.media_job_memory).unwrap_or(2 << 30),
            media_sandbox: a.media_sandbox.or(f.media_sandbox).unwrap_or_default(),
            media_job_program: None,
            broker: a.broker.or(f.broker),
            broker_hook_secret: a.broker_hook_secret.or(f.broker_hook_secret),
            redis_url: a.redis_url.or(f.redis_url),
            log_format: a.log_format.or(f.log_format).unwrap_or_default(),
            redis_prefix: a
                .redis_prefix
                .or(f.redis_prefix)
                .unwrap_or_else(|| "courier:".into()),
            limits: {
                let mut limits = Limits::standard();
                for setting in f.rate.iter().chain(&a.rate) {
                    limits.apply(setting).expect("checked when parsed");
                }
                limits
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_flags_over_file_over_defaults() {
        let file: ServeArgs =
            toml::from_str("http = \"127.0.0.1:9000\"\nmqtt = \"127.0.0.1:9001\"").unwrap();
        let args = ServeArgs {
            mqtt: Some("127.0.0.1:9999".parse().unwrap()),
            ..Default::default()
        };
        let s = Settings::resolve(args, file);
        assert_eq!(s.http.port(), 9000);
        assert_eq!(s.mqtt.port(), 9999);
        assert_eq!(s.mqtt_ws.port(), 8083);
        assert!(s.database_url.starts_with("sqlite://courier-data/"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<ServeArgs>("htp = \"x\"").is_err());
    }

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("48h"), Ok(Duration::from_secs(48 * 3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("h").is_err());
        let file: ServeArgs = toml::from_str("edit_window = \"15m\"\nconnect_timeout = 3").unwrap();
        assert_eq!(file.edit_window, Some(Duration::from_secs(900)));
        assert_eq!(file.connect_timeout, Some(Duration::from_secs(3)));
    }

    #[test]
    fn rate_settings_layer_flags_over_file_over_defaults() {
        use backend::shared::{Limit, Rate};
        let file: ServeArgs = toml::from_str(r#"rate = ["sync=7/1m", "send=off"]"#).unwrap();
        let args = ServeArgs {
            rate: vec!["send=9/1s".into()],
            ..Default::default()
        };
        let s = Settings::resolve(args, file);
        let per = |count, secs| {
            Some(Rate {
                count,
                per: Duration::from_secs(secs),
            })
        };
        assert_eq!(s.limits.get(Limit::Sync), per(7, 60));
        assert_eq!(s.limits.get(Limit::Send), per(9, 1));
        assert_eq!(s.limits.get(Limit::Login), Some(Limit::Login.standard()));
        assert!(toml::from_str::<ServeArgs>(r#"rate = ["sink=1/1s"]"#).is_err());
        assert!(parse_limit("sync=fast").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
