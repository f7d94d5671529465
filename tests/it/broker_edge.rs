//! The MQTT edge itself: idle sockets, CONNECT timeouts, packet size, presence events, Last
//! Will authorisation, typing on `eph`.

use crate::helpers::{spawn_app, spawn_app_with, Db, WAIT};
use courier_client::protocol::ops::Ephemeral;
use courier_client::{ClientOptions, Event};
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event as V5Event, MqttOptions};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

crate::on_both_databases!(
    idle_sockets_block_nobody_and_are_closed,
    oversize_packets_close_the_connection_only,
    oversize_websocket_frames_close_before_they_are_buffered,
    presence_events_and_last_will,
    typing_reaches_other_members_on_eph,
    garbage_on_the_wire_leaves_the_server_up,
    offline_devices_get_no_pushes_and_catch_up_by_sync,
    persistent_sessions_keep_subscriptions_and_say_so,
    a_v5_clients_maximum_packet_size_is_honoured,
    unacknowledged_publishes_are_bounded_in_bytes,
);

async fn idle_sockets_block_nobody_and_are_closed(db: Db) {
    let app = spawn_app(db).await;
    // Sockets that never send a byte: one on the TCP port, one on the WebSocket port.
    let mut idle_tcp = TcpStream::connect(app.addrs.mqtt).await.unwrap();
    let mut idle_ws = TcpStream::connect(app.addrs.mqtt_ws).await.unwrap();
    // Everyone else is served meanwhile, over both transports.
    app.users(&["alice", "bob"]).await;
    let a = app.tcp_device("alice", "phone").await;
    let mut b = app.device("bob", "laptop", ClientOptions::ws).await;
    let conv = app.direct(&a, &b).await;
    a.client.send_text(&conv, "not blocked").await.unwrap();
    b.next_message().await;
    // The idle sockets are closed after the 2 s connect timeout the tests configure.
    let mut buf = [0u8; 16];
    for s in [&mut idle_tcp, &mut idle_ws] {
        let n = tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf))
            .await
            .expect("idle socket was not closed");
        assert!(
            matches!(n, Ok(0) | Err(_)),
            "server spoke to an idle socket"
        );
    }
}

async fn oversize_packets_close_the_connection_only(db: Db) {
    let app = spawn_app_with(db, |s| s.max_packet_size = 8 * 1024).await;
    app.users(&["alice", "bob"]).await;
    for v5 in [false, true] {
        let opts = move |s: &_| {
            if v5 {
                ClientOptions::tcp(s).v5()
            } else {
                ClientOptions::tcp(s)
            }
        };
        let mut a = app
            .device("alice", if v5 { "v5" } else { "v4" }, opts)
            .await;
        let topic = format!("u/{}/d/{}/req/send", a.session.user, a.session.device);
        a.client
            .publish_raw(&topic, vec![b'x'; 20 * 1024])
            .await
            .unwrap();
        let events = a.drain_for(Duration::from_millis(1500)).await;
        assert!(
            events.iter().any(|e| matches!(e, Event::Disconnected(_))),
            "{events:?}"
        );
        a.client.disconnect().await;
    }
    // The server is fine: others keep talking.
    let a = app.tcp_device("alice", "again").await;
    let mut b = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&a, &b).await;
    a.client
        .send_text(&conv, "after the big one")
        .await
        .unwrap();
    b.next_message().await;
}

/// A WebSocket frame announced bigger than an MQTT packet may be closes the connection at
/// its header, before CONNECT and before its bytes are taken in (tungstenite's own limits are
/// 16 MiB a frame, 64 MiB a message).
async fn oversize_websocket_frames_close_before_they_are_buffered(db: Db) {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(db, |s| s.max_packet_size = 8 * 1024).await;
    let mut ws = TcpStream::connect(app.addrs.mqtt_ws).await.unwrap();
    ws.write_all(
        b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: mqtt\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(WAIT, ws.read_exact(&mut byte))
            .await
            .expect("a handshake answer")
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // A masked binary frame of 8 MiB, far over the 8 KiB packet limit (and under
    // tungstenite's own 16 MiB); then its bytes. Taken in whole, they would all be written
    // before the server found the MQTT inside malformed; refused at the header, the socket is
    // reset long before.
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(8u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    let _ = ws.write_all(&frame).await;
    let chunk = vec![0u8; 16 * 1024];
    let mut closed = false;
    for _ in 0..512 {
        if ws.write_all(&chunk).await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "the server took in the whole oversize frame");
    // Everyone else is fine, over WebSocket too.
    app.users(&["alice", "bob"]).await;
    let a = app.device("alice", "laptop", ClientOptions::ws).await;
    let mut b = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&a, &b).await;
    a.client.send_text(&conv, "still here").await.unwrap();
    b.next_message().await;
}

/// alice connected on her phone, bob logged in on his (not connected), and their direct
/// conversation.
async fn alice_and_bob(
    db: Db,
) -> (
    crate::helpers::TestApp,
    crate::helpers::Device,
    courier_client::protocol::http::Session,
    courier_client::protocol::ConvId,
) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let a = app.tcp_device("alice", "phone").await;
    let s = app.session("bob", "phone").await;
    let conv = app.api.create_direct(a.token(), &s.user).await.unwrap().id;
    (app, a, s, conv)
}

