//! `courier-scale-bench`: the pairs workload (`bench::load`) against Courier split into
//! processes, on PostgreSQL: one and two `--role backend` processes behind Mosquitto and behind
//! Courier's own broker (`--role broker`), and the all-in-one server for reference. Each
//! topology gets fresh processes on free ports; users are unique per run, so one database
//! serves every run.
//!
//! Needs the release `courier` binary next to this one (`cargo build --release --bins`),
//! `mosquitto` on the PATH and PostgreSQL at `--database-url`.

use bench::load::{run_pairs, Workload};
use bench::process::{courier_binary, ensure_courier_binary, free_port, wait_port, Proc};
use clap::Parser;
use client::Api;
use std::process::{Command, Stdio};

#[derive(Parser, Debug)]
struct Args {
    /// Sender/receiver pairs
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// Seconds of sending per topology
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Sends in flight per sender
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Payload text size in bytes
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Each receiver acknowledges its log every this many updates (0: never)
    #[arg(long, default_value_t = 16)]
    ack_every: usize,
    /// PostgreSQL every process shares
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
    /// Topologies to run, comma-separated: all, broker-1, broker-2, mosquitto-1, mosquitto-2
    #[arg(long, default_value = "all,broker-1,broker-2,mosquitto-1,mosquitto-2")]
    only: String,
}

const SECRET: &str = "scale-bench-secret";

fn courier(args: &Args, dir: &std::path::Path, extra: &[String]) -> anyhow::Result<Proc> {
    let child = Command::new(courier_binary())
        .arg("serve")
        .args(["--database-url", &args.database_url])
        .args(["--service-secret", SECRET])
        .args(["--rate", &backend::shared::Limits::all_off_setting()])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()?;
    Ok(Proc(child))
}

/// Starts `topology`; returns its processes and the HTTP address of the first backend.
async fn start(
    args: &Args,
    topology: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(Vec<Proc>, String)> {
    let (tcp, ws) = (free_port(), free_port());
    let mut procs = Vec::new();
    let mqtt = [
        "--mqtt".to_owned(),
        format!("127.0.0.1:{tcp}"),
        "--mqtt-ws".to_owned(),
        format!("127.0.0.1:{ws}"),
    ];
    if topology == "all" {
        let http = format!("127.0.0.1:{}", free_port());
        let mut extra = vec!["--http".to_owned(), http.clone()];
        extra.extend(mqtt);
        procs.push(courier(args, &dir.join("all"), &extra)?);
        bench::wait_ready(&http).await?;
        return Ok((procs, http));
    }
    let (broker, backends) = topology
        .split_once('-')
        .and_then(|(b, n)| Some((b, n.parse::<usize>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("unknown topology {topology}"))?;
    match broker {
        "mosquitto" => {
            let conf = dir.join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!(
                    "per_listener_settings false\nallow_anonymous true\npersistence false\n\
                     max_queued_messages 100000\nmax_inflight_messages 1000\n\
                     listener {tcp} 127.0.0.1\nlistener {ws} 127.0.0.1\nprotocol websockets\n"
                ),
            )?;
            let child = Command::new("mosquitto")
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            procs.push(Proc(child));
        }
        "broker" => {
            let mut extra = vec!["--role".to_owned(), "broker".to_owned()];
            extra.extend(mqtt.clone());
            procs.push(courier(args, &dir.join("broker"), &extra)?);
        }
        other => anyhow::bail!("unknown broker {other}"),
    }
    wait_port(tcp).await?;
    let mut first = None;
    for i in 0..backends {
        let http = format!("127.0.0.1:{}", free_port());
        let mut extra = vec![
            "--role".to_owned(),
            "backend".to_owned(),
            "--broker".to_owned(),
            format!("127.0.0.1:{tcp}"),
            "--http".to_owned(),
            http.clone(),
            "--media-jobs".to_owned(),
            "0".to_owned(),
        ];
        extra.extend(mqtt.clone());
        procs.push(courier(args, &dir.join(format!("backend-{i}")), &extra)?);
        bench::wait_ready(&http).await?;
        first.get_or_insert(http);
    }
    Ok((procs, first.expect("at least one backend")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure_courier_binary()?;
    let workload = |tag: String| Workload {
        pairs: args.pairs,
        seconds: args.seconds,
        window: args.window,
        size: args.size,
        ack_every: args.ack_every,
        tag,
    };
    println!(
        "courier-scale-bench: {}, PostgreSQL",
        workload(String::new()).summary()
    );
    let mut results = Vec::new();
    for (n, topology) in args.only.split(',').map(str::trim).enumerate() {
        let dir = tempfile::tempdir()?;
        let (procs, http) = start(&args, topology, dir.path()).await?;
        println!("{topology}: up, creating {} pairs…", args.pairs);
        let w = workload(format!("t{n}"));
        let api = Api::new(format!("http://{http}"));
        let (stats, elapsed) = run_pairs(&api, &w).await?;
        drop(procs);
        results.push((topology.to_owned(), stats, elapsed));
    }
    println!();
    for (topology, stats, elapsed) in results {
        stats.report(&topology, elapsed);
    }
    Ok(())
}
