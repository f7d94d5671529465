//! Group admin and system lines (#17 items 3 and 4): admins rename a group, set its picture
//! and give or take the admin role; members leave; the last admin's leaving passes the role
//! on. Every change is a `system` message with its own seq, in history and on `in`, which
//! clients cannot send themselves.

use crate::helpers::{refusal as code, spawn_app, Db, Device};
use crate::media_jobs::{jpeg, media_status};
use courier_client::protocol::http::{ConversationChange, Role};
use courier_client::protocol::update::{Content, MemberAction, SystemEvent};
use courier_client::protocol::{ConvId, ErrorCode, Message, UpdateBody, UserId};
use serde_json::json;

crate::on_both_databases!(admins_run_the_group_and_every_change_is_a_system_line);

/// The next system line in `conv` on `d`'s stream.
pub async fn system_line(d: &mut Device, conv: &ConvId) -> Message {
    let u = d
        .next_update(|u| {
            matches!(&u.body, UpdateBody::Message { msg }
                if msg.conv == *conv && msg.content.kind() == "system")
        })
        .await;
    let UpdateBody::Message { msg } = u.body else {
        unreachable!()
    };
    msg
}

/// The next system line of `ev` in `conv` on `d`'s stream, skipping others.
pub async fn line_of(d: &mut Device, conv: &ConvId, ev: SystemEvent) -> Message {
    loop {
        let m = system_line(d, conv).await;
        if event(&m).0 == ev {
            return m;
        }
    }
}

fn event(m: &Message) -> (SystemEvent, Vec<UserId>) {
    match &m.content {
        Content::System { event, users, .. } => (*event, users.clone()),
        other => panic!("not a system line: {other:?}"),
    }
}

fn rename(t: Option<&str>) -> ConversationChange {
    ConversationChange {
        title: Some(t.map(str::to_owned)),
        avatar: None,
    }
}

