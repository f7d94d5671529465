//! `courier-bench`: N device pairs send for T seconds; reports throughput and send→receive
//! latency percentiles. Runs, in one process and one go:
//!
//! 1. Courier (in-process, embedded defaults or `--database-url`): each sender sends text
//!    messages through `req/send` and waits for the committed ack (closed loop, `--window`
//!    in flight per sender); each receiver gets them on `in` and acks its log every 64 updates.
//! 2. The baseline: the same pairs doing plain QoS 1 pub/sub through an MQTT broker
//!    (Mosquitto at `--baseline`), each sender waiting for PUBACK the same way.
//!
//! Latency is measured from just before the send/publish to the moment the receiver's client
//! hands the message over, on one clock (everything is in this process).

use anyhow::Context;
use clap::Parser;
use client::protocol::UpdateBody;
use client::{Api, Client, ClientOptions, Event};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Sender/receiver pairs
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// Seconds of sending per system
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Sends in flight per sender
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Database for Courier (default: SQLite in a temp dir)
    #[arg(long)]
    database_url: Option<String>,
    /// MQTT broker for the baseline (`host:port`); `none` skips it
    #[arg(long, default_value = "127.0.0.1:1883")]
    baseline: String,
    /// Payload text size in bytes
    #[arg(long, default_value_t = 100)]
    size: usize,
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    received: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

impl Stats {
    fn report(&self, name: &str, elapsed: Duration) {
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

fn stamp(epoch: Instant, size: usize) -> String {
    let t = epoch.elapsed().as_micros();
    let mut s = format!("{t}|");
    while s.len() < size {
        s.push('x');
    }
    s
}

fn latency_of(epoch: Instant, text: &str) -> Option<u64> {
    let sent: u64 = text.split('|').next()?.parse().ok()?;
    Some((epoch.elapsed().as_micros() as u64).saturating_sub(sent))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    courier::telemetry::init_quiet();
    println!(
        "courier-bench: {} pairs, {} s, window {}, {} B payloads, {} cores",
        args.pairs,
        args.seconds,
        args.window,
        args.size,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let courier = run_courier(&args).await?;
    let baseline = if args.baseline == "none" {
        None
    } else {
        Some(run_baseline(&args).await?)
    };
    println!();
    courier.0.report("courier (persisted+acked)", courier.1);
    if let Some(b) = baseline {
        b.0.report(&format!("mqtt qos1 @ {}", args.baseline), b.1);
    }
    Ok(())
}

async fn run_courier(args: &Args) -> anyhow::Result<(Arc<Stats>, Duration)> {
    let server = bench::Server::start(args.database_url.clone()).await?;
    let addrs = server.addrs;
    let api = Api::new(format!("http://{}", addrs.http));
    println!(
        "courier up at {} (mqtt {}), creating {} pairs…",
        addrs.http, addrs.mqtt, args.pairs
    );

    let run = format!("{}", std::process::id());
    let mut pairs = Vec::new();
    for i in 0..args.pairs {
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
                    if since_ack >= 64 {
                        since_ack = 0;
                        let rc = rc.clone();
                        let useq = u.useq;
                        tokio::spawn(async move { rc.ack(useq).await });
                    }
                }
            }
        }));
        for _ in 0..args.window {
            let (sc, conv, st, stop, size) = (
                sc.clone(),
                conv.clone(),
                stats.clone(),
                stop.clone(),
                args.size,
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
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = epoch.elapsed();
    // Let in-flight messages land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in &tasks {
        t.abort();
    }
    server.stop().await;
    Ok((stats, elapsed))
}

async fn run_baseline(args: &Args) -> anyhow::Result<(Arc<Stats>, Duration)> {
    use rumqttc::{AsyncClient, Event as E, MqttOptions, Packet, QoS};
    use tokio::sync::mpsc;
    let (host, port) = args
        .baseline
        .rsplit_once(':')
        .context("--baseline is host:port")?;
    let port: u16 = port.parse()?;
    println!(
        "baseline: {} pairs of QoS 1 pub/sub through {}…",
        args.pairs, args.baseline
    );
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    let run = std::process::id();
    let mut senders = Vec::new();
    for i in 0..args.pairs {
        let topic = format!("courier-bench/{run}/{i}");
        // Receiver.
        let mut o = MqttOptions::new(format!("cb-r-{run}-{i}"), host, port);
        o.set_keep_alive(Duration::from_secs(30));
        let (rc, mut rel) = AsyncClient::new(o, 1000);
        rc.subscribe(&topic, QoS::AtLeastOnce).await?;
        let (ready_tx, mut ready_rx) = mpsc::channel::<()>(1);
        let st = stats.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = rc;
            loop {
                match rel.poll().await {
                    Ok(E::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.try_send(());
                    }
                    Ok(E::Incoming(Packet::Publish(p))) => {
                        if let Some(l) = std::str::from_utf8(&p.payload)
                            .ok()
                            .and_then(|t| latency_of(epoch, t))
                        {
                            st.received.fetch_add(1, Ordering::Relaxed);
                            st.latencies_us.lock().unwrap().push(l);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
        ready_rx.recv().await;
        // Sender: its event loop reports PUBACKs so each window slot waits for one.
        let mut o = MqttOptions::new(format!("cb-s-{run}-{i}"), host, port);
        o.set_keep_alive(Duration::from_secs(30));
        let (sc, mut sel) = AsyncClient::new(o, 1000);
        let (ack_tx, ack_rx) = mpsc::unbounded_channel::<()>();
        tasks.push(tokio::spawn(async move {
            loop {
                match sel.poll().await {
                    Ok(E::Incoming(Packet::PubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
        senders.push((sc, topic, ack_rx));
    }
    let epoch_start = Instant::now();
    for (sc, topic, mut acks) in senders {
        let (st, stop, window, size) = (stats.clone(), stop.clone(), args.window, args.size);
        tasks.push(tokio::spawn(async move {
            let mut in_flight = 0;
            while !stop.load(Ordering::Relaxed) {
                while in_flight < window {
                    if sc
                        .publish(&topic, QoS::AtLeastOnce, false, stamp(epoch, size))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    st.sent.fetch_add(1, Ordering::Relaxed);
                    in_flight += 1;
                }
                if acks.recv().await.is_none() {
                    return;
                }
                in_flight -= 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = epoch_start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in &tasks {
        t.abort();
    }
    Ok((stats, elapsed))
}
