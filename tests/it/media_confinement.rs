//! No file reaches anyone it was not sent to through the media pipeline: uploads built to make
//! FFmpeg read another user's files (a DASH manifest dressed as MP4, HLS playlists and
//! ffconcat scripts behind an ID3 tag, a playlist behind a Matroska header; relative paths,
//! `file:` and `http:` URLs, an image2 pattern) and a JPEG scan bomb each fail their own job,
//! the attacker gets no byte derived from another file, and another user's photo uploaded at
//! the same time still gets its thumbnail.

use crate::helpers::{spawn_app, Setup};
use crate::media_jobs::{dims, fetch, jpeg, media_body, media_info, media_status, media_update};
use courier_client::protocol::http::MediaFile;
use courier_client::protocol::{ErrorCode, UpdateBody};
use media_worker::fixtures::{polyglot, Polyglot};
use reqwest::StatusCode;

crate::on_both_databases!(hostile_uploads_fail_alone_and_read_nothing_of_others);

async fn hostile_uploads_fail_alone_and_read_nothing_of_others(setup: Setup) {
    let app = spawn_app(setup).await;
    app.users(&["alice", "mallory", "carol"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut mallory = app.tcp_device("mallory", "phone").await;
    let mut carol = app.tcp_device("carol", "phone").await;

    // Alice's private clip, processed: its original and its derivatives are on disk.
    let clip = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        media_worker::fixtures::h264_clip("640x360", "3", &[], &path);
        std::fs::read(path).unwrap()
    };
    let private: MediaFile = app
        .api
        .upload(alice.token(), clip.clone(), Some("private.mp4"))
        .await
        .unwrap();
    assert_eq!(media_status(&mut alice, &private.id).await, "ready");
    // Where the bytes lie. Object keys carry a part that is not derived from the content,
    // but take the worst case: mallory knows them.
    let sha = private.sha256.clone();
    let (ab, cd) = (&sha[..2], &sha[2..4]);
    let objects = app.data_dir().join("objects");
    let stored = std::fs::read_dir(objects.join(format!("blobs/{ab}/{cd}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|name| name.starts_with(&sha))
        .expect("the clip's object");
    let derived = format!("objects/derived/{ab}/{cd}/{stored}/preview.mp4");
    let original = format!("objects/blobs/{ab}/{cd}/{stored}");
    assert!(app.data_dir().join(&derived).exists() && app.data_dir().join(&original).exists());
    assert!(objects.exists());
    // A job's input is spool/jobs/job-<sha>/input: three levels under the data dir.
    let up = |p: &str| format!("../../../{p}");
    let absolute = |p: &str| format!("file:{}", app.data_dir().join(p).display());
    // Anything FFmpeg fetches over HTTP shows up here.
    let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/clip.mp4", web.local_addr().unwrap());

    let attacks = vec![
        (
            "dash → derived",
            polyglot(Polyglot::DashAsMp4, &up(&derived)),
        ),
        (
            "dash → original",
            polyglot(Polyglot::DashAsMp4, &up(&original)),
        ),
        ("hls → derived", polyglot(Polyglot::HlsAsMp3, &up(&derived))),
        (
            "hls → original",
            polyglot(Polyglot::HlsAsMp3, &up(&original)),
        ),
        (
            "hls → file: URL",
            polyglot(Polyglot::HlsAsMp3, &absolute(&derived)),
        ),
        ("hls → http: URL", polyglot(Polyglot::HlsAsMp3, &url)),
        (
            "concat → original",
            polyglot(Polyglot::ConcatAsMp3, &up(&original)),
        ),
        (
            "concat → image2 pattern",
            polyglot(Polyglot::ConcatAsMp3, "frame-%03d.jpg"),
        ),
        (
            "mkv → derived",
            polyglot(Polyglot::HlsAsMatroska, &up(&derived)),
        ),
        ("dash in mkv → http: URL", {
            let mut mkv = polyglot(Polyglot::HlsAsMatroska, "x");
            mkv.extend(polyglot(Polyglot::DashAsMp4, &url));
            mkv
        }),
        (
            "jpeg scan bomb",
            media_worker::fixtures::jpeg_scan_bomb(4000, 3000, 5_000),
        ),
    ];
    // Stripping at upload reads an MP4's boxes, and refuses a manifest dressed as one...
    let err = app
        .api
        .upload(mallory.token(), attacks[0].1.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnsupportedMedia), "{err}");
    // ...but an uploader may keep a file as it is: then the pipeline itself must hold.
    let mut uploaded = Vec::new();
    for (what, bytes) in attacks {
        let f: MediaFile = app
            .api
            .upload_keeping_metadata(mallory.token(), bytes, None)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(f.status, "pending", "{what}: processed like any upload");
        uploaded.push((what, f));
    }
    // Carol's photo, queued behind all of them.
    let photo: MediaFile = app
        .api
        .upload(carol.token(), jpeg(800, 600), Some("photo.jpg"))
        .await
        .unwrap();

    for (what, f) in &uploaded {
        let UpdateBody::Media {
            status,
            width,
            preview,
            poster,
            thumb,
            ..
        } = media_body(&mut mallory, &f.id).await
        else {
            unreachable!()
        };
        assert_eq!(
            (status.as_str(), width, preview, poster, thumb),
            ("failed", None, false, false, false),
            "{what}"
        );
        for derivative in ["preview", "poster", "thumb"] {
            let (s, _, body) = fetch(
                &app,
                mallory.token(),
                &format!("/media/{}/{derivative}", f.id),
            )
            .await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{what}: {derivative} {body:?}");
        }
    }
    let (status, w, h, thumb) = media_update(&mut carol, &photo.id).await;
    assert_eq!(
        (status.as_str(), w, h, thumb),
        ("ready", Some(800), Some(600), true)
    );
    let (s, _, bytes) = fetch(&app, carol.token(), &format!("/media/{}/thumb", photo.id)).await;
    assert_eq!((s, dims(&bytes)), (StatusCode::OK, (320, 240)));
    // Nothing went looking on the network.
    let connected = tokio::time::timeout(std::time::Duration::from_millis(50), web.accept()).await;
    assert!(connected.is_err(), "a job connected to {url}");
    // The failures say why, typed: the DASH manifest is no MP4; the bomb has too many scans.
    let failure = |i: usize| media_info(&app, mallory.token(), &uploaded[i].1.id);
    let why = failure(0).await.failure.unwrap_or_default();
    assert!(
        why.starts_with("corrupt or unreadable: not a valid mov file"),
        "{why}"
    );
    let why = failure(uploaded.len() - 1)
        .await
        .failure
        .unwrap_or_default();
    assert!(why.starts_with("over a limit: 5001 scans"), "{why}");
}
