//! The processes the fault tests break: the real `courier` binary on fixed ports (so clients
//! find it again after a restart), and a private PostgreSQL cluster the test may restart
//! without touching the machine's shared one.

use crate::binary::courier;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Mosquitto on free ports (MQTT over TCP and over WebSocket), anonymous: the external broker
/// of the scale-out tests. Stopped on drop.
pub struct Mosquitto {
    child: Child,
    pub ports: BrokerPorts,
    _dir: tempfile::TempDir,
}

/// A private `redis-server` on a free port, without persistence, that a test may stop (to
/// see Courier degrade) without touching the machine's shared Redis. Stopped on drop.
pub struct RedisServer {
    child: Child,
    pub url: String,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed for the shared-state tests");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
        }
    }

    /// SIGKILL: Redis is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where devices and backends reach a broker: MQTT over TCP and over WebSocket.
#[derive(Clone, Copy)]
pub struct BrokerPorts {
    pub tcp: u16,
    pub ws: u16,
}

impl Mosquitto {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (tcp, ws) = (free_port(), free_port());
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 100000\n\
                 listener {tcp} 127.0.0.1\nlistener {ws} 127.0.0.1\nprotocol websockets\n"
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the mosquitto broker is needed for the scale-out tests");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", tcp)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", ws)).is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            child,
            ports: BrokerPorts { tcp, ws },
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `courier serve` as a child process.
pub struct Server {
    child: Option<Child>,
    args: Vec<String>,
    pub http: String,
    log: PathBuf,
    pub restarts: u32,
    /// Ready when this port accepts connections, not when `/readyz` says so.
    ready_port: Option<u16>,
}

impl Server {
    /// The all-in-one server.
    pub async fn start(dir: &Path, database_url: &str) -> Self {
        let mqtt = [
            "--mqtt".into(),
            format!("127.0.0.1:{}", free_port()),
            "--mqtt-ws".into(),
            format!("127.0.0.1:{}", free_port()),
        ];
        Self::start_with(dir, "courier", database_url, &mqtt).await
    }

    /// `--role broker` on free ports.
    pub async fn broker(dir: &Path, database_url: &str) -> (Self, BrokerPorts) {
        let ports = BrokerPorts {
            tcp: free_port(),
            ws: free_port(),
        };
        let args = [
            "--role".into(),
            "broker".into(),
            "--mqtt".into(),
            format!("127.0.0.1:{}", ports.tcp),
            "--mqtt-ws".into(),
            format!("127.0.0.1:{}", ports.ws),
        ];
        let mut s = Self::prepare(dir, "broker", database_url, &args);
        s.ready_port = Some(ports.tcp);
        s.spawn().await;
        (s, ports)
    }

    /// `--role backend` against a broker which devices reach on the same ports.
    pub async fn backend(dir: &Path, name: &str, database_url: &str, broker: &BrokerPorts) -> Self {
        Self::backend_with(dir, name, database_url, broker, &[]).await
    }

    /// [`Server::backend`] with more flags (later flags override the test defaults).
    pub async fn backend_with(
        dir: &Path,
        name: &str,
        database_url: &str,
        broker: &BrokerPorts,
        more: &[String],
    ) -> Self {
        let mut args = vec![
            "--role".into(),
            "backend".into(),
            "--broker".into(),
            format!("127.0.0.1:{}", broker.tcp),
            "--mqtt".into(),
            format!("127.0.0.1:{}", broker.tcp),
            "--mqtt-ws".into(),
            format!("127.0.0.1:{}", broker.ws),
        ];
        args.extend_from_slice(more);
        Self::start_with(dir, name, database_url, &args).await
    }

    async fn start_with(dir: &Path, name: &str, database_url: &str, extra: &[String]) -> Self {
        let mut s = Self::prepare(dir, name, database_url, extra);
        s.spawn().await;
        s
    }

