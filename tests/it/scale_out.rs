//! Scaled out: two `--role backend` processes on a Mosquitto they share (requests split by a
//! shared subscription) and one Redis. Presence, rate limits and push decisions are the same
//! whichever backend handles a request; when Redis dies the backends degrade (per-process
//! limits, presence and history from the database) and lose nothing.

use crate::fault::process::{Mosquitto, RedisServer, Server};
use crate::helpers::fresh_postgres;
use crate::push::{notices, receiver, until};
use backend::shared::Limits;
use courier_client::protocol::http::{Conversation, Session};
use courier_client::protocol::{ConvId, ErrorCode, UserId};
use courier_client::{Api, Client, ClientError, ClientOptions};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

fn flags(redis: &str, push: &str) -> Vec<String> {
    [
        "--redis-url",
        redis,
        "--rate",
        &format!("{},send=5/1m,login=6/1m", Limits::all_off_setting()),
        "--push-webhook",
        push,
    ]
    .map(String::from)
    .to_vec()
}

async fn presence_of(api: &Api, me: &Session, conv: &ConvId, user: &UserId) -> (bool, Option<i64>) {
    let convs: Vec<Conversation> = api.conversations(&me.token).await.unwrap();
    let c = convs
        .iter()
        .find(|c| &c.id == conv)
        .expect("conversation listed");
    let p = c.presence.iter().find(|p| &p.user == user).expect("listed");
    (p.online, p.last_seen)
}

