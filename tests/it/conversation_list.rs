//! The conversation list and each member's own settings (#17 items 1, 2, 5 and 6): pinned
//! first, then by activity, paged with an opaque cursor; archived ones apart until a new
//! message (unless muted); mute, pin (at most 5), archive and marked unread reach the user's
//! other devices; mentions show on the listing until read; muted conversations push only
//! mentions, and the badge leaves them out.

use crate::helpers::{refusal as code, spawn_app, spawn_app_with, Db, Device};
use crate::push::{notices, receiver, until};
use courier_client::protocol::http::{ConvSettings, Conversation, PushNotice, SettingsPatch};
use courier_client::protocol::{ConvId, ErrorCode, UpdateBody};
use courier_client::text_req;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

crate::on_both_databases!(
    the_list_pages_by_activity_with_pinned_first_and_archived_apart,
    settings_reach_the_users_devices_and_follow_new_messages,
    mentions_show_until_read,
    muted_conversations_push_only_mentions
);

fn patch(v: serde_json::Value) -> SettingsPatch {
    serde_json::from_value(v).unwrap()
}

/// Every page of the list (archived or not), `limit` at a time.
async fn pages(
    app: &crate::helpers::TestApp,
    d: &Device,
    archived: bool,
    limit: u32,
) -> Vec<Conversation> {
    let mut all = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = app
            .api
            .conversations_page(d.token(), archived, before.as_deref(), limit)
            .await
            .unwrap();
        assert!(page.conversations.len() <= limit as usize);
        all.extend(page.conversations);
        match page.next_before {
            Some(b) => before = Some(b),
            None => return all,
        }
    }
}

async fn the_list_pages_by_activity_with_pinned_first_and_archived_apart(db: Db) {
    const N: usize = 250;
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let bob = app.tcp_device("bob", "phone").await;
    app.accept_group_adds(bob.token()).await;
    let mut groups: Vec<ConvId> = Vec::with_capacity(N);
    for i in 0..N {
        let c = app
            .api
            .create_group(
                alice.token(),
                &format!("g{i}"),
                std::slice::from_ref(&bob.session.user),
            )
            .await
            .unwrap();
        groups.push(c.id);
    }
    // Ten groups get a message, a few ms apart, in a known order: the last first.
    let active: Vec<usize> = vec![17, 203, 5, 99, 140, 0, 249, 61, 188, 33];
    for &i in &active {
        tokio::time::sleep(Duration::from_millis(3)).await;
        bob.client.send_text(&groups[i], "hello").await.unwrap();
    }
    // Two pinned (the least active ones), three archived.
    for i in [1, 2] {
        app.api
            .conversation_settings(alice.token(), &groups[i], &patch(json!({"pinned": true})))
            .await
            .unwrap();
    }
    for i in [3, 4, 203] {
        app.api
            .conversation_settings(alice.token(), &groups[i], &patch(json!({"archived": true})))
            .await
            .unwrap();
    }

    let listed = pages(&app, &alice, false, 37).await;
    let ids: Vec<&ConvId> = listed.iter().map(|c| &c.id).collect();
    assert_eq!(ids.len(), N - 3);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        N - 3,
        "no conversation twice"
    );
    // Pinned first (the more recently active of the two first), then the active ones newest
    // first (203 is archived), then the rest, by activity.
    assert!(listed[..2].iter().all(|c| c.settings.pinned));
    let mut expected_active: Vec<&ConvId> = active
        .iter()
        .rev()
        .filter(|&&i| i != 203)
        .map(|&i| &groups[i])
        .collect();
    expected_active.dedup();
    assert_eq!(&ids[2..2 + expected_active.len()], &expected_active[..]);
    let rest = &listed[2 + expected_active.len()..];
    assert!(rest
        .windows(2)
        .all(|w| (w[0].activity, &w[0].id) > (w[1].activity, &w[1].id)));
    assert!(listed.iter().all(|c| !c.settings.archived));
    // The archived list holds the three.
    let archived = pages(&app, &alice, true, 2).await;
    let mut got: Vec<&ConvId> = archived.iter().map(|c| &c.id).collect();
    got.sort();
    let mut want = vec![&groups[3], &groups[4], &groups[203]];
    want.sort();
    assert_eq!(got, want);
    assert!(archived.iter().all(|c| c.settings.archived));
    // A cursor that is not one is refused.
    for bad in ["x", "1.2", "2.5.c_x", "0.zz.cabc", "0.1.c/../x"] {
        let e = app
            .api
            .conversations_page(alice.token(), false, Some(bad), 10)
            .await;
        assert_eq!(code(e), Some(ErrorCode::BadRequest), "{bad}");
    }
    // Bob's list is his own: none pinned or archived.
    let bobs = pages(&app, &bob, false, 100).await;
    assert_eq!(bobs.len(), N);
    assert!(bobs.iter().all(|c| c.settings == ConvSettings::default()));
}

