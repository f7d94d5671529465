//! courier-flood-bench: how much one hostile party's flood slows everyone else (issue #15,
//! items 2 and 11). Honest pairs send texts at a person's pace all through the run and time
//! each send from request to committed answer; meanwhile, one attack at a time, hostile
//! accounts (each with its full ten devices) flood one way in as fast as the machine lets
//! them. Each phase's honest latency is compared with the quiet phase before the attacks.
//!
//! The server is a release `courier serve` on SQLite in a temp dir. It is set up (sign-ups,
//! log-ins, conversations) with the sign-up and log-in limits off, then restarted on the same
//! data with the limits under test (`--limits standard`, what a server runs with, or `off`,
//! which leaves only the bounded per-device lanes and the engine's fairness between the
//! flood and everyone else). The attacks run on threads of their own, apart from the honest
//! clients'. The method and the results are in docs/benchmarks.md.

use bench::load::{device, percentile_ms};
use bench::process::serve_courier;
use clap::Parser;
use client::protocol::http::Session;
use client::protocol::ConvId;
use client::{Api, Client, ClientOptions};
use rumqttc::{Event, Packet, QoS};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Honest sender/receiver pairs
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// Each honest sender sends a text this often (ms), waiting for each answer
    #[arg(long, default_value_t = 200)]
    send_every_ms: u64,
    /// Hostile accounts, each flooding from `devices` devices
    #[arg(long, default_value_t = 5)]
    attackers: usize,
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Length of each phase (s)
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The attacks, in order
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sync,send,typing,junk,reconnect,history,upload,login"
    )]
    attacks: Vec<Attack>,
    /// The rate limits in force during the attacks: `standard` or `off`
    #[arg(long, default_value = "standard")]
    limits: String,
    /// More `courier serve` arguments for the attacked server, e.g. `--serve-arg=--media-jobs=0`
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Attack {
    /// `sync` from the start of the log, 500 at a time, without waiting for answers
    Sync,
    /// Texts into the attackers' own conversation, without waiting
    Send,
    /// `typing` on/off (QoS 0, never answered)
    Typing,
    /// Malformed JSON and unknown ops
    Junk,
    /// Connect, subscribe, disconnect, again
    Reconnect,
    /// HTTP: the conversation list and a page of history, back to back
    History,
    /// HTTP: camera photos uploaded back to back (each queues a media job)
    Upload,
    /// HTTP: log-ins with wrong passwords, for the attackers' and an honest user's names
    Login,
}

/// Honest latencies (µs) per phase; the phase in progress; the attack's own counts.
#[derive(Default)]
struct Tally {
    phase: AtomicUsize,
    latencies_us: Mutex<Vec<Vec<u64>>>,
    failed: Mutex<Vec<u64>>,
    attempts: AtomicU64,
    answered: AtomicU64,
}

