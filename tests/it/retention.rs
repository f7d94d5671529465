//! Log trimming and `cursor_expired`: the log is cut only below the lowest cursor of the
//! user's active devices and only after the retention period; a device that was away longer
//! gets `cursor_expired` (with the new floor), never a silent skip.

use crate::helpers::{spawn_app_with, Db};
use courier_client::protocol::{ErrorCode, UpdateBody};
use courier_client::{ClientError, ClientOptions, Event};
use std::time::Duration;

crate::on_both_databases!(trims_below_active_cursors_and_reports_expired_cursors);

fn floor_of(r: Result<impl std::fmt::Debug, ClientError>) -> i64 {
    match r {
        Err(ClientError::Server(b)) if b.code == ErrorCode::CursorExpired => b
            .details
            .and_then(|d| d["floor"].as_i64())
            .expect("cursor_expired carries the floor"),
        other => panic!("expected cursor_expired, got {other:?}"),
    }
}

async fn trims_below_active_cursors_and_reports_expired_cursors(db: Db) {
    let app = spawn_app_with(db, |s| {
        s.log_retention = Duration::from_millis(800);
        s.trim_interval = Duration::from_millis(100);
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let phone = app.tcp_device("alice", "phone").await;
    let tablet_session = app.session("alice", "tablet").await;
    let (tablet, _t) = courier_client::Client::connect(ClientOptions::tcp(&tablet_session))
        .await
        .unwrap();
    let bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&bob, &phone).await;
    for i in 0..4 {
        bob.client.send_text(&conv, &format!("m{i}")).await.unwrap();
    }
    // alice's log: 1 = the conversation, 2..=5 the messages.
    assert_eq!(phone.client.sync_all(0).await.unwrap().len(), 5);
    phone.client.ack(5).await.unwrap();
    tablet.ack(2).await.unwrap();

    // Old enough, but the connected tablet holds the log at its cursor.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(floor_of(phone.client.sync(0, 100).await), 2);
    let rest = tablet.sync_all(2).await.unwrap();
    assert_eq!(
        rest.iter().map(|u| u.useq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );

    // The tablet goes away for longer than the retention: it no longer holds the log back.
    tablet.disconnect().await;
    drop(tablet);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(floor_of(phone.client.sync(2, 100).await), 5);

    // A device logging in now starts at the floor.
    let newcomer = app.tcp_device("alice", "laptop").await;
    assert_eq!(floor_of(newcomer.client.sync(0, 100).await), 5);
    assert!(newcomer.client.sync_all(5).await.unwrap().is_empty());

    // History keeps every message whatever the log trimmed.
    let page = app
        .api
        .history(phone.token(), &conv, None, 10)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 4);

    // Back after too long: told once, then in order from the new start of the log.
    let (_tablet, mut events) =
        courier_client::Client::connect(ClientOptions::tcp(&tablet_session).ordered_from(2))
            .await
            .unwrap();
    let sent = bob.client.send_text(&conv, "welcome back").await.unwrap();
    let mut told = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("events in time")
            .unwrap();
        match ev {
            Event::CursorExpired { floor } => told = Some(floor),
            Event::Update(u) => {
                assert_eq!(told, Some(5), "told before anything after the floor");
                assert_eq!(u.useq, 6);
                let UpdateBody::Message { msg } = u.body else {
                    panic!("{u:?}")
                };
                assert_eq!(msg.id, sent.msg);
                break;
            }
            _ => {}
        }
    }
}
