//! Rate limits in one process (the buckets in memory): every op per device, uploads per user,
//! sign-ups and log-ins per address, log-ins per account, sign-ups overall. A hit is a typed `rate_limited` error with the wait, and changes
//! nothing; other devices and users keep their own buckets. (Shared through Redis between
//! processes: `scale_out.rs`.)

use crate::helpers::{spawn_app_with, Db, Setup};
use crate::on_both_databases;
use backend::shared::{Limit, Rate};
use courier_client::protocol::ops::Ephemeral;
use courier_client::protocol::ErrorCode;
use courier_client::{Api, ClientError, Event};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

/// A 1×1 PNG.
const PNG: &[u8] = crate::media::PNG;

fn per_minute(count: u32) -> Option<Rate> {
    Some(Rate {
        count,
        per: Duration::from_secs(60),
    })
}

fn retry_after_ms(e: &ClientError) -> u64 {
    assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e}");
    let ClientError::Server(body) = e else {
        unreachable!()
    };
    body.details.as_ref().unwrap()["retry_after_ms"]
        .as_u64()
        .unwrap()
}

async fn limits_hold_per_device_user_and_address(setup: Setup) {
    let app = spawn_app_with(setup, |s| {
        s.limits
            .set(Limit::Send, per_minute(3))
            .set(Limit::Upload, per_minute(2))
            .set(Limit::Login, per_minute(5));
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let alice_laptop = app.tcp_device("alice", "laptop").await;
    let bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&alice, &bob).await;

    // Sends: 3 per device; the 4th is refused and stores nothing.
    for i in 0..3 {
        alice
            .client
            .send_text(&conv, &format!("m{i}"))
            .await
            .unwrap();
    }
    let e = alice
        .client
        .send_text(&conv, "one too many")
        .await
        .unwrap_err();
    let wait = retry_after_ms(&e);
    assert!((1..=20_000).contains(&wait), "{wait}");
    alice_laptop
        .client
        .send_text(&conv, "my own bucket")
        .await
        .unwrap();
    bob.client.send_text(&conv, "mine too").await.unwrap();
    let page = app.api.history(bob.token(), &conv, None, 50).await.unwrap();
    assert_eq!(page.messages.len(), 5);
    assert!(page
        .messages
        .iter()
        .all(|m| !format!("{m:?}").contains("one too many")));

    // Uploads: 2 per user, whichever device; both upload routes count.
    app.api
        .upload(alice.token(), PNG.to_vec(), Some("a.png"))
        .await
        .unwrap();
    app.api
        .upload(alice_laptop.token(), PNG.to_vec(), Some("b.png"))
        .await
        .unwrap();
    let refused = app
        .api
        .upload(alice.token(), PNG.to_vec(), Some("c.png"))
        .await
        .unwrap_err();
    retry_after_ms(&refused);
    let tus = reqwest::Client::new()
        .post(format!("http://{}/v1/uploads", app.addrs.http))
        .bearer_auth(alice.token())
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "67")
        .send()
        .await
        .unwrap();
    assert_eq!(tus.status(), 429);
    let secs: u64 = tus.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&secs), "{secs}");
    app.api
        .upload(bob.token(), PNG.to_vec(), Some("d.png"))
        .await
        .unwrap();

    // Log-ins: 5 per address, good passwords or bad (three happened above).
    let bad = app.api.log_in("bob", "wrong", "x", "t").await.unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::BadCredentials));
    app.session("bob", "tablet").await;
    let e = app
        .api
        .log_in("bob", "correct horse battery", "y", "t")
        .await
        .unwrap_err();
    retry_after_ms(&e);
}

on_both_databases!(limits_hold_per_device_user_and_address);

