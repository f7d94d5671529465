//! Edit, delete for me, delete for everyone, reactions, replies and forwards: validated, seen
//! live as updates, in history and in sync, and reflected in unread counts.

use crate::helpers::{spawn_app, spawn_app_with, Db, Device};
use courier_client::protocol::update::{Content, DeleteScope};
use courier_client::protocol::{ErrorCode, Message, MsgId, Update, UpdateBody};
use courier_client::{text_req, ClientError};
use std::time::Duration;

crate::on_both_databases!(changes_are_validated_and_synced, edit_window_closes);

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(e) => e.code().unwrap_or_else(|| panic!("no server code: {e}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

fn is_change(u: &Update) -> bool {
    matches!(
        u.body,
        UpdateBody::Edit { .. } | UpdateBody::Delete { .. } | UpdateBody::Reaction { .. }
    )
}

/// The changes this device sees within a short while.
async fn changes(d: &mut Device) -> Vec<UpdateBody> {
    d.drain_for(Duration::from_millis(1200))
        .await
        .into_iter()
        .filter_map(|e| match e {
            courier_client::Event::Update(u) if is_change(&u) => Some(u.body),
            _ => None,
        })
        .collect()
}

fn by_seq(msgs: &[Message], seq: i64) -> &Message {
    msgs.iter().find(|m| m.seq == seq).expect("message in page")
}

async fn changes_are_validated_and_synced(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "carol", "dave"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let mut bob_laptop = app.tcp_device("bob", "laptop").await;
    let mut carol = app.tcp_device("carol", "phone").await;
    let dave = app.tcp_device("dave", "phone").await;
    let group = app.group(&alice, "trip", &[&bob, &carol]).await;
    let hello = alice.client.send_text(&group, "hello").await.unwrap();
    let typo = alice.client.send_text(&group, "tpyo").await.unwrap();

    // Reactions: one per user per emoji; repeats change nothing.
    let r = bob.client.react(&hello.msg, "👍", true).await.unwrap();
    assert_eq!((r.seq, r.on), (2, true));
    bob.client.react(&hello.msg, "👍", true).await.unwrap();
    carol.client.react(&hello.msg, "👍", true).await.unwrap();
    carol.client.react(&hello.msg, "❤️", true).await.unwrap();
    carol.client.react(&hello.msg, "❤️", false).await.unwrap();
    carol.client.react(&hello.msg, "🎉", true).await.unwrap();
    assert_eq!(
        code(bob.client.react(&hello.msg, "not an emoji", true).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(dave.client.react(&hello.msg, "👍", true).await),
        ErrorCode::NotFound
    );
    let seen = changes(&mut alice).await;
    let reactions: Vec<_> = seen
        .iter()
        .filter_map(|b| match b {
            UpdateBody::Reaction {
                user, emoji, on, ..
            } => Some((user.to_string(), emoji.clone(), *on)),
            _ => None,
        })
        .collect();
    let (b, c) = (bob.session.user.to_string(), carol.session.user.to_string());
    assert_eq!(
        reactions,
        vec![
            (b.clone(), "👍".into(), true),
            (c.clone(), "👍".into(), true),
            (c.clone(), "❤️".into(), true),
            (c.clone(), "❤️".into(), false),
            (c.clone(), "🎉".into(), true),
        ],
        "one update per real change, none for repeats"
    );

    // Edits: only the sender, only text, valid text; the same text again is no change.
    assert_eq!(
        code(bob.client.edit(&typo.msg, "typo").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(alice.client.edit(&typo.msg, "  ").await),
        ErrorCode::InvalidMessage
    );
    assert_eq!(
        code(dave.client.edit(&typo.msg, "typo").await),
        ErrorCode::NotFound
    );
    let unknown = MsgId::parse("mnosuchmessage").unwrap();
    assert_eq!(
        code(alice.client.edit(&unknown, "x").await),
        ErrorCode::NotFound
    );
    let edited = alice.client.edit(&typo.msg, "typo").await.unwrap();
    assert_eq!(edited.seq, 3);
    let again = alice.client.edit(&typo.msg, "typo").await.unwrap();
    assert_eq!(again.edited_at, edited.edited_at);
    for d in [&mut bob, &mut carol] {
        let edits: Vec<_> = changes(d)
            .await
            .into_iter()
            .filter(|b| matches!(b, UpdateBody::Edit { .. }))
            .collect();
        assert_eq!(edits.len(), 1, "one edit update");
        assert!(
            matches!(&edits[0], UpdateBody::Edit { text, seq: 3, .. } if text == "typo"),
            "{edits:?}"
        );
    }

    // Delete for me: any member, seen only by their own devices.
    let hidden = bob
        .client
        .delete(&hello.msg, DeleteScope::Me)
        .await
        .unwrap();
    assert_eq!(hidden.scope, DeleteScope::Me);
    let on_laptop = changes(&mut bob_laptop).await;
    assert!(
        on_laptop.iter().any(|b| matches!(
            b,
            UpdateBody::Delete {
                scope: DeleteScope::Me,
                seq: 2,
                ..
            }
        )),
        "bob's other device hears of it: {on_laptop:?}"
    );
    assert!(
        !changes(&mut alice)
            .await
            .iter()
            .any(|b| matches!(b, UpdateBody::Delete { .. })),
        "nobody else does"
    );

    // Delete for everyone: only the sender.
    assert_eq!(
        code(bob.client.delete(&typo.msg, DeleteScope::Everyone).await),
        ErrorCode::Forbidden
    );
    alice
        .client
        .delete(&typo.msg, DeleteScope::Everyone)
        .await
        .unwrap();
    alice
        .client
        .delete(&typo.msg, DeleteScope::Everyone)
        .await
        .unwrap();
    let seen = changes(&mut carol).await;
    let deletes = seen
        .iter()
        .filter(|b| {
            matches!(
                b,
                UpdateBody::Delete {
                    scope: DeleteScope::Everyone,
                    seq: 3,
                    ..
                }
            )
        })
        .count();
    assert_eq!(deletes, 1, "{seen:?}");
    assert_eq!(
        code(alice.client.edit(&typo.msg, "back").await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(carol.client.react(&typo.msg, "👍", true).await),
        ErrorCode::NotFound
    );

    // Replies and forwards.
    let mut reply = text_req(&group, "bob-reply-1", "welcome");
    reply.reply_to = Some(hello.msg.clone());
    let reply = bob.client.send(&reply).await.unwrap();
    let direct = app.direct(&bob, &alice).await;
    let mut fwd = text_req(&direct, "bob-fwd-1", "hello");
    fwd.forward_of = Some(typo.msg.clone());
    assert_eq!(code(bob.client.send(&fwd).await), ErrorCode::NotFound);
    fwd.forward_of = Some(hello.msg.clone());
    let mut fwd_dave = fwd.clone();
    fwd_dave.conv = app.direct(&dave, &alice).await;
    fwd_dave.cmid = "dave-fwd-1".into();
    assert_eq!(
        code(dave.client.send(&fwd_dave).await),
        ErrorCode::NotFound,
        "cannot forward what you cannot see"
    );
    bob.client.send(&fwd).await.unwrap();
    let mut cross = text_req(&direct, "bob-reply-2", "x");
    cross.reply_to = Some(hello.msg.clone());
    assert_eq!(code(bob.client.send(&cross).await), ErrorCode::BadRequest);

    // History as each member sees it.
    let page = app
        .api
        .history(alice.token(), &group, None, 50)
        .await
        .unwrap();
    let first = by_seq(&page.messages, 2);
    assert_eq!(
        first.content,
        Content::Text {
            text: "hello".into(),
            mentions: vec![]
        }
    );
    let summary: Vec<(String, usize)> = first
        .reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.users.len()))
        .collect();
    assert_eq!(summary, vec![("🎉".into(), 1), ("👍".into(), 2)]);
    let second = by_seq(&page.messages, 3);
    assert_eq!(second.content, Content::Deleted {});
    assert_eq!(second.deleted, Some(DeleteScope::Everyone));
    assert!(second.edited_at.is_some());
    assert_eq!(by_seq(&page.messages, 4).reply_to, Some(hello.msg.clone()));
    let bobs = app
        .api
        .history(bob.token(), &group, None, 50)
        .await
        .unwrap();
    let first = by_seq(&bobs.messages, 2);
    assert_eq!(first.content, Content::Deleted {});
    assert_eq!(first.deleted, Some(DeleteScope::Me));
    assert!(first.reactions.is_empty());

    // Unread: carol read nothing — "hello" and the reply; the deleted one does not count.
    let unread = |list: Vec<courier_client::protocol::http::Conversation>| {
        list.into_iter()
            .find(|c| c.id == group)
            .map(|c| c.unread)
            .unwrap()
    };
    assert_eq!(
        unread(app.api.conversations(carol.token()).await.unwrap()),
        2
    );
    assert_eq!(
        unread(app.api.conversations(alice.token()).await.unwrap()),
        1
    );
    assert_eq!(unread(app.api.conversations(bob.token()).await.unwrap()), 0);

    // A fresh device of bob's syncs everything: the message as bob sees it now, and each
    // change once.
    let fresh = app.tcp_device("bob", "tablet").await;
    let all = fresh.client.sync_all(0).await.unwrap();
    let msg1 = all
        .iter()
        .find_map(|u| match &u.body {
            UpdateBody::Message { msg } if msg.seq == 2 && msg.conv == group => Some(msg),
            _ => None,
        })
        .unwrap();
    assert_eq!(msg1.deleted, Some(DeleteScope::Me));
    let kinds = |pred: fn(&UpdateBody) -> bool| all.iter().filter(|u| pred(&u.body)).count();
    assert_eq!(kinds(|b| matches!(b, UpdateBody::Reaction { .. })), 5);
    assert_eq!(kinds(|b| matches!(b, UpdateBody::Edit { .. })), 1);
    assert_eq!(kinds(|b| matches!(b, UpdateBody::Delete { .. })), 2);
    assert_eq!(reply.seq, 4);
}

async fn edit_window_closes(db: Db) {
    let app = spawn_app_with(db, |s| s.edit_window = Duration::from_millis(300)).await;
    app.users(&["alice", "bob"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&alice, &bob).await;
    let sent = alice.client.send_text(&conv, "quick").await.unwrap();
    alice.client.edit(&sent.msg, "quick!").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        code(alice.client.edit(&sent.msg, "late").await),
        ErrorCode::TooLate
    );
    assert_eq!(
        code(alice.client.delete(&sent.msg, DeleteScope::Everyone).await),
        ErrorCode::TooLate
    );
    // Deleting for oneself has no window.
    bob.client.delete(&sent.msg, DeleteScope::Me).await.unwrap();
    let page = app
        .api
        .history(alice.token(), &conv, None, 10)
        .await
        .unwrap();
    assert_eq!(
        page.messages[0].content,
        Content::Text {
            text: "quick!".into(),
            mentions: vec![]
        }
    );
}
