//! `courier serve` settings, each declared once below (as a field of [`Settings`]): its flag,
//! its environment variable, its config-file key (the field's name), its default and its
//! help. They layer: defaults → TOML file (`--config`) → environment (`COURIER_…`) →
//! command-line flags. The file is read through the same parsers as the flags, so a value
//! means the same wherever it is written. `courier config` prints the effective settings and
//! where each came from; secrets are never printed.

use backend::http::serve::HttpLimits;
use backend::shared::Limits;
pub use backend::util::parse_duration;
use clap::parser::ValueSource;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches};
use media_worker::S3Config;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Durations take a unit (`250ms`, `10s`, `15m`, `48h`, `30d`); a bare number is seconds.
#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// TOML settings file: keys are these settings' names in snake_case (`mqtt_ws`,
    /// `max_upload_size`); durations and sizes as strings or numbers
    #[arg(long, env = "COURIER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// What this process runs: `all` (broker, backend, HTTP API and media jobs), `broker`,
    /// `backend` (engine, HTTP API, media jobs; reaches the broker at --broker) or
    /// `media-worker` (media jobs only)
    #[arg(long, env = "COURIER_ROLE", global = true, value_enum, default_value_t)]
    pub role: Role,
    /// HTTP API address
    #[arg(
        long,
        env = "COURIER_HTTP",
        global = true,
        default_value = "127.0.0.1:8080"
    )]
    pub http: SocketAddr,
    /// MQTT over TCP address
    #[arg(
        long,
        env = "COURIER_MQTT",
        global = true,
        default_value = "0.0.0.0:1883"
    )]
    pub mqtt: SocketAddr,
    /// MQTT over WebSocket address (path /mqtt)
    #[arg(
        long,
        env = "COURIER_MQTT_WS",
        global = true,
        default_value = "0.0.0.0:8083"
    )]
    pub mqtt_ws: SocketAddr,
    /// MQTT over TLS address (with --tls-cert and --tls-key)
    #[arg(
        long,
        env = "COURIER_MQTTS",
        global = true,
        default_value = "0.0.0.0:8883"
    )]
    pub mqtts: SocketAddr,
    /// TLS certificate chain (PEM, leaf first). With --tls-key it turns on TLS everywhere:
    /// MQTT over TLS on --mqtts, WebSocket over TLS (wss://) on --mqtt-ws and HTTPS on --http.
    /// The files are re-read on SIGHUP and when they change, without dropping connections
    #[arg(long, env = "COURIER_TLS_CERT", global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) for --tls-cert
    #[arg(long, env = "COURIER_TLS_KEY", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Directory for the SQLite database and other local state
    #[arg(
        long,
        env = "COURIER_DATA_DIR",
        global = true,
        default_value = "courier-data"
    )]
    pub data_dir: PathBuf,
    /// Database URL: sqlite://path?mode=rwc or postgres://user@host/db (default: SQLite in the
    /// data dir)
    #[arg(long, env = "COURIER_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Host name clients should use for MQTT (default: the Host the client used for HTTP)
    #[arg(long, env = "COURIER_PUBLIC_HOST", global = true)]
    pub public_host: Option<String>,
    /// Password of the backend's MQTT service identity (default: random per start)
    #[arg(
        long,
        env = "COURIER_SERVICE_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub service_secret: Option<String>,
    /// Largest MQTT packet in bytes
    #[arg(
        long,
        env = "COURIER_MAX_PACKET_SIZE",
        global = true,
        default_value = "1048576"
    )]
    pub max_packet_size: usize,
    /// Largest request payload the backend handles, in bytes
    #[arg(
        long,
        env = "COURIER_MAX_REQUEST_SIZE",
        global = true,
        default_value = "65536"
    )]
    pub max_request_size: usize,
    /// Largest media upload in bytes (100 MiB)
    #[arg(
        long,
        env = "COURIER_MAX_UPLOAD_SIZE",
        global = true,
        default_value = "104857600"
    )]
    pub max_upload_size: u64,
    /// Storage each user may hold, in bytes: their files plus unfinished uploads (2 GiB)
    #[arg(
        long,
        env = "COURIER_QUOTA_BYTES",
        global = true,
        default_value = "2147483648"
    )]
    pub quota_bytes: u64,
    /// Files each user may hold
    #[arg(
        long,
        env = "COURIER_QUOTA_FILES",
        global = true,
        default_value = "20000"
    )]
    pub quota_files: u64,
    /// Unfinished resumable uploads are dropped after this long, and so are files no message
    /// carries
    #[arg(long, env = "COURIER_UPLOAD_EXPIRY", global = true, default_value = "24h", value_parser = parse_duration)]
    pub upload_expiry: Duration,
    /// A device's token unused for this long stops working (every HTTP request and MQTT
    /// connect is a use, and a connected device is in use)
    #[arg(long, env = "COURIER_TOKEN_IDLE_TTL", global = true, default_value = "90d", value_parser = parse_duration)]
    pub token_idle_ttl: Duration,
    /// A deleted account's username stays taken this long, so nobody can pose as it to its
    /// contacts at once
    #[arg(long, env = "COURIER_DELETED_NAME_GRACE", global = true, default_value = "30d", value_parser = parse_duration)]
    pub deleted_name_grace: Duration,
    /// Time allowed for the WebSocket handshake (and the TLS one) and for CONNECT
    #[arg(long, env = "COURIER_CONNECT_TIMEOUT", global = true, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Serve `/metrics` on this address instead of on `--http` (e.g. 127.0.0.1:9100, reachable
    /// only by the monitoring) (default: on --http)
    #[arg(long, env = "COURIER_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,
    /// Who may sign up: `open`, `invite` (with a code from `courier invite create`) or `closed`
    #[arg(
        long,
        env = "COURIER_SIGNUP",
        global = true,
        value_enum,
        default_value_t
    )]
    pub signup: SignupMode,
    /// Most HTTP API connections open at once; past it, new ones wait to be accepted
    #[arg(long, env = "COURIER_HTTP_MAX_CONNECTIONS", global = true, default_value = "10000",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub http_max_connections: usize,
    /// An HTTP connection that moves less than 1 KiB in this long is closed (at least 1s)
    #[arg(long, env = "COURIER_HTTP_IDLE_TIMEOUT", global = true, default_value = "60s", value_parser = parse_duration)]
    pub http_idle_timeout: Duration,
    /// How long after sending a sender may edit a message or delete it for everyone
    #[arg(long, env = "COURIER_EDIT_WINDOW", global = true, default_value = "48h", value_parser = parse_duration)]
    pub edit_window: Duration,
    /// Keep update-log entries at least this long; older ones are trimmed once every active
    /// device acknowledged them
    #[arg(long, env = "COURIER_LOG_RETENTION", global = true, default_value = "30d", value_parser = parse_duration)]
    pub log_retention: Duration,
    /// How often the log trimmer runs
    #[arg(long, env = "COURIER_TRIM_INTERVAL", global = true, default_value = "1h", value_parser = parse_duration)]
    pub trim_interval: Duration,
    /// URL that gets a POST for each new message to a user with no connected device (off when
    /// unset)
    #[arg(long, env = "COURIER_PUSH_WEBHOOK", global = true)]
    pub push_webhook: Option<String>,
    /// What the push webhook speaks: `courier` (one notice per POST, docs/protocol.md "Push
    /// notices") or `gorush` (gorush's /api/push, which relays to FCM, APNs and Huawei)
    #[arg(
        long,
        env = "COURIER_PUSH_FORMAT",
        global = true,
        value_enum,
        default_value_t
    )]
    pub push_format: PushFormat,
    /// Bearer token sent to the push webhook
    #[arg(
        long,
        env = "COURIER_PUSH_WEBHOOK_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub push_webhook_token: Option<String>,
    /// S3/MinIO endpoint for media objects, e.g. http://minio:9000 (default: files under the
    /// data dir)
    #[arg(long, env = "COURIER_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,
    /// The S3 endpoint as clients reach it, for presigned download URLs (default:
    /// --s3-endpoint)
    #[arg(long, env = "COURIER_S3_PUBLIC_ENDPOINT", global = true)]
    pub s3_public_endpoint: Option<String>,
    /// S3 bucket for media objects, created if missing
    #[arg(
        long,
        env = "COURIER_S3_BUCKET",
        global = true,
        default_value = "courier"
    )]
    pub s3_bucket: String,
    /// S3 region used for signing
    #[arg(
        long,
        env = "COURIER_S3_REGION",
        global = true,
        default_value = "us-east-1"
    )]
    pub s3_region: String,
    /// S3 access key
    #[arg(long, env = "COURIER_S3_ACCESS_KEY", global = true)]
    pub s3_access_key: Option<String>,
    /// S3 secret key
    #[arg(
        long,
        env = "COURIER_S3_SECRET_KEY",
        global = true,
        hide_env_values = true
    )]
    pub s3_secret_key: Option<String>,
    /// How long a presigned S3 download URL stays valid
    #[arg(long, env = "COURIER_S3_URL_TTL", global = true, default_value = "5m", value_parser = parse_duration)]
    pub s3_url_ttl: Duration,
    /// Media jobs this process runs at once; 0 leaves them to `--role media-worker` processes
    #[arg(long, env = "COURIER_MEDIA_JOBS", global = true, default_value = "1")]
    pub media_jobs: usize,
    /// Address-space limit of each media job process, in bytes (2 GiB)
    #[arg(
        long,
        env = "COURIER_MEDIA_JOB_MEMORY",
        global = true,
        default_value = "2147483648"
    )]
    pub media_job_memory: u64,
    /// How media jobs are confined: `required` (Landlock must confine each job to its own
    /// files, or no job runs) or `best-effort` (without Landlock, only seccomp and the limits)
    #[arg(
        long,
        env = "COURIER_MEDIA_SANDBOX",
        global = true,
        value_enum,
        default_value_t
    )]
    pub media_sandbox: MediaSandbox,
    /// MQTT broker (host:port) a backend or media worker connects to, as the service identity
    /// (`--service-secret`) (default: 127.0.0.1 and the --mqtt port)
    #[arg(long, env = "COURIER_BROKER", global = true)]
    pub broker: Option<String>,
    /// Bearer secret an external broker presents to the auth/ACL hooks under /v1/broker (the
    /// hooks are off when unset)
    #[arg(
        long,
        env = "COURIER_BROKER_HOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub broker_hook_secret: Option<String>,
    /// Log lines as `text` or `json` (one object per line)
    #[arg(
        long,
        env = "COURIER_LOG_FORMAT",
        global = true,
        value_enum,
        default_value_t
    )]
    pub log_format: crate::telemetry::LogFormat,
    /// Redis for state the instances share: presence, rate limits, the history cache, e.g.
    /// redis://127.0.0.1:6379/0 (default: this process's memory)
    #[arg(long, env = "COURIER_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so deployments can share a Redis
    #[arg(
        long,
        env = "COURIER_REDIS_PREFIX",
        global = true,
        default_value = "courier:"
    )]
    pub redis_prefix: String,
    /// A rate limit as NAME=count/period or NAME=off, e.g. `--rate sync=60/1m --rate
    /// typing=off` (comma-separated in the environment; a list in the file, applied before
    /// the flags). Names and defaults: docs/protocol.md, "Rate limits"
    #[arg(long, env = "COURIER_RATE", global = true, value_delimiter = ',', value_parser = parse_limit)]
    pub rate: Vec<String>,

    /// The rate limits: the standard ones with `rate` applied. Not a flag (it is `rate`);
    /// embedders and tests may set it.
    #[arg(skip = Limits::standard())]
    pub limits: Limits,
    /// The program each media job runs in (`<program> media-job`); `None` is this executable.
    /// Not a flag: embedders and tests set it.
    #[arg(skip)]
    pub media_job_program: Option<PathBuf>,
}

