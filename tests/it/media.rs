//! Media: simple uploads typed from their bytes, stored once per content (SHA-256), limits,
//! downloads with HTTP Range, the access matrix, and media messages.

use crate::helpers::{spawn_app, spawn_app_with, Objects, Setup};
use courier_client::protocol::update::Content;
use courier_client::protocol::{ErrorCode, UpdateBody};
use courier_client::ClientError;
use reqwest::{Method, StatusCode};
use serde_json::json;

crate::on_both_databases!(;
    with_s3: uploads_are_typed_deduplicated_and_guarded,
    media_messages_grant_access
);

/// A 1×1 PNG.
pub(crate) const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\xdac\xfc\xcf\xc0\xf0\x1f\0\x05\x05\x02\x02\xa2\xb0\xf7\xe9\0\0\0\0IEND\xaeB`\x82";

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match r {
        Err(e) => e.code().unwrap_or_else(|| panic!("no server code: {e}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

async fn get(
    app: &crate::helpers::TestApp,
    token: Option<&str>,
    path: &str,
    range: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = app.api.request(Method::GET, path, token);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let rsp = req.send().await.unwrap();
    let (status, headers) = (rsp.status(), rsp.headers().clone());
    (status, headers, rsp.bytes().await.unwrap().to_vec())
}

async fn uploads_are_typed_deduplicated_and_guarded(setup: Setup) {
    let app = spawn_app_with(setup, |s| s.max_upload_size = 64 * 1024).await;
    app.users(&["alice", "bob", "carol"]).await;
    let alice = app.session("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    let carol = app.session("carol", "phone").await;

    // The type comes from the bytes, whatever the name says.
    let a = app
        .api
        .upload(&alice.token, PNG.to_vec(), Some("holiday.pdf"))
        .await
        .unwrap();
    assert_eq!((a.mime.as_str(), a.class.as_str()), ("image/png", "image"));
    assert_eq!(a.size, PNG.len() as u64);
    assert_eq!(a.sha256, sha256_hex(PNG));
    assert_eq!(a.name.as_deref(), Some("holiday.pdf"));
    assert_eq!(app.stored_blobs(), 1);

    // The same bytes again from alice: a file of its own, no new object.
    let again = app
        .api
        .upload(&alice.token, PNG.to_vec(), Some("again.png"))
        .await
        .unwrap();
    assert_ne!(a.id, again.id);
    assert_eq!(app.stored_blobs(), 1, "stored once");
    // From someone else: stored for them, so that nothing tells bob alice has these bytes.
    let b = app
        .api
        .upload(&bob.token, PNG.to_vec(), None)
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(app.stored_blobs(), 2);

    // Refused: unknown types, oversize uploads, bad names, no token.
    let elf = b"\x7FELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    assert_eq!(
        code(app.api.upload(&alice.token, elf, None).await),
        ErrorCode::UnsupportedMedia
    );
    let big = "a".repeat(64 * 1024 + 1).into_bytes();
    assert_eq!(
        code(app.api.upload(&alice.token, big, None).await),
        ErrorCode::PayloadTooLarge
    );
    assert_eq!(
        code(
            app.api
                .upload(&alice.token, b"hi".to_vec(), Some("a\nb"))
                .await
        ),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(app.api.upload("not-a-token", PNG.to_vec(), None).await),
        ErrorCode::Unauthorized
    );
    assert_eq!(app.stored_blobs(), 2, "refusals store nothing");
    let spool = app.data_dir().join("spool");
    let leftovers = std::fs::read_dir(&spool)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count();
    assert_eq!(leftovers, 0, "no spool leftovers");

    // Download: whole, ranges, unsatisfiable ranges.
    let path = format!("/media/{}", a.id);
    let (status, headers, body) = get(&app, Some(&alice.token), &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, PNG);
    assert_eq!(headers["content-type"], "image/png");
    let local = matches!(setup.objects, Objects::Local);
    if local {
        assert_eq!(headers["accept-ranges"], "bytes");
    }
    let (status, headers, body) = get(&app, Some(&alice.token), &path, Some("bytes=0-7")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &PNG[..8]);
    assert_eq!(
        headers["content-range"],
        format!("bytes 0-7/{}", PNG.len()).as_str()
    );
    let (_, _, body) = get(&app, Some(&alice.token), &path, Some("bytes=-4")).await;
    assert_eq!(body, &PNG[PNG.len() - 4..]);
    let (_, _, body) = get(&app, Some(&alice.token), &path, Some("bytes=60-")).await;
    assert_eq!(body, &PNG[60..]);
    let (status, headers, _) = get(&app, Some(&alice.token), &path, Some("bytes=5000-")).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    if local {
        assert_eq!(
            headers["content-range"],
            format!("bytes */{}", PNG.len()).as_str()
        );
    }

    // Nobody else sees it: not bob (who has his own file of the same bytes), not carol.
    for token in [&bob.token, &carol.token] {
        let (status, _, _) = get(&app, Some(token), &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = get(&app, Some(token), &format!("{path}/info"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _, _) = get(&app, None, &path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get(&app, Some(&alice.token), "/media/fnosuchfile", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn media_messages_grant_access(setup: Setup) {
    let app = spawn_app(setup).await;
    app.users(&["alice", "bob", "carol", "dave"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let carol = app.tcp_device("carol", "phone").await;
    let dave = app.session("dave", "phone").await;
    let photo = app
        .api
        .upload(alice.token(), PNG.to_vec(), Some("dot.png"))
        .await
        .unwrap();
    let notes = app
        .api
        .upload(
            alice.token(),
            b"meeting notes\n".to_vec(),
            Some("notes.txt"),
        )
        .await
        .unwrap();
    let daves = app
        .api
        .upload(&dave.token, b"dave's secret\n".to_vec(), None)
        .await
        .unwrap();
    let ab = app.direct(&alice, &bob).await;
    let send = |conv: &courier_client::protocol::ConvId,
                cmid: &str,
                kind: &str,
                body: serde_json::Value| {
        let mut req = json!({ "conv": conv, "cmid": cmid, "kind": kind });
        req.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        serde_json::from_value::<courier_client::protocol::ops::SendReq>(req).unwrap()
    };

    // Validation per kind.
    let eleven: Vec<_> = (0..11)
        .map(|i| json!({ "file": format!("f{i}") }))
        .collect();
    let bad = [
        ("image", json!({ "attachments": [] })),
        ("image", json!({ "attachments": eleven })),
        (
            "image",
            json!({ "attachments": [{ "file": photo.id }, { "file": photo.id }] }),
        ),
        (
            "image",
            json!({ "attachments": [{ "file": photo.id, "extra": 1 }] }),
        ),
        (
            "file",
            json!({ "attachments": [{ "file": notes.id }], "text": "caption" }),
        ),
        (
            "voice",
            json!({ "attachments": [{ "file": notes.id }, { "file": photo.id }] }),
        ),
        (
            "text",
            json!({ "text": "hi", "attachments": [{ "file": photo.id }] }),
        ),
    ];
    for (i, (kind, body)) in bad.into_iter().enumerate() {
        let r = alice
            .client
            .send(&send(&ab, &format!("bad-{i}"), kind, body.clone()))
            .await;
        assert_eq!(code(r), ErrorCode::InvalidMessage, "{kind} {body}");
    }
    // The file must fit the kind, and be the sender's or visible to them.
    let r = alice
        .client
        .send(&send(
            &ab,
            "v1",
            "voice",
            json!({ "attachments": [{ "file": photo.id }] }),
        ))
        .await;
    assert_eq!(code(r), ErrorCode::InvalidMessage);
    let r = alice
        .client
        .send(&send(
            &ab,
            "d1",
            "file",
            json!({ "attachments": [{ "file": daves.id }] }),
        ))
        .await;
    assert_eq!(code(r), ErrorCode::NotFound);

    // A photo with a caption: bob gets it described, and may now download it.
    let sent = alice
        .client
        .send(&send(
            &ab,
            "p1",
            "image",
            json!({ "attachments": [{ "file": photo.id }], "text": "look" }),
        ))
        .await
        .unwrap();
    let got = bob
        .next_update(|u| matches!(&u.body, UpdateBody::Message { msg } if msg.id == sent.msg))
        .await;
    let UpdateBody::Message { msg } = got.body else {
        unreachable!()
    };
    let Content::Image { attachments, text } = &msg.content else {
        panic!("{:?}", msg.content)
    };
    assert_eq!(text.as_deref(), Some("look"));
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0].file, photo.id);
    assert_eq!(attachments[0].mime, "image/png");
    assert_eq!(attachments[0].size, PNG.len() as u64);
    assert_eq!(attachments[0].name.as_deref(), Some("dot.png"));
    let path = format!("/media/{}", photo.id);
    assert_eq!(
        get(&app, Some(bob.token()), &path, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, Some(carol.token()), &path, None).await.0,
        StatusCode::NOT_FOUND
    );

    // bob forwards it to carol: he can see it, so he may; then carol may download it.
    let bc = app.direct(&bob, &carol).await;
    bob.client
        .send(&send(
            &bc,
            "fw1",
            "image",
            json!({ "attachments": [{ "file": photo.id }] }),
        ))
        .await
        .unwrap();
    assert_eq!(
        get(&app, Some(carol.token()), &path, None).await.0,
        StatusCode::OK
    );
    // A plain file message.
    alice
        .client
        .send(&send(
            &ab,
            "n1",
            "file",
            json!({ "attachments": [{ "file": notes.id }] }),
        ))
        .await
        .unwrap();
    let (status, headers, body) = get(
        &app,
        Some(bob.token()),
        &format!("/media/{}", notes.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/plain");
    if let Objects::Local = setup.objects {
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    assert_eq!(body, b"meeting notes\n");
    // History shows the attachments too.
    let page = app.api.history(bob.token(), &ab, None, 10).await.unwrap();
    assert_eq!(page.messages[0].content.kind(), "file");
    assert_eq!(page.messages[1].content.attachments()[0].file, photo.id);
}
