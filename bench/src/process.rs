//! Courier (and Mosquitto) as child processes of a benchmark, on free ports.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A child process, stopped (SIGTERM, then waited for) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// The process's resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The release `courier` binary, built next to the benchmark binaries.
pub fn courier_binary() -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    me.with_file_name("courier")
}

pub fn ensure_courier_binary() -> anyhow::Result<()> {
    anyhow::ensure!(
        courier_binary().exists(),
        "{} is missing: cargo build --release --bins",
        courier_binary().display()
    );
    Ok(())
}

/// A release `courier serve` on free ports with its data in `data_dir`, `rate` as its
/// `--rate` setting and `extra` arguments, quiet but for errors, once it is ready.
pub struct Served {
    pub proc: Proc,
    pub http: u16,
    pub mqtt: u16,
}

pub async fn serve_courier(
    data_dir: &std::path::Path,
    rate: &str,
    extra: &[&str],
) -> anyhow::Result<Served> {
    ensure_courier_binary()?;
    let (http, mqtt, ws) = (free_port(), free_port(), free_port());
    let child = Command::new(courier_binary())
        .arg("serve")
        .args(extra)
        .args(["--rate", rate])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--mqtt", &format!("127.0.0.1:{mqtt}")])
        .args(["--mqtt-ws", &format!("127.0.0.1:{ws}")])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let proc = Proc(child);
    crate::wait_ready(&format!("127.0.0.1:{http}")).await?;
    Ok(Served { proc, http, mqtt })
}

pub async fn wait_port(port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
