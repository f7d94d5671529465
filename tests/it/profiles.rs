//! Profiles (#16 item 1): a display name and an avatar, set with `PATCH /v1/me`, shown in
//! `GET /v1/me`, user lookups and conversation listings, and sent as a `profile` update to
//! everyone who shares a conversation with the user and to their other devices. The avatar
//! is a 256 px square WebP made by the image job, served to those who share a conversation
//! with its user and to nobody else, and kept by storage collection while it is in use.

use crate::helpers::{refusal as code, spawn_app_with, Db, Device};
use crate::media_jobs::{jpeg, media_status};
use courier_client::protocol::http::{Profile, ProfileChange};
use courier_client::protocol::{ErrorCode, FileId, UpdateBody};
use courier_client::Event;
use std::time::Duration;

crate::on_both_databases!(names_and_avatars_reach_contacts_and_no_one_else);

fn name(n: &str) -> ProfileChange {
    ProfileChange {
        display_name: Some(Some(n.into())),
        avatar: None,
    }
}

fn avatar(file: Option<&FileId>) -> ProfileChange {
    ProfileChange {
        display_name: None,
        avatar: Some(file.cloned()),
    }
}

/// The next `profile` update on `d`'s stream.
async fn profile_update(d: &mut Device) -> Profile {
    let u = d
        .next_update(|u| matches!(u.body, UpdateBody::Profile { .. }))
        .await;
    let UpdateBody::Profile { profile } = u.body else {
        unreachable!()
    };
    profile
}

/// An image of `d`'s, uploaded and processed.
async fn processed_photo(app: &crate::helpers::TestApp, d: &mut Device, w: u32, h: u32) -> FileId {
    let file = app
        .api
        .upload(d.token(), jpeg(w, h), Some("me.jpg"))
        .await
        .unwrap();
    assert_eq!(media_status(d, &file.id).await, "ready");
    file.id
}

async fn names_and_avatars_reach_contacts_and_no_one_else(db: Db) {
    // Storage collection runs every few hundred ms and takes unsent files after 1 s.
    let app = spawn_app_with(db, |s| s.upload_expiry = Duration::from_secs(1)).await;
    app.users(&["alice", "bob", "carol"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut laptop = app.tcp_device("alice", "laptop").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let mut carol = app.tcp_device("carol", "phone").await;
    let a = alice.session.user.clone();
    app.direct(&alice, &bob).await;

    let me = app.api.me(alice.token()).await.unwrap();
    assert_eq!(
        (me.username.as_str(), &me.display_name, &me.avatar),
        ("alice", &None, &None)
    );

    // A name: trimmed, at her contact's and her other device's, not at a stranger's.
    let set = app
        .api
        .change_profile(alice.token(), &name("  Alice Nguyễn  "))
        .await
        .unwrap();
    assert_eq!(set.display_name.as_deref(), Some("Alice Nguyễn"));
    assert_eq!(profile_update(&mut bob).await, set);
    assert_eq!(profile_update(&mut laptop).await, set);
    // Bad names change nothing.
    for bad in [
        "",
        "   ",
        &"x".repeat(65),
        "\u{202E}evil",
        "tab\there",
        "nul\0",
    ] {
        let e = app.api.change_profile(alice.token(), &name(bad)).await;
        assert_eq!(code(e), Some(ErrorCode::BadRequest), "{bad:?}");
    }
    assert_eq!(app.api.me(alice.token()).await.unwrap(), set);

    // An avatar: a processed image of hers.
    let photo = processed_photo(&app, &mut alice, 900, 600).await;
    let with_avatar = app
        .api
        .change_profile(alice.token(), &avatar(Some(&photo)))
        .await
        .unwrap();
    let url = with_avatar.avatar.clone().expect("an avatar address");
    assert!(
        url.starts_with(&format!("/v1/users/{a}/avatar?v=")),
        "{url}"
    );
    assert_eq!(profile_update(&mut bob).await, with_avatar);
    // bob sees it, as a 256 px square WebP; alice too; carol, who shares nothing, does not.
    let bytes = app.api.avatar(bob.token(), &url).await.unwrap();
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::WebP).unwrap();
    assert_eq!((img.width(), img.height()), (256, 256));
    app.api.avatar(alice.token(), &url).await.unwrap();
    let e = app.api.avatar(carol.token(), &url).await;
    assert_eq!(code(e), Some(ErrorCode::NotFound));
    // Listings and lookups carry the name and avatar.
    let listed = app.api.conversations(bob.token()).await.unwrap();
    assert_eq!(listed[0].profiles, vec![with_avatar.clone()]);
    let looked_up = app
        .api
        .users(bob.token(), &[], &[a.as_str()])
        .await
        .unwrap();
    assert_eq!(looked_up, vec![with_avatar.clone()]);

    // Someone else's file, a file that is not an image: refused, nothing changes.
    let bobs = processed_photo(&app, &mut bob, 300, 300).await;
    let e = app
        .api
        .change_profile(alice.token(), &avatar(Some(&bobs)))
        .await;
    assert_eq!(code(e), Some(ErrorCode::NotFound));
    let text = app
        .api
        .upload(alice.token(), b"just some text\n".to_vec(), Some("a.txt"))
        .await
        .unwrap();
    let e = app
        .api
        .change_profile(alice.token(), &avatar(Some(&text.id)))
        .await;
    assert_eq!(code(e), Some(ErrorCode::UnsupportedMedia));
    assert_eq!(app.api.me(alice.token()).await.unwrap(), with_avatar);

    // Storage collection keeps the avatar (it is in no message), and takes the text file.
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.api.avatar(bob.token(), &url).await.unwrap();
    let info = |id: &FileId| {
        app.api.request(
            reqwest::Method::GET,
            &format!("/media/{id}/info"),
            Some(alice.token()),
        )
    };
    let (status, _) = app.api.raw(info(&text.id)).await.unwrap();
    assert_eq!(status, 404, "the collector ran");
    let (status, _) = app.api.raw(info(&photo)).await.unwrap();
    assert_eq!(status, 200, "and kept the avatar's file");

    // A new avatar is a new address; clearing it leaves none, and the old address is gone.
    let other = processed_photo(&app, &mut alice, 400, 800).await;
    let changed = app
        .api
        .change_profile(alice.token(), &avatar(Some(&other)))
        .await
        .unwrap();
    let new_url = changed.avatar.clone().unwrap();
    assert_ne!(new_url, url);
    assert_eq!(profile_update(&mut bob).await.avatar, Some(new_url.clone()));
    let cleared = app
        .api
        .change_profile(alice.token(), &avatar(None))
        .await
        .unwrap();
    assert_eq!(
        (cleared.avatar, cleared.display_name.as_deref()),
        (None, Some("Alice Nguyễn"))
    );
    let e = app.api.avatar(bob.token(), &new_url).await;
    assert_eq!(code(e), Some(ErrorCode::NotFound));

    // carol heard none of it.
    let heard = carol.drain_for(Duration::from_millis(300)).await;
    assert!(
        !heard
            .iter()
            .any(|e| matches!(e, Event::Update(u) if matches!(u.body, UpdateBody::Profile { .. }))),
        "{heard:?}"
    );
}