fn service_client(
    app: &crate::helpers::TestApp,
    id: &str,
) -> (AsyncClient, rumqttc::v5::EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", app.addrs.mqtt.port());
    o.set_credentials("courier-backend", "test-service-secret");
    AsyncClient::new(o, 100)
}

async fn next_publish(el: &mut rumqttc::v5::EventLoop) -> (String, serde_json::Value) {
    loop {
        let ev = tokio::time::timeout(WAIT, el.poll())
            .await
            .expect("no publish")
            .expect("connection");
        if let V5Event::Incoming(Packet::Publish(p)) = ev {
            let topic = String::from_utf8_lossy(&p.topic).into_owned();
            return (
                topic,
                serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null),
            );
        }
    }
}

async fn presence_events_and_last_will(db: Db) {
    let app = spawn_app_with(db, |s| {
        s.service_secret = Some("test-service-secret".into())
    })
    .await;
    let (watcher, mut wel) = service_client(&app, "presence-watcher");
    watcher
        .subscribe("u/+/d/+/presence", QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Ok(V5Event::Incoming(Packet::SubAck(_))) = wel.poll().await {
            break;
        }
    }
    app.user("alice").await;
    let s = app.session("alice", "phone").await;
    let presence = format!("u/{}/d/{}/presence", s.user, s.device);

    // A device with a Last Will on its own presence topic; its socket dies without DISCONNECT.
    let mut o = MqttOptions::new(s.device.to_string(), "127.0.0.1", app.addrs.mqtt.port());
    o.set_credentials(s.device.to_string(), s.token.clone());
    o.set_last_will(LastWill::new(
        &presence,
        r#"{"online":false,"will":true}"#,
        QoS::AtLeastOnce,
        false,
        None,
    ));
    let (_dev, mut del) = AsyncClient::new(o, 10);
    let conn = tokio::spawn(async move {
        loop {
            if del.poll().await.is_err() {
                break;
            }
        }
    });
    let (topic, online) = next_publish(&mut wel).await;
    assert_eq!(topic, presence);
    assert_eq!(online["online"], true);
    assert_eq!(online["source"], "broker");
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn.abort();
    let mut seen_will = false;
    let mut seen_offline = false;
    while !(seen_will && seen_offline) {
        let (topic, body) = next_publish(&mut wel).await;
        assert_eq!(topic, presence);
        assert_eq!(body["online"], false);
        seen_will |= body["will"] == true;
        seen_offline |= body["source"] == "broker";
    }

    // A will aimed at someone else's topic is refused at CONNECT.
    app.user("bob").await;
    let bob = app.session("bob", "phone").await;
    let mut o = MqttOptions::new(s.device.to_string(), "127.0.0.1", app.addrs.mqtt.port());
    o.set_credentials(s.device.to_string(), s.token.clone());
    let foreign = format!("u/{}/d/{}/req/send", bob.user, bob.device);
    o.set_last_will(LastWill::new(foreign, "{}", QoS::AtLeastOnce, false, None));
    let (_c, mut el) = AsyncClient::new(o, 10);
    match el.poll().await {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(format!("{code:?}"), "NotAuthorized")
        }
        other => panic!("a foreign will was accepted: {other:?}"),
    }
    // A wrong service secret is refused too.
    let mut o = MqttOptions::new("impostor", "127.0.0.1", app.addrs.mqtt.port());
    o.set_credentials("courier-backend", "guess");
    let (_c, mut el) = AsyncClient::new(o, 10);
    assert!(matches!(
        el.poll().await,
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(_))
    ));
}

