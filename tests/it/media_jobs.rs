//! Media processing end to end: an uploaded photo gets a thumbnail and a preview, the owner
//! and the recipients hear about it with a `media` update, derivatives download under the same
//! access rule, the same bytes are never processed twice, and a hostile file fails its own job
//! while the worker goes on.

use crate::helpers::{spawn_app, Db, Device};
use courier_client::protocol::http::MediaFile;
use courier_client::protocol::{FileId, UpdateBody};
use reqwest::{Method, StatusCode};
use std::io::Cursor;

crate::on_both_databases!(photos_get_thumbnails_and_hostile_files_fail_alone);

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 90])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .unwrap();
    out
}

/// The `media` update about `file` on this device's stream: (status, width, height, thumb).
async fn media_update(d: &mut Device, file: &FileId) -> (String, Option<u32>, Option<u32>, bool) {
    let u = d
        .next_update(|u| matches!(&u.body, UpdateBody::Media { file: f, .. } if f == file))
        .await;
    let UpdateBody::Media {
        status,
        width,
        height,
        thumb,
        preview,
        ..
    } = u.body
    else {
        unreachable!()
    };
    assert_eq!(thumb, preview);
    (status, width, height, thumb)
}

async fn fetch(
    app: &crate::helpers::TestApp,
    token: &str,
    path: &str,
) -> (StatusCode, Option<String>, Vec<u8>) {
    let r = app
        .api
        .request(Method::GET, path, Some(token))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, ct, r.bytes().await.unwrap().to_vec())
}

fn dims(bytes: &[u8]) -> (u32, u32) {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap()
        .into_dimensions()
        .unwrap()
}

async fn photos_get_thumbnails_and_hostile_files_fail_alone(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "carol"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let carol = app.session("carol", "phone").await;
    let photo_bytes = jpeg(1600, 1200);

    // The bomb first: its job fails, and the worker goes on to the photo after it.
    let bad: MediaFile = app
        .api
        .upload(
            alice.token(),
            media_worker::fixtures::png_bomb(65_000),
            Some("bomb.png"),
        )
        .await
        .unwrap();
    assert_eq!(bad.mime, "image/png");
    let photo: MediaFile = app
        .api
        .upload(alice.token(), photo_bytes.clone(), Some("photo.jpg"))
        .await
        .unwrap();
    assert_eq!(photo.status, "pending");

    let (status, ..) = media_update(&mut alice, &bad.id).await;
    assert_eq!(status, "failed");
    let (status, w, h, thumb) = media_update(&mut alice, &photo.id).await;
    assert_eq!(
        (status.as_str(), w, h, thumb),
        ("ready", Some(1600), Some(1200), true)
    );

    let info: MediaFile = app
        .api
        .request(
            Method::GET,
            &format!("/media/{}/info", photo.id),
            Some(alice.token()),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (info.status.as_str(), info.width, info.height),
        ("ready", Some(1600), Some(1200))
    );
    assert!(info.thumb && info.preview && !info.poster);
    let (s, ct, thumb) = fetch(&app, alice.token(), &format!("/media/{}/thumb", photo.id)).await;
    assert_eq!((s, ct.as_deref()), (StatusCode::OK, Some("image/webp")));
    assert_eq!(dims(&thumb), (320, 240));
    let (s, ct, preview) =
        fetch(&app, alice.token(), &format!("/media/{}/preview", photo.id)).await;
    assert_eq!((s, ct.as_deref()), (StatusCode::OK, Some("image/jpeg")));
    assert_eq!(dims(&preview), (1280, 960));
    let (s, ..) = fetch(&app, alice.token(), &format!("/media/{}/poster", photo.id)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, ..) = fetch(&app, alice.token(), &format!("/media/{}/thumb", bad.id)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a failed file has no thumbnail");

    // Sent to bob: the attachment says it is ready, and bob may fetch the derivatives.
    let conv = app.direct(&alice, &bob).await;
    let req = serde_json::from_value(serde_json::json!({
        "conv": conv, "cmid": "p1", "kind": "image", "attachments": [{ "file": photo.id }]
    }))
    .unwrap();
    alice.client.send(&req).await.unwrap();
    let got = bob.next_message().await;
    let UpdateBody::Message { msg } = got.body else {
        unreachable!()
    };
    let a = &msg.content.attachments()[0];
    assert_eq!(
        (a.status.as_deref(), a.width, a.height),
        (Some("ready"), Some(1600), Some(1200))
    );
    let (s, ..) = fetch(&app, bob.token(), &format!("/media/{}/thumb", photo.id)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, ..) = fetch(&app, &carol.token, &format!("/media/{}/thumb", photo.id)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The same bytes again: ready at once, nothing processed twice.
    let again: MediaFile = app
        .api
        .upload(bob.token(), photo_bytes, None)
        .await
        .unwrap();
    assert_eq!((again.status.as_str(), again.thumb), ("ready", true));
}
