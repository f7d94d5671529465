//! Message search (#17 item 7): the caller's messages holding every word of the query,
//! newest first, diacritics-insensitive, never from a conversation they are not in, never
//! deleted or hidden ones, edits found by their latest text; paged with a cursor.

use crate::helpers::{refusal as code, spawn_app, Db};
use courier_client::protocol::update::DeleteScope;
use courier_client::protocol::{ErrorCode, MsgId};

crate::on_both_databases!(search_finds_what_the_caller_can_see);

async fn search_finds_what_the_caller_can_see(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "carol", "eve"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let bob = app.tcp_device("bob", "phone").await;
    let carol = app.tcp_device("carol", "phone").await;
    let eve = app.tcp_device("eve", "phone").await;
    let ab = app.direct(&alice, &bob).await;
    let g = app.group(&alice, "nhóm", &[&bob, &carol]).await;
    let ce = app.direct(&carol, &eve).await;

    let vn = bob
        .client
        .send_text(&ab, "Tiếng Việt rất hay")
        .await
        .unwrap();
    let city = alice
        .client
        .send_text(&g, "Hẹn gặp ở Đà Nẵng nhé")
        .await
        .unwrap();
    let later = carol
        .client
        .send_text(&g, "tiếng chuông reo")
        .await
        .unwrap();
    let secret = eve.client.send_text(&ce, "tiếng bí mật").await.unwrap();
    let s = |q: &'static str| {
        let api = app.api.clone();
        let token = alice.token().to_owned();
        async move {
            api.search(&token, q, None, None, 20)
                .await
                .unwrap()
                .messages
                .into_iter()
                .map(|m| m.id)
                .collect::<Vec<MsgId>>()
        }
    };

    // Without diacritics, with them, in capitals; newest first; eve's conversation is not
    // alice's to search.
    assert_eq!(s("tieng").await, vec![later.msg.clone(), vn.msg.clone()]);
    assert_eq!(s("TIẾNG").await, vec![later.msg.clone(), vn.msg.clone()]);
    assert_eq!(s("da nang").await, vec![city.msg.clone()]);
    assert_eq!(s("đà").await, vec![city.msg.clone()]);
    // Every word must be there; the last may be a prefix (search as you type).
    assert_eq!(s("tieng viet").await, vec![vn.msg.clone()]);
    assert_eq!(s("tieng chu").await, vec![later.msg.clone()]);
    assert!(s("tieng nang").await.is_empty());
    // Within one conversation; a stranger asking about it finds nothing.
    let found = app
        .api
        .search(alice.token(), "tieng", Some(&g), None, 20)
        .await
        .unwrap();
    assert_eq!(found.messages.len(), 1);
    assert_eq!(found.messages[0].conv, g);
    let found = app
        .api
        .search(eve.token(), "tieng", Some(&g), None, 20)
        .await
        .unwrap();
    assert!(found.messages.is_empty());
    let found = app
        .api
        .search(eve.token(), "tieng", None, None, 20)
        .await
        .unwrap();
    assert_eq!(
        found.messages.iter().map(|m| &m.id).collect::<Vec<_>>(),
        vec![&secret.msg]
    );

    // Edits are found by their latest text only.
    bob.client
        .edit(&vn.msg, "Tiếng Anh cũng hay")
        .await
        .unwrap();
    assert!(s("viet").await.is_empty());
    assert_eq!(s("anh").await, vec![vn.msg.clone()]);
    // Deleted for everyone: gone. Deleted for alice only: gone for her, not for bob.
    carol
        .client
        .delete(&later.msg, DeleteScope::Everyone)
        .await
        .unwrap();
    assert_eq!(s("tieng").await, vec![vn.msg.clone()]);
    alice
        .client
        .delete(&city.msg, DeleteScope::Me)
        .await
        .unwrap();
    assert!(s("nang").await.is_empty());
    let found = app
        .api
        .search(bob.token(), "nang", None, None, 20)
        .await
        .unwrap();
    assert_eq!(found.messages.len(), 1);
    // Someone who blocked the sender does not find their messages in a shared group.
    let bobs = bob.client.send_text(&g, "bữa trưa ở đâu").await.unwrap();
    app.api
        .block(carol.token(), &bob.session.user)
        .await
        .unwrap();
    let hidden = bob.client.send_text(&g, "bữa tối").await.unwrap();
    let found = app
        .api
        .search(carol.token(), "bua", None, None, 20)
        .await
        .unwrap();
    assert_eq!(
        found.messages.iter().map(|m| &m.id).collect::<Vec<_>>(),
        vec![&bobs.msg]
    );
    let found = app
        .api
        .search(alice.token(), "bua", None, None, 20)
        .await
        .unwrap();
    assert_eq!(
        found.messages.iter().map(|m| &m.id).collect::<Vec<_>>(),
        vec![&hidden.msg, &bobs.msg]
    );

    // Pages: 7 matches, 3 at a time, newest first, none twice.
    let mut sent = Vec::new();
    for i in 0..7 {
        sent.push(
            alice
                .client
                .send_text(&ab, &format!("trang {i}"))
                .await
                .unwrap()
                .msg,
        );
    }
    let mut got = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = app
            .api
            .search(bob.token(), "trang", None, before.as_deref(), 3)
            .await
            .unwrap();
        assert!(page.messages.len() <= 3);
        got.extend(page.messages.into_iter().map(|m| m.id));
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    sent.reverse();
    assert_eq!(got, sent);

    // Refusals: no word, too long, a bad cursor; query syntax is only words.
    for q in ["", "   ", "*** -- \"\"", &"x".repeat(201)] {
        let e = app.api.search(alice.token(), q, None, None, 20).await;
        assert_eq!(code(e), Some(ErrorCode::BadRequest), "{q:?}");
    }
    let e = app
        .api
        .search(alice.token(), "trang", None, Some("nope"), 20)
        .await;
    assert_eq!(code(e), Some(ErrorCode::BadRequest));
    for q in [
        "trang OR x",
        "trang\" OR \"1",
        "NEAR(trang)",
        "trang:*",
        "trang & !x",
    ] {
        app.api
            .search(alice.token(), q, None, None, 20)
            .await
            .unwrap();
    }
}
