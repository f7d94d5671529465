//! courier-soak: mixed, realistic traffic against a release `courier serve` for a long time
//! (an hour by default), sampled every minute, to show whether anything grows that should
//! not. Users come in pairs with a direct conversation; every device sends a text every few
//! seconds and waits for its committed answer, pages through `sync` now and then, sends a
//! photo now and then (uploaded over HTTP, then sent as an image message), and reconnects
//! after a random lifetime. The server runs with the standard rate limits (sign-up and
//! log-in limits off, for the setup from one address) on SQLite in a temp dir.
//!
//! Each minute's row: sends answered and failed, send latency (request → committed answer)
//! p50/p99/max, uploads, reconnects, and the server's RSS, open files, media jobs queued,
//! update-log entries, stored bytes, connections and data-dir size. The method and the
//! results are in docs/benchmarks.md.

use bench::process::serve_courier;
use clap::Parser;
use client::protocol::http::Session;
use client::protocol::ConvId;
use client::{Api, Client, ClientOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Users (each with one device), in pairs
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// How long to run
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    /// Each device sends a text this often (ms)
    #[arg(long, default_value_t = 2000)]
    send_every_ms: u64,
    /// Each device pages through `sync` this often (s)
    #[arg(long, default_value_t = 60)]
    sync_every_s: u64,
    /// A photo is uploaded and sent, by some device, this often (ms)
    #[arg(long, default_value_t = 5000)]
    photo_every_ms: u64,
    /// A device's mean connection lifetime before it reconnects (s)
    #[arg(long, default_value_t = 600)]
    lifetime_s: u64,
}

/// One minute's counts, reset by the sampler.
#[derive(Default)]
struct Minute {
    sent: AtomicU64,
    failed: AtomicU64,
    syncs: AtomicU64,
    photos: AtomicU64,
    reconnects: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

const PASSWORD: &str = "soak password 1";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let limits = "signup=off,signup_all=off,login=off,login_account=off";
    let served = serve_courier(dir.path(), limits, &[]).await?;
    let (server, http) = (served.proc, served.http);
    let api = Api::new(format!("http://127.0.0.1:{http}"));
    let scratch = tempfile::tempdir()?;
    let photos = bench::photos(scratch.path(), 30)?;

    let mut sessions = Vec::with_capacity(args.users);
    for i in 0..args.users {
        let name = format!("soak{i}");
        api.sign_up(&name, PASSWORD).await?;
        sessions.push(api.log_in(&name, PASSWORD, "phone", "soak").await?);
    }
    // Photos go up from a second device of the first users (a device's own connection stays
    // its own).
    let mut cameras = Vec::new();
    for i in 0..args.users.min(20) {
        let name = format!("soak{i}");
        cameras.push(api.log_in(&name, PASSWORD, "camera", "soak").await?);
    }
    let mut convs = Vec::with_capacity(args.users);
    for pair in sessions.chunks(2) {
        let conv = api.create_direct(&pair[0].token, &pair[1].user).await?.id;
        convs.extend(std::iter::repeat_n(conv, pair.len()));
    }
    println!(
        "courier-soak: {} users, {} min; a text per device every {} ms, a sync every {} s, a photo every {} ms, reconnects after ~{} s",
        args.users, args.minutes, args.send_every_ms, args.sync_every_s, args.photo_every_ms, args.lifetime_s
    );
    println!(
        "{:>4} {:>7} {:>6} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>8} {:>6} {:>6} {:>8} {:>9} {:>6} {:>9}",
        "min", "sent", "failed", "p50 ms", "p99 ms", "max ms", "syncs", "photos", "reconn",
        "rss MiB", "fds", "jobs", "log", "stored MB", "conns", "disk MB"
    );

