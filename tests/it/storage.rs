//! Storage is bounded per user and collected: quotas (`quota_exceeded`), files no message
//! carries are deleted after the upload expiry with their blobs, objects and derivatives,
//! and collection never takes a file a send is carrying.

use crate::helpers::{refused, spawn_app_with, Db, Device, Setup, TestApp};
use crate::media_jobs::{fetch, jpeg, send_file};
use courier_client::protocol::http::MediaFile;
use courier_client::protocol::ops::SendReq;
use courier_client::protocol::update::DeleteScope;
use courier_client::protocol::{ErrorCode, FileId};
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};

crate::on_both_databases!(
    quotas_are_per_user_and_refuse_before_storing,
    uploads_at_once_cannot_overshoot_the_quota_together,
    collection_never_takes_a_file_a_send_carries;
    with_s3: unsent_files_are_collected_with_their_objects
);

/// A text file of `len` bytes, different for each `tag`.
fn text(tag: &str, len: usize) -> Vec<u8> {
    let mut t = format!("{tag}\n").into_bytes();
    t.resize(len, b'.');
    t
}

async fn upload(app: &TestApp, token: &str, bytes: Vec<u8>) -> MediaFile {
    app.api.upload(token, bytes, None).await.unwrap()
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server where each user may store 1 000 bytes in 3 files, with alice and bob.
async fn with_small_quotas(db: Db) -> TestApp {
    let app = spawn_app_with(db, |s| {
        s.quota_bytes = 1000;
        s.quota_files = 3;
    })
    .await;
    app.users(&["alice", "bob"]).await;
    app
}

async fn quotas_are_per_user_and_refuse_before_storing(db: Db) {
    let app = with_small_quotas(db).await;
    let alice = app.session("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    let api = &app.api;

    upload(&app, &alice.token, text("a", 400)).await;
    let used = api.storage(&alice.token).await.unwrap();
    assert_eq!(
        (
            used.used_bytes,
            used.used_files,
            used.quota_bytes,
            used.quota_files
        ),
        (400, 1, 1000, 3)
    );

    // Over the bytes: refused with the numbers, nothing stored.
    let blobs = app.stored_blobs();
    let err = api
        .upload(&alice.token, text("b", 700), None)
        .await
        .unwrap_err();
    let courier_client::ClientError::Server(body) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(body.code, ErrorCode::QuotaExceeded);
    let details = body.details.clone().unwrap();
    assert_eq!(details["quota_bytes"], 1000);
    assert_eq!(details["used_files"], 1);
    // Without a declared length, the count stops it while it streams.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..7).map(|i| Ok(text(&format!("c{i}"), 100))).collect();
    let streamed = api
        .request(Method::POST, "/media", Some(&alice.token))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )));
    let (status, body) = api.raw(streamed).await.unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&body).contains("quota_exceeded"));
    assert_eq!(app.stored_blobs(), blobs);
    assert_eq!(api.storage(&alice.token).await.unwrap().used_bytes, 400);

    // A resumable upload counts its declared length from the start.
    let tus = |len: u64| {
        api.request(Method::POST, "/uploads", Some(&alice.token))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", len.to_string())
    };
    let (status, body) = api.raw(tus(700)).await.unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&body).contains("quota_exceeded"));
    let (status, _) = api.raw(tus(500)).await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    let used = api.storage(&alice.token).await.unwrap();
    assert_eq!((used.used_bytes, used.used_files), (900, 2));
    assert_eq!(
        refused(api.upload(&alice.token, text("d", 200), None).await),
        ErrorCode::QuotaExceeded
    );

    // Files count too: a third fits, a fourth does not, however small.
    upload(&app, &alice.token, text("e", 50)).await;
    assert_eq!(
        refused(api.upload(&alice.token, text("f", 10), None).await),
        ErrorCode::QuotaExceeded
    );

    // Bob's quota is his own.
    upload(&app, &bob.token, text("g", 900)).await;
    let used = api.storage(&bob.token).await.unwrap();
    assert_eq!((used.used_bytes, used.used_files), (900, 1));

    // The refusals are counted.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("code=\"quota_exceeded\""),
        "no quota refusals in /metrics"
    );
}

/// The quota is checked again where the file is recorded, with the owner's uploads taking
/// turns: eight uploads at once against a quota of three files store exactly three, and a
/// resumable upload near the quota completes (its file replaces its own reservation).
async fn uploads_at_once_cannot_overshoot_the_quota_together(db: Db) {
    let app = with_small_quotas(db).await;
    let alice = app.session("alice", "phone").await;
    let api = &app.api;
    let uploads = (0..8).map(|i| api.upload(&alice.token, text(&format!("x{i}"), 100), None));
    let results = futures_util::future::join_all(uploads).await;
    let stored = results.iter().filter(|r| r.is_ok()).count();
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_eq!(refused(r), ErrorCode::QuotaExceeded);
    }
    assert_eq!(stored, 3);
    let used = api.storage(&alice.token).await.unwrap();
    assert_eq!((used.used_bytes, used.used_files), (300, 3));

    // Bob reserves 900 of his 1000 bytes and completes the upload.
    let bob = app.session("bob", "phone").await;
    let tus = |method: Method, path: &str| {
        api.request(method, path, Some(&bob.token))
            .header("tus-resumable", "1.0.0")
    };
    let created = tus(Method::POST, "/uploads")
        .header("upload-length", "900")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let path = location.trim_start_matches("/v1");
    let done = tus(Method::PATCH, path)
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(text("big", 900))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    assert!(done.headers().contains_key("courier-file-id"));
    let used = api.storage(&bob.token).await.unwrap();
    assert_eq!((used.used_bytes, used.used_files), (900, 1));
}

