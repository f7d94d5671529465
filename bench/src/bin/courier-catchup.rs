//! `courier-catchup`: how long a device that was away for N updates takes to catch up, and
//! how many bytes that costs.
//!
//! Courier runs in-process as `courier serve` runs it. bob sends N text messages (`--size`
//! bytes each) to alice while alice's phone is away (logged in, never connected). Then the
//! phone connects and syncs from 0 with `sync` pages of `--limit` until the last page says it
//! is up to date. Reported per round: wall time from the first `sync` request to the last
//! answer, pages, updates and bytes of the answers (each result's JSON, which is what the
//! server put on the wire, plus the envelope). The phone never acks, so every round reads the
//! same backlog.

use clap::Parser;
use client::{Api, Client, ClientOptions};
use std::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// Updates the device missed
    #[arg(long, default_value_t = 10_000)]
    updates: usize,
    /// Updates asked for per `sync` page
    #[arg(long, default_value_t = 500)]
    limit: u32,
    /// Text size of each message in bytes
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Catch-up rounds over the same backlog
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Database (default: SQLite in a temp dir)
    #[arg(long)]
    database_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    courier::telemetry::init_quiet();
    let server = bench::Server::start(args.database_url.clone()).await?;
    let api = Api::new(format!("http://{}", server.addrs.http));
    let run = std::process::id();
    let (a, b) = (format!("alice{run}"), format!("bob{run}"));
    api.sign_up(&a, "bench password").await?;
    api.sign_up(&b, "bench password").await?;
    let phone = api.log_in(&a, "bench password", "phone", "bench").await?;
    let bob = api.log_in(&b, "bench password", "phone", "bench").await?;
    let conv = api.create_direct(&bob.token, &phone.user).await?.id;
    let (sender, _events) = Client::connect(ClientOptions::tcp(&bob)).await?;

    // The backlog: N messages, 32 sends in flight.
    let started = Instant::now();
    let text: String = "x".repeat(args.size);
    let mut sends = tokio::task::JoinSet::new();
    let per_task = args.updates.div_ceil(32);
    for t in 0..32 {
        let (sender, conv, text) = (sender.clone(), conv.clone(), text.clone());
        let n = per_task.min(args.updates.saturating_sub(t * per_task));
        sends.spawn(async move {
            for _ in 0..n {
                sender.send_text(&conv, &text).await?;
            }
            Ok::<_, client::ClientError>(())
        });
    }
    while let Some(r) = sends.join_next().await {
        r??;
    }
    println!(
        "backlog: {} messages of {} B stored in {:.1} s",
        args.updates,
        args.size,
        started.elapsed().as_secs_f64()
    );

    let (device, _events) = Client::connect(ClientOptions::tcp(&phone)).await?;
    for round in 1..=args.rounds {
        let started = Instant::now();
        let (mut after, mut pages, mut updates, mut bytes) = (0, 0, 0usize, 0usize);
        loop {
            let page = device.sync(after, args.limit).await?;
            pages += 1;
            // The result as the server encoded it, and the envelope around it.
            bytes += serde_json::to_vec(&page)?.len() + r#"{"id":"r00","ok":true,"result":}"#.len();
            updates += page.updates.len();
            if let Some(last) = page.updates.last() {
                after = last.useq;
            }
            if !page.more {
                break;
            }
        }
        let took = started.elapsed();
        println!(
            "round {round}: {updates} updates in {pages} pages, {:.0} ms, {:.2} MB ({:.0} B/update), {:.0} updates/s",
            took.as_secs_f64() * 1000.0,
            bytes as f64 / 1e6,
            bytes as f64 / updates.max(1) as f64,
            updates as f64 / took.as_secs_f64()
        );
    }
    server.stop().await;
    Ok(())
}