/// One `--rate` setting, checked.
fn parse_limit(s: &str) -> Result<String, String> {
    Limits::standard().apply(s).map(|_| s.to_owned())
}

/// `--push-format`: see `backend::push::PushFormat`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PushFormat {
    #[default]
    Courier,
    Gorush,
}

impl From<PushFormat> for backend::push::PushFormat {
    fn from(f: PushFormat) -> Self {
        match f {
            PushFormat::Courier => Self::Courier,
            PushFormat::Gorush => Self::Gorush,
        }
    }
}

/// `--signup`: who may create an account over HTTP.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
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
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
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
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
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
        if !self.database_url().starts_with("postgres") {
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

impl Settings {
    /// Every setting at its default, whatever the environment says (for embedders and tests).
    pub fn defaults() -> Self {
        let cmd = Self::augment_args(clap::Command::new("courier").no_binary_name(true))
            .mut_args(|a| a.env(None));
        let matches = cmd.try_get_matches_from([""; 0]).expect("defaults parse");
        Self::from_matches(&matches, &[])
    }

    /// The settings in `matches` (the flags and environment of a command that flattens
    /// [`Settings`]), with `file_rates` (the config file's `rate` list) under the flags'.
    pub fn from_matches(matches: &clap::ArgMatches, file_rates: &[String]) -> Self {
        let mut s = Self::from_arg_matches(matches).expect("settings parse");
        for setting in file_rates.iter().chain(&s.rate) {
            s.limits.apply(setting).expect("checked when parsed");
        }
        s
    }

    /// The database URL: `--database-url`, or SQLite in the data dir.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("courier.db").display()
            )
        })
    }

    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.http_max_connections.max(1),
            idle_timeout: self.http_idle_timeout.max(Duration::from_secs(1)),
        }
    }

    /// Media objects in S3/MinIO (with `--s3-endpoint`) instead of under the data dir.
    pub fn s3(&self) -> Option<S3Config> {
        Some(S3Config {
            endpoint: self.s3_endpoint.clone()?,
            public_endpoint: self.s3_public_endpoint.clone(),
            bucket: self.s3_bucket.clone(),
            region: self.s3_region.clone(),
            access_key: self.s3_access_key.clone().unwrap_or_default(),
            secret_key: self.s3_secret_key.clone().unwrap_or_default(),
            url_ttl: self.s3_url_ttl,
        })
    }

    /// Sets every `s3_*` setting from `c`.
    pub fn set_s3(&mut self, c: S3Config) {
        self.s3_endpoint = Some(c.endpoint);
        self.s3_public_endpoint = c.public_endpoint;
        self.s3_bucket = c.bucket;
        self.s3_region = c.region;
        self.s3_access_key = Some(c.access_key);
        self.s3_secret_key = Some(c.secret_key);
        self.s3_url_ttl = c.url_ttl;
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
    Parse(PathBuf, String),
}

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(long) => write!(f, "flag --{long}"),
        }
    }
}

