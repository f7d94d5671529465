//! Blocking (#16 item 2): once alice blocks bob, neither can message the other directly
//! (`blocked`, nothing stored), bob cannot open a new direct conversation with her or put her
//! in a group, they hear no typing or presence from each other, and in a group they share
//! alice's devices get bob's new messages hidden — gapless, marked `hidden`, with no edit
//! revealing their text later — while everyone else sees them. Unblocking restores it all
//! for new traffic.

use crate::helpers::{refusal as code, spawn_app, Db, Device, TestApp};
use courier_client::protocol::ops::Ephemeral;
use courier_client::protocol::update::{Content, DeleteScope};
use courier_client::protocol::{ConvId, ErrorCode, Message, MsgId, UpdateBody, UserId};
use courier_client::Event;
use std::time::Duration;

crate::on_both_databases!(
    a_block_stops_messages_typing_presence_and_adds,
    blocks_are_listed_and_checked
);

/// The `message` update of `id` that `d` gets next.
async fn message(d: &mut Device, id: &MsgId) -> Message {
    let u = d
        .next_update(|u| matches!(&u.body, UpdateBody::Message { msg } if msg.id == *id))
        .await;
    let UpdateBody::Message { msg } = u.body else {
        unreachable!()
    };
    msg
}

/// Message `id` as `d`'s user sees it in `conv`'s history.
async fn in_history(app: &TestApp, d: &Device, conv: &ConvId, id: &MsgId) -> Message {
    let page = app.api.history(d.token(), conv, None, 10).await.unwrap();
    page.messages
        .into_iter()
        .find(|m| m.id == *id)
        .expect("in history")
}

/// Typing events from `who` heard by `d` within `dur`.
async fn typing_from(d: &mut Device, who: &UserId, dur: Duration) -> usize {
    d.drain_for(dur)
        .await
        .iter()
        .filter(|e| matches!(e, Event::Ephemeral(Ephemeral::Typing { user, .. }) if user == who))
        .count()
}

