//! Resumable uploads over tus 1.0 (core, creation, termination): create, resume after a
//! broken connection from the server's offset, complete into a file, refuse what tus refuses.

use crate::helpers::{spawn_app_with, Db, Setup, TestApp};
use base64::Engine as _;
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use std::time::Duration;

crate::on_both_databases!(uploads_expire; with_s3: tus_upload_resumes_and_completes);

fn tus(app: &TestApp, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
    app.api
        .request(method, path, Some(token))
        .header("tus-resumable", "1.0.0")
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn offset(app: &TestApp, path: &str, token: &str) -> (StatusCode, Option<u64>) {
    let r = tus(app, Method::HEAD, path, token).send().await.unwrap();
    let off = r
        .headers()
        .get("upload-offset")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (r.status(), off)
}

/// Creates an upload of `len` bytes named `name`; its path under /v1.
async fn create(app: &TestApp, token: &str, len: usize, name: &str) -> String {
    let meta = format!(
        "filename {},filetype {}",
        base64::engine::general_purpose::STANDARD.encode(name),
        base64::engine::general_purpose::STANDARD.encode("text/plain")
    );
    let r = tus(app, Method::POST, "/uploads", token)
        .header("upload-length", len.to_string())
        .header("upload-metadata", meta)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = header(&r, "location");
    location
        .strip_prefix("/v1")
        .expect("a /v1 location")
        .to_owned()
}

fn patch(app: &TestApp, path: &str, token: &str, at: u64) -> reqwest::RequestBuilder {
    tus(app, Method::PATCH, path, token)
        .header("upload-offset", at.to_string())
        .header("content-type", "application/offset+octet-stream")
}

async fn tus_upload_resumes_and_completes(setup: Setup) {
    let app = spawn_app_with(setup, |s| s.max_upload_size = 4 << 20).await;
    app.users(&["alice", "bob"]).await;
    let alice = app.session("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    let (a, b) = (alice.token.as_str(), bob.token.as_str());
    let content: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();

    // Discovery.
    let r = app
        .api
        .request(Method::OPTIONS, "/uploads", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "tus-version"), "1.0.0");
    assert!(header(&r, "tus-extension").contains("creation"));
    assert!(header(&r, "tus-extension").contains("termination"));
    assert_eq!(header(&r, "tus-max-size"), (4u64 << 20).to_string());

    // Creation refusals: no tus version, too long, no length.
    let r = app
        .api
        .request(Method::POST, "/uploads", Some(a))
        .header("upload-length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = tus(&app, Method::POST, "/uploads", a)
        .header("upload-length", (5u64 << 20).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = tus(&app, Method::POST, "/uploads", a).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let path = create(&app, a, content.len(), "log.txt").await;
    assert_eq!(offset(&app, &path, a).await, (StatusCode::OK, Some(0)));
    assert_eq!(
        offset(&app, &path, b).await.0,
        StatusCode::NOT_FOUND,
        "not bob's"
    );

    // PATCH refusals: wrong content type, wrong offset.
    let r = tus(&app, Method::PATCH, &path, a)
        .header("upload-offset", "0")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = patch(&app, &path, a, 5).body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // The connection breaks after 60 000 bytes: those are kept.
    let first = Bytes::copy_from_slice(&content[..60_000]);
    let broken = futures_util::stream::unfold(0, move |step| {
        let first = first.clone();
        async move {
            match step {
                0 => Some((Ok(first), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Some((Err(std::io::Error::other("network gone")), 2))
                }
                _ => None,
            }
        }
    });
    let r = patch(&app, &path, a, 0)
        .body(reqwest::Body::wrap_stream(broken))
        .send()
        .await;
    assert!(r.is_err(), "the request broke");
    let mut held = None;
    for _ in 0..100 {
        held = offset(&app, &path, a).await.1;
        if held == Some(60_000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(held, Some(60_000), "the server kept what arrived");

    // Resume from the server's offset, in two more PATCHes. The broken request may still hold
    // the upload for a moment (423 Locked), which tus clients retry, as here.
    let mut r = None;
    for _ in 0..100 {
        let sent = patch(&app, &path, a, 60_000)
            .body(content[60_000..100_000].to_vec())
            .send()
            .await
            .unwrap();
        if sent.status() != StatusCode::LOCKED {
            r = Some(sent);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = r.expect("the broken PATCH let go of the upload");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "upload-offset"), "100000");
    assert!(r.headers().get("courier-file-id").is_none());
    let r = patch(&app, &path, a, 100_000)
        .body(content[100_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "upload-offset"), content.len().to_string());
    let file_id = header(&r, "courier-file-id");

    // The file: typed from its bytes, named from the metadata, whole.
    let st: serde_json::Value = app
        .api
        .request(Method::GET, &path, Some(a))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["offset"], content.len());
    assert_eq!(st["file"]["id"], file_id.as_str());
    assert_eq!(st["file"]["mime"], "text/plain");
    assert_eq!(st["file"]["name"], "log.txt");
    let got = app
        .api
        .request(Method::GET, &format!("/media/{file_id}"), Some(a))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), content.as_slice());
    let r = tus(&app, Method::HEAD, &path, a).send().await.unwrap();
    assert_eq!(header(&r, "upload-offset"), content.len().to_string());
    assert_eq!(header(&r, "courier-file-id"), file_id);

    // The same bytes again from alice, by simple upload: no new object.
    let objects = || app.stored_blobs();
    let before = objects();
    app.api.upload(a, content.clone(), None).await.unwrap();
    assert_eq!(objects(), before);

    // Termination.
    let gone = create(&app, a, 10, "x.txt").await;
    let r = tus(&app, Method::DELETE, &gone, a).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset(&app, &gone, a).await.0, StatusCode::NOT_FOUND);

    // A completed upload of a refused type ends the upload and stores nothing.
    let elf = b"\x7FELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    let bad = create(&app, a, elf.len(), "tool").await;
    let r = patch(&app, &bad, a, 0).body(elf).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(offset(&app, &bad, a).await.0, StatusCode::NOT_FOUND);
    assert_eq!(objects(), before);
    let tus_spool = app.data_dir().join("spool").join("tus");
    assert_eq!(
        std::fs::read_dir(tus_spool).unwrap().count(),
        0,
        "spool emptied"
    );
}

async fn uploads_expire(db: Db) {
    let app = spawn_app_with(db, |s| s.upload_expiry = Duration::from_millis(800)).await;
    app.users(&["alice"]).await;
    let a = app.session("alice", "phone").await.token;
    let done = create(&app, &a, 3, "done.txt").await;
    let r = patch(&app, &done, &a, 0).body("ok\n").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset(&app, &done, &a).await, (StatusCode::OK, Some(3)));
    let stale = create(&app, &a, 100, "stale.txt").await;
    let r = patch(&app, &stale, &a, 0)
        .body("half")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        offset(&app, &stale, &a).await.0,
        StatusCode::NOT_FOUND,
        "expired"
    );
    let tus_spool = app.data_dir().join("spool").join("tus");
    assert_eq!(
        std::fs::read_dir(tus_spool).unwrap().count(),
        0,
        "nothing left in the spool"
    );
    // Its stored pieces, and the finished one's, are collected from the object store.
    for _ in 0..100 {
        if app.stored_objects("uploads") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.stored_objects("uploads"), 0, "its bytes are gone");
    // A finished upload's record expires too; its file, sent in no message, is collected.
    assert_eq!(offset(&app, &done, &a).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.stored_blobs(), 0);
}

/// A client that sends an upload a byte at a time cannot make it a million objects: past
/// `MAX_PARTS` pieces its PATCHes are refused, and the upload can still be dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_is_stored_in_a_bounded_number_of_pieces() {
    use backend::http::uploads::MAX_PARTS;
    let app = crate::helpers::spawn_app(Db::Sqlite).await;
    app.users(&["alice"]).await;
    let a = app.session("alice", "phone").await.token;
    let path = create(&app, &a, MAX_PARTS + 10, "drip.txt").await;
    for at in 0..MAX_PARTS {
        let r = patch(&app, &path, &a, at as u64)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "piece {at}");
    }
    let r = patch(&app, &path, &a, MAX_PARTS as u64)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        offset(&app, &path, &a).await,
        (StatusCode::OK, Some(MAX_PARTS as u64))
    );
    assert_eq!(app.stored_objects("uploads"), MAX_PARTS);
    let r = tus(&app, Method::DELETE, &path, &a).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}
