//! The workload every Courier benchmark shares: N sender/receiver pairs, each sender sending
//! text messages through `req/send` and waiting for the committed ack (closed loop, `window`
//! in flight), each receiver taking them on `in` and acking its log every `ack_every` updates.
//! Latency runs from just before the send to the receiver's client handing the message over,
//! on one clock (everything in this process).

use client::protocol::UpdateBody;
use client::{Api, Client, ClientOptions, Event};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the pairs do.
#[derive(Clone, Debug)]
pub struct Workload {
    pub pairs: usize,
    pub seconds: u64,
    pub window: usize,
    pub size: usize,
    /// Each receiver acknowledges its log every this many updates (0: never).
    pub ack_every: usize,
    /// Makes user names unique across runs against one database.
    pub tag: String,
}

#[derive(Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub latencies_us: Mutex<Vec<u64>>,
}

impl Stats {
    pub fn report(&self, name: &str, elapsed: Duration) {
        let mut l = self.latencies_us.lock().unwrap();
        l.sort_unstable();
        let pct = |p: f64| -> f64 {
            if l.is_empty() {
                return f64::NAN;
            }
            let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
            l[i] as f64 / 1000.0
        };
        let secs = elapsed.as_secs_f64();
        println!(
            "{name:<28} sent {:>8}  received {:>8}  {:>9.0} msg/s  latency ms p50 {:>7.2}  p99 {:>7.2}  p999 {:>7.2}  max {:>7.2}",
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed) as f64 / secs,
            pct(0.50),
            pct(0.99),
            pct(0.999),
            pct(1.0),
        );
    }
}

pub fn stamp(epoch: Instant, size: usize) -> String {
    let t = epoch.elapsed().as_micros();
    let mut s = format!("{t}|");
    while s.len() < size {
        s.push('x');
    }
    s
}

pub fn latency_of(epoch: Instant, text: &str) -> Option<u64> {
    let sent: u64 = text.split('|').next()?.parse().ok()?;
    Some((epoch.elapsed().as_micros() as u64).saturating_sub(sent))
}

impl Workload {
    /// `50 pairs, 10 s, window 4, 100 B payloads, 2 cores`.
    pub fn summary(&self) -> String {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!(
            "{} pairs, {} s, window {}, {} B payloads, ack every {}, {cores} cores",
            self.pairs, self.seconds, self.window, self.size, self.ack_every
        )
    }
}

/// Signs up and connects the pairs through `api` (devices use the MQTT address the log-in
/// answer gives), runs them for `w.seconds`, and returns the counts and the sending time.
pub async fn run_pairs(api: &Api, w: &Workload) -> anyhow::Result<(Arc<Stats>, Duration)> {
    let run = format!("{}{}", std::process::id(), w.tag);
    let mut pairs = Vec::new();
    for i in 0..w.pairs {
        let (s, r) = (format!("s{run}x{i}"), format!("r{run}x{i}"));
        for u in [&s, &r] {
            api.sign_up(u, "bench password").await?;
        }
        let ss = api.log_in(&s, "bench password", "bench", "bench").await?;
        let rs = api.log_in(&r, "bench password", "bench", "bench").await?;
        let conv = api.create_direct(&ss.token, &rs.user).await?.id;
        let (sc, _sev) = Client::connect(ClientOptions::tcp(&ss)).await?;
        let (rc, rev) = Client::connect(ClientOptions::tcp(&rs)).await?;
        pairs.push((sc, rc, rev, conv));
    }

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    for (sc, rc, mut rev, conv) in pairs {
        let st = stats.clone();
        let ack_every = w.ack_every;
        tasks.push(tokio::spawn(async move {
            let mut since_ack = 0;
            while let Some(ev) = rev.recv().await {
                if let Event::Update(u) = ev {
                    if let UpdateBody::Message { msg } = &u.body {
                        if let client::protocol::update::Content::Text { text } = &msg.content {
                            if let Some(l) = latency_of(epoch, text) {
                                st.received.fetch_add(1, Ordering::Relaxed);
                                st.latencies_us.lock().unwrap().push(l);
                            }
                        }
                    }
                    since_ack += 1;
                    if ack_every > 0 && since_ack >= ack_every {
                        since_ack = 0;
                        let rc = rc.clone();
                        let useq = u.useq;
                        tokio::spawn(async move { rc.ack(useq).await });
                    }
                }
            }
        }));
        for _ in 0..w.window {
            let (sc, conv, st, stop, size) = (
                sc.clone(),
                conv.clone(),
                stats.clone(),
                stop.clone(),
                w.size,
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if sc.send_text(&conv, &stamp(epoch, size)).await.is_ok() {
                        st.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(w.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = epoch.elapsed();
    // Let in-flight messages land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in &tasks {
        t.abort();
    }
    Ok((stats, elapsed))
}