    let minute = Arc::new(Minute::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (session, conv)) in sessions.iter().zip(&convs).enumerate() {
        let device = Device {
            session: session.clone(),
            conv: conv.clone(),
            seed: i as u64,
        };
        tasks.spawn(device.run(args_copy(&args), minute.clone(), stop.clone()));
    }
    {
        let (api, convs) = (api.clone(), convs.clone());
        let (minute, stop, every) = (minute.clone(), stop.clone(), args.photo_every_ms);
        tasks.spawn(async move {
            let mut n = 0usize;
            while !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(every)).await;
                let i = n % cameras.len();
                let photo = photos[n % photos.len()].clone();
                n += 1;
                if send_photo(&api, &cameras[i], &convs[i], photo)
                    .await
                    .is_ok()
                {
                    minute.photos.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    let started = Instant::now();
    let pid = server.0.id();
    for m in 1..=args.minutes {
        tokio::time::sleep_until((started + Duration::from_secs(60 * m)).into()).await;
        let mut lat = std::mem::take(&mut *minute.latencies_us.lock().unwrap());
        lat.sort_unstable();
        let pct = |p: f64| bench::load::percentile_ms(&lat, p);
        let metrics = metrics(http).await;
        let gauge = |name: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        println!(
            "{m:>4} {:>7} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>6} {:>6} {:>8.1} {:>6} {:>6} {:>8} {:>9.1} {:>6} {:>9.1}",
            minute.sent.swap(0, Ordering::Relaxed),
            minute.failed.swap(0, Ordering::Relaxed),
            pct(0.5),
            pct(0.99),
            pct(1.0),
            minute.syncs.swap(0, Ordering::Relaxed),
            minute.photos.swap(0, Ordering::Relaxed),
            minute.reconnects.swap(0, Ordering::Relaxed),
            server.rss_kib() as f64 / 1024.0,
            std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()),
            gauge("courier_media_jobs_queued"),
            gauge("courier_log_entries"),
            gauge("courier_storage_bytes") / 1e6,
            gauge("courier_connections"),
            dir_size(dir.path()) as f64 / 1e6,
        );
    }
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn args_copy(a: &Args) -> (Duration, Duration, Duration) {
    (
        Duration::from_millis(a.send_every_ms),
        Duration::from_secs(a.sync_every_s),
        Duration::from_secs(a.lifetime_s),
    )
}

struct Device {
    session: Session,
    conv: ConvId,
    seed: u64,
}

impl Device {
    /// Connects, sends and syncs for a random lifetime, reconnects; until `stop`.
    async fn run(
        self,
        (send_every, sync_every, lifetime): (Duration, Duration, Duration),
        minute: Arc<Minute>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut rng = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 10_000) as f64 / 10_000.0
        };
        // Devices start spread over one send interval.
        tokio::time::sleep(send_every.mul_f64(next())).await;
        let mut count = 0u64;
        let mut first = true;
        while !stop.is_cancelled() {
            let Ok((client, mut events)) = Client::connect(ClientOptions::tcp(&self.session)).await
            else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            if !first {
                minute.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            // The SDK hands over what arrives; the soak only drains it.
            let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
            // Exponential lifetime with the given mean.
            let life = lifetime.mul_f64(-(1.0 - next()).ln().min(6.0));
            let until = Instant::now() + life;
            let mut synced = Instant::now();
            while Instant::now() < until && !stop.is_cancelled() {
                tokio::time::sleep(send_every.mul_f64(0.5 + next())).await;
                count += 1;
                let sent = Instant::now();
                let text = format!("soak {} #{count}", self.seed);
                match client.send_text(&self.conv, &text).await {
                    Ok(_) => {
                        minute.sent.fetch_add(1, Ordering::Relaxed);
                        let us = sent.elapsed().as_micros() as u64;
                        minute.latencies_us.lock().unwrap().push(us);
                    }
                    Err(_) => {
                        minute.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if synced.elapsed() >= sync_every {
                    synced = Instant::now();
                    if client.sync(0, 100).await.is_ok() {
                        minute.syncs.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            client.disconnect().await;
            drain.abort();
        }
    }
}

/// Uploads `photo` as `from` and sends it into `conv`.
async fn send_photo(
    api: &Api,
    from: &Session,
    conv: &ConvId,
    photo: Vec<u8>,
) -> anyhow::Result<()> {
    let file = api.upload(&from.token, photo, Some("photo.jpg")).await?;
    let (client, mut events) = Client::connect(ClientOptions::tcp(from)).await?;
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let req = serde_json::from_value(serde_json::json!({
        "conv": conv, "cmid": format!("photo-{}", file.id), "kind": "image",
        "attachments": [{ "file": file.id }]
    }))?;
    let sent = client.send(&req).await;
    client.disconnect().await;
    drain.abort();
    sent?;
    Ok(())
}

async fn metrics(http: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", http)).await else {
        return String::new();
    };
    let _ = s
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: soak\r\n\r\n")
        .await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |d| {
        d.filter_map(|e| e.ok())
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_size(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}
