//! A hostile device hurts only itself. Against the real `courier` binary (so its memory can be
//! read from /proc), one device in turn: publishes QoS 2 requests and never releases them,
//! sprays thousands of distinct unknown `req/{op}` topics, and subscribes to its `in` and then
//! stops reading while a flood of messages is sent to it. After each, the server's resident
//! memory is still near where it started, the hostile connection was closed, and an honest
//! user's send still gets its answer.

use crate::fault::process::Server;
use broker::codec::raw;
use courier_client::protocol::http::Session;
use courier_client::{Api, Client, ClientOptions, Event};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How far the server's memory may grow over the whole test: generous (allocator slack,
/// SQLite's cache, the honest traffic) but far below what any of the attacks would cost
/// unbounded (the QoS 2 one grew an earlier server to 2.2 GB).
const GROWTH_LIMIT_KIB: u64 = 96 * 1024;

/// A raw MQTT 3.1.1 connection as `session`'s device, past its CONNACK.
async fn raw_device(session: &Session) -> TcpStream {
    let id = session.device.to_string();
    let mut s = TcpStream::connect(&session.mqtt.tcp).await.unwrap();
    s.write_all(&raw::connect(&id, &session.token, true, 60))
        .await
        .unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK accepted");
    s
}

/// Writes `packets` until done or the server closes the connection; returns whether it closed.
async fn write_until_closed(s: &mut TcpStream, packets: impl Iterator<Item = Vec<u8>>) -> bool {
    let mut batch = Vec::new();
    for p in packets {
        batch.extend_from_slice(&p);
        if batch.len() > 64 * 1024 {
            let w = tokio::time::timeout(Duration::from_secs(5), s.write_all(&batch)).await;
            if !matches!(w, Ok(Ok(()))) {
                return true;
            }
            batch.clear();
        }
    }
    let _ = s.write_all(&batch).await;
    closed_within(s, Duration::from_secs(15)).await
}

/// Reads (and drops) whatever comes until the server closes; false if it did not in time.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// An honest send from alice to bob is answered and delivered.
async fn honest_send(
    alice: &Client,
    bob: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    conv: &courier_client::protocol::ConvId,
    text: &str,
) {
    alice
        .send_text(conv, text)
        .await
        .expect("honest send answered");
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = bob.recv().await {
            if let Event::Update(u) = e {
                if format!("{:?}", u.body).contains(text) {
                    return;
                }
            }
        }
    })
    .await;
    assert!(got.is_ok(), "bob never got {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_devices_hurt_only_themselves() {
    crate::helpers::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let server = Server::start(dir.path(), &db).await;
    let pid = server.pid_number();
    let api = Api::new(format!("http://{}", server.http));
    for name in ["alice", "bob", "mallory"] {
        api.sign_up(name, "correct horse battery").await.unwrap();
    }
    let session = |name: &'static str, device: &'static str| {
        let api = &api;
        async move {
            api.log_in(name, "correct horse battery", device, "test")
                .await
                .unwrap()
        }
    };
    let (sa, sb, sm) = (
        session("alice", "phone").await,
        session("bob", "phone").await,
        session("mallory", "phone").await,
    );
    let (alice, _alice_events) = Client::connect(ClientOptions::tcp(&sa)).await.unwrap();
    let (_bob, mut bob_events) = Client::connect(ClientOptions::tcp(&sb)).await.unwrap();
    let conv = api.create_direct(&sa.token, &sb.user).await.unwrap().id;
    let mallory_conv = api.create_direct(&sa.token, &sm.user).await.unwrap().id;
    honest_send(&alice, &mut bob_events, &conv, "warm-up").await;
    let start = rss_kib(pid);
    let base = format!("u/{}/d/{}/", sm.user, sm.device);

    // 1. QoS 2 requests never released, 20 000 of them over reconnects.
    for round in 0..10u16 {
        let mut m = raw_device(&sm).await;
        let topic = format!("{base}req/send");
        let spam = (1..=2000u16).map(|pkid| raw::publish(2, pkid, &topic, &[b'x'; 1024]));
        assert!(
            write_until_closed(&mut m, spam).await,
            "round {round}: QoS 2 publishes without PUBREL past the receive maximum were not refused"
        );
    }
    honest_send(&alice, &mut bob_events, &conv, "after qos2").await;
    let after_qos2 = rss_kib(pid);

    // 2. 20 000 distinct unknown request topics, never reading the answers.
    let mut m = raw_device(&sm).await;
    let spray: Vec<u8> = (0..20_000u32)
        .flat_map(|i| {
            raw::publish(
                1,
                (i % 60_000 + 1) as u16,
                &format!("{base}req/op{i}"),
                b"{\"id\":1}",
            )
        })
        .collect();
    // The server may stop reading (its lane for this device is full): bounded wait.
    let _ = tokio::time::timeout(Duration::from_secs(20), m.write_all(&spray)).await;
    drop(m);
    honest_send(&alice, &mut bob_events, &conv, "after spray").await;
    let after_spray = rss_kib(pid);

    // 3. Subscribed to its `in`, then never reads while alice floods it.
    let mut m = raw_device(&sm).await;
    let sub = raw::subscribe(1, &[(&format!("{base}in"), 1)]);
    m.write_all(&sub).await.unwrap();
    let text = "y".repeat(4000);
    let mut sends = Vec::new();
    for _ in 0..4000 {
        sends.push(alice.send_text(&mallory_conv, &text));
        if sends.len() == 64 {
            for r in futures_util::future::join_all(sends.drain(..)).await {
                r.expect("sends to a slow reader are answered");
            }
        }
    }
    for r in futures_util::future::join_all(sends).await {
        r.expect("sends to a slow reader are answered");
    }
    honest_send(&alice, &mut bob_events, &conv, "after slow reader").await;
    assert!(
        closed_within(&mut m, Duration::from_secs(30)).await,
        "a device that stopped reading was never disconnected"
    );
    let end = rss_kib(pid);
    println!("server RSS KiB: start {start}, after QoS 2 {after_qos2}, after spray {after_spray}, after slow reader {end}");
    for (what, rss) in [
        ("QoS 2", after_qos2),
        ("spray", after_spray),
        ("slow reader", end),
    ] {
        assert!(
            rss < start + GROWTH_LIMIT_KIB,
            "server memory grew from {start} KiB to {rss} KiB after the {what} attack"
        );
    }
    // Mallory's own later connection works: it only ever hurt itself.
    let (mc, _) = Client::connect(ClientOptions::tcp(&sm)).await.unwrap();
    mc.send_text(&mallory_conv, "sorry").await.unwrap();
}
