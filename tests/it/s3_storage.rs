//! Media objects in S3: downloads are redirects to short-lived presigned URLs (signed for the
//! public endpoint, honouring Range, refused once tampered with or expired), access control
//! still decides who gets one, and a server that cannot use its bucket refuses to start.
//! The upload, processing and download scenarios themselves run on S3 too (`mod s3` in
//! media.rs, uploads.rs and media_jobs.rs).

use crate::helpers::{spawn_app_with, test_settings, Db, Objects, Setup};
use crate::s3_endpoint::{self, S3Endpoint};
use courier::App;
use reqwest::StatusCode;
use std::time::Duration;

/// A 1×1 PNG.
const PNG: &[u8] = crate::media::PNG;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_redirect_to_short_lived_signed_urls() {
    let setup = Setup {
        db: Db::Sqlite,
        objects: Objects::S3,
    };
    let app = spawn_app_with(setup, |s| {
        let endpoint = s.s3_endpoint.as_ref().expect("S3 set up");
        // Clients reach the endpoint under another name than Courier does.
        s.s3_public_endpoint = Some(endpoint.replace("127.0.0.1", "localhost"));
        s.s3_url_ttl = Duration::from_secs(2);
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let alice = app.session("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    let file = app
        .api
        .upload(&alice.token, PNG.to_vec(), Some("dot.png"))
        .await
        .unwrap();
    assert_eq!(app.stored_blobs(), 1, "the object is in the bucket");
    assert!(
        !app.data_dir().join("objects").exists(),
        "nothing stored locally"
    );

    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let media_url = format!("http://{}/v1/media/{}", app.addrs.http, file.id);
    let redirect = |token: String| {
        let (client, url) = (no_follow.clone(), media_url.clone());
        async move { client.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let r = redirect(alice.token.clone()).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("http://localhost:") && location.contains("/courier-media/blobs/"),
        "{location}"
    );
    let expires = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Expires")
        .map(|(_, v)| v.into_owned());
    assert_eq!(expires.as_deref(), Some("2"), "{location}");

    // The signed URL works on its own, with Range, and for nothing else.
    let (status, body) = fetch(&no_follow, &location, Some("bytes=0-7")).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &PNG[..8])
    );
    let (status, body) = fetch(&no_follow, &location, None).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, PNG));
    let sig_at = location.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = location.clone();
    let flipped = if &location[sig_at..sig_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    tampered.replace_range(sig_at..sig_at + 1, flipped);
    assert_eq!(
        fetch(&no_follow, &tampered, None).await.0,
        StatusCode::FORBIDDEN
    );
    let unsigned = location.split('?').next().unwrap();
    assert_eq!(
        fetch(&no_follow, unsigned, None).await.0,
        StatusCode::FORBIDDEN
    );

    // Someone without access gets no URL at all.
    let r = redirect(bob.token.clone()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.headers().get("location").is_none());

    // Once the TTL has passed the URL is dead; asking Courier again gives a fresh one.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        fetch(&no_follow, &location, None).await.0,
        StatusCode::FORBIDDEN
    );
    let r = redirect(alice.token.clone()).await;
    let fresh = r.headers()["location"].to_str().unwrap().to_owned();
    let (status, body) = fetch(&no_follow, &fresh, None).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, PNG));
}

async fn fetch(client: &reqwest::Client, url: &str, range: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut req = client.get(url);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_bucket_that_cannot_be_used_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Endpoint::start().await;
    let error = |tweak: fn(&mut media_worker::S3Config)| {
        let mut settings = test_settings(dir.path());
        let mut config = s3_endpoint::config(&s3);
        tweak(&mut config);
        settings.set_s3(config);
        async move {
            App::bind(settings)
                .await
                .err()
                .expect("must not start")
                .to_string()
        }
    };
    let wrong_key = error(|c| c.secret_key = "not-the-secret".into()).await;
    assert!(
        wrong_key.contains("cannot use S3 bucket courier-media"),
        "{wrong_key}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let no_keys = error(|c| c.access_key.clear()).await;
    assert!(no_keys.contains("--s3-access-key"), "{no_keys}");
    let mut settings = test_settings(dir.path());
    let mut config = s3_endpoint::config(&s3);
    config.endpoint = format!("http://127.0.0.1:{port}");
    settings.set_s3(config);
    let down = App::bind(settings)
        .await
        .err()
        .expect("must not start")
        .to_string();
    assert!(down.contains("cannot use S3 bucket"), "{down}");

    // With good settings the bucket is made on first start.
    assert!(!s3.bucket_dir("courier-media").exists());
    let mut settings = test_settings(dir.path());
    settings.set_s3(s3_endpoint::config(&s3));
    App::bind(settings).await.expect("starts");
    assert!(s3.bucket_dir("courier-media").is_dir());
}
