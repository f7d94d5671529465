//! The HTTP API: accounts, conversations, members, history, errors.

use crate::helpers::{spawn_app, Db};
use courier_client::protocol::http::ConvKind;
use courier_client::protocol::{ErrorCode, UpdateBody};
use reqwest::{Method, StatusCode};
use serde_json::json;

crate::on_both_databases!(accounts_and_errors, conversations_members_and_history);

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
    let (status, _) = api
        .raw(
            api.request(
                Method::POST,
                &format!("/conversations/{}/members", g.id),
                Some(b.token()),
            )
            .json(&json!({"members":[c.session.user]})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api
        .raw(
            api.request(
                Method::POST,
                &format!("/conversations/{}/members", g.id),
                Some(a.token()),
            )
            .json(&json!({"members":[c.session.user, d.session.user]})),
        )
        .await
        .unwrap();
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

    // History: newest first, keyset pages by seq.
    for n in 1..=7 {
        a.client.send_text(&g.id, &format!("m{n}")).await.unwrap();
    }
    let p1 = api.history(c.token(), &g.id, None, 3).await.unwrap();
    let seqs: Vec<i64> = p1.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [7, 6, 5]);
    let p2 = api
        .history(c.token(), &g.id, p1.next_before, 3)
        .await
        .unwrap();
    assert_eq!(
        p2.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [4, 3, 2]
    );
    let p3 = api
        .history(c.token(), &g.id, p2.next_before, 3)
        .await
        .unwrap();
    assert_eq!(p3.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [1]);
    assert_eq!(p3.next_before, None);

    // Listing: unread counts per member; the sender has read their own messages.
    let list = api.conversations(c.token()).await.unwrap();
    let group = list.iter().find(|x| x.id == g.id).unwrap();
    assert_eq!((group.last_seq, group.read_seq, group.unread), (7, 0, 7));
    assert_eq!(group.members.len(), 3);
    c.client.read(&g.id, 5).await.unwrap();
    let list = api.conversations(c.token()).await.unwrap();
    let group = list.iter().find(|x| x.id == g.id).unwrap();
    assert_eq!(group.unread, 2);
    let list = api.conversations(a.token()).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().find(|x| x.id == g.id).unwrap().unread, 0);
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
}