async fn settings_reach_the_users_devices_and_follow_new_messages(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "eve"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let mut laptop = app.tcp_device("alice", "laptop").await;
    let bob = app.tcp_device("bob", "phone").await;
    let eve = app.tcp_device("eve", "phone").await;
    let conv = app.direct(&alice, &bob).await;

    // Mute for an hour: the other device hears it as a `settings` update; bob hears nothing.
    let until_ms = chrono_now() + 3_600_000;
    let c = app
        .api
        .conversation_settings(
            alice.token(),
            &conv,
            &patch(json!({"muted_until": until_ms})),
        )
        .await
        .unwrap();
    assert_eq!(c.settings.muted_until, Some(until_ms));
    let u = laptop
        .next_update(|u| matches!(u.body, UpdateBody::Settings { .. }))
        .await;
    assert!(
        matches!(&u.body, UpdateBody::Settings { conv: cv, settings } if *cv == conv && settings.muted_until == Some(until_ms))
    );
    // Archive while muted: a new message keeps it archived.
    app.api
        .conversation_settings(alice.token(), &conv, &patch(json!({"archived": true})))
        .await
        .unwrap();
    let sent = bob.client.send_text(&conv, "still here").await.unwrap();
    let c = app.api.conversation(alice.token(), &conv).await.unwrap();
    assert!(c.settings.archived, "muted: stays archived");
    // Unmuted (null), the next message un-archives it.
    let c = app
        .api
        .conversation_settings(alice.token(), &conv, &patch(json!({"muted_until": null})))
        .await
        .unwrap();
    assert_eq!(c.settings.muted_until, None);
    assert!(c.settings.archived);
    bob.client.send_text(&conv, "and again").await.unwrap();
    let c = app.api.conversation(alice.token(), &conv).await.unwrap();
    assert!(!c.settings.archived, "a new message un-archives");
    // Muted again, it does not fall back into the archive.
    let c = app
        .api
        .conversation_settings(alice.token(), &conv, &patch(json!({"muted_until": -1})))
        .await
        .unwrap();
    assert_eq!(
        (c.settings.muted_until, c.settings.archived),
        (Some(-1), false)
    );

    // Marked unread, cleared by reading.
    let c = app
        .api
        .conversation_settings(alice.token(), &conv, &patch(json!({"marked_unread": true})))
        .await
        .unwrap();
    assert!(c.settings.marked_unread);
    alice.client.read(&conv, sent.seq).await.unwrap();
    let u = laptop
        .next_update(|u| matches!(&u.body, UpdateBody::Settings { settings, .. } if !settings.marked_unread && settings.muted_until == Some(-1)))
        .await;
    assert!(matches!(u.body, UpdateBody::Settings { .. }));
    assert!(
        !app.api
            .conversation(alice.token(), &conv)
            .await
            .unwrap()
            .settings
            .marked_unread
    );

    // At most five pinned.
    app.accept_group_adds(bob.token()).await;
    let mut more = Vec::new();
    for i in 0..5 {
        more.push(
            app.api
                .create_group(
                    alice.token(),
                    &format!("p{i}"),
                    std::slice::from_ref(&bob.session.user),
                )
                .await
                .unwrap()
                .id,
        );
    }
    for c in &more {
        app.api
            .conversation_settings(alice.token(), c, &patch(json!({"pinned": true})))
            .await
            .unwrap();
    }
    let e = app
        .api
        .conversation_settings(alice.token(), &conv, &patch(json!({"pinned": true})))
        .await;
    assert_eq!(code(e), Some(ErrorCode::BadRequest));
    app.api
        .conversation_settings(alice.token(), &more[0], &patch(json!({"pinned": false})))
        .await
        .unwrap();
    app.api
        .conversation_settings(alice.token(), &conv, &patch(json!({"pinned": true})))
        .await
        .unwrap();
    // Pinning again is no change.
    app.api
        .conversation_settings(alice.token(), &conv, &patch(json!({"pinned": true})))
        .await
        .unwrap();

    // Refusals: a stranger, bad values, unknown fields.
    let e = app
        .api
        .conversation_settings(eve.token(), &conv, &patch(json!({"pinned": true})))
        .await;
    assert_eq!(code(e), Some(ErrorCode::NotMember));
    let e = app
        .api
        .conversation_settings(alice.token(), &conv, &patch(json!({"muted_until": -5})))
        .await;
    assert_eq!(code(e), Some(ErrorCode::BadRequest));
    for body in [json!({"pinned": "yes"}), json!({"volume": 3}), json!([1])] {
        let (status, _) = app
            .api
            .raw(
                app.api
                    .request(
                        reqwest::Method::PATCH,
                        &format!("/conversations/{conv}/settings"),
                        Some(alice.token()),
                    )
                    .json(&body),
            )
            .await
            .unwrap();
        assert_eq!(status, 400, "{body}");
    }
    let c = app.api.conversation(alice.token(), &conv).await.unwrap();
    assert_eq!(
        c.settings,
        ConvSettings {
            muted_until: Some(-1),
            pinned: true,
            archived: false,
            marked_unread: false
        }
    );
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn mentions_show_until_read(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "carol", "eve"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let bob = app.tcp_device("bob", "phone").await;
    let carol = app.tcp_device("carol", "phone").await;
    let eve = app.tcp_device("eve", "phone").await;
    let g = app.group(&alice, "team", &[&bob, &carol]).await;
    let mention = |conv: &ConvId, text: &str, who: Vec<String>| {
        let mut r = text_req(conv, &format!("m-{text}"), text);
        r.mentions = Some(who);
        r
    };

    // bob mentions carol: her listing says so until she reads past it; alice's does not.
    let sent = bob
        .client
        .send(&mention(
            &g,
            "carol look",
            vec![carol.session.user.to_string()],
        ))
        .await
        .unwrap();
    let m = app
        .api
        .history(carol.token(), &g, None, 1)
        .await
        .unwrap()
        .messages
        .remove(0);
    assert!(
        matches!(&m.content, courier_client::protocol::update::Content::Text { mentions, .. } if *mentions == vec![carol.session.user.to_string()])
    );
    assert!(
        app.api
            .conversation(carol.token(), &g)
            .await
            .unwrap()
            .mentioned
    );
    assert!(
        !app.api
            .conversation(alice.token(), &g)
            .await
            .unwrap()
            .mentioned
    );
    carol.client.read(&g, sent.seq).await.unwrap();
    assert!(
        !app.api
            .conversation(carol.token(), &g)
            .await
            .unwrap()
            .mentioned
    );
    // An edit keeps the mentions.
    bob.client.edit(&sent.msg, "carol, look!").await.unwrap();
    let m = app
        .api
        .history(carol.token(), &g, None, 1)
        .await
        .unwrap()
        .messages
        .remove(0);
    assert!(
        matches!(&m.content, courier_client::protocol::update::Content::Text { mentions, text } if mentions.len() == 1 && text == "carol, look!")
    );

    // Refused: a non-member, @all from a non-admin, more than 50, not an id; nothing stored.
    let last = app
        .api
        .conversation(alice.token(), &g)
        .await
        .unwrap()
        .last_seq;
    let e = bob
        .client
        .send(&mention(&g, "x1", vec![eve.session.user.to_string()]))
        .await;
    assert_eq!(code(e), Some(ErrorCode::InvalidMessage));
    let e = bob
        .client
        .send(&mention(&g, "x2", vec!["@all".into()]))
        .await;
    assert_eq!(code(e), Some(ErrorCode::Forbidden));
    let e = bob
        .client
        .send(&mention(
            &g,
            "x3",
            (0..51).map(|i| format!("u{i}")).collect(),
        ))
        .await;
    assert_eq!(code(e), Some(ErrorCode::InvalidMessage));
    let e = bob
        .client
        .send(&mention(&g, "x4", vec!["not an id!".into()]))
        .await;
    assert_eq!(code(e), Some(ErrorCode::InvalidMessage));
    let mut sticker: courier_client::protocol::ops::SendReq = serde_json::from_value(
        json!({"conv": g, "cmid": "s1", "kind": "sticker", "sticker": "cat"}),
    )
    .unwrap();
    sticker.mentions = Some(vec![carol.session.user.to_string()]);
    let e = bob.client.send(&sticker).await;
    assert_eq!(code(e), Some(ErrorCode::InvalidMessage));
    assert_eq!(
        app.api
            .conversation(alice.token(), &g)
            .await
            .unwrap()
            .last_seq,
        last
    );

    // @all from the admin mentions everyone but her.
    alice
        .client
        .send(&mention(&g, "all hands", vec!["@all".into()]))
        .await
        .unwrap();
    assert!(
        app.api
            .conversation(bob.token(), &g)
            .await
            .unwrap()
            .mentioned
    );
    assert!(
        app.api
            .conversation(carol.token(), &g)
            .await
            .unwrap()
            .mentioned
    );
    assert!(
        !app.api
            .conversation(alice.token(), &g)
            .await
            .unwrap()
            .mentioned
    );
}

async fn muted_conversations_push_only_mentions(db: Db) {
    let (url, rx) = receiver().await;
    let app = spawn_app_with(db, |s| s.push_webhook = Some(url)).await;
    app.users(&["alice", "bob", "carol"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let carol = app.tcp_device("carol", "phone").await;
    let bob_phone = app.session("bob", "phone").await;
    app.api
        .set_push_token(
            &bob_phone.token,
            bob_phone.device.as_str(),
            "fcm",
            "bob-token",
        )
        .await
        .unwrap();
    app.accept_group_adds(&bob_phone.token).await;
    app.accept_group_adds(carol.token()).await;
    let g = app
        .api
        .create_group(
            alice.token(),
            "noisy",
            &[bob_phone.user.clone(), carol.session.user.clone()],
        )
        .await
        .unwrap()
        .id;
    let direct = app
        .api
        .create_direct(carol.token(), &bob_phone.user)
        .await
        .unwrap()
        .id;
    app.api
        .conversation_settings(&bob_phone.token, &g, &patch(json!({"muted_until": -1})))
        .await
        .unwrap();

    // The first POST is refused with 503 and retried: wait for a direct message's notice.
    carol.client.send_text(&direct, "hi bob").await.unwrap();
    until("the direct message's notice", || notices(&rx).len() >= 2).await;
    // Messages in the muted group send nothing.
    alice.client.send_text(&g, "chatter").await.unwrap();
    alice.client.send_text(&g, "more chatter").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls: Vec<PushNotice> = notices(&rx)
        .iter()
        .map(|(_, b)| serde_json::from_str(b).unwrap())
        .collect();
    assert!(calls.iter().all(|n| n.conv == direct), "{calls:?}");
    let seen = calls.len();
    // A mention in the muted group does, marked as one; the badge leaves the muted group's
    // unread messages out.
    let mut r = text_req(&g, "mention-bob", "bob?");
    r.mentions = Some(vec![bob_phone.user.to_string()]);
    carol.client.send(&r).await.unwrap();
    until("the mention's notice", || notices(&rx).len() > seen).await;
    let n: PushNotice = serde_json::from_str(&notices(&rx)[seen].1).unwrap();
    assert_eq!(n.conv, g);
    assert!(n.mentioned);
    assert_eq!(n.unread, 3);
    assert_eq!(n.badge, 1, "only the direct conversation counts");
}
