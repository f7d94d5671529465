//! The HTTP API's connections within limits: a connection that sends nothing, or drips a
//! request head or body, is closed (while the server's own slow work, such as hashing a
//! password, never counts against it); one address holds at most `PER_ADDRESS` connections; past the overall cap new
//! connections wait for a free slot; and while all that goes on, other clients are served and
//! MQTT users keep talking. Clients use different loopback addresses (all of 127/8 is this
//! machine).

use crate::helpers::{spawn_app_with, Db, TestApp, WAIT};
use backend::http::serve::PER_ADDRESS;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(last: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from([127, 0, 0, last]), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server closes `s` within `within` (reading and dropping what comes).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// `GET /healthz` from 127.0.0.`last` gets 200 within `within`.
async fn served_from(app: &TestApp, last: u8, within: Duration) -> bool {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, last]))
        .timeout(within)
        .build()
        .unwrap();
    let url = format!("http://{}/healthz", app.addrs.http);
    matches!(client.get(url).send().await, Ok(r) if r.status() == 200)
}

/// An MQTT user's send is answered and delivered.
async fn mqtt_still_works(app: &TestApp) {
    let a = app.tcp_device("alice", "phone").await;
    let mut b = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&a, &b).await;
    a.client.send_text(&conv, "still talking").await.unwrap();
    b.next_message().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_and_dripping_connections_are_closed() {
    let app = spawn_app_with(Db::Sqlite, |s| s.http_idle_timeout = Duration::from_secs(1)).await;
    app.users(&["alice", "bob"]).await;
    let mut silent = connect_from(1, app.addrs.http).await;
    let mut dripping = connect_from(1, app.addrs.http).await;
    let drip = tokio::spawn(async move {
        // A request head, a few bytes a second, never finished.
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if dripping.write_all(&[*b]).await.is_err() {
                return dripping;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unreachable!()
    });
    assert!(
        closed_within(&mut silent, WAIT).await,
        "a silent connection stayed open"
    );
    let mut dripping = tokio::time::timeout(WAIT, drip)
        .await
        .expect("a dripping connection stayed open")
        .unwrap();
    assert!(closed_within(&mut dripping, WAIT).await);
    // A request body that drips: its head is whole, so the server is reading the body (a
    // sign-up's JSON), which must keep up a pace too.
    let mut body_drip = connect_from(1, app.addrs.http).await;
    body_drip
        .write_all(
            b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 5000\r\n\r\n{\"username\":\"",
        )
        .await
        .unwrap();
    let drip = tokio::spawn(async move {
        loop {
            if body_drip.write_all(b"a").await.is_err() {
                return body_drip;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut body_drip = tokio::time::timeout(WAIT, drip)
        .await
        .expect("a dripping body stayed open")
        .unwrap();
    assert!(closed_within(&mut body_drip, WAIT).await);
    // A keep-alive client that keeps using its connection is not cut off.
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let url = format!("http://{}/healthz", app.addrs.http);
        assert_eq!(client.get(url).send().await.unwrap().status(), 200);
    }
    mqtt_still_works(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_holds_a_bounded_share_and_the_total_is_capped() {
    let total = PER_ADDRESS + 20;
    let app = spawn_app_with(Db::Sqlite, |s| s.http_max_connections = total).await;
    app.users(&["alice", "bob"]).await;
    let mut held = Vec::new();
    for _ in 0..PER_ADDRESS {
        held.push(connect_from(1, app.addrs.http).await);
    }
    // The address's share is used up: its next connection is closed at once; other
    // addresses are served.
    let mut one_more = connect_from(1, app.addrs.http).await;
    assert!(closed_within(&mut one_more, WAIT).await);
    assert!(served_from(&app, 2, WAIT).await);

    // Fill the overall cap from a second address: a third one then waits...
    for _ in 0..total - PER_ADDRESS {
        held.push(connect_from(2, app.addrs.http).await);
    }
    // (the server accepts asynchronously: give it a moment to take up the slots)
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!served_from(&app, 3, Duration::from_millis(700)).await);
    // ...until a slot is free.
    held.truncate(held.len() - 5);
    assert!(served_from(&app, 3, WAIT).await);
    mqtt_still_works(&app).await;
}

/// With `--metrics-listen`, `/metrics` is served there and no longer on the public port.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_can_have_a_listener_of_their_own() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.metrics_listen = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let metrics = app.addrs.metrics.expect("a metrics listener");
    assert_ne!(metrics, app.addrs.http);
    let public = reqwest::get(format!("http://{}/metrics", app.addrs.http))
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let own = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    assert!(own.text().await.unwrap().contains("courier_"));
    let other = reqwest::get(format!("http://{metrics}/v1/users"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}