async fn typing_reaches_other_members_on_eph(db: Db) {
    let app = spawn_app(db).await;
    for u in ["alice", "bob", "eve"] {
        app.user(u).await;
    }
    let mut a = app.tcp_device("alice", "phone").await;
    let mut b = app.tcp_device("bob", "phone").await;
    let mut e = app.tcp_device("eve", "phone").await;
    let conv = app.direct(&a, &b).await;
    a.client.typing(&conv, true).await.unwrap();
    a.client.typing(&conv, true).await.unwrap(); // throttled repeat
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.client.typing(&conv, false).await.unwrap();
    e.client.typing(&conv, true).await.unwrap(); // not a member: dropped
    let events = b.drain_for(Duration::from_millis(1200)).await;
    let typing: Vec<(String, bool)> = events
        .iter()
        .filter_map(|ev| match ev {
            Event::Ephemeral(Ephemeral::Typing { user, on, .. }) => Some((user.to_string(), *on)),
            _ => None,
        })
        .collect();
    let alice = a.session.user.to_string();
    assert_eq!(typing, vec![(alice.clone(), true), (alice, false)]);
    // Typing is never answered and never echoed to the typist (bob's presence may come).
    let mine = a.drain_for(Duration::from_millis(300)).await;
    assert!(
        !mine.iter().any(|e| matches!(
            e,
            Event::Unmatched(_) | Event::Ephemeral(Ephemeral::Typing { .. })
        )),
        "{mine:?}"
    );
    assert!(!e
        .drain_for(Duration::from_millis(100))
        .await
        .iter()
        .any(|e| matches!(e, Event::Ephemeral(_))));
}

/// Random and truncated bytes, before and after a valid CONNECT, on both listeners.
async fn garbage_on_the_wire_leaves_the_server_up(db: Db) {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let s = app.session("alice", "fuzz").await;
    // A valid MQTT 3.1.1 CONNECT for alice's device, to put garbage after.
    let id = s.device.to_string();
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0b1100_0010, 0, 30];
    for field in [id.as_bytes(), id.as_bytes(), s.token.as_bytes()] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field);
    }
    let mut connect = vec![0x10, body.len() as u8];
    connect.extend_from_slice(&body);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..120 {
        let len = (next() % 300) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match round % 4 {
            // Pure noise.
            0 => {}
            // A plausible fixed header with a lying length.
            1 => junk
                .splice(0..0, [0x30, 0xff, 0xff, 0xff, 0x7f])
                .for_each(drop),
            // Garbage after a valid CONNECT.
            2 => junk.splice(0..0, connect.iter().copied()).for_each(drop),
            // A valid CONNECT cut short.
            _ => junk = connect[..(next() as usize % connect.len())].to_vec(),
        }
        let addr = if round % 2 == 0 {
            app.addrs.mqtt
        } else {
            app.addrs.mqtt_ws
        };
        if let Ok(mut sock) = TcpStream::connect(addr).await {
            let _ = sock.write_all(&junk).await;
            let _ = sock.shutdown().await;
        }
    }
    // Everyone else is still served.
    let a = app.tcp_device("alice", "phone").await;
    let mut b = app.device("bob", "phone", ClientOptions::ws).await;
    let conv = app.direct(&a, &b).await;
    a.client.send_text(&conv, "still up").await.unwrap();
    b.next_message().await;
}