async fn until_presence(apis: &[&Api], me: &Session, conv: &ConvId, user: &UserId, online: bool) {
    for _ in 0..200 {
        let mut all = true;
        for api in apis {
            all &= presence_of(api, me, conv, user).await.0 == online;
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("presence of {user} never became online={online} on every backend");
}

async fn metrics(http: &str) -> String {
    let r = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The value of `name{labels…}` in a Prometheus text page (0 when absent).
fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

/// `user`'s presence record in Redis, once it has one: the database's copy is written first,
/// and answers for the user until Redis has the record.
async fn redis_presence(url: &str, user: &UserId) -> Vec<(String, String)> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for _ in 0..200 {
        let recorded: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(format!("courier:presence:{user}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !recorded.is_empty() {
            return recorded;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no presence of {user} recorded in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_limits_and_push_are_shared_through_redis() {
    crate::helpers::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _pg) = fresh_postgres().await;
    let mosquitto = Mosquitto::start().await;
    let redis = RedisServer::start().await;
    let (push_url, pushed) = receiver().await;
    let more = flags(&redis.url, &push_url);
    let a = Server::backend_with(dir.path(), "a", &database_url, &mosquitto.ports, &more).await;
    let b = Server::backend_with(dir.path(), "b", &database_url, &mosquitto.ports, &more).await;
    let (api_a, api_b) = (
        Api::new(format!("http://{}", a.http)),
        Api::new(format!("http://{}", b.http)),
    );

    // Log-in attempts per address are counted across both backends: 6 per minute in all.
    api_a.sign_up("alice", PASSWORD).await.unwrap();
    api_b.sign_up("bob", PASSWORD).await.unwrap();
    let alice = api_a
        .log_in("alice", PASSWORD, "phone", "test")
        .await
        .unwrap();
    let bob = api_b
        .log_in("bob", PASSWORD, "phone", "test")
        .await
        .unwrap();
    for api in [&api_a, &api_b, &api_a, &api_b] {
        let e = api.log_in("bob", "wrong", "x", "test").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadCredentials));
    }
    for api in [&api_a, &api_b] {
        let e = api
            .log_in("alice", PASSWORD, "x", "test")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e}");
    }
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/sessions", b.http))
        .json(&serde_json::json!({"username":"alice","password":PASSWORD,"device_name":"x","platform":"t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    api_b
        .set_push_token(&bob.token, bob.device.as_str(), "fcm", "bob-phone")
        .await
        .unwrap();
    api_a
        .set_push_token(&alice.token, alice.device.as_str(), "fcm", "alice-phone")
        .await
        .unwrap();
    let conv = api_a
        .create_direct(&alice.token, &bob.user)
        .await
        .unwrap()
        .id;

    // Presence: the devices announce themselves on Mosquitto (no broker events there); the
    // backend that handles an announcement records it in Redis and both answer from there.
    let (alice_dev, _alice_events) = Client::connect(ClientOptions::tcp(&alice)).await.unwrap();
    let (bob_dev, _bob_events) = Client::connect(ClientOptions::tcp(&bob)).await.unwrap();
    until_presence(&[&api_a, &api_b], &alice, &conv, &bob.user, true).await;
    let recorded = redis_presence(&redis.url, &bob.user).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].0, bob.device.as_str());
    assert!(recorded[0].1.starts_with("1:"), "{recorded:?}");

    // Bob leaves: both backends see him away, with a last-seen time, and a message to him now
    // becomes a push notice whichever backend stores it.
    bob_dev.disconnect().await;
    until_presence(&[&api_a, &api_b], &alice, &conv, &bob.user, false).await;
    // Both backends record the event (each subscribes to presence), each stamping its own
    // arrival time; the later stamp wins in Redis, so within moments both answer the same.
    let mut seen = (None, None);
    for _ in 0..100 {
        seen = (
            presence_of(&api_a, &alice, &conv, &bob.user).await.1,
            presence_of(&api_b, &alice, &conv, &bob.user).await.1,
        );
        if seen.0.is_some() && seen.0 == seen.1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.0.is_some() && seen.0 == seen.1, "{seen:?}");

    // Sends per device are counted across both backends: 5 per minute in all, though the
    // shared subscription hands the requests to either backend.
    let mut accepted = 0;
    let mut limited = 0;
    for i in 0..8 {
        match alice_dev.send_text(&conv, &format!("m{i}")).await {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e}");
                let ClientError::Server(body) = &e else {
                    unreachable!()
                };
                let wait = body.details.as_ref().unwrap()["retry_after_ms"]
                    .as_u64()
                    .unwrap();
                assert!(wait > 0 && wait <= 60_000, "{wait}");
                limited += 1;
            }
        }
    }
    assert_eq!((accepted, limited), (5, 3));
    // Both backends took part (each process counts its own), so the limit held across them.
    let (ma, mb) = (metrics(&a.http).await, metrics(&b.http).await);
    let sends = |m: &str| metric(m, "courier_requests_total", &[("op", "send")]);
    assert_eq!(sends(&ma) + sends(&mb), 8.0);
    assert!(
        sends(&ma) > 0.0 && sends(&mb) > 0.0,
        "{} {}",
        sends(&ma),
        sends(&mb)
    );
    let limited_mqtt = |m: &str| {
        metric(
            m,
            "courier_errors_total",
            &[("code", "rate_limited"), ("via", "mqtt")],
        )
    };
    assert_eq!(limited_mqtt(&ma) + limited_mqtt(&mb), 3.0);
    let limited_http = |m: &str| {
        metric(
            m,
            "courier_errors_total",
            &[("code", "rate_limited"), ("via", "http")],
        )
    };
    assert_eq!(limited_http(&ma) + limited_http(&mb), 3.0);
    let stored = metric(&ma, "courier_messages_stored_total", &[])
        + metric(&mb, "courier_messages_stored_total", &[]);
    assert_eq!(stored, 5.0);
    let delivered = metric(&ma, "courier_send_deliver_seconds_count", &[])
        + metric(&mb, "courier_send_deliver_seconds_count", &[]);
    assert_eq!(delivered, 5.0);
    assert!(
        ma.contains("courier_send_deliver_seconds_bucket{le=\"0.005\"}"),
        "{ma}"
    );
    let history = api_b.history(&bob.token, &conv, None, 50).await.unwrap();
    assert_eq!(history.messages.len(), 5, "only accepted sends are stored");

    until("a push notice for bob", || !notices(&pushed).is_empty()).await;
    let notice: serde_json::Value = serde_json::from_str(&notices(&pushed)[0].1).unwrap();
    assert_eq!(notice["user"], bob.user.as_str());
    assert_eq!(notice["conv"], conv.as_str());

    // Alice is online: a message to her is no push notice.
    let (bob_dev, _bob_events) = Client::connect(ClientOptions::tcp(&bob)).await.unwrap();
    let before = notices(&pushed).len();
    bob_dev.send_text(&conv, "hi alice").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let later: Vec<_> = notices(&pushed).into_iter().skip(before).collect();
    assert!(
        later.iter().all(|(_, body)| !body.contains("alice-phone")),
        "{later:?}"
    );
}

/// Two backends on a Mosquitto of their own and a fresh PostgreSQL database, with alice and
/// bob signed up and logged in (one device each) and their direct conversation.
struct TwoBackends {
    api: Api,
    api_b: Api,
    alice: Session,
    bob: Session,
    conv: ConvId,
    a: Server,
    _b: Server,
    _mosquitto: Mosquitto,
    _pg: crate::helpers::PgDatabase,
    _dir: tempfile::TempDir,
}

impl TwoBackends {
    async fn start(more: &[String]) -> Self {
        crate::helpers::init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let (database_url, pg) = fresh_postgres().await;
        let mosquitto = Mosquitto::start().await;
        let a = Server::backend_with(dir.path(), "a", &database_url, &mosquitto.ports, more).await;
        let b = Server::backend_with(dir.path(), "b", &database_url, &mosquitto.ports, more).await;
        let api = Api::new(format!("http://{}", a.http));
        let api_b = Api::new(format!("http://{}", b.http));
        api.sign_up("alice", PASSWORD).await.unwrap();
        api.sign_up("bob", PASSWORD).await.unwrap();
        let alice = api
            .log_in("alice", PASSWORD, "phone", "test")
            .await
            .unwrap();
        let bob = api.log_in("bob", PASSWORD, "phone", "test").await.unwrap();
        let conv = api.create_direct(&alice.token, &bob.user).await.unwrap().id;
        Self {
            api,
            api_b,
            alice,
            bob,
            conv,
            a,
            _b: b,
            _mosquitto: mosquitto,
            _pg: pg,
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_redis_degrades_and_loses_nothing() {
    let mut redis = RedisServer::start().await;
    let more = [
        "--redis-url",
        &redis.url,
        "--rate",
        &Limits::all_off_setting(),
    ]
    .map(String::from);
    let t = TwoBackends::start(&more).await;
    let (api, api_b, alice, bob, conv, a) = (&t.api, &t.api_b, &t.alice, &t.bob, &t.conv, &t.a);
    let (alice_dev, _e) = Client::connect(ClientOptions::tcp(alice)).await.unwrap();
    let (_bob_dev, _f) = Client::connect(ClientOptions::tcp(bob)).await.unwrap();
    until_presence(&[api, api_b], alice, conv, &bob.user, true).await;
    for i in 0..10 {
        alice_dev
            .send_text(conv, &format!("before {i}"))
            .await
            .unwrap();
    }
    // The newest page is now cached in Redis.
    assert_eq!(
        api_b
            .history(&bob.token, conv, None, 50)
            .await
            .unwrap()
            .messages
            .len(),
        10
    );

    redis.kill();
    for i in 0..10 {
        alice_dev
            .send_text(conv, &format!("after {i}"))
            .await
            .unwrap();
    }
    // History comes from the database (never a stale cached page), presence from the
    // database's copy, and both backends still answer.
    for api in [&api, &api_b] {
        let page = api.history(&bob.token, conv, None, 50).await.unwrap();
        assert_eq!(page.messages.len(), 20);
        assert_eq!(page.messages[0].seq, 20);
        assert!(presence_of(api, alice, conv, &bob.user).await.0);
    }
    // Still ready (messaging works), and saying what is degraded.
    let r = reqwest::get(format!("http://{}/readyz", a.http))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["checks"]["redis"]
            .as_str()
            .unwrap()
            .starts_with("unreachable"),
        "{body}"
    );
    assert_eq!(body["checks"]["database"], "ok", "{body}");
}

/// Revoking a device through a backend closes its connection on Courier's broker running as a
/// process of its own (the backend asks over MQTT), and the device cannot come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_closes_the_connection_on_a_broker_in_another_process() {
    crate::helpers::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _pg) = fresh_postgres().await;
    let (_broker, ports) = Server::broker(dir.path(), &database_url).await;
    let backend = Server::backend(dir.path(), "backend", &database_url, &ports).await;
    let api = Api::new(format!("http://{}", backend.http));
    api.sign_up("alice", PASSWORD).await.unwrap();
    let phone = api
        .log_in("alice", PASSWORD, "phone", "test")
        .await
        .unwrap();
    let laptop = api
        .log_in("alice", PASSWORD, "laptop", "test")
        .await
        .unwrap();
    let (_client, mut events) = Client::connect(ClientOptions::tcp(&phone)).await.unwrap();
    api.revoke_device(&laptop.token, phone.device.as_str())
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = events.recv().await {
            if matches!(e, courier_client::Event::Disconnected(_)) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        closed,
        Ok(true),
        "the revoked device's connection was closed"
    );
    let again = Client::connect(ClientOptions::tcp(&phone)).await;
    assert!(
        matches!(again, Err(ClientError::Refused(_))),
        "{:?}",
        again.err()
    );
}

/// Without Redis the backends still agree on who is away (the database's copy of presence,
/// which every backend writes), so push notices work in split mode too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_redis_push_notices_follow_the_database_presence() {
    let (push_url, pushed) = receiver().await;
    let t = TwoBackends::start(&["--push-webhook", &push_url].map(String::from)).await;
    let (api, api_b, alice, bob, conv) = (&t.api, &t.api_b, &t.alice, &t.bob, &t.conv);
    api.set_push_token(&bob.token, bob.device.as_str(), "fcm", "bob-phone")
        .await
        .unwrap();
    let (alice_dev, _a) = Client::connect(ClientOptions::tcp(alice)).await.unwrap();
    let (bob_dev, _b) = Client::connect(ClientOptions::tcp(bob)).await.unwrap();
    until_presence(&[api, api_b], alice, conv, &bob.user, true).await;
    alice_dev
        .send_text(conv, "while bob is here")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(notices(&pushed).is_empty(), "bob is online: no notice");
    bob_dev.disconnect().await;
    until_presence(&[api, api_b], alice, conv, &bob.user, false).await;
    for i in 0..4 {
        alice_dev
            .send_text(conv, &format!("away {i}"))
            .await
            .unwrap();
    }
    until("a push notice for bob", || !notices(&pushed).is_empty()).await;
    let notice: serde_json::Value = serde_json::from_str(&notices(&pushed)[0].1).unwrap();
    assert_eq!(notice["user"], bob.user.as_str());
}

