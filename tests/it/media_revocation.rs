//! A file's grants follow the messages that gave them: deleting a message for everyone takes
//! back every download it allowed (original and derivatives), a member removed from a
//! conversation loses the files they could reach only there, and `media` updates name a file
//! only to those who can still read it.

use crate::helpers::{spawn_app, Device, Setup, TestApp};
use crate::media_jobs::{fetch, jpeg, media_status, media_update};
use courier_client::protocol::http::MediaFile;
use courier_client::protocol::update::DeleteScope;
use courier_client::protocol::{ConvId, FileId, MsgId, UpdateBody};
use reqwest::{Method, StatusCode};
use std::time::Duration;

crate::on_both_databases!(
    deleting_for_everyone_takes_back_the_files_it_gave,
    removed_members_lose_files_seen_only_there
);

/// `from` sends an image message carrying `file` into `conv`; its id.
async fn send_image(from: &Device, conv: &ConvId, file: &FileId, cmid: &str) -> MsgId {
    let req = serde_json::from_value(serde_json::json!({
        "conv": conv, "cmid": cmid, "kind": "image", "attachments": [{ "file": file }]
    }))
    .unwrap();
    from.client.send(&req).await.unwrap().msg
}

/// What `token` gets for the file and each derivative an image has.
async fn reach(app: &TestApp, token: &str, file: &FileId) -> Vec<StatusCode> {
    let mut got = Vec::new();
    for what in ["", "/info", "/thumb", "/preview"] {
        got.push(fetch(app, token, &format!("/media/{file}{what}")).await.0);
    }
    got
}

const ALL: [StatusCode; 4] = [StatusCode::OK; 4];
const NONE: [StatusCode; 4] = [StatusCode::NOT_FOUND; 4];

/// Waits until `d` has the message `msg`.
async fn receive(d: &mut Device, msg: &MsgId) {
    d.next_update(|u| matches!(&u.body, UpdateBody::Message { msg: m } if m.id == *msg))
        .await;
}

async fn deleting_for_everyone_takes_back_the_files_it_gave(setup: Setup) {
    let app = spawn_app(setup).await;
    app.users(&["alice", "bob"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&alice, &bob).await;

    let photo: MediaFile = app
        .api
        .upload(alice.token(), jpeg(640, 480), Some("oops.jpg"))
        .await
        .unwrap();
    assert_eq!(media_update(&mut alice, &photo.id).await.0, "ready");
    let sent = send_image(&alice, &conv, &photo.id, "oops").await;
    receive(&mut bob, &sent).await;
    assert_eq!(reach(&app, bob.token(), &photo.id).await, ALL);

    alice
        .client
        .delete(&sent, DeleteScope::Everyone)
        .await
        .unwrap();
    // Bob kept the id: it opens nothing now, and he cannot pass it on.
    assert_eq!(reach(&app, bob.token(), &photo.id).await, NONE);
    let err = bob
        .client
        .send(
            &serde_json::from_value(serde_json::json!({
                "conv": conv, "cmid": "fwd", "kind": "image", "attachments": [{ "file": photo.id }]
            }))
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.code().is_some(), "{err}");
    // The uploader still has her own file.
    assert_eq!(reach(&app, alice.token(), &photo.id).await, ALL);

    // A file whose processing ends after the message was deleted: the `media` update goes
    // to the uploader alone. A slow job ahead of it keeps it queued while the message is
    // sent and deleted.
    let slow = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.mp4");
        media_worker::fixtures::h264_clip("1920x1080", "10", &[], &path);
        std::fs::read(path).unwrap()
    };
    let slow: MediaFile = app.api.upload(alice.token(), slow, None).await.unwrap();
    let late: MediaFile = app
        .api
        .upload(alice.token(), jpeg(800, 600), Some("late.jpg"))
        .await
        .unwrap();
    let sent = send_image(&alice, &conv, &late.id, "late").await;
    receive(&mut bob, &sent).await;
    alice
        .client
        .delete(&sent, DeleteScope::Everyone)
        .await
        .unwrap();
    assert_eq!(media_status(&mut alice, &slow.id).await, "ready");
    assert_eq!(media_update(&mut alice, &late.id).await.0, "ready");
    let heard: Vec<_> = bob
        .drain_for(Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|e| format!("{e:?}").contains(late.id.as_str()))
        .collect();
    assert!(heard.is_empty(), "bob heard of the file: {heard:?}");
    let synced = bob.client.sync_all(0).await.unwrap();
    assert!(
        !synced
            .iter()
            .any(|u| matches!(&u.body, UpdateBody::Media { file, .. } if *file == late.id)),
        "no media update about it in bob's log"
    );
    assert_eq!(reach(&app, bob.token(), &late.id).await, NONE);
}

async fn removed_members_lose_files_seen_only_there(setup: Setup) {
    let app = spawn_app(setup).await;
    app.users(&["alice", "bob", "carol"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let carol = app.tcp_device("carol", "phone").await;
    let group = app.group(&alice, "trip", &[&bob, &carol]).await;
    let direct = app.direct(&alice, &bob).await;

    // Two photos in the group; the second also in alice and bob's own chat.
    let mut photos = Vec::new();
    for (i, side) in [(0, 320), (1, 360)] {
        let p: MediaFile = app
            .api
            .upload(alice.token(), jpeg(side, 240), None)
            .await
            .unwrap();
        assert_eq!(media_update(&mut alice, &p.id).await.0, "ready");
        let sent = send_image(&alice, &group, &p.id, &format!("g{i}")).await;
        receive(&mut bob, &sent).await;
        photos.push(p.id);
    }
    let sent = send_image(&alice, &direct, &photos[1], "d1").await;
    receive(&mut bob, &sent).await;
    assert_eq!(reach(&app, bob.token(), &photos[0]).await, ALL);

    let (status, _) = app
        .api
        .raw(app.api.request(
            Method::DELETE,
            &format!("/conversations/{group}/members/{}", bob.session.user),
            Some(alice.token()),
        ))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(reach(&app, bob.token(), &photos[0]).await, NONE);
    assert_eq!(
        reach(&app, bob.token(), &photos[1]).await,
        ALL,
        "still shared directly"
    );
    assert_eq!(reach(&app, carol.token(), &photos[0]).await, ALL);
}
