//! Push notices for users who are away: content-free POSTs to the configured webhook, for
//! devices that registered a push token, retried when the receiver fails, never for users
//! with a connected device, never about one's own messages.

use crate::helpers::{spawn_app_with, Db};
use axum::http::{HeaderMap, StatusCode};
use courier_client::protocol::http::PushNotice;
use courier_client::protocol::ErrorCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

crate::on_both_databases!(
    away_users_get_content_free_notices,
    gorush_gets_its_own_request_shape
);

#[derive(Default)]
pub struct Receiver {
    /// Every request: its Authorization header and body.
    calls: Mutex<Vec<(Option<String>, String)>>,
}

/// A webhook receiver on port 0 at `/push` that fails the first request with 503.
pub async fn receiver() -> (String, Arc<Receiver>) {
    receiver_at("/push").await
}

/// [`receiver`] at `path`.
pub async fn receiver_at(path: &str) -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    let s = state.clone();
    let log = state.clone();
    let app = axum::Router::new().route(
        path,
        // GET: every notice received so far, as a JSON array (for the browser test).
        axum::routing::get(move || {
            let bodies: Vec<serde_json::Value> = log
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter_map(|(_, b)| serde_json::from_str(b).ok())
                .collect();
            async move { axum::Json(bodies) }
        })
        .post(move |headers: HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let mut calls = s.calls.lock().unwrap();
                calls.push((auth, body));
                if calls.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}{path}"), state)
}

pub fn notices(r: &Receiver) -> Vec<(Option<String>, String)> {
    r.calls.lock().unwrap().clone()
}