async fn admins_run_the_group_and_every_change_is_a_system_line(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "carol", "dave"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let mut carol = app.tcp_device("carol", "phone").await;
    let dave = app.tcp_device("dave", "phone").await;
    let (a, b, c) = (
        alice.session.user.clone(),
        bob.session.user.clone(),
        carol.session.user.clone(),
    );
    let g = app.group(&alice, "trip", &[&bob, &carol]).await;

    // Created: the first line of the group, seq 1, at every member's.
    let created = system_line(&mut bob, &g).await;
    assert_eq!(created.seq, 1);
    assert_eq!(created.sender, a);
    let (ev, mut users) = event(&created);
    users.sort();
    let mut all = vec![a.clone(), b.clone(), c.clone()];
    all.sort();
    assert_eq!((ev, users), (SystemEvent::Created, all));
    assert_eq!(system_line(&mut carol, &g).await.id, created.id);

    // A rename by the admin: everyone reads it, with the new title, and the list shows it.
    let renamed = app
        .api
        .change_group(alice.token(), &g, &rename(Some("  Đà Lạt trip ")))
        .await
        .unwrap();
    assert_eq!(renamed.title.as_deref(), Some("Đà Lạt trip"));
    let line = system_line(&mut carol, &g).await;
    assert_eq!(line.seq, 2);
    assert!(
        matches!(&line.content, Content::System { event: SystemEvent::TitleChanged, title: Some(t), .. } if t == "Đà Lạt trip")
    );
    let listed = app.api.conversation(carol.token(), &g).await.unwrap();
    assert_eq!(listed.title.as_deref(), Some("Đà Lạt trip"));
    assert_eq!(listed.last_message.as_ref().map(|m| m.seq), Some(2));
    // System lines are not unread.
    assert_eq!(listed.unread, 0);

    // Non-admins cannot rename, re-role or remove; bad titles change nothing; a stranger
    // cannot touch the group.
    let e = app
        .api
        .change_group(bob.token(), &g, &rename(Some("mine")))
        .await;
    assert_eq!(code(e), Some(ErrorCode::Forbidden));
    let e = app.api.set_role(bob.token(), &g, &b, Role::Admin).await;
    assert_eq!(code(e), Some(ErrorCode::Forbidden));
    let e = app.api.remove_member(bob.token(), &g, &c).await;
    assert_eq!(code(e), Some(ErrorCode::Forbidden));
    for bad in ["", "   ", &"x".repeat(257), "a\nb"] {
        let e = app
            .api
            .change_group(alice.token(), &g, &rename(Some(bad)))
            .await;
        assert_eq!(code(e), Some(ErrorCode::BadRequest), "{bad:?}");
    }
    let e = app
        .api
        .change_group(dave.token(), &g, &rename(Some("x")))
        .await;
    assert_eq!(code(e), Some(ErrorCode::NotMember));
    let (status, body) = app
        .api
        .raw(
            app.api
                .request(
                    reqwest::Method::PATCH,
                    &format!("/conversations/{g}"),
                    Some(alice.token()),
                )
                .json(&json!({"title": "x", "color": "red"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let direct = app.direct(&alice, &dave).await;
    let e = app
        .api
        .change_group(alice.token(), &direct, &rename(Some("x")))
        .await;
    assert_eq!(code(e), Some(ErrorCode::BadRequest));
    assert_eq!(
        app.api
            .conversation(alice.token(), &g)
            .await
            .unwrap()
            .last_seq,
        2,
        "refusals wrote nothing"
    );

    // Clients cannot send a system line.
    let e = bob
        .client
        .send(
            &serde_json::from_value(json!({"conv": g, "cmid": "fake", "kind": "system",
                "event": "left", "text": "x"}))
            .unwrap(),
        )
        .await;
    assert_eq!(code(e), Some(ErrorCode::InvalidMessage));

    // The group's picture: a processed image of the admin's, served to members only.
    let photo = app
        .api
        .upload(alice.token(), jpeg(600, 400), Some("g.jpg"))
        .await
        .unwrap();
    assert_eq!(media_status(&mut alice, &photo.id).await, "ready");
    let with_pic = app
        .api
        .change_group(
            alice.token(),
            &g,
            &ConversationChange {
                title: None,
                avatar: Some(Some(photo.id.clone())),
            },
        )
        .await
        .unwrap();
    let url = with_pic.avatar.clone().expect("a picture address");
    assert!(
        url.starts_with(&format!("/v1/conversations/{g}/avatar?v=")),
        "{url}"
    );
    line_of(&mut bob, &g, SystemEvent::AvatarChanged).await;
    let bytes = app.api.avatar(bob.token(), &url).await.unwrap();
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::WebP).unwrap();
    assert_eq!((img.width(), img.height()), (256, 256));
    let e = app.api.avatar(dave.token(), &url).await;
    assert_eq!(code(e), Some(ErrorCode::NotFound));
    let e = app
        .api
        .change_group(
            alice.token(),
            &g,
            &ConversationChange {
                title: None,
                avatar: Some(Some(
                    app.api
                        .upload(bob.token(), jpeg(64, 64), None)
                        .await
                        .unwrap()
                        .id,
                )),
            },
        )
        .await;
    assert_eq!(code(e), Some(ErrorCode::NotFound), "someone else's file");

    // Roles: alice makes bob an admin; bob can now rename; the member update and the line
    // reach everyone.
    let conv = app
        .api
        .set_role(alice.token(), &g, &b, Role::Admin)
        .await
        .unwrap();
    assert!(conv.admins.contains(&b));
    let promoted = carol
        .next_update(|u| {
            matches!(
                &u.body,
                UpdateBody::Member {
                    action: MemberAction::Promoted,
                    ..
                }
            )
        })
        .await;
    assert!(
        matches!(promoted.body, UpdateBody::Member { users, by, .. } if users == vec![b.clone()] && by == a)
    );
    let line = line_of(&mut carol, &g, SystemEvent::RoleChanged).await;
    assert!(
        matches!(&line.content, Content::System { users, role: Some(r), .. } if *users == vec![b.clone()] && r == "admin")
    );
    app.api
        .change_group(bob.token(), &g, &rename(Some("bob's trip")))
        .await
        .unwrap();
    // The same role again changes nothing.
    let before = app
        .api
        .conversation(alice.token(), &g)
        .await
        .unwrap()
        .last_seq;
    app.api
        .set_role(alice.token(), &g, &b, Role::Admin)
        .await
        .unwrap();
    assert_eq!(
        app.api
            .conversation(alice.token(), &g)
            .await
            .unwrap()
            .last_seq,
        before
    );
    // Bob takes alice's role away; the only admin left cannot step down.
    app.api
        .set_role(bob.token(), &g, &a, Role::Member)
        .await
        .unwrap();
    let e = app.api.set_role(bob.token(), &g, &b, Role::Member).await;
    assert_eq!(code(e), Some(ErrorCode::BadRequest));
    let e = app
        .api
        .set_role(bob.token(), &g, &dave.session.user, Role::Admin)
        .await;
    assert_eq!(code(e), Some(ErrorCode::NotFound), "not a member");

    // The last admin leaves: a line says so, and the longest-standing member becomes admin,
    // another line.
    app.api.remove_member(bob.token(), &g, &b).await.unwrap();
    let left = line_of(&mut carol, &g, SystemEvent::Left).await;
    assert_eq!(left.sender, b);
    let heir = system_line(&mut carol, &g).await;
    assert_eq!(heir.seq, left.seq + 1);
    assert!(
        matches!(&heir.content, Content::System { event: SystemEvent::RoleChanged, users, .. } if *users == vec![a.clone()])
    );
    let conv = app.api.conversation(carol.token(), &g).await.unwrap();
    assert_eq!(conv.admins, vec![a.clone()]);
    // alice removes carol: a `removed` line, which carol gets too, then nothing more.
    app.api.remove_member(alice.token(), &g, &c).await.unwrap();
    let removed = system_line(&mut carol, &g).await;
    assert_eq!(event(&removed), (SystemEvent::Removed, vec![c.clone()]));
    let e = app.api.conversation(carol.token(), &g).await;
    assert_eq!(code(e), Some(ErrorCode::NotMember));

    // History holds every line, gapless, oldest first when reversed.
    let page = app.api.history(alice.token(), &g, None, 50).await.unwrap();
    let seqs: Vec<i64> = page.messages.iter().rev().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    let events: Vec<SystemEvent> = page.messages.iter().rev().map(|m| event(m).0).collect();
    use SystemEvent::*;
    assert_eq!(
        events,
        vec![
            Created,
            TitleChanged,
            AvatarChanged,
            RoleChanged,
            TitleChanged,
            RoleChanged,
            Left,
            RoleChanged,
            Removed
        ]
    );
    // System lines are neither editable, deletable for everyone, nor reactable.
    let e = alice
        .client
        .delete(
            &created.id,
            courier_client::protocol::update::DeleteScope::Everyone,
        )
        .await;
    assert_eq!(code(e), Some(ErrorCode::InvalidMessage));
    let e = alice.client.react(&created.id, "👍", true).await;
    assert_eq!(code(e), Some(ErrorCode::InvalidMessage));
}