/// Every MQTT op has a bucket per device: `sync` and `read` are refused with `rate_limited`
/// past theirs while another device of the same user keeps its own; `typing` past its bucket
/// is dropped (it is never answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_op_has_a_bucket_per_device() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.limits
            .set(Limit::Sync, per_minute(2))
            .set(Limit::Read, per_minute(1))
            .set(Limit::Typing, per_minute(1));
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let alice_laptop = app.tcp_device("alice", "laptop").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&alice, &bob).await;
    let sent = alice.client.send_text(&conv, "hi").await.unwrap();

    for _ in 0..2 {
        alice.client.sync(0, 10).await.unwrap();
    }
    retry_after_ms(&alice.client.sync(0, 10).await.unwrap_err());
    alice_laptop.client.sync(0, 10).await.unwrap();

    bob.client.read(&conv, sent.seq).await.unwrap();
    retry_after_ms(&bob.client.read(&conv, sent.seq).await.unwrap_err());

    // alice types, then stops: the second event is over her bucket and nobody hears it.
    alice.client.typing(&conv, true).await.unwrap();
    alice.client.typing(&conv, false).await.unwrap();
    let heard: Vec<Ephemeral> = bob
        .drain_for(Duration::from_millis(500))
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::Ephemeral(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(heard.len(), 1, "{heard:?}");
}

/// Sign-ups are limited per address and for everyone together; log-ins per address and per
/// account, so guessing one account's password from many addresses gets nowhere. Requests
/// come from different loopback addresses (all of 127/8 is this machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_ups_and_log_ins_are_limited_per_address_account_and_overall() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.limits
            .set(Limit::Signup, per_minute(3))
            .set(Limit::SignupAll, per_minute(5))
            .set(Limit::LoginAccount, per_minute(2));
    })
    .await;
    let from = |last: u8| {
        Api::new(format!("http://{}", app.addrs.http)).with_http(
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 0, last]))
                .build()
                .unwrap(),
        )
    };
    let (one, two, three) = (from(1), from(2), from(3));
    for name in ["ann", "ben", "cat"] {
        one.sign_up(name, PASSWORD).await.unwrap();
    }
    retry_after_ms(&one.sign_up("dan", PASSWORD).await.unwrap_err());
    for name in ["dan", "eve"] {
        two.sign_up(name, PASSWORD).await.unwrap();
    }
    // Five in the last minute from everyone: a fresh address is refused too.
    retry_after_ms(&three.sign_up("fay", PASSWORD).await.unwrap_err());
    let raw = three
        .raw(
            three
                .request(reqwest::Method::POST, "/users", None)
                .json(&serde_json::json!({"username": "gus", "password": PASSWORD})),
        )
        .await
        .unwrap();
    assert_eq!(raw.0, 429);

    // Two wrong passwords for ann, from two addresses; then even the right one waits.
    for api in [&one, &two] {
        let e = api.log_in("ann", "wrong", "x", "t").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadCredentials));
    }
    retry_after_ms(&three.log_in("ANN", PASSWORD, "x", "t").await.unwrap_err());
    // Other accounts are untouched.
    three.log_in("ben", PASSWORD, "x", "t").await.unwrap();
}