/// One line of `courier config`: a setting, its effective value as text (secrets redacted,
/// passwords in URLs masked; empty when unset) and where it came from.
#[derive(Clone, Debug)]
pub struct Effective {
    pub key: String,
    pub values: Vec<String>,
    pub source: Source,
}

/// A command line parsed over its environment over its config file: the command `C`
/// (which flattens [`Settings`]), its settings with the file's layer in, and where each
/// setting came from.
pub struct Loaded<C> {
    pub command: C,
    pub settings: Settings,
    pub effective: Vec<Effective>,
}

/// Parses `argv` (with the program name first) for `C`. A flag given on the command line
/// beats its environment variable, which beats the file named by `--config`/`COURIER_CONFIG`,
/// which beats the default. The file's values go through the flags' own parsers (each is
/// handed to clap as if it were its flag), so they are checked the same way; a key that is no
/// setting is an error. `rate` lists add up: the file's first, then the environment's or the
/// flags'. `--help`, `--version` and bad flags exit as clap does.
pub fn load<C: CommandFactory + FromArgMatches>(
    argv: Vec<OsString>,
) -> Result<Loaded<C>, SettingsError> {
    let cmd = C::command();
    let first = cmd
        .clone()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    let ids = setting_ids();
    let file = first.get_one::<PathBuf>("config").cloned();
    let mut from_file = Vec::new();
    let mut file_rates = Vec::new();
    let mut injected: Vec<OsString> = Vec::new();
    if let Some(path) = &file {
        let bad = |why: String| SettingsError::Parse(path.clone(), why);
        let text =
            std::fs::read_to_string(path).map_err(|e| SettingsError::Read(path.clone(), e))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for (key, value) in table {
            if !ids.contains(&key) {
                return Err(bad(format!(
                    "`{key}` is not a setting (`courier config` lists them)"
                )));
            }
            let values = file_values(&value).ok_or_else(|| {
                bad(format!(
                    "`{key}` takes a string, a number, a boolean or a list of them"
                ))
            })?;
            from_file.push(key.clone());
            if key == "rate" {
                for v in &values {
                    parse_limit(v).map_err(|e| bad(format!("`rate`: {e}")))?;
                }
                file_rates = values;
                continue;
            }
            let overridden = matches!(
                first.value_source(&key),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            if overridden {
                continue;
            }
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == key.as_str())
                .expect("a setting");
            if values.len() != 1 && !matches!(arg.get_action(), ArgAction::Append) {
                return Err(bad(format!("`{key}` takes one value")));
            }
            let long = arg.get_long().expect("settings are flags");
            injected.extend(
                values
                    .iter()
                    .map(|v| OsString::from(format!("--{long}={v}"))),
            );
        }
    }
    // The file's values go first, as flags, so the real command line (and its subcommand)
    // follows unchanged.
    let matches = if injected.is_empty() {
        first.clone()
    } else {
        let program = argv.first().cloned().unwrap_or_else(|| "courier".into());
        let with_file: Vec<OsString> = std::iter::once(program)
            .chain(injected)
            .chain(argv.iter().skip(1).cloned())
            .collect();
        cmd.clone()
            .try_get_matches_from(&with_file)
            .map_err(|e| SettingsError::Parse(file.clone().expect("a file"), e.to_string()))?
    };
    let command = C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let settings = Settings::from_matches(&matches, &file_rates);
    let effective = cmd
        .get_arguments()
        .filter(|a| a.get_id() == "config" || ids.contains(&a.get_id().to_string()))
        .map(|arg| {
            let key = arg.get_id().as_str().to_owned();
            let source = match first.value_source(&key) {
                Some(ValueSource::CommandLine) => {
                    Source::Flag(arg.get_long().unwrap_or_default().to_owned())
                }
                Some(ValueSource::EnvVariable) => Source::Env(
                    arg.get_env()
                        .map(|e| e.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                _ if from_file.contains(&key) => Source::File(file.clone().expect("a file")),
                _ => Source::Default,
            };
            let mut values: Vec<String> = matches
                .get_raw(&key)
                .into_iter()
                .flatten()
                .map(|v| redact_url(&v.to_string_lossy()))
                .collect();
            if key == "rate" {
                values = file_rates.iter().cloned().chain(values).collect();
            }
            if arg.is_hide_env_values_set() && !values.is_empty() {
                values = vec!["<redacted>".into()];
            }
            Effective {
                key,
                values,
                source,
            }
        })
        .collect();
    Ok(Loaded {
        command,
        settings,
        effective,
    })
}

/// The ids (= config-file keys) of every setting.
fn setting_ids() -> Vec<String> {
    Settings::augment_args(clap::Command::new("courier"))
        .get_arguments()
        .map(|a| a.get_id().as_str().to_owned())
        .filter(|id| id != "config")
        .collect()
}

/// A file value as the text its flag would take: strings as they are, numbers and booleans
/// printed, lists element by element.
fn file_values(v: &toml::Value) -> Option<Vec<String>> {
    match v {
        toml::Value::String(s) => Some(vec![s.clone()]),
        toml::Value::Integer(n) => Some(vec![n.to_string()]),
        toml::Value::Float(n) => Some(vec![n.to_string()]),
        toml::Value::Boolean(b) => Some(vec![b.to_string()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| {
                file_values(i)
                    .filter(|v| v.len() == 1)
                    .map(|mut v| v.remove(0))
            })
            .collect(),
        _ => None,
    }
}

/// The settings as a Markdown table (flag, environment variable, file key, default, help),
/// made from the declarations above: docs/configuration.md holds it, and a test keeps the two
/// equal.
pub fn reference_markdown() -> String {
    let cmd = Settings::augment_args(clap::Command::new("courier"));
    let mut out = String::from(
        "| flag | environment | file key | default | what it does |\n|---|---|---|---|---|\n",
    );
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| format!("`{}`", v.to_string_lossy()))
            .collect();
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string().replace('\n', " "))
            .unwrap_or_default();
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let key = if id == "config" {
            "—".to_owned()
        } else {
            format!("`{id}`")
        };
        out.push_str(&format!(
            "| `--{}` | {env} | {key} | {} | {} |\n",
            arg.get_long().unwrap_or(id),
            if defaults.is_empty() {
                "—".to_owned()
            } else {
                defaults.join(", ")
            },
            help.replace('|', "\\|"),
        ));
    }
    out
}

