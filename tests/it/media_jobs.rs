//! Media processing end to end: an uploaded photo gets a thumbnail and a preview, the owner
//! and the recipients hear about it with a `media` update, derivatives download under the same
//! access rule, the same bytes are never processed twice, and a hostile file fails its own job
//! while the worker goes on.

use crate::helpers::{spawn_app, Db, Device, Setup};
use courier_client::protocol::http::MediaFile;
use courier_client::protocol::{FileId, UpdateBody};
use reqwest::{Method, StatusCode};
use std::io::Cursor;
use std::time::Duration;

crate::on_both_databases!(one_users_uploads_do_not_hold_up_anothers,
    a_users_uploads_are_received_a_few_at_a_time;
    with_s3: photos_get_thumbnails_and_hostile_files_fail_alone,
    videos_get_posters_and_voice_notes_durations
);

pub(crate) fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 90])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .unwrap();
    out
}

/// The `media` update about `file` on this device's stream.
pub(crate) async fn media_body(d: &mut Device, file: &FileId) -> UpdateBody {
    d.next_update(|u| matches!(&u.body, UpdateBody::Media { file: f, .. } if f == file))
        .await
        .body
}

/// The status a `media` update about `file` (of any class) brings.
pub(crate) async fn media_status(d: &mut Device, file: &FileId) -> String {
    let UpdateBody::Media { status, .. } = media_body(d, file).await else {
        unreachable!()
    };
    status
}

/// The `media` update about an image: (status, width, height, thumb).
pub(crate) async fn media_update(
    d: &mut Device,
    file: &FileId,
) -> (String, Option<u32>, Option<u32>, bool) {
    let UpdateBody::Media {
        status,
        width,
        height,
        thumb,
        preview,
        ..
    } = media_body(d, file).await
    else {
        unreachable!()
    };
    assert_eq!(thumb, preview);
    (status, width, height, thumb)
}

/// `from` sends a `kind` message carrying `file`; the attachment as `to` receives it.
pub(crate) async fn send_file(
    from: &Device,
    to: &mut Device,
    conv: &courier_client::protocol::ConvId,
    kind: &str,
    file: &FileId,
) -> courier_client::protocol::update::Attachment {
    let req = serde_json::from_value(serde_json::json!({
        "conv": conv, "cmid": format!("{kind}-{file}"), "kind": kind, "attachments": [{ "file": file }]
    }))
    .unwrap();
    from.client.send(&req).await.unwrap();
    let got = to.next_message().await;
    let UpdateBody::Message { msg } = got.body else {
        unreachable!()
    };
    msg.content.attachments()[0].clone()
}

/// Media made with the `ffmpeg` command-line tool (CI installs it).
fn ffmpeg(args: &[&str], ext: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("out.{ext}"));
    media_worker::fixtures::ffmpeg(args, &out);
    std::fs::read(out).unwrap()
}

