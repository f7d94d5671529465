//! Every attack of issue #15 at once, against a server with the standard limits: while one
//! account (with all ten of its devices, from addresses of its own) floods every MQTT op,
//! spams alice's chat, sends junk, fills its storage quota, tries to put alice in groups,
//! signs up sock puppets, guesses alice's password and the service secret, and holds idle HTTP
//! connections, alice keeps talking to bob: each of her sends is answered within a bound and
//! bob gets them all, in order. Each attack gets its typed refusal; what the attacker stores
//! stays within its quota. (The server's memory under each attack, read from /proc, is
//! `edge_abuse`'s; each attack alone has its own test, named in docs/security.md §5.)

use crate::helpers::{spawn_app_with, Db, RawDevice, TestApp, WAIT};
use backend::shared::Limits;
use courier_client::protocol::http::Session;
use courier_client::protocol::{ErrorCode, UpdateBody};
use courier_client::Api;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

crate::on_both_databases!(every_attack_at_once_leaves_alice_talking);

/// Alice's sends during the attacks, one every [`PACE`].
const HONEST_SENDS: i64 = 40;
const PACE: Duration = Duration::from_millis(100);
/// Each of alice's sends is answered within this, attacks or not: a liveness bound far above
/// a quiet server's milliseconds (the ratio under flood is measured by courier-flood-bench).
const BOUND: Duration = Duration::from_secs(5);
/// Requests each flooding device publishes without waiting: past its `packets` pace (a burst
/// of 100, then 50 a second), so the server reads the rest at that pace.
const FLOOD: usize = 300;
/// A flood's answers have ended when none came for this long. Paced, its acks for earlier
/// answers wait behind its own requests, so answers come in spurts.
const QUIET: Duration = Duration::from_secs(6);
const QUOTA_BYTES: u64 = 1 << 20;
const MALLORY: u8 = 2;
const GUESSER: u8 = 3;
const SLOWLORIS: u8 = 4;
const SERVICE_SECRET: &str = "hostile-test-service-secret";

/// An API client whose connections come from 127.0.0.`last`.
fn api_from(app: &TestApp, last: u8) -> Api {
    let http = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, last]))
        .build()
        .unwrap();
    Api::new(format!("http://{}", app.addrs.http)).with_http(http)
}