/// `courier config`'s output: a TOML file of the effective settings (loadable as `--config`
/// once the redacted secrets are filled in), each line saying where its value came from.
pub fn render(effective: &[Effective]) -> String {
    let quote = |v: &str| toml::Value::String(v.to_owned()).to_string();
    let mut out = String::new();
    for e in effective {
        let quote = |v: &str| match v.parse::<i64>() {
            Ok(n) => n.to_string(),
            Err(_) => quote(v),
        };
        let line = match (e.key.as_str(), e.values.as_slice()) {
            (_, []) => format!("# {} (unset)", e.key),
            // The file itself: a file cannot name another.
            ("config", [v, ..]) => format!("# config = {}", quote(v)),
            ("rate", vs) => format!(
                "{} = [{}]",
                e.key,
                vs.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
            ),
            (_, [v, ..]) => format!("{} = {}", e.key, quote(v)),
        };
        out.push_str(&format!("{line:<60} # {}\n", e.source));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: Settings,
    }

    fn load_with(file: &str, args: &[&str]) -> Result<Loaded<Cli>, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("courier.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = vec!["courier".into(), "--config".into(), path.into()];
        argv.extend(args.iter().map(OsString::from));
        load::<Cli>(argv)
    }

    #[test]
    fn layers_flags_over_file_over_defaults() {
        let l = load_with(
            "http = \"127.0.0.1:9000\"\nmqtt = \"127.0.0.1:9001\"\nquota_files = 7",
            &["--mqtt", "127.0.0.1:9999"],
        )
        .unwrap();
        let s = &l.settings;
        assert_eq!(s.http.port(), 9000);
        assert_eq!(s.mqtt.port(), 9999);
        assert_eq!(s.mqtt_ws.port(), 8083);
        assert_eq!(s.quota_files, 7);
        assert!(s.database_url().starts_with("sqlite://courier-data/"));
        let source = |k: &str| {
            l.effective
                .iter()
                .find(|e| e.key == k)
                .unwrap()
                .source
                .clone()
        };
        assert!(matches!(source("http"), Source::File(_)));
        assert_eq!(source("mqtt"), Source::Flag("mqtt".into()));
        assert_eq!(source("mqtt_ws"), Source::Default);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(load_with("htp = \"x\"", &[]).is_err());
        assert!(load_with("http = \"not an address\"", &[]).is_err());
        assert!(load_with("edit_window = \"3 weeks\"", &[]).is_err());
        assert!(load_with("http = [\"127.0.0.1:1\", \"127.0.0.1:2\"]", &[]).is_err());
        assert!(load_with("config = \"other.toml\"", &[]).is_err());
    }

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("48h"), Ok(Duration::from_secs(48 * 3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("h").is_err());
        let s = load_with("edit_window = \"15m\"\nconnect_timeout = 3", &[])
            .unwrap()
            .settings;
        assert_eq!(s.edit_window, Duration::from_secs(900));
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!(
            Settings::defaults().upload_expiry,
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn rate_settings_layer_flags_over_file_over_defaults() {
        use backend::shared::{Limit, Rate};
        let s = load_with(
            r#"rate = ["sync=7/1m", "send=off"]"#,
            &["--rate", "send=9/1s"],
        )
        .unwrap()
        .settings;
        let per = |count, secs| {
            Some(Rate {
                count,
                per: Duration::from_secs(secs),
            })
        };
        assert_eq!(s.limits.get(Limit::Sync), per(7, 60));
        assert_eq!(s.limits.get(Limit::Send), per(9, 1));
        assert_eq!(s.limits.get(Limit::Login), Some(Limit::Login.standard()));
        assert!(load_with(r#"rate = ["sink=1/1s"]"#, &[]).is_err());
        assert!(parse_limit("sync=fast").is_err());
    }

    #[test]
    fn secrets_and_passwords_are_never_shown() {
        let l = load_with(
            "service_secret = \"0123456789abcdef0123\"\ndatabase_url = \"postgres://u:pw@h/db\"",
            &[],
        )
        .unwrap();
        let text = render(&l.effective);
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(!text.contains("pw@"), "{text}");
        assert!(text.contains("service_secret = \"<redacted>\""), "{text}");
        assert!(text.contains("postgres://u:***@h/db"), "{text}");
        assert_eq!(
            l.settings.service_secret.as_deref(),
            Some("0123456789abcdef0123")
        );
    }

    /// docs/configuration.md's table is the declarations' (`BLESS=1` rewrites it).
    #[test]
    fn the_configuration_reference_is_generated_from_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (start, end) = ("<!-- settings:begin -->\n", "<!-- settings:end -->");
        let a = doc.find(start).expect("begin marker") + start.len();
        let b = doc.find(end).expect("end marker");
        let table = reference_markdown();
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(path, format!("{}{table}{}", &doc[..a], &doc[b..])).unwrap();
            return;
        }
        assert!(
            doc[a..b] == table,
            "docs/configuration.md is out of date: run BLESS=1 cargo test -p courier --lib"
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