pub async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn away_users_get_content_free_notices(db: Db) {
    let (url, rx) = receiver().await;
    let app = spawn_app_with(db, |s| {
        s.push_webhook = Some(url);
        s.push_webhook_token = Some("hook-secret".into());
    })
    .await;
    app.users(&["alice", "bob", "carol"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let bob_phone = app.session("bob", "phone").await;
    let _bob_laptop = app.session("bob", "laptop").await;
    let alice_tablet = app.session("alice", "tablet").await;
    let api = &app.api;

    // Registration is validated and limited to one's own devices.
    let bad = api
        .set_push_token(
            &bob_phone.token,
            bob_phone.device.as_str(),
            "fcm",
            "has space",
        )
        .await;
    assert_eq!(bad.unwrap_err().code(), Some(ErrorCode::BadRequest));
    let foreign = api
        .set_push_token(&bob_phone.token, alice_tablet.device.as_str(), "fcm", "tok")
        .await;
    assert_eq!(foreign.unwrap_err().code(), Some(ErrorCode::NotFound));
    api.set_push_token(
        &bob_phone.token,
        bob_phone.device.as_str(),
        "fcm",
        "bob-phone-token",
    )
    .await
    .unwrap();
    api.set_push_token(
        &alice_tablet.token,
        alice_tablet.device.as_str(),
        "apns",
        "alice-tablet",
    )
    .await
    .unwrap();

    let conv = api
        .create_direct(alice.token(), &bob_phone.user)
        .await
        .unwrap()
        .id;
    alice.client.send_text(&conv, "secret words").await.unwrap();
    alice
        .client
        .send_text(&conv, "more secret words")
        .await
        .unwrap();

    // The first POST fails (503) and is retried; bob's phone is notified, alice's own tablet
    // is not (her own message), nor bob's laptop (no token).
    until("an accepted notice", || notices(&rx).len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls = notices(&rx);
    for (auth, body) in &calls {
        assert_eq!(auth.as_deref(), Some("Bearer hook-secret"));
        assert!(
            !body.contains("secret words"),
            "no content in a notice: {body}"
        );
        let n: PushNotice = serde_json::from_str(body).unwrap();
        assert_eq!(n.user, bob_phone.user);
        assert_eq!(n.device, bob_phone.device);
        assert_eq!(
            (n.provider.as_str(), n.token.as_str()),
            ("fcm", "bob-phone-token")
        );
        assert_eq!(n.conv, conv);
        assert!((1..=2).contains(&n.unread), "{n:?}");
        assert_eq!(n.badge, n.unread);
    }
    // A retried notice keeps the count it was made with; the newest carries the current one.
    let newest = calls
        .iter()
        .map(|(_, b)| serde_json::from_str::<PushNotice>(b).unwrap())
        .max_by_key(|n| n.ts)
        .unwrap();
    assert_eq!(
        newest.unread, 2,
        "the newest notice carries the current count"
    );
    assert!(
        calls.len() <= 4,
        "coalesced or one per message: {}",
        calls.len()
    );

    // Once bob is connected, nothing more is pushed.
    let (bob, _events) =
        courier_client::Client::connect(courier_client::ClientOptions::tcp(&bob_phone))
            .await
            .unwrap();
    let before = notices(&rx).len();
    alice.client.send_text(&conv, "you are here").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(notices(&rx).len(), before);

    // Clearing the token stops notices for that device.
    bob.disconnect().await;
    api.clear_push_token(&bob_phone.token, bob_phone.device.as_str())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.client.send_text(&conv, "gone again").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(notices(&rx).len(), before);
}

/// `--push-format gorush`: each notice is a gorush `POST /api/push` with one notification,
/// its platform from the device's provider (APNs 1, FCM 2, Huawei 3), content-free, and
/// collapsing per conversation. Devices of a provider gorush does not serve (Web Push) are
/// skipped.
async fn gorush_gets_its_own_request_shape(db: Db) {
    let (url, rx) = receiver_at("/api/push").await;
    let app = spawn_app_with(db, |s| {
        s.push_webhook = Some(url);
        s.push_format = courier::settings::PushFormat::Gorush;
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let api = &app.api;
    let mut bobs = Vec::new();
    for (name, provider) in [
        ("phone", "fcm"),
        ("tablet", "apns"),
        ("pad", "hms"),
        ("laptop", "webpush"),
    ] {
        let bob = app.session("bob", name).await;
        api.set_push_token(
            &bob.token,
            bob.device.as_str(),
            provider,
            &format!("tok-{name}"),
        )
        .await
        .unwrap();
        bobs.push(bob);
    }
    let conv = api
        .create_direct(alice.token(), &bobs[0].user)
        .await
        .unwrap()
        .id;
    alice.client.send_text(&conv, "secret words").await.unwrap();

    // One notice per device gorush serves; the first POST (503) is retried.
    until("three notices", || notices(&rx).len() >= 4).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let calls = notices(&rx);
    let mut seen = std::collections::BTreeMap::new();
    for (auth, body) in &calls {
        assert_eq!(auth, &None, "no token configured");
        assert!(!body.contains("secret words"), "{body}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let list = v["notifications"].as_array().expect("notifications");
        assert_eq!(list.len(), 1, "{body}");
        let n = &list[0];
        let token = n["tokens"][0].as_str().unwrap().to_owned();
        let bob = &bobs[["tok-phone", "tok-tablet", "tok-pad"]
            .iter()
            .position(|t| *t == token)
            .unwrap_or_else(|| panic!("no notice for {token}"))];
        let data = serde_json::json!({
            "user": bob.user, "device": bob.device, "conv": conv,
            "unread": 1, "badge": 1, "mentioned": false, "ts": n["data"]["ts"],
        });
        assert!(n["data"]["ts"].as_i64().unwrap() > 0);
        let expected = match token.as_str() {
            "tok-tablet" => serde_json::json!({
                "tokens": [token], "platform": 1, "badge": 1, "priority": "high", "data": data,
                "content_available": true, "mutable_content": true, "collapse_id": conv,
            }),
            platform => serde_json::json!({
                "tokens": [token], "platform": if platform == "tok-phone" { 2 } else { 3 },
                "badge": 1, "priority": "high", "data": data, "collapse_key": conv,
            }),
        };
        assert_eq!(n, &expected);
        seen.insert(token, ());
    }
    assert_eq!(
        seen.len(),
        3,
        "fcm, apns and hms; webpush skipped: {calls:?}"
    );
    assert!(calls.len() <= 4, "one each, one retried: {}", calls.len());
}