    fn prepare(dir: &Path, name: &str, database_url: &str, extra: &[String]) -> Self {
        let http = format!("127.0.0.1:{}", free_port());
        let data = dir.join(name);
        let mut args = vec![
            "serve".into(),
            "--http".into(),
            http.clone(),
            "--data-dir".into(),
            data.display().to_string(),
            "--database-url".into(),
            database_url.into(),
            "--service-secret".into(),
            "fault-test-secret".into(),
        ];
        args.extend_from_slice(extra);
        Self {
            child: None,
            args,
            http,
            log: dir.join(format!("{name}.log")),
            restarts: 0,
            ready_port: None,
        }
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = courier()
            .args(&self.args)
            .env("RUST_LOG", "warn")
            // The workload sends in bursts from one device and signs up and logs in from
            // one address (a test server given `--rate` flags names all it needs).
            .env("COURIER_RATE", backend::shared::Limits::all_off_setting())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("courier starts");
        self.child = Some(child);
        let url = format!("http://{}/readyz", self.http);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            let ready = match self.ready_port {
                // A broker has no HTTP: ready when it accepts connections.
                Some(port) => std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
                None => reqwest::get(&url)
                    .await
                    .is_ok_and(|r| r.status().is_success()),
            };
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("courier never became ready; log:\n{}", self.log_tail());
    }

    fn pid(&self) -> String {
        self.pid_number().to_string()
    }

    pub fn pid_number(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn wait_exit(&mut self, within: Duration) -> bool {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGKILL, then start again.
    pub async fn kill_and_restart(&mut self) {
        Command::new("kill")
            .args(["-KILL", &self.pid()])
            .status()
            .unwrap();
        assert!(self.wait_exit(Duration::from_secs(10)), "SIGKILL ignored");
        self.restarts += 1;
        self.spawn().await;
    }

    /// SIGTERM (graceful: the broker closes every connection), a pause, then start again.
    pub async fn stop_and_restart(&mut self, down: Duration) {
        Command::new("kill")
            .args(["-TERM", &self.pid()])
            .status()
            .unwrap();
        assert!(
            self.wait_exit(Duration::from_secs(20)),
            "no exit after SIGTERM; log:\n{}",
            self.log_tail()
        );
        self.restarts += 1;
        tokio::time::sleep(down).await;
        self.spawn().await;
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A PostgreSQL cluster of the test's own (initdb in a temp dir, a free port), so the test
/// can restart it under load.
pub struct PgCluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
    log: PathBuf,
}

/// PostgreSQL's server binaries (Debian keeps them out of PATH); the newest version wins.
fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("pg_ctl").exists());
    found.sort();
    found
        .pop()
        .expect("PostgreSQL server binaries (pg_ctl, initdb) are required for this test")
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (initdb refuses root).
fn pg_tool(bin: &Path, tool: &str) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgCluster {
    pub fn start() -> Self {
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
        let data = dir.path().join("data");
        run(
            pg_tool(&bin, "initdb")
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(&data),
            "initdb",
        );
        let c = Self {
            log: dir.path().join("pg.log"),
            port: free_port(),
            data,
            bin,
            _dir: dir,
        };
        c.up();
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn up(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
            self.port
        );
        run(
            pg_tool(&self.bin, "pg_ctl")
                .args(["-w", "-D"])
                .arg(&self.data)
                .args(["-o", &opts, "-l"])
                .arg(&self.log)
                .arg("start"),
            "pg_ctl start",
        );
    }

    /// Crashes the server (immediate shutdown: no checkpoint, connections cut), keeps it
    /// down for `down`, then starts it again (crash recovery replays the WAL).
    pub async fn crash_and_restart(&self, down: Duration) {
        run(
            pg_tool(&self.bin, "pg_ctl")
                .args(["-w", "-m", "immediate", "-D"])
                .arg(&self.data)
                .arg("stop"),
            "pg_ctl stop",
        );
        tokio::time::sleep(down).await;
        self.up();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = pg_tool(&self.bin, "pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output();
    }
}
