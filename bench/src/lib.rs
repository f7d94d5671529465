//! What the benchmark binaries share: a Courier server started in-process exactly as
//! `courier serve` runs it, on SQLite in a temp dir or on a given database.

pub mod load;
pub mod process;

use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Server {
    pub addrs: courier::Addrs,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts Courier on `database_url` (default: SQLite in a temp dir) and waits until ready.
    pub async fn start(database_url: Option<String>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut settings = courier::Settings::defaults();
        settings.http = "127.0.0.1:0".parse()?;
        settings.mqtt = "127.0.0.1:0".parse()?;
        settings.mqtt_ws = "127.0.0.1:0".parse()?;
        settings.data_dir = dir.path().to_path_buf();
        // The benchmark's simulated devices send far faster than people do.
        settings.limits = Default::default();
        settings.database_url = database_url;
        let app = courier::App::bind(settings).await?;
        let addrs = app.addrs();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        wait_ready(&addrs.http.to_string()).await?;
        Ok(Self {
            addrs,
            shutdown,
            task,
            _dir: dir,
        })
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Waits until `GET /readyz` on `http` answers 200.
pub async fn wait_ready(http: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for _ in 0..500 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(http).await {
            let _ = s
                .write_all(format!("GET /readyz HTTP/1.0\r\nHost: {http}\r\n\r\n").as_bytes())
                .await;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            if out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("courier never became ready")
}

/// `n` different camera-sized photos (1600×1200 JPEG), made with the ffmpeg tool in `dir`.
pub fn photos(dir: &std::path::Path, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for i in 0..n {
        let path = dir.join(format!("photo{i}.jpg"));
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!(
                "testsrc2=size=1600x1200:rate=1,noise=alls={}",
                10 + i
            ))
            .args(["-frames:v", "1", "-q:v", "3"])
            .arg(&path)
            .status()?;
        anyhow::ensure!(status.success(), "ffmpeg could not make a photo");
        out.push(std::fs::read(&path)?);
    }
    Ok(out)
}