/// Publishes `requests` as `session`'s device without waiting, then reads answers until none
/// comes for [`QUIET`]; whether the server dropped the device (a flooder that does not read
/// its answers as fast as it asks is disconnected).
async fn flood(
    app: &TestApp,
    session: &Session,
    requests: Vec<(&'static str, Value)>,
) -> (Vec<Value>, bool) {
    let mut device = RawDevice::connect(app, session).await;
    let publisher = device.publish_all(&requests);
    let mut answers = Vec::new();
    let dropped = loop {
        match tokio::time::timeout(QUIET, device.next_answer()).await {
            Ok(Some(a)) => answers.push(a),
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    publisher.abort();
    (answers, dropped)
}

fn error_codes(answers: &[Value]) -> Vec<String> {
    answers
        .iter()
        .filter_map(|a| a["error"]["code"].as_str().map(str::to_owned))
        .collect()
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |d| {
        d.filter_map(Result::ok)
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

async fn every_attack_at_once_leaves_alice_talking(db: Db) {
    let app = spawn_app_with(db, |s| {
        s.limits = Limits::standard();
        // Few sock puppets are enough to see the limit (each costs an Argon2id hash).
        s.limits.apply("signup=3/1h").unwrap();
        s.quota_bytes = QUOTA_BYTES;
        s.service_secret = Some(SERVICE_SECRET.into());
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&alice, &bob).await;
    let alice_id = alice.session.user.clone();

    let mallory_api = api_from(&app, MALLORY);
    mallory_api
        .sign_up("mallory", "correct horse battery")
        .await
        .unwrap();
    let mut mallory = Vec::new();
    for d in 0..10 {
        let name = format!("d{d}");
        mallory.push(
            mallory_api
                .log_in("mallory", "correct horse battery", &name, "script")
                .await
                .unwrap(),
        );
    }
    // Mallory opens a direct chat with alice (no consent is needed to write to someone).
    let spam_conv = mallory_api
        .create_direct(&mallory[0].token, &alice_id)
        .await
        .unwrap()
        .id;

    // Idle HTTP connections, held through the attacks.
    let mut idle = Vec::new();
    for _ in 0..100 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(IpAddr::from([127, 0, 0, SLOWLORIS]), 0))
            .unwrap();
        if let Ok(s) = socket.connect(app.addrs.http).await {
            idle.push(s);
        }
    }

    let mut attacks = tokio::task::JoinSet::new();
    let app = std::sync::Arc::new(app);
    let requests = |make: fn(usize, &str) -> (&'static str, Value), conv: &str| {
        (0..FLOOD).map(|n| make(n, conv)).collect::<Vec<_>>()
    };
    let floods: Vec<(&str, Vec<(&'static str, Value)>)> = vec![
        (
            "sync",
            requests(
                |n, _| ("sync", json!({"id": n, "after": 0, "limit": 500})),
                "",
            ),
        ),
        (
            "spam",
            requests(
                |n, c| {
                    let text = "buy now ".repeat(250);
                    let body = json!({"id": n, "conv": c, "cmid": format!("s{n}"), "kind": "text", "text": text});
                    ("send", body)
                },
                spam_conv.as_str(),
            ),
        ),
        (
            "junk",
            requests(
                |n, c| match n % 3 {
                    0 => ("nope", json!({"id": n})),
                    1 => {
                        let body = json!({"id": n, "conv": c, "cmid": "a\u{0}b", "kind": "text", "text": "x"});
                        ("send", body)
                    }
                    _ => ("send", json!({"id": n, "conv": "not a conversation"})),
                },
                spam_conv.as_str(),
            ),
        ),
        (
            "reactions",
            requests(
                |n, _| {
                    let body = json!({"id": n, "msg": format!("m{n}"), "emoji": "👍", "on": true});
                    ("react", body)
                },
                "",
            ),
        ),
        (
            // Never answered: only the publishing counts.
            "typing",
            requests(
                |n, c| ("typing", json!({"conv": c, "on": n % 2 == 0})),
                spam_conv.as_str(),
            ),
        ),
        (
            "reads",
            requests(
                |n, c| ("read", json!({"id": n, "conv": c, "seq": 1_000_000 + n})),
                spam_conv.as_str(),
            ),
        ),
    ];
    for ((what, reqs), session) in floods.into_iter().zip(&mallory) {
        let (app, session) = (app.clone(), session.clone());
        attacks.spawn(async move {
            let (answers, dropped) = flood(&app, &session, reqs).await;
            let codes = error_codes(&answers);
            assert!(
                !codes.iter().any(|c| c == "internal"),
                "{what}: an internal error: {codes:?}"
            );
            // Past its bucket a flood is refused, unless it was dropped first.
            if matches!(what, "sync" | "spam" | "reactions") {
                assert!(
                    dropped || codes.iter().any(|c| c == "rate_limited"),
                    "{what}: {} answers, never rate_limited, not dropped",
                    answers.len()
                );
            }
            format!("{what}: {} answers, dropped: {dropped}", answers.len())
        });
    }
    // Uploads until the quota says no.
    {
        let (api, token) = (mallory_api.clone(), mallory[6].token.clone());
        attacks.spawn(async move {
            let mut codes = Vec::new();
            for n in 0..12u8 {
                let mut bytes = format!("filler {n}\n").into_bytes();
                bytes.resize(200 * 1024, b'.');
                if let Err(e) = api.upload(&token, bytes, Some("filler.txt")).await {
                    codes.push(e.code());
                }
            }
            assert!(
                codes.contains(&Some(ErrorCode::QuotaExceeded)),
                "uploads past the quota: {codes:?}"
            );
            let used = api.storage(&token).await.unwrap();
            assert!(used.used_bytes <= QUOTA_BYTES, "{used:?}");
            format!("uploads: refused {codes:?}")
        });
    }
    // Groups with alice in them.
    {
        let (api, token, alice_id) = (
            mallory_api.clone(),
            mallory[7].token.clone(),
            alice_id.clone(),
        );
        attacks.spawn(async move {
            for n in 0..20 {
                let e = api
                    .create_group(
                        &token,
                        &format!("spam {n}"),
                        std::slice::from_ref(&alice_id),
                    )
                    .await
                    .unwrap_err();
                assert_eq!(e.code(), Some(ErrorCode::ConsentRequired), "{e}");
            }
            "groups: all refused".to_owned()
        });
    }
    // Sock puppets.
    {
        let api = mallory_api.clone();
        attacks.spawn(async move {
            let mut limited = 0;
            for n in 0..6 {
                if let Err(e) = api
                    .sign_up(&format!("sock{n}"), "correct horse battery")
                    .await
                {
                    assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e}");
                    limited += 1;
                }
            }
            assert!(limited >= 3, "sign-ups past the limit: {limited} refused");
            format!("sign-ups: {limited} refused")
        });
    }
    // Guessing alice's password from another address.
    {
        let api = api_from(&app, GUESSER);
        attacks.spawn(async move {
            let mut last = None;
            for _ in 0..12 {
                last = api.log_in("alice", "guess", "x", "script").await.err();
            }
            assert_eq!(last.and_then(|e| e.code()), Some(ErrorCode::RateLimited));
            "log-in guesses: limited".to_owned()
        });
    }
    // Guessing the service secret over MQTT.
    {
        let port = app.addrs.mqtt.port();
        attacks.spawn(async move {
            let mut outcome = String::new();
            for n in 0..35 {
                let mut o =
                    rumqttc::v5::MqttOptions::new(format!("impostor{n}"), "127.0.0.1", port);
                o.set_credentials("courier-backend", "guess");
                let (_c, mut el) = rumqttc::v5::AsyncClient::new(o, 10);
                outcome = match el.poll().await {
                    Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => {
                        format!("{code:?}")
                    }
                    other => panic!("a wrong service secret got {other:?}"),
                };
            }
            assert_eq!(outcome, "NotAuthorized", "service logins past the limit");
            "service logins: limited".to_owned()
        });
    }

    // Meanwhile, alice talks to bob.
    for n in 1..=HONEST_SENDS {
        let sent = tokio::time::timeout(BOUND, alice.client.send_text(&conv, &format!("hi #{n}")))
            .await
            .unwrap_or_else(|_| panic!("alice's send #{n} not answered within {BOUND:?}"))
            .unwrap();
        assert_eq!(sent.seq, n);
        tokio::time::sleep(PACE).await;
    }
    for n in 1..=HONEST_SENDS {
        let u = bob.next_message().await;
        let UpdateBody::Message { msg } = u.body else {
            unreachable!()
        };
        assert_eq!(msg.seq, n, "bob got alice's messages in order");
    }
    let mut report = Vec::new();
    while let Some(done) = tokio::time::timeout(4 * WAIT, attacks.join_next())
        .await
        .expect("the attacks end")
    {
        report.push(done.expect("attack's checks hold"));
    }
    println!("{}", report.join("\n"));

    // Nothing mallory did reached alice's list, and her HTTP is served as ever.
    let listed = app.api.conversations(alice.token()).await.unwrap();
    assert_eq!(
        listed.len(),
        2,
        "alice's list: bob and mallory's direct chat"
    );
    // What the attacker stored is within its quota.
    let objects = dir_bytes(&app.objects_dir);
    assert!(objects <= QUOTA_BYTES, "{objects} bytes of objects");
    drop(idle);
}