pub(crate) async fn fetch(
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

/// `GET /v1/media/{id}/info` as `token` sees it.
pub(crate) async fn media_info(
    app: &crate::helpers::TestApp,
    token: &str,
    id: &FileId,
) -> MediaFile {
    app.api
        .request(Method::GET, &format!("/media/{id}/info"), Some(token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) fn dims(bytes: &[u8]) -> (u32, u32) {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap()
        .into_dimensions()
        .unwrap()
}

async fn photos_get_thumbnails_and_hostile_files_fail_alone(setup: Setup) {
    let app = spawn_app(setup).await;
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

    let info = media_info(&app, alice.token(), &photo.id).await;
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
    let a = send_file(&alice, &mut bob, &conv, "image", &photo.id).await;
    assert_eq!(
        (a.status.as_deref(), a.width, a.height),
        (Some("ready"), Some(1600), Some(1200))
    );
    let (s, ..) = fetch(&app, bob.token(), &format!("/media/{}/thumb", photo.id)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, ..) = fetch(&app, &carol.token, &format!("/media/{}/thumb", photo.id)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The same bytes again from alice: ready at once, nothing processed twice.
    let again: MediaFile = app
        .api
        .upload(alice.token(), photo_bytes.clone(), None)
        .await
        .unwrap();
    assert_eq!((again.status.as_str(), again.thumb), ("ready", true));
    // From carol, who guesses what alice has: the answer of any new upload, and a job of her
    // own; nothing tells her that alice stored these bytes.
    let guess: MediaFile = app
        .api
        .upload(&carol.token, photo_bytes, None)
        .await
        .unwrap();
    assert_eq!(
        (guess.status.as_str(), guess.thumb, guess.width),
        ("pending", false, None)
    );
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, body) = fetch(&app, &carol.token, &format!("/media/{}/info", guess.id)).await;
        let info: MediaFile = serde_json::from_slice(&body).unwrap();
        if info.status == "ready" {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "carol's copy was never processed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn videos_get_posters_and_voice_notes_durations(setup: Setup) {
    let app = spawn_app(setup).await;
    app.users(&["alice", "bob"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let clip = {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("clip.mp4");
        media_worker::fixtures::h264_clip("640x360", "3", &[], &out);
        std::fs::read(out).unwrap()
    };
    let voice = ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-c:a",
            "aac",
        ],
        "m4a",
    );
    let video: MediaFile = app
        .api
        .upload(alice.token(), clip, Some("clip.mp4"))
        .await
        .unwrap();
    assert_eq!(
        (
            video.mime.as_str(),
            video.class.as_str(),
            video.status.as_str()
        ),
        ("video/mp4", "video", "pending")
    );
    let note: MediaFile = app.api.upload(alice.token(), voice, None).await.unwrap();
    assert_eq!(
        (note.mime.as_str(), note.class.as_str()),
        ("audio/mp4", "audio")
    );

    // Sent while (probably) still processing: bob hears when it is ready, or finds it ready.
    let conv = app.direct(&alice, &bob).await;
    let req = serde_json::from_value(serde_json::json!({
        "conv": conv, "cmid": "v1", "kind": "video", "attachments": [{ "file": video.id }]
    }))
    .unwrap();
    alice.client.send(&req).await.unwrap();
    let UpdateBody::Media {
        status,
        width,
        height,
        duration_ms,
        poster,
        preview,
        thumb,
        ..
    } = media_body(&mut alice, &video.id).await
    else {
        unreachable!()
    };
    assert_eq!(
        (status.as_str(), width, height, poster, preview, thumb),
        ("ready", Some(640), Some(360), true, true, false)
    );
    assert!(
        duration_ms.is_some_and(|d| (2900..=3100).contains(&d)),
        "{duration_ms:?}"
    );
    let got = bob.next_message().await;
    let UpdateBody::Message { msg } = got.body else {
        unreachable!()
    };
    if msg.content.attachments()[0].status.as_deref() == Some("pending") {
        let UpdateBody::Media { status, .. } = media_body(&mut bob, &video.id).await else {
            unreachable!()
        };
        assert_eq!(status, "ready");
    }
    let (s, ct, poster) = fetch(&app, bob.token(), &format!("/media/{}/poster", video.id)).await;
    assert_eq!((s, ct.as_deref()), (StatusCode::OK, Some("image/jpeg")));
    assert_eq!(dims(&poster), (640, 360));
    // The 480p preview (this clip is smaller, so as is): H.264 MP4, index first, seekable.
    let (s, ct, mp4) = fetch(&app, bob.token(), &format!("/media/{}/preview", video.id)).await;
    assert_eq!((s, ct.as_deref()), (StatusCode::OK, Some("video/mp4")));
    let at = |atom: &[u8]| mp4.windows(4).position(|w| w == atom).unwrap();
    assert!(at(b"moov") < at(b"mdat"));
    let r = app
        .api
        .request(
            Method::GET,
            &format!("/media/{}/preview", video.id),
            Some(bob.token()),
        )
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &mp4[..100]);

    let UpdateBody::Media {
        status,
        duration_ms,
        ..
    } = media_body(&mut alice, &note.id).await
    else {
        unreachable!()
    };
    assert_eq!(status, "ready");
    assert!(
        duration_ms.is_some_and(|d| (1900..=2200).contains(&d)),
        "{duration_ms:?}"
    );
    let a = send_file(&alice, &mut bob, &conv, "voice", &note.id).await;
    assert_eq!(a.status.as_deref(), Some("ready"));
    assert!(a.duration_ms.is_some_and(|d| (1900..=2200).contains(&d)));
}

/// Media jobs are shared between users: the photos alice queues at once do not go ahead of
/// the one bob queues just after. Of alice's jobs still waiting when bob's is queued, at most
/// the one running and one more finish before his (one worker runs jobs here), plus those
/// whose place in line came before bob's arrival: each of alice's jobs is placed
/// `JOB_SHARE_MS` after her previous one, so if the uploads themselves took that long (a
/// loaded machine), her next ones were in line first, fairly.
async fn one_users_uploads_do_not_hold_up_anothers(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let alice = app.session("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    let started = std::time::Instant::now();
    let uploads = (0..8).map(|i| app.api.upload(&alice.token, jpeg(1200 + i, 900), None));
    let alices: Vec<FileId> = futures_util::future::join_all(uploads)
        .await
        .into_iter()
        .map(|f| f.unwrap().id)
        .collect();
    let bobs = app
        .api
        .upload(&bob.token, jpeg(1200, 901), None)
        .await
        .unwrap()
        .id;
    let lag = started.elapsed().as_millis() as i64;
    let placed_first = (lag / backend::store::jobs::JOB_SHARE_MS) as usize;
    let done = |token: &str, id: &FileId| {
        let path = format!("/media/{id}/info");
        let token = token.to_owned();
        let app = &app;
        async move {
            let (_, _, body) = fetch(app, &token, &path).await;
            let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
            info["status"] != "pending"
        }
    };
    let mut waiting = Vec::new();
    for id in &alices {
        if !done(&alice.token, id).await {
            waiting.push(id.clone());
        }
    }
    assert!(
        waiting.len() >= 4,
        "alice's jobs ran as fast as she uploaded; nothing to share"
    );
    let end = std::time::Instant::now() + Duration::from_secs(120);
    while !done(&bob.token, &bobs).await {
        assert!(std::time::Instant::now() < end, "bob's job never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ahead = 0;
    for id in &waiting {
        if done(&alice.token, id).await {
            ahead += 1;
        }
    }
    eprintln!(
        "{ahead} of alice's {} waiting jobs finished before bob's; {placed_first} were in line first ({lag} ms of uploading)",
        waiting.len()
    );
    assert!(
        ahead <= 2 + placed_first,
        "{ahead} of alice's jobs went ahead of bob's; {placed_first} were placed before him"
    );
}

/// An upload of alice's that holds its connection open, its body half sent.
async fn held_upload(app: &crate::helpers::TestApp, token: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(app.addrs.http)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/media HTTP/1.1\r\nHost: courier\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&jpeg(64, 64)[..100]).await.unwrap();
    tcp
}

/// A user's uploads are received 4 at a time (`http/upload_slots.rs`): with four of alice's
/// uploads stalled mid-body, her fifth waits, unread, until one of them goes; bob's upload is
/// not held up by any of hers.
async fn a_users_uploads_are_received_a_few_at_a_time(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let alice = app.session("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(held_upload(&app, &alice.token).await);
    }
    // Time for the four to reach the server and take alice's slots.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fifth = tokio::spawn({
        let (api, token) = (app.api.clone(), alice.token.clone());
        async move { api.upload(&token, jpeg(320, 240), None).await }
    });
    let bobs = tokio::time::timeout(
        Duration::from_secs(30),
        app.api.upload(&bob.token, jpeg(320, 241), None),
    )
    .await
    .expect("bob's upload waited for alice's");
    assert!(bobs.is_ok(), "{bobs:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !fifth.is_finished(),
        "alice's fifth upload was received beside her four"
    );
    // One of the four gives up: the fifth takes its slot.
    drop(stalled.pop());
    let fifth = tokio::time::timeout(Duration::from_secs(30), fifth)
        .await
        .expect("a freed slot went to nobody")
        .unwrap();
    assert!(fifth.is_ok(), "{fifth:?}");
}