async fn unsent_files_are_collected_with_their_objects(setup: Setup) {
    let app = spawn_app_with(setup, |s| s.upload_expiry = Duration::from_millis(1500)).await;
    app.users(&["alice", "bob"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&alice, &bob).await;

    let kept = upload(&app, alice.token(), text("kept", 300)).await;
    send_file(&alice, &mut bob, &conv, "file", &kept.id).await;
    let unsent = upload(&app, alice.token(), text("unsent", 300)).await;
    // The photo and a file are sent, then their messages deleted for everyone: the photo
    // is kept while its derivatives are made.
    let photo = upload(&app, alice.token(), jpeg(640, 480)).await;
    let deleted = upload(&app, alice.token(), text("deleted", 300)).await;
    let mut sent = Vec::new();
    for (cmid, file) in [("photo", &photo.id), ("gone", &deleted.id)] {
        let message = file_message(&conv, cmid, file);
        sent.push(alice.client.send(&message).await.unwrap().msg);
    }
    until("the photo's derivatives", async || {
        let path = format!("/media/{}/info", photo.id);
        let (_, _, body) = fetch(&app, alice.token(), &path).await;
        let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
        info["status"] == "ready"
    })
    .await;
    assert!(app.stored_objects("derived") >= 2, "thumb and preview");
    for msg in &sent {
        alice
            .client
            .delete(msg, DeleteScope::Everyone)
            .await
            .unwrap();
    }

    // After the expiry, what no message carries goes: rows, bytes and derivatives.
    until("collection", async || app.stored_blobs() == 1).await;
    until("derivatives collected", async || {
        app.stored_objects("derived") == 0
    })
    .await;
    for f in [&unsent, &photo, &deleted] {
        let (s, ..) = fetch(&app, alice.token(), &format!("/media/{}/info", f.id)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let used = app.api.storage(alice.token()).await.unwrap();
    assert_eq!((used.used_bytes, used.used_files), (300, 1));
    // The sent file stays, for both, and keeps staying.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    for token in [alice.token(), bob.token()] {
        let (s, _, body) = fetch(&app, token, &format!("/media/{}", kept.id)).await;
        assert_eq!((s, body), (StatusCode::OK, text("kept", 300)));
    }

    // The same bytes again from alice: the file joins the kept blob; no second object stays.
    let again = upload(&app, alice.token(), text("kept", 300)).await;
    assert_eq!(again.sha256, kept.sha256);
    assert_eq!(app.stored_blobs(), 1);
    // Bytes whose blob was collected are stored anew, under a key of their own.
    let back = upload(&app, alice.token(), text("unsent", 300)).await;
    assert_eq!(app.stored_blobs(), 2);
    let (s, _, body) = fetch(&app, alice.token(), &format!("/media/{}", back.id)).await;
    assert_eq!((s, body), (StatusCode::OK, text("unsent", 300)));

    let metrics = app.metrics().await;
    let collected = |what: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "courier_storage_collected_total{{what=\"{what}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(collected("file") >= 3, "{metrics}");
    assert!(collected("blob") >= 3);
    assert!(collected("object") >= 5);
    assert!(metrics.contains("courier_storage_bytes"));
}

pub(crate) fn file_message(
    conv: &courier_client::protocol::ConvId,
    cmid: &str,
    file: &FileId,
) -> SendReq {
    serde_json::from_value(serde_json::json!({
        "conv": conv, "cmid": cmid, "kind": "file", "attachments": [{ "file": file }]
    }))
    .unwrap()
}

/// Sends race the collector for files right at their expiry: every send either carries its
/// file, which then stays, or is refused `not_found`; no message ever points at a file that
/// is gone.
async fn collection_never_takes_a_file_a_send_carries(db: Db) {
    let expiry = Duration::from_millis(1200);
    let app = spawn_app_with(db, |s| s.upload_expiry = expiry).await;
    app.users(&["alice", "bob"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&alice, &bob).await;
    let mut files = Vec::new();
    for i in 0..60 {
        files.push(upload(&app, alice.token(), text(&format!("race {i}"), 200)).await);
    }
    // Each file is sent from 300 ms before it becomes collectable to 300 ms after, across
    // the collector's rounds (every 300 ms).
    let now_ms = || {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since.unwrap().as_millis() as i64
    };
    let sends = files.iter().enumerate().map(|(i, f)| {
        let alice: &Device = &alice;
        let conv = conv.clone();
        let at = f.created_at + expiry.as_millis() as i64 - 300 + 10 * i as i64;
        async move {
            let wait = (at - now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let r = alice
                .client
                .send(&file_message(&conv, &format!("race-{i}"), &f.id))
                .await;
            (f.id.clone(), r)
        }
    });
    let results = futures_util::future::join_all(sends).await;
    // More rounds, then every stored message's file must still be there.
    tokio::time::sleep(expiry * 3).await;
    let (mut carried, mut gone) = (0, 0);
    for (file, r) in results {
        match r {
            Ok(_) => {
                carried += 1;
                let (s, _, body) = fetch(&app, bob.token(), &format!("/media/{file}")).await;
                assert_eq!(s, StatusCode::OK, "a sent file was collected");
                assert_eq!(body.len(), 200);
            }
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e:?}");
                gone += 1;
            }
        }
    }
    eprintln!("{carried} sends carried their file, {gone} found it collected");
    assert_eq!(app.stored_blobs(), carried);
    let history = app
        .api
        .history(alice.token(), &conv, None, 200)
        .await
        .unwrap();
    assert_eq!(history.messages.len(), carried);
}
