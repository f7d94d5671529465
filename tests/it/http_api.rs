//! The HTTP API: accounts, conversations, members, history, errors.

use crate::helpers::{spawn_app, Db};
use courier_client::protocol::http::ConvKind;
use courier_client::protocol::update::MemberAction;
use courier_client::protocol::{ErrorCode, UpdateBody};
use reqwest::{Method, StatusCode};
use serde_json::json;

crate::on_both_databases!(
    accounts_and_errors,
    conversations_members_and_history,
    listing_works_for_a_user_in_ten_thousand_conversations
);

async fn accounts_and_errors(db: Db) {
    let app = spawn_app(db).await;
    let api = &app.api;
    api.sign_up("alice", "correct horse battery").await.unwrap();
    let err = api.sign_up("Alice", "another password").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UsernameTaken));
    for (name, pw) in [
        ("a", "long enough pw"),
        ("bad name!", "long enough pw"),
        ("carol", "short"),
    ] {
        let err = api.sign_up(name, pw).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{name}");
    }
    let err = api
        .log_in("alice", "wrong password", "phone", "ios")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadCredentials));
    let err = api
        .log_in("nobody", "wrong password", "phone", "ios")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadCredentials));
    let s = api
        .log_in("alice", "correct horse battery", "phone", "ios")
        .await
        .unwrap();
    assert!(s.mqtt.tcp.ends_with(&format!(":{}", app.addrs.mqtt.port())));
    assert!(s
        .mqtt
        .ws
        .ends_with(&format!(":{}/mqtt", app.addrs.mqtt_ws.port())));

    // Malformed bodies and missing auth are typed errors with the right status.
    let (status, body) = api
        .raw(
            api.request(Method::POST, "/users", None)
                .header("content-type", "application/json")
                .body("{nope"),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"]["code"],
        "bad_json"
    );
    let (status, _) = api
        .raw(
            api.request(Method::POST, "/users", None)
                .json(&json!({"username":"x"})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = api
        .raw(api.request(Method::GET, "/conversations", None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"]["code"],
        "unauthorized"
    );
    let (status, _) = api
        .raw(api.request(Method::GET, "/conversations", Some("not-a-token")))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .raw(
            api.request(Method::POST, "/users", None)
                .json(&json!({"username":"big","password":"x".repeat(100_000)})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = api
        .raw(api.request(Method::GET, "/nothing-here", None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// `POST /v1/conversations/{conv}/members` as the device with `token`: status and body.
async fn add_members(
    api: &courier_client::Api,
    conv: &courier_client::protocol::ConvId,
    token: &str,
    members: serde_json::Value,
) -> (StatusCode, Vec<u8>) {
    let path = format!("/conversations/{conv}/members");
    api.raw(
        api.request(Method::POST, &path, Some(token))
            .json(&json!({ "members": members })),
    )
    .await
    .unwrap()
}

async fn conversations_members_and_history(db: Db) {
    let app = spawn_app(db).await;
    for u in ["alice", "bob", "carol", "dave"] {
        app.user(u).await;
    }
    let mut a = app.tcp_device("alice", "phone").await;
    let b = app.tcp_device("bob", "phone").await;
    let mut c = app.tcp_device("carol", "phone").await;
    let d = app.tcp_device("dave", "phone").await;
    let api = &app.api;
    for member in [&b, &c, &d] {
        app.accept_group_adds(member.token()).await;
    }

    // Direct conversations are one per pair, whoever creates them.
    let d1 = api.create_direct(a.token(), &b.session.user).await.unwrap();
    let d2 = api.create_direct(b.token(), &a.session.user).await.unwrap();
    assert_eq!(d1.id, d2.id);
    assert_eq!(d1.kind, ConvKind::Direct);
    let err = api
        .create_direct(a.token(), &a.session.user)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    let err = api
        .create_direct(
            a.token(),
            &courier_client::protocol::UserId::parse("unosuchuser").unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));

    // A group: alice is admin; members learn about it on their stream.
    let g = api
        .create_group(a.token(), "team", std::slice::from_ref(&b.session.user))
        .await
        .unwrap();
    assert_eq!(g.admins, vec![a.session.user.clone()]);
    assert_eq!(g.title.as_deref(), Some("team"));
    let created = a
        .next_update(|u| matches!(&u.body, UpdateBody::Member { conv, .. } if *conv == g.id))
        .await;
    assert!(matches!(created.body, UpdateBody::Member { .. }));

    // Only admins change members.
    let (status, _) = add_members(api, &g.id, b.token(), json!([c.session.user])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = add_members(
        api,
        &g.id,
        a.token(),
        json!([c.session.user, d.session.user]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    c.next_update(|u| matches!(&u.body, UpdateBody::Member { conv, .. } if *conv == g.id))
        .await;
    let (status, _) = api
        .raw(api.request(
            Method::DELETE,
            &format!("/conversations/{}/members/{}", g.id, d.session.user),
            Some(a.token()),
        ))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let err = api.history(d.token(), &g.id, None, 10).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotMember));
    let err = d.client.send_text(&g.id, "still in?").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotMember));

    // History: newest first, keyset pages by seq, after the system lines of the changes above.
    let base = api.conversation(c.token(), &g.id).await.unwrap().last_seq;
    for n in 1..=7 {
        a.client.send_text(&g.id, &format!("m{n}")).await.unwrap();
    }
    let p1 = api.history(c.token(), &g.id, None, 3).await.unwrap();
    let seqs: Vec<i64> = p1.messages.iter().map(|m| m.seq - base).collect();
    assert_eq!(seqs, [7, 6, 5]);
    let p2 = api
        .history(c.token(), &g.id, p1.next_before, 3)
        .await
        .unwrap();
    assert_eq!(
        p2.messages.iter().map(|m| m.seq - base).collect::<Vec<_>>(),
        [4, 3, 2]
    );
    let p3 = api
        .history(c.token(), &g.id, p2.next_before, 50)
        .await
        .unwrap();
    let rest: Vec<i64> = p3.messages.iter().map(|m| m.seq).collect();
    assert_eq!(rest, (1..=base + 1).rev().collect::<Vec<_>>());
    assert!(p3.messages[1..]
        .iter()
        .all(|m| m.content.kind() == "system"));
    assert_eq!(p3.next_before, None);

    // Listing: unread counts per member; the sender has read their own messages.
    let list = api.conversations(c.token()).await.unwrap();
    let group = list.iter().find(|x| x.id == g.id).unwrap();
    assert_eq!((group.last_seq, group.unread), (base + 7, 7));
    assert!(group.read_seq <= base);
    assert_eq!(group.members.len(), 3);
    c.client.read(&g.id, base + 5).await.unwrap();
    let list = api.conversations(c.token()).await.unwrap();
    let group = list.iter().find(|x| x.id == g.id).unwrap();
    assert_eq!(group.unread, 2);
    let list = api.conversations(a.token()).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().find(|x| x.id == g.id).unwrap().unread, 0);
    // The most recently active first: the group, until the direct conversation gets a message.
    let order = |list: &[courier_client::protocol::http::Conversation]| {
        list.iter().map(|x| x.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(order(&list), [g.id.clone(), d1.id.clone()]);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    a.client.send_text(&d1.id, "newer").await.unwrap();
    let list = api.conversations(a.token()).await.unwrap();
    assert_eq!(order(&list), [d1.id.clone(), g.id.clone()]);
    // Members can leave on their own.
    let (status, _) = api
        .raw(api.request(
            Method::DELETE,
            &format!("/conversations/{}/members/{}", g.id, c.session.user),
            Some(c.token()),
        ))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(api.conversations(c.token()).await.unwrap().is_empty());

    // The last admin leaving hands the group to its longest-standing member (bob), who hears
    // it on his stream and can manage the group.
    let (status, _) = api
        .raw(api.request(
            Method::DELETE,
            &format!("/conversations/{}/members/{}", g.id, a.session.user),
            Some(a.token()),
        ))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut b = b;
    let promoted = b
        .next_update(|u| {
            matches!(&u.body, UpdateBody::Member { conv, action: MemberAction::Promoted, .. }
                if *conv == g.id)
        })
        .await;
    let UpdateBody::Member { users, by, .. } = promoted.body else {
        unreachable!()
    };
    assert_eq!(
        (users, by),
        (vec![b.session.user.clone()], a.session.user.clone())
    );
    let list = api.conversations(b.token()).await.unwrap();
    let group = list.iter().find(|x| x.id == g.id).unwrap();
    assert_eq!(group.admins, vec![b.session.user.clone()]);
    let (status, _) = add_members(api, &g.id, b.token(), json!([d.session.user])).await;
    assert_eq!(status, StatusCode::OK);
}

/// A user in 10 000 conversations, each with a message from the other member, lists them all
/// with their newest message and unread count (no statement grows past what SQLite or
/// PostgreSQL take). The rows go straight into the database: 10 000 conversations over HTTP
/// would be what is measured instead.
async fn listing_works_for_a_user_in_ten_thousand_conversations(db: Db) {
    use backend::entity::{conversations, members, messages};
    use courier_client::protocol::update::Content;
    use sea_orm::{EntityTrait, Set};
    const N: usize = 10_000;
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let alice = app.session("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    let conn = sea_orm::Database::connect(&app.settings.database_url())
        .await
        .unwrap();
    let text = serde_json::to_string(&Content::Text {
        text: "hi".into(),
        mentions: vec![],
    })
    .unwrap();
    let ids: Vec<usize> = (0..N).collect();
    for chunk in ids.chunks(500) {
        let conv = |i: usize| format!("cbulk{i:05}");
        conversations::Entity::insert_many(chunk.iter().map(|&i| conversations::ActiveModel {
            id: Set(conv(i)),
            kind: Set("group".into()),
            title: Set(Some(format!("group {i}"))),
            direct_key: Set(None),
            created_by: Set(alice.user.to_string()),
            last_seq: Set(1),
            created_at: Set(i as i64),
            avatar_file: Set(None),
            avatar_at: Set(None),
            last_at: Set(i as i64),
        }))
        .exec(&conn)
        .await
        .unwrap();
        members::Entity::insert_many(chunk.iter().flat_map(|&i| {
            [(&alice.user, "admin"), (&bob.user, "member")].map(|(u, role)| members::ActiveModel {
                conv_id: Set(conv(i)),
                user_id: Set(u.to_string()),
                role: Set(role.into()),
                delivered_seq: Set(0),
                read_seq: Set(0),
                joined_at: Set(0),
                ..Default::default()
            })
        }))
        .exec(&conn)
        .await
        .unwrap();
        messages::Entity::insert_many(chunk.iter().map(|&i| messages::ActiveModel {
            id: Set(format!("mbulk{i:05}")),
            conv_id: Set(conv(i)),
            seq: Set(1),
            sender_id: Set(bob.user.to_string()),
            device_id: Set(bob.device.to_string()),
            cmid: Set(format!("bulk{i}")),
            kind: Set("text".into()),
            content: Set(text.clone()),
            reply_to: Set(None),
            forward_of: Set(None),
            created_at: Set(i as i64),
            edited_at: Set(None),
            deleted_at: Set(None),
        }))
        .exec(&conn)
        .await
        .unwrap();
    }
    let listed = app.api.conversations(&alice.token).await.unwrap();
    assert_eq!(listed.len(), N);
    // Paged in list order: the most recently active first.
    let expected: Vec<String> = (0..N).rev().map(|i| format!("cbulk{i:05}")).collect();
    let got: Vec<String> = listed.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(got, expected);
    assert!(listed
        .iter()
        .all(|c| c.unread == 1 && c.last_message.as_ref().is_some_and(|m| m.seq == 1)));
}
