//! Presence and last seen: from the broker's connect and disconnect events, as `eph` events to
//! users who share a conversation (throttled), and in conversation listings.

use crate::helpers::{spawn_app, Db, Device, WAIT};
use courier_client::protocol::ops::Ephemeral;
use courier_client::protocol::UserId;
use courier_client::Event;
use std::time::Duration;

crate::on_both_databases!(presence_reaches_contacts_and_listings);

/// The next presence event about `who`.
async fn presence_of(d: &mut Device, who: &UserId) -> (bool, Option<i64>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, d.events.recv())
            .await
            .expect("a presence event in time")
            .expect("events open");
        if let Event::Ephemeral(Ephemeral::Presence {
            user,
            online,
            last_seen,
        }) = ev
        {
            if user == *who {
                return (online, last_seen);
            }
        }
    }
}

async fn presence_reaches_contacts_and_listings(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "carol"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut carol = app.tcp_device("carol", "phone").await;
    let bob_session = app.session("bob", "phone").await;
    let bob_id = bob_session.user.clone();
    app.api.create_direct(alice.token(), &bob_id).await.unwrap();

    // Never seen yet.
    let list = app.api.conversations(alice.token()).await.unwrap();
    let p = &list[0].presence;
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].user.clone(), p[0].online, p[0].last_seen),
        (bob_id.clone(), false, None)
    );

    let before = backend::util::now_ms();
    let (bob, _events) =
        courier_client::Client::connect(courier_client::ClientOptions::tcp(&bob_session))
            .await
            .unwrap();
    assert!(presence_of(&mut alice, &bob_id).await.0);
    let list = app.api.conversations(alice.token()).await.unwrap();
    assert!(list[0].presence[0].online);

    // Going away: announced (after the throttle window) with the last-seen time.
    bob.disconnect().await;
    let (online, last_seen) = presence_of(&mut alice, &bob_id).await;
    assert!(!online);
    let seen = last_seen.expect("last seen");
    assert!(seen >= before && seen <= backend::util::now_ms());
    let list = app.api.conversations(alice.token()).await.unwrap();
    assert_eq!(
        (list[0].presence[0].online, list[0].presence[0].last_seen),
        (false, Some(seen))
    );

    // carol shares no conversation with bob: she hears nothing about him.
    let heard = carol.drain_for(Duration::from_millis(300)).await;
    assert!(
        !heard.iter().any(|e| matches!(
            e,
            Event::Ephemeral(Ephemeral::Presence { user, .. }) if *user == bob_id
        )),
        "{heard:?}"
    );

    // A flapping connection inside one throttle window costs at most one event per window,
    // and the last one says where it ended: online.
    for _ in 0..5 {
        let (c, _e) =
            courier_client::Client::connect(courier_client::ClientOptions::tcp(&bob_session))
                .await
                .unwrap();
        c.disconnect().await;
    }
    let (_bob, _e) =
        courier_client::Client::connect(courier_client::ClientOptions::tcp(&bob_session))
            .await
            .unwrap();
    let events: Vec<bool> = alice
        .drain_for(Duration::from_secs(5))
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::Ephemeral(Ephemeral::Presence { user, online, .. }) if user == bob_id => {
                Some(online)
            }
            _ => None,
        })
        .collect();
    assert!(events.len() <= 2, "throttled: {events:?}");
    assert_eq!(events.last(), Some(&true), "{events:?}");
    drop(carol);
}
