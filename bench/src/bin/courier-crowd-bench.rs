//! `courier-crowd-bench`: what a crowd of idle connected devices costs, and whether it slows
//! the ones that talk. Against the release `courier` binary (all-in-one, SQLite), run as a
//! child process so its memory can be read from /proc:
//!
//! 1. `--devices` users with one device each are written straight into the database before
//!    the server starts (so sign-up hashing is not what is measured);
//! 2. `--pairs` sender/receiver pairs run the send workload (`bench::load`) alone;
//! 3. every crowd device connects (MQTT 3.1.1 over TCP, raw sockets, `--concurrency` at a
//!    time) and subscribes to its `in`, `rsp` and `eph`: the connect rate, and the server's
//!    resident memory before and after, per device;
//! 4. the pairs run again with the crowd connected.
//!
//! The open-files soft limit is raised to the hard limit (the server inherits it).
//! Needs `cargo build --release --bins`.

use bench::load::{run_pairs, Workload};
use bench::process::{ensure_courier_binary, serve_courier};
use broker::codec::raw;
use clap::Parser;
use client::Api;
use sea_orm::{ActiveValue::Set, EntityTrait};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
struct Args {
    /// Idle devices in the crowd
    #[arg(long, default_value_t = 15_000)]
    devices: usize,
    /// Sender/receiver pairs that talk
    #[arg(long, default_value_t = 4)]
    pairs: usize,
    /// Sends in flight per sender
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Seconds of sending per phase
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Crowd connections being set up at once
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Each receiver acknowledges its log every this many updates (0: never)
    #[arg(long, default_value_t = 16)]
    ack_every: usize,
}

fn raise_open_files() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack value.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

fn token(i: usize) -> String {
    format!("crowd-token-{i:06}-0123456789abcdef")
}

/// Writes the crowd's users and devices into a fresh, migrated database.
async fn seed(url: &str, n: usize) -> anyhow::Result<()> {
    use backend::entity::{devices, users};
    let db = backend::db::open(url).await?;
    let now = backend::util::now_ms();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        users::Entity::insert_many(chunk.iter().map(|i| users::ActiveModel {
            id: Set(format!("ucrowd{i}")),
            username: Set(format!("crowd{i}")),
            password_hash: Set("not a password".into()),
            last_useq: Set(0),
            log_floor: Set(0),
            group_adds: Set("contacts".into()),
            created_at: Set(now),
            // Not suspended, no display name or avatar.
            ..Default::default()
        }))
        .exec(&db)
        .await?;
        devices::Entity::insert_many(chunk.iter().map(|i| devices::ActiveModel {
            id: Set(format!("dcrowd{i}")),
            user_id: Set(format!("ucrowd{i}")),
            name: Set("crowd".into()),
            platform: Set("bench".into()),
            token_hash: Set(backend::util::token_hash(&token(*i))),
            cursor: Set(0),
            created_at: Set(now),
            revoked_at: Set(None),
            online: Set(false),
            last_seen_at: Set(None),
            used_at: Set(None),
            push_provider: Set(None),
            push_token: Set(None),
        }))
        .exec(&db)
        .await?;
    }
    db.close().await?;
    Ok(())
}

/// One crowd device: CONNECT (keep-alive 0: it never pings), then SUBSCRIBE to its streams.
async fn idle_device(port: u16, i: usize) -> anyhow::Result<TcpStream> {
    let id = format!("dcrowd{i}");
    let topics = ["in", "rsp", "eph"].map(|s| format!("u/ucrowd{i}/d/{id}/{s}"));
    let filters = [
        (topics[0].as_str(), 1),
        (topics[1].as_str(), 1),
        (topics[2].as_str(), 0),
    ];
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(&raw::connect(&id, &token(i), true, 0)).await?;
    s.write_all(&raw::subscribe(1, &filters)).await?;
    let mut ack = [0u8; 4 + 7];
    s.read_exact(&mut ack).await?;
    anyhow::ensure!(ack[..4] == [0x20, 2, 0, 0], "CONNACK {:?}", &ack[..4]);
    anyhow::ensure!(
        ack[4] == 0x90 && ack[9..] == [1, 0],
        "SUBACK {:?}",
        &ack[4..]
    );
    Ok(s)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure_courier_binary()?;
    let nofile = raise_open_files();
    anyhow::ensure!(
        (args.devices + 4 * args.pairs + 200) as u64 <= nofile,
        "{} devices need more open files than the limit ({nofile})",
        args.devices
    );
    let dir = tempfile::tempdir()?;
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("crowd.db").display()
    );
    let seeded = Instant::now();
    seed(&db, args.devices).await?;
    println!(
        "courier-crowd-bench: {} crowd devices written in {:.1} s; open files limit {nofile}",
        args.devices,
        seeded.elapsed().as_secs_f64()
    );
    let rate = backend::shared::Limits::all_off_setting();
    let served = serve_courier(dir.path(), &rate, &["--database-url", &db]).await?;
    let (server, http, mqtt) = (served.proc, served.http, served.mqtt);
    let api = Api::new(format!("http://127.0.0.1:{http}"));
    let workload = |tag: &str| Workload {
        pairs: args.pairs,
        seconds: args.seconds,
        window: args.window,
        size: 100,
        ack_every: args.ack_every,
        tag: tag.into(),
    };
    println!("{}", workload("").summary());

    println!("pairs alone…");
    let alone = run_pairs(&api, &workload("a")).await?;
    let before = server.rss_kib();

    println!("connecting the crowd…");
    let started = Instant::now();
    let mut crowd = Vec::with_capacity(args.devices);
    let mut failed = 0usize;
    let mut next = 0;
    while next < args.devices {
        let end = (next + args.concurrency).min(args.devices);
        let wave: Vec<_> = (next..end)
            .map(|i| tokio::spawn(idle_device(mqtt, i)))
            .collect();
        for w in wave {
            match w.await? {
                Ok(s) => crowd.push(s),
                Err(e) => {
                    if failed < 5 {
                        println!("  a crowd device failed: {e}");
                    }
                    failed += 1;
                }
            }
        }
        next = end;
    }
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();

    println!("pairs with the crowd…");
    let crowded = run_pairs(&api, &workload("b")).await?;
    let end = server.rss_kib();

    let per_device = (after.saturating_sub(before)) as f64 / crowd.len().max(1) as f64;
    println!();
    println!(
        "crowd: {} connected, {failed} failed, in {connect_s:.1} s ({:.0} connections/s)",
        crowd.len(),
        crowd.len() as f64 / connect_s
    );
    println!(
        "server RSS: {before} KiB before the crowd, {after} KiB with it, {end} KiB after the \
         second run: {per_device:.2} KiB per idle device (100 000 devices: ~{:.0} MiB)",
        per_device * 100_000.0 / 1024.0
    );
    alone.0.report("pairs alone", alone.1);
    crowded.0.report("pairs + crowd", crowded.1);
    drop(crowd);
    Ok(())
}
