//! Bad requests get a typed error on `rsp`, store nothing, and the connection keeps working.

use crate::helpers::{spawn_app, Db, Device};
use courier_client::protocol::{ErrorCode, Response};
use courier_client::Event;
use serde_json::json;

crate::on_both_databases!(
    bad_requests_get_typed_errors_and_change_nothing,
    invalid_messages_per_kind
);

async fn raw(d: &mut Device, op: &str, payload: Vec<u8>) -> Response {
    let topic = format!("u/{}/d/{}/req/{op}", d.session.user, d.session.device);
    d.client.publish_raw(&topic, payload).await.unwrap();
    let deadline = tokio::time::Instant::now() + crate::helpers::WAIT;
    loop {
        match tokio::time::timeout_at(deadline, d.events.recv()).await {
            Ok(Some(Event::Unmatched(r))) => return r,
            Ok(Some(_)) => continue,
            _ => panic!("no answer to a bad {op} request"),
        }
    }
}

fn code(r: &Response) -> ErrorCode {
    assert!(!r.ok);
    r.error.as_ref().expect("error body").code
}

async fn bad_requests_get_typed_errors_and_change_nothing(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "carol"]).await;
    let mut a = app.tcp_device("alice", "phone").await;
    let b = app.tcp_device("bob", "phone").await;
    let c = app.tcp_device("carol", "phone").await;
    let conv = app.direct(&a, &b).await;
    let not_mine = app.direct(&b, &c).await;

    let r = raw(&mut a, "send", b"{not json".to_vec()).await;
    assert_eq!(
        (code(&r), r.id.clone()),
        (ErrorCode::BadJson, serde_json::Value::Null)
    );
    let r = raw(&mut a, "send", vec![0xff, 0xfe, 0x00]).await;
    assert_eq!(code(&r), ErrorCode::BadJson);
    let r = raw(&mut a, "frobnicate", br#"{"id":"x1"}"#.to_vec()).await;
    assert_eq!(
        (code(&r), r.id.clone()),
        (ErrorCode::UnknownOp, json!("x1"))
    );
    let r = raw(&mut a, "send", br#"{"id":"x2","conv":"c1"}"#.to_vec()).await;
    assert_eq!(
        (code(&r), r.id.clone()),
        (ErrorCode::BadRequest, json!("x2"))
    );
    let r = raw(
        &mut a,
        "send",
        br#"{"conv":"c1","cmid":"1","kind":"text","text":"no id"}"#.to_vec(),
    )
    .await;
    assert_eq!(code(&r), ErrorCode::BadRequest);
    let r = raw(&mut a, "send", b"[1,2]".to_vec()).await;
    assert_eq!(code(&r), ErrorCode::BadRequest);
    let big = json!({"id":"x3","conv":conv,"cmid":"big","kind":"text","text":"x".repeat(100_000)});
    let r = raw(&mut a, "send", serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(
        (code(&r), r.id.clone()),
        (ErrorCode::PayloadTooLarge, json!("x3"))
    );
    let r = raw(
        &mut a,
        "send",
        serde_json::to_vec(
            &json!({"id":"x4","conv":not_mine,"cmid":"nm","kind":"text","text":"hi"}),
        )
        .unwrap(),
    )
    .await;
    assert_eq!(code(&r), ErrorCode::NotMember);
    let r = raw(
        &mut a,
        "send",
        serde_json::to_vec(
            &json!({"id":"x5","conv":"cnosuchconversation","cmid":"nc","kind":"text","text":"hi"}),
        )
        .unwrap(),
    )
    .await;
    assert_eq!(code(&r), ErrorCode::NotMember);
    let r = raw(
        &mut a,
        "read",
        serde_json::to_vec(&json!({"id":"x6","conv":not_mine,"seq":1})).unwrap(),
    )
    .await;
    assert_eq!(code(&r), ErrorCode::NotMember);
    let r = raw(&mut a, "sync", br#"{"id":"x7","after":-5}"#.to_vec()).await;
    assert_eq!(code(&r), ErrorCode::BadRequest);
    let r = raw(&mut a, "ack", br#"{"id":"x8","useq":"many"}"#.to_vec()).await;
    assert_eq!(code(&r), ErrorCode::BadRequest);

    // Nothing was stored anywhere.
    for (token, conv) in [(a.token(), &conv), (b.token(), &not_mine)] {
        assert!(app
            .api
            .history(token, conv, None, 10)
            .await
            .unwrap()
            .messages
            .is_empty());
    }
    // The connection still works.
    let ack = a.client.send_text(&conv, "still here").await.unwrap();
    assert_eq!(ack.seq, 1);
}

async fn invalid_messages_per_kind(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let a = app.tcp_device("alice", "phone").await;
    let b = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&a, &b).await;
    let bad = [
        (
            json!({"kind":"text","text":"   "}),
            ErrorCode::InvalidMessage,
        ),
        (
            json!({"kind":"text","text":"x".repeat(4001)}),
            ErrorCode::InvalidMessage,
        ),
        (
            json!({"kind":"text","text":"hi","sticker":"s1"}),
            ErrorCode::InvalidMessage,
        ),
        (
            json!({"kind":"text","text":"hi","attachments":[{"file":"f1"}]}),
            ErrorCode::InvalidMessage,
        ),
        (json!({"kind":"sticker"}), ErrorCode::InvalidMessage),
        (
            json!({"kind":"sticker","sticker":"a/b"}),
            ErrorCode::InvalidMessage,
        ),
        (
            json!({"kind":"location","location":{"lat":91.0,"lng":0.0}}),
            ErrorCode::InvalidMessage,
        ),
        (
            json!({"kind":"contact","contact":{"name":""}}),
            ErrorCode::InvalidMessage,
        ),
        (
            json!({"kind":"contact","contact":{"name":"Bo"}}),
            ErrorCode::InvalidMessage,
        ),
        (
            json!({"kind":"system","text":"I am the server"}),
            ErrorCode::InvalidMessage,
        ),
        (
            json!({"kind":"image","attachments":[{"file":"fnosuchfile"}]}),
            ErrorCode::NotFound,
        ),
        (json!({"kind":"hologram"}), ErrorCode::UnsupportedKind),
        (
            json!({"kind":"text","text":"hi","reply_to":"mnosuchmessage"}),
            ErrorCode::NotFound,
        ),
        (
            json!({"kind":"text","text":"hi","cmid":""}),
            ErrorCode::BadRequest,
        ),
    ];
    for (i, (mut body, want)) in bad.into_iter().enumerate() {
        let obj = body.as_object_mut().unwrap();
        obj.insert("conv".into(), json!(conv));
        obj.entry("cmid").or_insert(json!(format!("c{i}")));
        let err = a.client.request("send", body.clone()).await.unwrap_err();
        assert_eq!(err.code(), Some(want), "{body}");
    }
    assert!(app
        .api
        .history(a.token(), &conv, None, 10)
        .await
        .unwrap()
        .messages
        .is_empty());
    // The good ones of each kind go through and come back as sent.
    let good = [
        json!({"kind":"sticker","sticker":"cat_42"}),
        json!({"kind":"location","location":{"lat":10.77,"lng":106.7,"name":"Saigon"}}),
        json!({"kind":"contact","contact":{"name":"Bob","user":b.session.user}}),
        json!({"kind":"contact","contact":{"name":"Mom","phone":"+84 90 123 4567"}}),
    ];
    for (i, mut body) in good.into_iter().enumerate() {
        let obj = body.as_object_mut().unwrap();
        obj.insert("conv".into(), json!(conv));
        obj.insert("cmid".into(), json!(format!("g{i}")));
        a.client.request("send", body).await.unwrap();
    }
    let first = a.client.send_text(&conv, "root").await.unwrap();
    let reply = courier_client::protocol::ops::SendReq {
        reply_to: Some(first.msg.clone()),
        ..courier_client::text_req(&conv, "reply-1", "a reply")
    };
    a.client.send(&reply).await.unwrap();
    let page = app.api.history(a.token(), &conv, None, 10).await.unwrap();
    let kinds: Vec<&str> = page.messages.iter().map(|m| m.content.kind()).collect();
    assert_eq!(
        kinds,
        ["text", "text", "contact", "contact", "location", "sticker"]
    );
    assert_eq!(page.messages[0].reply_to.as_ref(), Some(&first.msg));
}