async fn a_block_stops_messages_typing_presence_and_adds(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "carol"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let mut carol = app.tcp_device("carol", "phone").await;
    let (a, b) = (alice.session.user.clone(), bob.session.user.clone());
    let direct = app.direct(&alice, &bob).await;
    let group = app.group(&carol, "trio", &[&alice, &bob]).await;
    bob.client.send_text(&direct, "before").await.unwrap();
    alice.next_message().await;

    let blocked = app.api.block(alice.token(), &b).await.unwrap();
    assert_eq!(
        (blocked.user.clone(), blocked.username.as_str()),
        (b.clone(), "bob")
    );

    // Direct messages, either way: refused, nothing stored.
    let e = bob.client.send_text(&direct, "let me in").await;
    assert_eq!(code(e), Some(ErrorCode::Blocked));
    let e = alice.client.send_text(&direct, "go away").await;
    assert_eq!(code(e), Some(ErrorCode::Blocked));
    let page = app
        .api
        .history(alice.token(), &direct, None, 50)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1, "{:?}", page.messages);
    // No new direct conversation, no group with her, either way.
    assert_eq!(
        code(app.api.create_direct(bob.token(), &a).await),
        Some(ErrorCode::Blocked)
    );
    app.accept_group_adds(alice.token()).await;
    let e = app
        .api
        .create_group(bob.token(), "sneaky", std::slice::from_ref(&a))
        .await;
    assert_eq!(code(e), Some(ErrorCode::Blocked));
    let e = app
        .api
        .create_group(alice.token(), "nope", std::slice::from_ref(&b))
        .await;
    assert_eq!(code(e), Some(ErrorCode::Blocked));
    // carol's own adds are not theirs to refuse: a group with both still works.
    app.api
        .create_group(carol.token(), "both", &[a.clone(), b.clone()])
        .await
        .unwrap();

    // Typing in the group they share: carol hears each of them, they never hear each other.
    bob.client.typing(&group, true).await.unwrap();
    alice.client.typing(&group, true).await.unwrap();
    let heard = carol.drain_for(Duration::from_millis(800)).await;
    let typists: Vec<String> = heard
        .iter()
        .filter_map(|e| match e {
            Event::Ephemeral(Ephemeral::Typing { user, .. }) => Some(user.to_string()),
            _ => None,
        })
        .collect();
    assert!(
        typists.contains(&a.to_string()) && typists.contains(&b.to_string()),
        "{typists:?}"
    );
    assert_eq!(
        typing_from(&mut alice, &b, Duration::from_millis(300)).await,
        0
    );
    assert_eq!(
        typing_from(&mut bob, &a, Duration::from_millis(300)).await,
        0
    );

    // Presence: bob going away reaches carol, never alice; listings leave it out.
    bob.client.disconnect().await;
    carol
        .next_event(|e| matches!(e, Event::Ephemeral(Ephemeral::Presence { user, online: false, .. }) if *user == b))
        .await;
    let alice_heard = alice.drain_for(Duration::from_millis(200)).await;
    assert!(
        !alice_heard
            .iter()
            .any(|e| matches!(e, Event::Ephemeral(Ephemeral::Presence { user, .. }) if *user == b)),
        "{alice_heard:?}"
    );
    let (client, events) =
        courier_client::Client::connect(courier_client::ClientOptions::tcp(&bob.session))
            .await
            .unwrap();
    (bob.client, bob.events) = (client, events);
    for (token, other) in [(alice.token(), &b), (bob.token(), &a)] {
        for c in app.api.conversations(token).await.unwrap() {
            assert!(
                c.presence.iter().all(|p| p.user != *other),
                "{:?}",
                c.presence
            );
        }
    }

    // In the group, bob's message reaches carol; alice gets it hidden, with its seq.
    let sent = bob.client.send_text(&group, "psst").await.unwrap();
    let msg = message(&mut carol, &sent.msg).await;
    assert_eq!(
        msg.content,
        Content::Text {
            text: "psst".into(),
            mentions: vec![]
        }
    );
    assert!(!msg.hidden);
    let msg = message(&mut alice, &sent.msg).await;
    assert!(msg.hidden, "{msg:?}");
    assert_eq!((msg.seq, msg.deleted), (sent.seq, Some(DeleteScope::Me)));
    assert_eq!(msg.content, Content::Deleted {});
    // The same in her history and her sync, and it is not unread.
    let hidden = in_history(&app, &alice, &group, &sent.msg).await;
    assert!(
        hidden.hidden && hidden.content == Content::Deleted {},
        "{hidden:?}"
    );
    let synced = alice.client.sync_all(0).await.unwrap();
    let in_sync = synced
        .iter()
        .find_map(|u| match &u.body {
            UpdateBody::Message { msg } if msg.id == sent.msg => Some(msg.clone()),
            _ => None,
        })
        .expect("in her log");
    assert!(in_sync.hidden && in_sync.content == Content::Deleted {});
    let listed = app.api.conversation(alice.token(), &group).await.unwrap();
    assert_eq!(listed.unread, 0);
    // An edit reaches carol, never alice.
    bob.client.edit(&sent.msg, "psst, edited").await.unwrap();
    carol
        .next_update(|u| matches!(&u.body, UpdateBody::Edit { msg, .. } if *msg == sent.msg))
        .await;
    let later = alice.drain_for(Duration::from_millis(300)).await;
    assert!(
        !later
            .iter()
            .any(|e| matches!(e, Event::Update(u) if matches!(&u.body, UpdateBody::Edit { .. }))),
        "{later:?}"
    );
    let hidden = in_history(&app, &alice, &group, &sent.msg).await;
    assert_eq!(hidden.content, Content::Deleted {}, "the edit stays hidden");

    // bob's reaction to carol's message reaches carol, never alice, and alice's history
    // leaves it out.
    let said = carol.client.send_text(&group, "lunch?").await.unwrap();
    message(&mut alice, &said.msg).await;
    bob.client.react(&said.msg, "👍", true).await.unwrap();
    carol
        .next_update(|u| matches!(&u.body, UpdateBody::Reaction { msg, .. } if *msg == said.msg))
        .await;
    let later = alice.drain_for(Duration::from_millis(300)).await;
    assert!(
        !later.iter().any(
            |e| matches!(e, Event::Update(u) if matches!(&u.body, UpdateBody::Reaction { .. }))
        ),
        "{later:?}"
    );
    assert!(in_history(&app, &alice, &group, &said.msg)
        .await
        .reactions
        .is_empty());
    let seen = in_history(&app, &carol, &group, &said.msg).await;
    assert_eq!(seen.reactions.len(), 1, "{seen:?}");
    assert_eq!(seen.reactions[0].users, vec![b.clone()]);

    // Unblocked: everything comes back for new traffic.
    app.api.unblock(alice.token(), &b).await.unwrap();
    let e = app.api.unblock(alice.token(), &b).await;
    assert_eq!(code(e), Some(ErrorCode::NotFound));
    bob.client
        .send_text(&direct, "friends again")
        .await
        .unwrap();
    let got = alice.next_message().await;
    let UpdateBody::Message { msg } = got.body else {
        unreachable!()
    };
    assert_eq!(
        msg.content,
        Content::Text {
            text: "friends again".into(),
            mentions: vec![]
        }
    );
    let sent = bob.client.send_text(&group, "hi all").await.unwrap();
    let msg = message(&mut alice, &sent.msg).await;
    assert!(
        !msg.hidden
            && msg.content
                == Content::Text {
                    text: "hi all".into(),
                    mentions: vec![]
                }
    );
    bob.client.typing(&group, false).await.unwrap();
    assert_eq!(
        typing_from(&mut alice, &b, Duration::from_millis(800)).await,
        1
    );
}

async fn blocks_are_listed_and_checked(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "carol"]).await;
    let alice = app.session("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    let carol = app.session("carol", "phone").await;
    app.api.block(&alice.token, &bob.user).await.unwrap();
    app.api.block(&alice.token, &carol.user).await.unwrap();
    // Blocking again changes nothing.
    let again = app.api.block(&alice.token, &bob.user).await.unwrap();
    let listed = app.api.blocks(&alice.token).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&again), "{listed:?}");
    let names: Vec<&str> = listed.iter().map(|b| b.username.as_str()).collect();
    assert!(
        names.contains(&"bob") && names.contains(&"carol"),
        "{names:?}"
    );
    // Only her own list; bob's is empty.
    assert!(app.api.blocks(&bob.token).await.unwrap().is_empty());
    // Herself, nobody, and no token.
    let e = app.api.block(&alice.token, &alice.user).await;
    assert_eq!(code(e), Some(ErrorCode::BadRequest));
    let ghost = UserId::parse("u_nobody_here").unwrap();
    let e = app.api.block(&alice.token, &ghost).await;
    assert_eq!(code(e), Some(ErrorCode::NotFound));
    let e = app.api.blocks("not-a-token").await;
    assert_eq!(code(e), Some(ErrorCode::Unauthorized));
    let e = app.api.unblock(&bob.token, &alice.user).await;
    assert_eq!(code(e), Some(ErrorCode::NotFound));
    app.api.unblock(&alice.token, &carol.user).await.unwrap();
    assert_eq!(app.api.blocks(&alice.token).await.unwrap().len(), 1);
}