/// Nothing is pushed into the broker for a device that is away, even with a persistent
/// session; its updates wait in its log and come back with `sync`.
async fn offline_devices_get_no_pushes_and_catch_up_by_sync(db: Db) {
    use rumqttc::{
        AsyncClient as V4Client, Event as V4Event, MqttOptions as V4Options, Packet as V4Packet,
    };
    let (app, a, s, conv) = alice_and_bob(db).await;
    let persistent = |s: &courier_client::protocol::http::Session| {
        let mut o = V4Options::new(s.device.to_string(), "127.0.0.1", app.addrs.mqtt.port());
        o.set_credentials(s.device.to_string(), s.token.clone())
            .set_clean_session(false);
        V4Client::new(o, 100)
    };
    let bob_in = format!("u/{}/d/{}/in", s.user, s.device);
    // Connected: pushes arrive.
    let (c, mut el) = persistent(&s);
    c.subscribe(&bob_in, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let V4Event::Incoming(V4Packet::SubAck(_)) = el.poll().await.expect("connected") {
            break;
        }
    }
    let mut got = 0;
    a.client.send_text(&conv, "while here").await.unwrap();
    while got == 0 {
        match tokio::time::timeout(WAIT, el.poll())
            .await
            .expect("push")
            .expect("connected")
        {
            V4Event::Incoming(V4Packet::Publish(_)) => got += 1,
            _ => continue,
        }
    }
    c.disconnect().await.unwrap();
    while el.poll().await.is_ok() {}
    // Away: five more messages.
    for n in 0..5 {
        a.client
            .send_text(&conv, &format!("while away {n}"))
            .await
            .unwrap();
    }
    // Back with the same persistent session: the broker has nothing queued for bob…
    let (_c, mut el) = persistent(&s);
    let quiet = tokio::time::timeout(Duration::from_millis(800), async {
        loop {
            if let Ok(V4Event::Incoming(V4Packet::Publish(p))) = el.poll().await {
                return p.topic;
            }
        }
    })
    .await;
    assert!(
        quiet.is_err(),
        "the broker queued a push for an offline device: {quiet:?}"
    );
    // …and the log has everything.
    drop(el);
    let b = app.tcp_device("bob", "tablet").await;
    let updates = b.client.sync_all(0).await.unwrap();
    let texts = updates
        .iter()
        .filter(|u| matches!(u.body, courier_client::protocol::UpdateBody::Message { .. }))
        .count();
    assert_eq!(texts, 6);
}

/// MQTT session semantics on the device edge: a device receives on `in` only once subscribed;
/// with clean session 0 its subscription survives a reconnect and the CONNACK says session
/// present; with clean session 1 nothing survives and the CONNACK says so.
async fn persistent_sessions_keep_subscriptions_and_say_so(db: Db) {
    use rumqttc::{AsyncClient as V4Client, Event as V4Event, MqttOptions as V4Options};
    use rumqttc::{Packet as V4Packet, QoS as V4QoS};
    let (app, a, s, conv) = alice_and_bob(db).await;
    let connect = |clean: bool| {
        let mut o = V4Options::new(s.device.to_string(), "127.0.0.1", app.addrs.mqtt.port());
        o.set_credentials(s.device.to_string(), s.token.clone())
            .set_clean_session(clean);
        V4Client::new(o, 100)
    };
    async fn connack(el: &mut rumqttc::EventLoop) -> bool {
        loop {
            if let V4Event::Incoming(V4Packet::ConnAck(ack)) = el.poll().await.expect("connects") {
                return ack.session_present;
            }
        }
    }
    /// Publishes on `in` that arrive within `wait`, polling (and so acking) meanwhile.
    async fn pushes(el: &mut rumqttc::EventLoop, wait: Duration) -> usize {
        let mut n = 0;
        let _ = tokio::time::timeout(wait, async {
            loop {
                if let Ok(V4Event::Incoming(V4Packet::Publish(_))) = el.poll().await {
                    n += 1;
                }
            }
        })
        .await;
        n
    }
    let bob_in = format!("u/{}/d/{}/in", s.user, s.device);

    // Connected but not subscribed: nothing arrives.
    let (c, mut el) = connect(false);
    assert!(!connack(&mut el).await, "a first connection has no session");
    a.client.send_text(&conv, "unsubscribed").await.unwrap();
    assert_eq!(pushes(&mut el, Duration::from_millis(600)).await, 0);
    c.subscribe(&bob_in, V4QoS::AtLeastOnce).await.unwrap();
    assert_eq!(pushes(&mut el, Duration::from_millis(300)).await, 0);
    a.client.send_text(&conv, "subscribed").await.unwrap();
    assert_eq!(pushes(&mut el, Duration::from_millis(800)).await, 1);
    c.disconnect().await.unwrap();
    while el.poll().await.is_ok() {}

    // Back with the persistent session: present, and still subscribed without asking again.
    let (c, mut el) = connect(false);
    assert!(
        connack(&mut el).await,
        "the persistent session was not resumed"
    );
    a.client.send_text(&conv, "resumed").await.unwrap();
    assert_eq!(pushes(&mut el, Duration::from_millis(800)).await, 1);
    c.disconnect().await.unwrap();
    while el.poll().await.is_ok() {}

    // A clean session forgets it: not present, not subscribed.
    let (_c, mut el) = connect(true);
    assert!(
        !connack(&mut el).await,
        "a clean session was reported present"
    );
    a.client.send_text(&conv, "clean").await.unwrap();
    assert_eq!(pushes(&mut el, Duration::from_millis(600)).await, 0);
}