/// A resumable upload needs no stickiness: its PATCHes alternate between two backends (on
/// PostgreSQL, with the in-process S3 endpoint), one backend is SIGKILLed in the middle of a
/// PATCH, and the upload finishes on the other, whole (same SHA-256).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumable_upload_moves_between_backends_and_survives_one_dying() {
    use reqwest::{Method, StatusCode};
    use sha2::{Digest, Sha256};
    crate::helpers::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _pg) = fresh_postgres().await;
    let mosquitto = Mosquitto::start().await;
    let s3 = crate::s3_endpoint::S3Endpoint::start().await;
    let c = crate::s3_endpoint::config(&s3);
    let more: Vec<String> = [
        "--s3-endpoint",
        &c.endpoint,
        "--s3-bucket",
        &c.bucket,
        "--s3-access-key",
        &c.access_key,
        "--s3-secret-key",
        &c.secret_key,
        "--rate",
        &Limits::all_off_setting(),
    ]
    .map(String::from)
    .to_vec();
    let a = Server::backend_with(dir.path(), "a", &database_url, &mosquitto.ports, &more).await;
    let mut b = Server::backend_with(dir.path(), "b", &database_url, &mosquitto.ports, &more).await;
    let api_a = Api::new(format!("http://{}", a.http));
    api_a.sign_up("alice", PASSWORD).await.unwrap();
    let token = api_a
        .log_in("alice", PASSWORD, "phone", "test")
        .await
        .unwrap()
        .token;
    let http = reqwest::Client::new();
    let tus = |server: &str, method: Method, path: &str| {
        http.request(method, format!("http://{server}/v1{path}"))
            .bearer_auth(&token)
            .header("tus-resumable", "1.0.0")
    };
    let content: Vec<u8> = (0..120_000)
        .flat_map(|i| format!("line {i:08} of a long log\n").into_bytes())
        .collect();
    let sha = |bytes: &[u8]| format!("{:x}", Sha256::digest(bytes));
    let r = tus(&a.http, Method::POST, "/uploads")
        .header("upload-length", content.len().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let path = r.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/v1")
        .to_owned();
    let offset_at = |server: String| {
        let req = tus(&server, Method::HEAD, &path);
        async move {
            let r = req.send().await.unwrap();
            r.headers()["upload-offset"]
                .to_str()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        }
    };
    // A PATCH of `content[from..to]` to `server`, retried while another holds the upload.
    let patch = |server: String, from: usize, to: usize| {
        let (tus, content, path) = (&tus, &content, &path);
        async move {
            for _ in 0..200 {
                let r = tus(&server, Method::PATCH, path)
                    .header("upload-offset", from.to_string())
                    .header("content-type", "application/offset+octet-stream")
                    .body(content[from..to].to_vec())
                    .send()
                    .await
                    .unwrap();
                if r.status() != StatusCode::LOCKED {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the upload stayed locked");
        }
    };
    let mb = 1 << 20;

    // Alternating: b, then a; each sees what the other stored.
    let r = patch(b.http.clone(), 0, mb).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_at(a.http.clone()).await, mb);
    let r = patch(a.http.clone(), mb, 2 * mb).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_at(b.http.clone()).await, 2 * mb);

    // A PATCH to b sends half of its bytes and stalls; b is SIGKILLed meanwhile.
    let first = bytes::Bytes::copy_from_slice(&content[2 * mb..2 * mb + mb / 2]);
    let stalled = futures_util::stream::unfold(0, move |step| {
        let first = first.clone();
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(first), 1)),
                _ => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    None
                }
            }
        }
    });
    let hanging = tokio::spawn(
        tus(&b.http, Method::PATCH, &path)
            .header("upload-offset", (2 * mb).to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(reqwest::Body::wrap_stream(stalled))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.kill_and_restart().await;
    assert!(hanging.await.unwrap().is_err(), "the PATCH died with b");

    // The dead PATCH recorded nothing; a resumes where the upload stood (once b's lease on it
    // has run out) and completes it.
    assert_eq!(offset_at(a.http.clone()).await, 2 * mb);
    let r = patch(a.http.clone(), 2 * mb, content.len()).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let file = r.headers()["courier-file-id"].to_str().unwrap().to_owned();
    // The completing PATCH's answer again, from the other backend.
    let again = patch(b.http.clone(), content.len(), content.len()).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    assert_eq!(again.headers()["courier-file-id"], file.as_str());

    // The file, from the restarted b: every byte.
    let got = http
        .get(format!("http://{}/v1/media/{file}", b.http))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(sha(&got.bytes().await.unwrap()), sha(&content));
}
