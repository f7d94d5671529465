//! The workload every Courier benchmark shares: N sender/receiver pairs, each sender sending
//! text messages through `req/send` and waiting for the committed ack (closed loop, `window`
//! in flight), each receiver taking them on `in` and acking its log every `ack_every` updates.
//! Latency runs from just before the send to the receiver's client handing the message over,
//! on one clock (everything in this process). The devices are plain rumqttc clients, like the
//! Mosquitto baseline's, so the generator's own share of the machine is the same for both.

use anyhow::Context;
use client::protocol::http::Session;
use client::Api;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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
        let pct = |p: f64| percentile_ms(&l, p);
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

/// The `p` quantile (0..=1) of `sorted` microseconds, in milliseconds (NaN when empty).
pub fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
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

/// One device as a plain MQTT 3.1.1 client over TCP — the generator does no more work per
/// message than the Mosquitto baseline's clients: no SDK, no ordering buffer, no presence.
/// Subscribed to its `rsp` and `in` at QoS 1 (as the SDK subscribes) once this returns.
pub async fn device(s: &Session) -> anyhow::Result<(AsyncClient, EventLoop, String)> {
    let (host, port) = s
        .mqtt
        .tcp
        .rsplit_once(':')
        .context("the log-in answer's MQTT address is host:port")?;
    let mut o = MqttOptions::new(
        s.device.to_string(),
        host.trim_matches(['[', ']']),
        port.parse()?,
    );
    o.set_credentials(s.device.to_string(), s.token.clone())
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (c, mut el) = AsyncClient::new(o, 1024);
    el.set_network_options(no_delay());
    let base = format!("u/{}/d/{}", s.user, s.device);
    c.subscribe(format!("{base}/rsp"), QoS::AtLeastOnce).await?;
    c.subscribe(format!("{base}/in"), QoS::AtLeastOnce).await?;
    let mut subacks = 0;
    while subacks < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(15), el.poll())
            .await
            .context("no SUBACK")??;
        if let Event::Incoming(Packet::SubAck(_)) = ev {
            subacks += 1;
        }
    }
    Ok((c, el, base))
}

/// The generator's clients do not wait for Nagle's algorithm (both Courier's and the
/// baseline's).
pub fn no_delay() -> NetworkOptions {
    let mut n = NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// An update on `in`, read only as far as the benchmark needs.
#[derive(Deserialize)]
struct InUpdate<'a> {
    useq: i64,
    #[serde(borrow)]
    msg: Option<InMsg<'a>>,
}

/// A message's content is flattened into it: a text message has `text`.
#[derive(Deserialize)]
struct InMsg<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

/// Signs up and connects the pairs through `api` (devices use the MQTT address the log-in
/// answer gives), runs them for `w.seconds`, and returns the counts and the sending time.
/// Senders publish `req/send` and count each `ok` answer on `rsp`, keeping `w.window`
/// unanswered; receivers publish `req/ack` every `w.ack_every` updates.
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
        pairs.push((device(&ss).await?, device(&rs).await?, conv));
    }

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    for ((sc, mut sel, sbase), (rc, mut rel, rbase), conv) in pairs {
        let (st, ack_every) = (stats.clone(), w.ack_every);
        tasks.push(tokio::spawn(async move {
            let (mut since_ack, mut acks) = (0, 0u64);
            while let Ok(ev) = rel.poll().await {
                let Event::Incoming(Packet::Publish(p)) = ev else {
                    continue;
                };
                if !p.topic.ends_with("/in") {
                    continue;
                }
                let Ok(u) = serde_json::from_slice::<InUpdate>(&p.payload) else {
                    continue;
                };
                if let Some(text) = u.msg.and_then(|m| m.text) {
                    if let Some(l) = latency_of(epoch, &text) {
                        st.received.fetch_add(1, Ordering::Relaxed);
                        st.latencies_us.lock().unwrap().push(l);
                    }
                }
                since_ack += 1;
                if ack_every > 0 && since_ack >= ack_every {
                    since_ack = 0;
                    acks += 1;
                    let body = format!(r#"{{"id":{acks},"useq":{}}}"#, u.useq);
                    let _ =
                        rc.try_publish(format!("{rbase}/req/ack"), QoS::AtLeastOnce, false, body);
                }
            }
        }));
        // The sender's event loop hands each answer's outcome to the sending loop.
        let (answers_tx, mut answers) = mpsc::unbounded_channel::<bool>();
        tasks.push(tokio::spawn(async move {
            while let Ok(ev) = sel.poll().await {
                // Its own messages and the receipts also come in, on `in`.
                if let Event::Incoming(Packet::Publish(p)) = ev {
                    if !p.topic.ends_with("/rsp") {
                        continue;
                    }
                    let ok = serde_json::from_slice::<Answer>(&p.payload).is_ok_and(|a| a.ok);
                    if answers_tx.send(ok).is_err() {
                        return;
                    }
                }
            }
        }));
        let (st, stop, window, size) = (stats.clone(), stop.clone(), w.window, w.size);
        tasks.push(tokio::spawn(async move {
            let topic = format!("{sbase}/req/send");
            let (mut n, mut in_flight) = (0u64, 0);
            while !stop.load(Ordering::Relaxed) {
                while in_flight < window {
                    n += 1;
                    let body = serde_json::json!({
                        "id": n, "conv": conv, "cmid": format!("c{n}"),
                        "kind": "text", "text": stamp(epoch, size),
                    });
                    if sc
                        .publish(&topic, QoS::AtLeastOnce, false, body.to_string())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    in_flight += 1;
                }
                match answers.recv().await {
                    Some(ok) => {
                        if ok {
                            st.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        in_flight -= 1;
                    }
                    None => return,
                }
            }
        }));
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

/// An answer on `rsp`, read only as far as `ok`.
#[derive(Deserialize)]
struct Answer {
    ok: bool,
}