/// bob's device as a plain MQTT 5 client (`configure` sets its options), subscribed to `filter`
/// at QoS 1 once this returns.
async fn subscribed_v5(
    app: &crate::helpers::TestApp,
    s: &courier_client::protocol::http::Session,
    filter: &str,
    configure: impl FnOnce(&mut MqttOptions),
) -> (AsyncClient, rumqttc::v5::EventLoop) {
    let mut o = MqttOptions::new(s.device.to_string(), "127.0.0.1", app.addrs.mqtt.port());
    o.set_credentials(s.device.to_string(), s.token.clone());
    configure(&mut o);
    let (c, mut el) = AsyncClient::new(o, 100);
    c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    loop {
        let ev = tokio::time::timeout(WAIT, el.poll()).await.expect("SUBACK");
        if let V5Event::Incoming(Packet::SubAck(_)) = ev.expect("connected") {
            return (c, el);
        }
    }
}

/// MQTT 5: a client that says it takes packets of at most N bytes is never sent a bigger one
/// (rumqttc would drop the connection if it were): an update over the limit is discarded, the
/// next one arrives, and the connection stays up.
async fn a_v5_clients_maximum_packet_size_is_honoured(db: Db) {
    let (app, a, s, conv) = alice_and_bob(db).await;
    let bob_in = format!("u/{}/d/{}/in", s.user, s.device);
    let (_c, mut el) = subscribed_v5(&app, &s, &bob_in, |o| {
        o.set_max_packet_size(Some(1024));
    })
    .await;
    a.client.send_text(&conv, &"x".repeat(2000)).await.unwrap();
    a.client.send_text(&conv, "small").await.unwrap();
    let (topic, update) = next_publish(&mut el).await;
    assert_eq!(topic, bob_in);
    assert_eq!(update["msg"]["seq"], 2, "{update}");
    assert_eq!(update["msg"]["text"], "small", "{update}");
    // Still connected: the next one arrives too.
    a.client.send_text(&conv, "again").await.unwrap();
    let (_, update) = next_publish(&mut el).await;
    assert_eq!(update["msg"]["seq"], 3, "{update}");
}

/// A device that never sends PUBACK is sent at most ~1 MiB of payload (`INFLIGHT_BYTES`), not
/// 64 publishes of any size: here, sync pages of ~512 KiB on `rsp`. The rest waits in its
/// outbox and flows once it acknowledges.
async fn unacknowledged_publishes_are_bounded_in_bytes(db: Db) {
    let (app, a, s, conv) = alice_and_bob(db).await;
    // A backlog of ~1.2 MB for bob: 300 messages of 3 900 characters.
    let text = "x".repeat(3_900);
    for _ in 0..300 {
        a.client.send_text(&conv, &text).await.unwrap();
    }
    let topic = |stream: &str| format!("u/{}/d/{}/{stream}", s.user, s.device);
    let (c, mut el) = subscribed_v5(&app, &s, &topic("rsp"), |o| {
        o.set_manual_acks(true).set_max_packet_size(Some(4 << 20));
    })
    .await;
    // Four full pages (~512 KiB each): 2 MiB of answers, under the outbox's 4 MiB.
    const PAGES: usize = 4;
    for id in 0..PAGES {
        let req = serde_json::json!({"id": id, "after": 0, "limit": 500});
        c.publish(topic("req/sync"), QoS::AtLeastOnce, false, req.to_string())
            .await
            .unwrap();
    }
    let mut held = Vec::new();
    let quiet = Duration::from_millis(2000);
    while let Ok(ev) = tokio::time::timeout(quiet, el.poll()).await {
        if let V5Event::Incoming(Packet::Publish(p)) = ev.expect("connected") {
            assert!(
                p.payload.len() > 400_000,
                "a full page: {} B",
                p.payload.len()
            );
            held.push(p);
        }
    }
    // Each page went out while less than 1 MiB was unacknowledged; then the rest waited.
    let before_last: usize = held.iter().rev().skip(1).map(|p| p.payload.len()).sum();
    assert!(
        held.len() < PAGES && before_last < 1 << 20,
        "{} sync pages sent while none was acknowledged",
        held.len()
    );
    // Acknowledged, the rest comes.
    let mut got = held.len();
    for p in held {
        c.ack(&p).await.unwrap();
    }
    while got < PAGES {
        let ev = tokio::time::timeout(WAIT, el.poll())
            .await
            .expect("the rest");
        if let V5Event::Incoming(Packet::Publish(p)) = ev.expect("connected") {
            got += 1;
            c.ack(&p).await.unwrap();
        }
    }
}