const PASSWORD: &str = "flood password 1";
/// Between phases: not recorded.
const SETTLING: usize = usize::MAX;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rate = match args.limits.as_str() {
        // Restating one default changes nothing: every limit stays standard.
        "standard" => "send=50/5s".to_owned(),
        "off" => backend::shared::Limits::all_off_setting(),
        other => anyhow::bail!("--limits is standard or off, not {other}"),
    };
    let dir = tempfile::tempdir()?;
    let setup_rate = "signup=off,signup_all=off,login=off,login_account=off";
    let served = serve_courier(dir.path(), setup_rate, &[]).await?;
    let api = Api::new(format!("http://127.0.0.1:{}", served.http));
    let (honest, hostile) = set_up(&api, &args).await?;
    drop(served);
    let extra: Vec<&str> = args.serve_args.iter().map(String::as_str).collect();
    let served = serve_courier(dir.path(), &rate, &extra).await?;
    let api = Api::new(format!("http://127.0.0.1:{}", served.http));
    let port = served.mqtt;
    let honest = honest
        .into_iter()
        .map(|(s, r, c)| (at_port(s, port), at_port(r, port), c))
        .collect::<Vec<_>>();
    let hostile = hostile
        .into_iter()
        .map(|(ds, c)| (ds.into_iter().map(|s| at_port(s, port)).collect(), c))
        .collect::<Vec<_>>();
    let scratch = tempfile::tempdir()?;
    let photos = Arc::new(bench::photos(scratch.path(), 8)?);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "courier-flood-bench: {} honest pairs (a send every {} ms each), {} attackers × {} devices, {} s phases, limits {}, {cores} cores",
        args.pairs, args.send_every_ms, args.attackers, args.devices, args.seconds, args.limits
    );
    println!(
        "{:<10} {:>7} {:>6} {:>8} {:>8} {:>8} {:>6} {:>6} {:>11} {:>11} {:>8}",
        "phase",
        "sends",
        "failed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "×p50",
        "×p99",
        "attack/s",
        "answered/s",
        "rss MiB"
    );

    let tally = Arc::new(Tally::default());
    tally.phase.store(SETTLING, Ordering::Relaxed);
    let stop = CancellationToken::new();
    let mut honest_tasks = tokio::task::JoinSet::new();
    for (sender, receiver, conv) in honest {
        let (tally, stop) = (tally.clone(), stop.clone());
        let every = Duration::from_millis(args.send_every_ms);
        honest_tasks.spawn(honest_pair(sender, receiver, conv, every, tally, stop));
    }
    // Everyone connected and sending before the quiet phase starts.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let phases: Vec<Option<Attack>> = std::iter::once(None)
        .chain(args.attacks.iter().copied().map(Some))
        .collect();
    // The attacks run on threads of their own: a flood that keeps its runtime busy must not
    // delay the honest clients' own tasks (which would count against the server).
    let attackers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("attack")
        .enable_all()
        .build()?;
    let mut baseline = (f64::NAN, f64::NAN);
    for (i, attack) in phases.iter().enumerate() {
        tally.latencies_us.lock().unwrap().push(Vec::new());
        tally.failed.lock().unwrap().push(0);
        tally.attempts.store(0, Ordering::Relaxed);
        tally.answered.store(0, Ordering::Relaxed);
        let flood = CancellationToken::new();
        let mut flooders = tokio::task::JoinSet::new();
        if let Some(attack) = attack {
            start_attack(
                *attack,
                (&mut flooders, attackers.handle()),
                &hostile,
                &api,
                &photos,
                &tally,
                &flood,
            );
        }
        tally.phase.store(i, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        tally.phase.store(SETTLING, Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        flood.cancel();
        flooders.abort_all();
        while flooders.join_next().await.is_some() {}
        let mut lat = std::mem::take(&mut tally.latencies_us.lock().unwrap()[i]);
        lat.sort_unstable();
        let (p50, p99) = (percentile_ms(&lat, 0.5), percentile_ms(&lat, 0.99));
        if attack.is_none() {
            baseline = (p50, p99);
        }
        println!(
            "{:<10} {:>7} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>6.2} {:>6.2} {:>11.0} {:>11.0} {:>8.1}",
            attack.map_or("quiet".to_owned(), |a| format!("{a:?}").to_lowercase()),
            lat.len(),
            tally.failed.lock().unwrap()[i],
            p50,
            p99,
            percentile_ms(&lat, 1.0),
            p50 / baseline.0,
            p99 / baseline.1,
            tally.attempts.load(Ordering::Relaxed) as f64 / secs,
            tally.answered.load(Ordering::Relaxed) as f64 / secs,
            served.proc.rss_kib() as f64 / 1024.0,
        );
        // What the flood left queued drains before the next phase.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    stop.cancel();
    while honest_tasks.join_next().await.is_some() {}
    attackers.shutdown_background();
    Ok(())
}

type Pair = (Session, Session, ConvId);
type Attacker = (Vec<Session>, ConvId);

/// Signs up the honest pairs (one device each, a direct conversation per pair) and the
/// attackers (`devices` devices each; attacker `i` shares a direct conversation with `i + 1`).
async fn set_up(api: &Api, args: &Args) -> anyhow::Result<(Vec<Pair>, Vec<Attacker>)> {
    let mut honest = Vec::new();
    for i in 0..args.pairs {
        let (s, r) = (format!("honest{i}s"), format!("honest{i}r"));
        api.sign_up(&s, PASSWORD).await?;
        api.sign_up(&r, PASSWORD).await?;
        let ss = api.log_in(&s, PASSWORD, "phone", "flood").await?;
        let rs = api.log_in(&r, PASSWORD, "phone", "flood").await?;
        let conv = api.create_direct(&ss.token, &rs.user).await?.id;
        honest.push((ss, rs, conv));
    }
    let mut devices = Vec::new();
    for i in 0..args.attackers {
        let name = format!("mallory{i}");
        api.sign_up(&name, PASSWORD).await?;
        let mut ds = Vec::new();
        for d in 0..args.devices {
            ds.push(
                api.log_in(&name, PASSWORD, &format!("d{d}"), "flood")
                    .await?,
            );
        }
        devices.push(ds);
    }
    let mut hostile = Vec::new();
    for (i, ds) in devices.iter().enumerate() {
        let other = &devices[(i + 1) % devices.len()][0].user;
        let conv = if *other == ds[0].user {
            // One attacker talks to the first honest sender (who never reads it).
            api.create_direct(&ds[0].token, &honest[0].0.user).await?.id
        } else {
            api.create_direct(&ds[0].token, other).await?.id
        };
        hostile.push((ds.clone(), conv));
    }
    Ok((honest, hostile))
}

/// The session as the restarted server serves it (its MQTT port changed).
fn at_port(mut s: Session, port: u16) -> Session {
    s.mqtt.tcp = format!("127.0.0.1:{port}");
    s
}

/// One honest pair: the sender sends a text every `every` and waits for its answer; the
/// receiver takes what arrives. Each answer's latency goes to the phase it was sent in.
async fn honest_pair(
    sender: Session,
    receiver: Session,
    conv: ConvId,
    every: Duration,
    tally: Arc<Tally>,
    stop: CancellationToken,
) {
    let (Ok((tx, mut tx_events)), Ok((rx, mut rx_events))) = (
        Client::connect(ClientOptions::tcp(&sender)).await,
        Client::connect(ClientOptions::tcp(&receiver)).await,
    ) else {
        eprintln!("an honest device could not connect");
        return;
    };
    let drains = [
        tokio::spawn(async move { while tx_events.recv().await.is_some() {} }),
        tokio::spawn(async move { while rx_events.recv().await.is_some() {} }),
    ];
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !stop.is_cancelled() {
        tick.tick().await;
        n += 1;
        let phase = tally.phase.load(Ordering::Relaxed);
        let sent = Instant::now();
        let result = tx.send_text(&conv, &format!("honest #{n}")).await;
        let us = sent.elapsed().as_micros() as u64;
        if phase == SETTLING {
            continue;
        }
        match result {
            Ok(_) => tally.latencies_us.lock().unwrap()[phase].push(us),
            Err(e) => {
                eprintln!("an honest send failed: {e}");
                tally.failed.lock().unwrap()[phase] += 1;
            }
        }
    }
    tx.disconnect().await;
    rx.disconnect().await;
    for d in drains {
        d.abort();
    }
}

fn start_attack(
    attack: Attack,
    (tasks, on): (&mut tokio::task::JoinSet<()>, &tokio::runtime::Handle),
    hostile: &[Attacker],
    api: &Api,
    photos: &Arc<Vec<Vec<u8>>>,
    tally: &Arc<Tally>,
    stop: &CancellationToken,
) {
    for (devices, conv) in hostile {
        match attack {
            Attack::Upload | Attack::History | Attack::Login => {
                for (d, session) in devices.iter().enumerate() {
                    let (api, tally, stop) = (api.clone(), tally.clone(), stop.clone());
                    let (session, conv, photos) = (session.clone(), conv.clone(), photos.clone());
                    tasks.spawn_on(
                        async move {
                            let mut n = d;
                            while !stop.is_cancelled() {
                                n += 1;
                                tally.attempts.fetch_add(1, Ordering::Relaxed);
                                let ok = match attack {
                                    Attack::Upload => {
                                        let photo = photos[n % photos.len()].clone();
                                        api.upload(&session.token, photo, Some("p.jpg"))
                                            .await
                                            .is_ok()
                                    }
                                    Attack::History => {
                                        api.conversations(&session.token).await.is_ok()
                                            && api
                                                .history(&session.token, &conv, None, 200)
                                                .await
                                                .is_ok()
                                    }
                                    _ => {
                                        let name = if n % 2 == 0 { "honest0s" } else { "mallory0" };
                                        let _ = api.log_in(name, "guess", "g", "flood").await;
                                        false
                                    }
                                };
                                if ok {
                                    tally.answered.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        },
                        on,
                    );
                }
            }
            Attack::Reconnect => {
                for session in devices {
                    let (session, tally, stop) = (session.clone(), tally.clone(), stop.clone());
                    tasks.spawn_on(
                        async move {
                            while !stop.is_cancelled() {
                                tally.attempts.fetch_add(1, Ordering::Relaxed);
                                if let Ok((c, mut events, _)) = device(&session).await {
                                    tally.answered.fetch_add(1, Ordering::Relaxed);
                                    let _ = c.disconnect().await;
                                    // Until the DISCONNECT is written.
                                    while events.poll().await.is_ok() {}
                                }
                            }
                        },
                        on,
                    );
                }
            }
            Attack::Sync | Attack::Send | Attack::Typing | Attack::Junk => {
                for session in devices {
                    let (session, tally, stop) = (session.clone(), tally.clone(), stop.clone());
                    let conv = conv.clone();
                    tasks.spawn_on(mqtt_flood(attack, session, conv, tally, stop), on);
                }
            }
        }
    }
}

/// One hostile device publishing `attack`'s requests back to back (as fast as its
/// connection takes them), reading its answers, reconnecting when the server drops it.
async fn mqtt_flood(
    attack: Attack,
    session: Session,
    conv: ConvId,
    tally: Arc<Tally>,
    stop: CancellationToken,
) {
    let Ok((client, mut events, base)) = device(&session).await else {
        return;
    };
    // Reading and publishing in this one task, so that stopping the attack stops both (a
    // reader left polling would reconnect and take the device's session back from the next
    // phase's connection).
    let reader = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic.ends_with("/rsp") => {
                    tally.answered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                // Dropped (its lane was full and it kept writing): the next poll reconnects.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    let publisher = publish(attack, &client, &base, &conv, &tally, &stop);
    tokio::select! {
        _ = reader => {}
        _ = publisher => {}
    }
}

/// Publishes `attack`'s requests back to back until `stop`.
async fn publish(
    attack: Attack,
    client: &rumqttc::AsyncClient,
    base: &str,
    conv: &ConvId,
    tally: &Tally,
    stop: &CancellationToken,
) {
    let mut n = 0u64;
    while !stop.is_cancelled() {
        n += 1;
        let (op, qos, body) = match attack {
            Attack::Sync => (
                "sync",
                QoS::AtLeastOnce,
                format!(r#"{{"id":{n},"after":0,"limit":500}}"#),
            ),
            Attack::Send => (
                "send",
                QoS::AtLeastOnce,
                format!(
                    r#"{{"id":{n},"conv":"{conv}","cmid":"f{n}","kind":"text","text":"{}"}}"#,
                    "flood ".repeat(100)
                ),
            ),
            Attack::Typing => (
                "typing",
                QoS::AtMostOnce,
                format!(r#"{{"conv":"{conv}","on":{}}}"#, n.is_multiple_of(2)),
            ),
            _ if n.is_multiple_of(2) => ("sync", QoS::AtLeastOnce, "{{{ not json".to_owned()),
            _ => ("nope", QoS::AtLeastOnce, format!(r#"{{"id":{n}}}"#)),
        };
        tally.attempts.fetch_add(1, Ordering::Relaxed);
        let topic = format!("{base}/req/{op}");
        if client.publish(topic, qos, false, body).await.is_err() {
            return;
        }
    }
}
