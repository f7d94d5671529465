//! Image originals are stored and served without what a camera records about where and by
//! whom (EXIF with GPS and serial numbers, XMP, comments, trailers), pixels untouched and
//! displayed as before (the orientation stays), unless the uploader asks to keep everything
//! (`?keep_metadata=true`, or `keep_metadata` in tus's `Upload-Metadata`). The same upload
//! twice is still stored once.

use crate::helpers::{spawn_app, Setup, TestApp};
use crate::media::sha256_hex;
use crate::media_jobs::{fetch, jpeg, media_update};
use base64::Engine as _;
use courier_client::protocol::http::MediaFile;
use image::ImageDecoder;
use reqwest::{Method, StatusCode};

crate::on_both_databases!(; with_s3: image_originals_lose_identifying_metadata);

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const SECRETS: [&[u8]; 4] = [b"SERIAL12345", b"GPS 48.85N", b"taken at home", b"SEFT"];

fn orientation(jpeg: &[u8]) -> image::metadata::Orientation {
    let mut decoder = image::ImageReader::new(std::io::Cursor::new(jpeg))
        .with_guessed_format()
        .unwrap()
        .into_decoder()
        .unwrap();
    decoder.orientation().unwrap()
}

/// A whole file in one tus upload, with `keep_metadata` if asked; its file id.
async fn tus_upload(app: &TestApp, token: &str, bytes: &[u8], keep: bool) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut meta = format!("filename {}", b64("photo.jpg"));
    if keep {
        meta.push_str(&format!(",keep_metadata {}", b64("true")));
    }
    let r = app
        .api
        .request(Method::POST, "/uploads", Some(token))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", bytes.len().to_string())
        .header("upload-metadata", meta)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let path = r.headers()["location"].to_str().unwrap()["/v1".len()..].to_owned();
    let r = app
        .api
        .request(Method::PATCH, &path, Some(token))
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    r.headers()["courier-file-id"].to_str().unwrap().to_owned()
}

async fn image_originals_lose_identifying_metadata(setup: Setup) {
    let app = spawn_app(setup).await;
    app.users(&["alice", "bob"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    // Shot sideways: the pixels are 1600 × 1200, displayed 1200 × 1600.
    let camera = media_worker::fixtures::camera_jpeg(&jpeg(1600, 1200), 6);
    for secret in SECRETS {
        assert!(has(&camera, secret));
    }

    let stripped: MediaFile = app
        .api
        .upload(alice.token(), camera.clone(), Some("beach.jpg"))
        .await
        .unwrap();
    let (s, _, original) = fetch(&app, alice.token(), &format!("/media/{}", stripped.id)).await;
    assert_eq!(s, StatusCode::OK);
    for secret in SECRETS {
        assert!(
            !has(&original, secret),
            "{}",
            String::from_utf8_lossy(secret)
        );
    }
    assert_eq!(original.len() as u64, stripped.size);
    assert_eq!(
        sha256_hex(&original),
        stripped.sha256,
        "addressed by what is stored"
    );
    assert_eq!(
        orientation(&original),
        image::metadata::Orientation::Rotate90
    );
    let same_pixels = |a: &[u8], b: &[u8]| {
        image::load_from_memory(a).unwrap().to_rgb8().into_raw()
            == image::load_from_memory(b).unwrap().to_rgb8().into_raw()
    };
    assert!(same_pixels(&camera, &original), "not re-encoded");
    let (status, w, h, _) = media_update(&mut alice, &stripped.id).await;
    assert_eq!((status.as_str(), w, h), ("ready", Some(1200), Some(1600)));

    // The same photo from someone else: the same stripped bytes (stored for them), and
    // stored once for them over tus too.
    let blobs = app.stored_blobs();
    let again = app
        .api
        .upload(&bob.token, camera.clone(), None)
        .await
        .unwrap();
    assert_eq!(again.sha256, stripped.sha256);
    assert_eq!(app.stored_blobs(), blobs + 1);
    let id = tus_upload(&app, &bob.token, &camera, false).await;
    let (_, _, body) = fetch(&app, &bob.token, &format!("/media/{id}")).await;
    assert_eq!(body, original);
    assert_eq!(app.stored_blobs(), blobs + 1);

    // The uploader's choice: everything kept, byte for byte.
    let kept = app
        .api
        .upload_keeping_metadata(alice.token(), camera.clone(), None)
        .await
        .unwrap();
    assert_eq!(kept.sha256, sha256_hex(&camera));
    let (_, _, body) = fetch(&app, alice.token(), &format!("/media/{}", kept.id)).await;
    assert_eq!(body, camera);
    let id = tus_upload(&app, &bob.token, &camera, true).await;
    let (_, _, body) = fetch(&app, &bob.token, &format!("/media/{id}")).await;
    assert_eq!(body, camera);
    assert_eq!(app.stored_blobs(), blobs + 3);

    // A phone's video: its location and tags blanked in place, its frames untouched.
    let dir = tempfile::tempdir().unwrap();
    let (plain, tagged) = (dir.path().join("plain.mp4"), dir.path().join("tagged.mp4"));
    media_worker::fixtures::h264_clip("320x240", "1", &[], &plain);
    let src = plain.display().to_string();
    media_worker::fixtures::ffmpeg(
        &[
            "-i",
            &src,
            "-c",
            "copy",
            "-metadata",
            "location=+48.8577+002.2950/",
        ],
        &tagged,
    );
    let video = std::fs::read(&tagged).unwrap();
    assert!(has(&video, b"loci"));
    let file = app
        .api
        .upload(alice.token(), video.clone(), None)
        .await
        .unwrap();
    let (_, _, body) = fetch(&app, alice.token(), &format!("/media/{}", file.id)).await;
    assert_eq!(body.len(), video.len());
    assert!(!has(&body, b"loci"));
    assert_eq!(
        body[..1000],
        video[..1000],
        "the header and the frames stay"
    );
    assert_eq!(
        crate::media_jobs::media_status(&mut alice, &file.id).await,
        "ready"
    );

    // An image whose structure cannot be followed is refused, not stored with its metadata.
    let mut broken = camera[..40].to_vec();
    broken.extend_from_slice(b"not a segment");
    let err = app
        .api
        .upload(alice.token(), broken, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(courier_client::protocol::ErrorCode::UnsupportedMedia)
    );
    assert_eq!(app.stored_blobs(), blobs + 4);
}