/// Downloads per user (originals, derivatives and file info alike) and users added to groups
/// per user adding them (at creation and later) have buckets of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_and_group_adds_have_buckets_per_user() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.limits
            .set(Limit::Download, per_minute(2))
            .set(Limit::GroupAdd, per_minute(3));
    })
    .await;
    app.users(&["alice", "bob", "carol", "dave", "erin"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let bob = app.tcp_device("bob", "phone").await;
    let api = &app.api;
    let file = api
        .upload(alice.token(), PNG.to_vec(), Some("a.png"))
        .await
        .unwrap();
    let get = |token: String, path: String| async move {
        let (status, _) = api
            .raw(api.request(reqwest::Method::GET, &path, Some(&token)))
            .await
            .unwrap();
        status
    };
    let original = format!("/media/{}", file.id);
    let info = format!("/media/{}/info", file.id);
    assert!(get(alice.token().into(), original.clone())
        .await
        .is_success());
    assert!(get(alice.token().into(), info.clone()).await.is_success());
    assert_eq!(get(alice.token().into(), original.clone()).await, 429);
    // bob's bucket is his own (the file is not his to see: 404, not 429).
    assert_eq!(get(bob.token().into(), original).await, 404);

    // Group adds: two at creation, one more later; the next is refused.
    let mut ids = Vec::new();
    for name in ["carol", "dave", "erin"] {
        let session = app.session(name, "x").await;
        app.accept_group_adds(&session.token).await;
        ids.push(session.user);
    }
    app.accept_group_adds(bob.token()).await;
    let [carol, dave, erin] = <[_; 3]>::try_from(ids).unwrap();
    let g = api
        .create_group(alice.token(), "g", &[bob.session.user.clone(), carol])
        .await
        .unwrap();
    let add = |who: &courier_client::protocol::UserId| {
        let path = format!("/conversations/{}/members", g.id);
        let request = api
            .request(reqwest::Method::POST, &path, Some(alice.token()))
            .json(&serde_json::json!({ "members": [who] }));
        async move { api.raw(request).await.unwrap().0 }
    };
    assert!(add(&dave).await.is_success());
    assert_eq!(add(&erin).await, 429);
    // Creating a group counts too: alice's bucket is empty, bob's is his own.
    retry_after_ms(
        &api.create_group(alice.token(), "h", std::slice::from_ref(&erin))
            .await
            .unwrap_err(),
    );
    api.create_group(bob.token(), "bob's", &[erin])
        .await
        .unwrap();
}

/// Connecting too often is refused with the "try again later" code of each MQTT version, per
/// device; heavy HTTP reads have a bucket per user; and a device's packets past its pace are
/// read no faster than the pace, with every request still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connects_heavy_reads_and_packets_are_paced() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.limits
            .set(Limit::Connect, per_minute(2))
            .set(Limit::History, per_minute(2))
            .set(
                Limit::Packets,
                Some(Rate {
                    count: 10,
                    per: Duration::from_secs(1),
                }),
            );
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let alice = app.session("alice", "phone").await;
    let port = app.addrs.mqtt.port();
    let v4 = |s: &courier_client::protocol::http::Session| {
        let mut o = rumqttc::MqttOptions::new(s.device.as_str(), "127.0.0.1", port);
        o.set_credentials(s.device.as_str(), s.token.as_str());
        let (_c, mut el) = rumqttc::AsyncClient::new(o, 10);
        async move { format!("{:?}", el.poll().await) }
    };
    assert!(v4(&alice).await.contains("ConnAck"));
    assert!(v4(&alice).await.contains("ConnAck"));
    assert!(
        v4(&alice).await.contains("ServiceUnavailable"),
        "3.1.1: server unavailable"
    );
    let mut o = rumqttc::v5::MqttOptions::new(alice.device.as_str(), "127.0.0.1", port);
    o.set_credentials(alice.device.as_str(), alice.token.as_str());
    let (_c, mut el) = rumqttc::v5::AsyncClient::new(o, 10);
    assert!(matches!(
        el.poll().await,
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(
            rumqttc::v5::mqttbytes::v5::ConnectReturnCode::ConnectionRateExceeded
        ))
    ));
    // While her phone waits for its bucket, it is refused the same way whatever the token
    // (from memory, no lookup).
    let mut wrong = alice.clone();
    wrong.token = "not-her-token".into();
    assert!(v4(&wrong).await.contains("ServiceUnavailable"));
    // Another device of hers has its own bucket, and nobody without its token can spend it:
    // wrong tokens for its id are refused as bad credentials and lock nothing.
    let other = app.session("alice", "laptop").await;
    let mut guess = other.clone();
    guess.token = "guess".into();
    for _ in 0..5 {
        let refused = v4(&guess).await;
        assert!(refused.contains("BadUserNamePassword"), "{refused}");
    }
    assert!(v4(&other).await.contains("ConnAck"));

    // Heavy reads: two, then 429, per user.
    let bob = app.session("bob", "phone").await;
    app.api.conversations(&bob.token).await.unwrap();
    app.api.users(&bob.token, &["alice"], &[]).await.unwrap();
    retry_after_ms(&app.api.conversations(&bob.token).await.unwrap_err());
    app.api.conversations(&other.token).await.unwrap();

    // Packets: 40 requests at once from a device paced at 10 a second (a burst of 10): all
    // answered, the last no sooner than the pace allows for the 30 past the burst.
    let paced = app.session("bob", "tablet").await;
    let mut device = crate::helpers::RawDevice::connect(&app, &paced).await;
    let requests: Vec<(&str, serde_json::Value)> = (0..40)
        .map(|n| ("nope", serde_json::json!({ "id": n })))
        .collect();
    let started = std::time::Instant::now();
    let answers = device.requests(&requests).await;
    assert_eq!(answers.len(), 40);
    assert!(answers.iter().all(|a| a["error"]["code"] == "unknown_op"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2_800),
        "40 packets at 10/s after a burst of 10 took only {took:?}"
    );
}

