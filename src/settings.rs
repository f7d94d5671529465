//! `courier serve` settings, layered: defaults → TOML file (`--config`) → environment
//! (`COURIER_…`) → command-line flags. Secrets are never printed.

use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Flags (each also an environment variable). Unset ones fall back to the TOML file, then
/// to the defaults.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
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
    /// Seconds allowed for the WebSocket handshake and for CONNECT
    #[arg(
        long = "connect-timeout",
        env = "COURIER_CONNECT_TIMEOUT",
        global = true
    )]
    pub connect_timeout: Option<u64>,
}

/// The same keys in the TOML file (snake_case).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    http: Option<SocketAddr>,
    mqtt: Option<SocketAddr>,
    mqtt_ws: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    public_host: Option<String>,
    service_secret: Option<String>,
    max_packet_size: Option<usize>,
    max_request_size: Option<usize>,
    connect_timeout: Option<u64>,
}

#[derive(Clone)]
pub struct Settings {
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    pub mqtt_ws: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub public_host: Option<String>,
    pub service_secret: Option<String>,
    pub max_packet_size: usize,
    pub max_request_size: usize,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
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
            .field("connect_timeout", &self.connect_timeout)
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
        Self::resolve(ServeArgs::default(), FileSettings::default())
    }

    /// Flags/env over the file (if any) over the defaults.
    pub fn load(args: ServeArgs, config: Option<&Path>) -> Result<Self, SettingsError> {
        let file = match config {
            None => FileSettings::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| SettingsError::Read(path.into(), e))?;
                toml::from_str(&text).map_err(|e| SettingsError::Parse(path.into(), e))?
            }
        };
        Ok(Self::resolve(args, file))
    }

    fn resolve(a: ServeArgs, f: FileSettings) -> Self {
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
            connect_timeout: Duration::from_secs(
                a.connect_timeout.or(f.connect_timeout).unwrap_or(10),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_flags_over_file_over_defaults() {
        let file: FileSettings =
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
        assert!(toml::from_str::<FileSettings>("htp = \"x\"").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
