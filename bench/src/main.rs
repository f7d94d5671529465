//! `courier-bench`: N device pairs send for T seconds; reports throughput and send→receive
//! latency percentiles. Runs, in one process and one go:
//!
//! 1. Courier (in-process, embedded defaults or `--database-url`): each sender sends text
//!    messages through `req/send` and waits for the committed ack (closed loop, `--window`
//!    in flight per sender); each receiver gets them on `in` and acks its log every `--ack-every` updates (16).
//! 2. The baseline: the same pairs doing plain QoS 1 pub/sub through an MQTT broker
//!    (Mosquitto at `--baseline`), each sender waiting for PUBACK the same way.
//!
//! Latency is measured from just before the send/publish to the moment the receiver's client
//! hands the message over, on one clock (everything is in this process).

use anyhow::Context;
use bench::load::{latency_of, stamp, Stats};
use clap::Parser;
use client::Api;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    /// Each receiver acknowledges its log every this many updates (0: never)
    #[arg(long, default_value_t = 16)]
    ack_every: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    courier::telemetry::init_quiet();
    let w = bench::load::Workload {
        pairs: args.pairs,
        seconds: args.seconds,
        window: args.window,
        size: args.size,
        ack_every: args.ack_every,
        tag: String::new(),
    };
    println!("courier-bench: {}", w.summary());
    let courier = run_courier(&args, &w).await?;
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

async fn run_courier(
    args: &Args,
    w: &bench::load::Workload,
) -> anyhow::Result<(Arc<Stats>, Duration)> {
    let server = bench::Server::start(args.database_url.clone()).await?;
    let addrs = server.addrs;
    let api = Api::new(format!("http://{}", addrs.http));
    println!(
        "courier up at {} (mqtt {}), creating {} pairs…",
        addrs.http, addrs.mqtt, args.pairs
    );

    let (stats, elapsed) = bench::load::run_pairs(&api, w).await?;
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
        rel.set_network_options(bench::load::no_delay());
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
        sel.set_network_options(bench::load::no_delay());
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