/// Blocking, reporting and profile changes are cheap to ask for and cost others (a
/// moderator's time, an update to every contact): each has its own bucket per user, and a
/// refused one changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocks_reports_and_profile_changes_have_buckets_per_user() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.limits
            .set(Limit::Block, per_minute(2))
            .set(Limit::Report, per_minute(2))
            .set(Limit::Profile, per_minute(2));
    })
    .await;
    app.users(&["alice", "bob", "carol", "dave"]).await;
    let [alice, bob, carol, dave] = [
        app.session("alice", "phone").await,
        app.session("bob", "phone").await,
        app.session("carol", "phone").await,
        app.session("dave", "phone").await,
    ];
    let api = &app.api;
    api.block(&alice.token, &bob.user).await.unwrap();
    api.block(&alice.token, &carol.user).await.unwrap();
    retry_after_ms(&api.block(&alice.token, &dave.user).await.unwrap_err());
    assert_eq!(api.blocks(&alice.token).await.unwrap().len(), 2);
    api.block(&bob.token, &dave.user).await.unwrap();
    let report =
        |user: &courier_client::protocol::UserId| courier_client::protocol::http::NewReport {
            user: Some(user.clone()),
            msg: None,
            reason: courier_client::protocol::http::ReportReason::Spam,
            note: None,
        };
    api.report(&carol.token, &report(&dave.user)).await.unwrap();
    api.report(&carol.token, &report(&bob.user)).await.unwrap();
    retry_after_ms(
        &api.report(&carol.token, &report(&alice.user))
            .await
            .unwrap_err(),
    );
    let store = courier::app::open_store(&app.settings).await.unwrap();
    assert_eq!(store.open_reports(10).await.unwrap().len(), 2);
    api.report(&dave.token, &report(&carol.user)).await.unwrap();
    let name = |n: &str| courier_client::protocol::http::ProfileChange {
        display_name: Some(Some(n.into())),
        avatar: None,
    };
    api.change_profile(&dave.token, &name("one")).await.unwrap();
    api.change_profile(&dave.token, &name("two")).await.unwrap();
    retry_after_ms(
        &api.change_profile(&dave.token, &name("three"))
            .await
            .unwrap_err(),
    );
    let me = api.me(&dave.token).await.unwrap();
    assert_eq!(me.display_name.as_deref(), Some("two"));
}

/// Conversation settings and group changes share a bucket per user, searches have their own:
/// a script flipping a setting or searching in a loop is held to its rate and changes
/// nothing past it, and another user is not held with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_group_changes_and_searches_have_buckets_per_user() {
    use courier_client::protocol::http::{ConversationChange, SettingsPatch};
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.limits
            .set(Limit::Settings, per_minute(3))
            .set(Limit::Search, per_minute(2));
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let bob = app.tcp_device("bob", "phone").await;
    let g = app.group(&alice, "g", &[&bob]).await;
    let api = &app.api;
    let pin = |on: bool| SettingsPatch {
        pinned: Some(on),
        ..Default::default()
    };
    api.conversation_settings(alice.token(), &g, &pin(true))
        .await
        .unwrap();
    api.conversation_settings(alice.token(), &g, &pin(false))
        .await
        .unwrap();
    let rename = ConversationChange {
        title: Some(Some("renamed".into())),
        avatar: None,
    };
    api.change_group(alice.token(), &g, &rename).await.unwrap();
    retry_after_ms(
        &api.conversation_settings(alice.token(), &g, &pin(true))
            .await
            .unwrap_err(),
    );
    let again = ConversationChange {
        title: Some(Some("again".into())),
        avatar: None,
    };
    retry_after_ms(
        &api.change_group(alice.token(), &g, &again)
            .await
            .unwrap_err(),
    );
    let c = api.conversation(alice.token(), &g).await.unwrap();
    assert_eq!(
        (c.title.as_deref(), c.settings.pinned),
        (Some("renamed"), false)
    );
    api.conversation_settings(bob.token(), &g, &pin(true))
        .await
        .unwrap();

    api.search(alice.token(), "renamed", None, None, 10)
        .await
        .unwrap();
    api.search(alice.token(), "renamed", None, None, 10)
        .await
        .unwrap();
    retry_after_ms(
        &api.search(alice.token(), "renamed", None, None, 10)
            .await
            .unwrap_err(),
    );
    api.search(bob.token(), "renamed", None, None, 10)
        .await
        .unwrap();
}
