//! The delivery model end to end: multi-device fan-out, ticks (✓ ✓✓ read), seq order in a
//! busy group, idempotent resend, and catch-up by sync.

use crate::helpers::{spawn_app, Db, Device, TestApp};
use courier_client::protocol::{ConvId, Update, UpdateBody, UserId};
use courier_client::{ClientOptions, Event};
use std::collections::{BTreeMap, HashSet};

crate::on_both_databases!(
    ticks_over_tcp,
    ticks_over_mqtt5,
    ticks_over_websocket,
    group_order_is_gapless_under_concurrent_senders,
    resend_with_same_cmid_returns_original_ack,
    a_restarted_client_sends_new_messages,
    sync_returns_complete_pages,
    ack_moves_forward_only,
    acks_at_once_each_get_their_own_answer,
    one_ack_set_answers_each_ack_alone,
    ordered_delivery_survives_bursts_and_reconnects,
    big_backlog_syncs_in_bounded_pages,
    replying_marks_read_and_says_so,
    requests_sent_without_waiting_take_effect_and_answer_in_order,
);

#[derive(Clone, Copy)]
enum Flavour {
    Tcp311,
    Mqtt5,
    WebSocket,
}

fn opts(flavour: Flavour) -> impl Fn(&courier_client::protocol::http::Session) -> ClientOptions {
    move |s| match flavour {
        Flavour::Tcp311 => ClientOptions::tcp(s),
        Flavour::Mqtt5 => ClientOptions::tcp(s).v5(),
        Flavour::WebSocket => ClientOptions::ws(s),
    }
}

async fn ticks_over_tcp(db: Db) {
    ticks(db, Flavour::Tcp311).await
}

async fn ticks_over_mqtt5(db: Db) {
    ticks(db, Flavour::Mqtt5).await
}

async fn ticks_over_websocket(db: Db) {
    ticks(db, Flavour::WebSocket).await
}

fn receipt_of(u: &Update, who: &UserId) -> Option<(i64, i64)> {
    match &u.body {
        UpdateBody::Receipt {
            user,
            delivered_seq,
            read_seq,
            ..
        } if user == who => Some((*delivered_seq, *read_seq)),
        _ => None,
    }
}

/// alice (phone, laptop) and bob (phone, laptop — the laptop always over WebSocket).
async fn ticks(db: Db, flavour: Flavour) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let o = opts(flavour);
    let mut a_phone = app.device("alice", "phone", &o).await;
    let mut a_laptop = app.device("alice", "laptop", &o).await;
    let mut b_phone = app.device("bob", "phone", &o).await;
    let ws = |s: &_| match flavour {
        Flavour::Mqtt5 => ClientOptions::ws(s).v5(),
        _ => ClientOptions::ws(s),
    };
    let mut b_laptop = app.device("bob", "laptop", ws).await;
    let bob = b_phone.session.user.clone();
    let alice = a_phone.session.user.clone();
    let conv = app
        .api
        .create_direct(a_phone.token(), &bob)
        .await
        .unwrap()
        .id;

    // ✓: the send is acknowledged after commit, with seq/ts/msg and the echoed cmid.
    let ack = a_phone.client.send_text(&conv, "hi bob").await.unwrap();
    assert_eq!(ack.seq, 1);
    assert_eq!(ack.conv, conv);

    // Every device of every member gets it, the sender's other device included.
    let mut bob_phone_useq = 0;
    for (name, dev) in [
        ("bob phone", &mut b_phone),
        ("bob laptop", &mut b_laptop),
        ("alice laptop", &mut a_laptop),
        ("alice phone", &mut a_phone),
    ] {
        let u = dev.next_message().await;
        let UpdateBody::Message { msg } = &u.body else {
            unreachable!()
        };
        assert_eq!(msg.id, ack.msg, "{name}");
        assert_eq!(msg.seq, 1, "{name}");
        assert_eq!(msg.sender, alice, "{name}");
        assert_eq!(msg.cmid, ack.cmid, "{name}");
        if name == "bob phone" {
            bob_phone_useq = u.useq;
        }
    }

    // ✓✓: bob's phone acks; alice learns bob has it (delivered 1, read 0).
    b_phone.client.ack(bob_phone_useq).await.unwrap();
    let r = a_phone.next_update(|u| receipt_of(u, &bob).is_some()).await;
    assert_eq!(receipt_of(&r, &bob), Some((1, 0)));

    // Blue: bob reads; alice sees read 1 and bob's laptop gets the read sync.
    assert_eq!(b_phone.client.read(&conv, 1).await.unwrap(), 1);
    let r = a_phone
        .next_update(|u| receipt_of(u, &bob).is_some_and(|(_, r)| r == 1))
        .await;
    assert_eq!(receipt_of(&r, &bob), Some((1, 1)));
    let r = b_laptop
        .next_update(|u| receipt_of(u, &bob).is_some())
        .await;
    assert_eq!(receipt_of(&r, &bob), Some((1, 1)));
    let r = a_laptop
        .next_update(|u| receipt_of(u, &bob).is_some_and(|(_, r)| r == 1))
        .await;
    assert_eq!(receipt_of(&r, &bob), Some((1, 1)));

    // The listing agrees: bob has nothing unread, alice's message is read.
    let convs = app.api.conversations(b_phone.token()).await.unwrap();
    assert_eq!(
        (convs[0].last_seq, convs[0].read_seq, convs[0].unread),
        (1, 1, 0)
    );
    // ... and alice's listing carries bob's watermarks, for ticks drawn after a reload, and
    // the newest message for the preview line.
    let convs = app.api.conversations(a_phone.token()).await.unwrap();
    let last = convs[0].last_message.as_ref().expect("the newest message");
    assert_eq!((last.seq, &last.id), (1, &ack.msg));
    let seen: Vec<_> = convs[0]
        .receipts
        .iter()
        .map(|r| (r.user.clone(), r.delivered_seq, r.read_seq))
        .collect();
    assert_eq!(seen, vec![(bob.clone(), 1, 1)]);
}

/// Sending marks the conversation read up to the new message; when that passes messages the
/// sender had not marked read, the others get a receipt (their ticks turn blue), and when it
/// does not, nothing extra is logged.
async fn replying_marks_read_and_says_so(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&alice, &bob).await;
    let (a, b) = (alice.session.user.clone(), bob.session.user.clone());
    let convs = app.api.conversations(bob.token()).await.unwrap();
    assert!(convs[0].last_message.is_none(), "empty so far");

    bob.client.send_text(&conv, "one").await.unwrap();
    bob.client.send_text(&conv, "two").await.unwrap();
    // alice answers without marking anything read: bob hears she read up to her reply.
    let reply = alice.client.send_text(&conv, "three").await.unwrap();
    assert_eq!(reply.seq, 3);
    let r = bob
        .next_update(|u| receipt_of(u, &a).is_some_and(|(_, r)| r > 0))
        .await;
    assert_eq!(receipt_of(&r, &a), Some((3, 3)));
    // It came after her message in bob's log.
    let logged = bob.client.sync_all(0).await.unwrap();
    let pos = |f: &dyn Fn(&Update) -> bool| logged.iter().position(f).unwrap();
    assert!(
        pos(&|u| matches!(&u.body, UpdateBody::Message { msg } if msg.seq == 3))
            < pos(&|u| receipt_of(u, &a).is_some_and(|(_, r)| r == 3))
    );

    // bob reads, then replies: already read up to alice's message, so no receipt of his own
    // reply goes to alice; and the listing agrees with what bob saw.
    bob.client.read(&conv, 3).await.unwrap();
    let r = alice
        .next_update(|u| receipt_of(u, &b).is_some_and(|(_, r)| r == 3))
        .await;
    assert_eq!(receipt_of(&r, &b), Some((3, 3)));
    bob.client.send_text(&conv, "four").await.unwrap();
    alice.next_message().await;
    let extra = alice.drain_for(std::time::Duration::from_millis(300)).await;
    assert!(
        !extra
            .iter()
            .any(|e| matches!(e, Event::Update(u) if receipt_of(u, &b).is_some())),
        "{extra:?}"
    );
    let convs = app.api.conversations(bob.token()).await.unwrap();
    let alice_marks = &convs[0].receipts[0];
    assert_eq!((alice_marks.delivered_seq, alice_marks.read_seq), (3, 3));
    assert_eq!(convs[0].unread, 0);
}

async fn group_order_is_gapless_under_concurrent_senders(db: Db) {
    const PER_SENDER: usize = 40;
    let app = spawn_app(db).await;
    let mut devices: Vec<Device> = Vec::new();
    for i in 0..5 {
        let name = format!("member{i}");
        app.user(&name).await;
        devices.push(app.tcp_device(&name, "phone").await);
    }
    for d in &devices[1..] {
        app.accept_group_adds(d.token()).await;
    }
    let others: Vec<UserId> = devices[1..]
        .iter()
        .map(|d| d.session.user.clone())
        .collect();
    let group = app
        .api
        .create_group(devices[0].token(), "five", &others)
        .await
        .unwrap();
    assert_eq!(group.members.len(), 5);
    let conv = group.id.clone();

    // Three members send concurrently.
    let mut senders = Vec::new();
    for d in &devices[..3] {
        let client = d.client.clone();
        let conv = conv.clone();
        senders.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for n in 0..PER_SENDER {
                acks.push(
                    client
                        .send_text(&conv, &format!("{} #{n}", client.device()))
                        .await
                        .unwrap(),
                );
            }
            acks
        }));
    }
    let mut acked = HashSet::new();
    for s in senders {
        for ack in s.await.unwrap() {
            assert!(acked.insert(ack.seq), "seq {} acked twice", ack.seq);
        }
    }
    let total = 3 * PER_SENDER;
    // Seq 1 is the group's `created` line.
    assert_eq!(acked, (2..=total as i64 + 1).collect());

    // Every device holds the same seq → message map, 1..=total with no gap.
    let mut views: Vec<BTreeMap<i64, String>> = Vec::new();
    for d in &mut devices {
        let mut view = BTreeMap::new();
        while view.len() < total + 1 {
            let u = d.next_message().await;
            if let UpdateBody::Message { msg } = u.body {
                view.insert(msg.seq, msg.id.to_string());
            }
        }
        assert_eq!(
            view.keys().copied().collect::<Vec<_>>(),
            (1..=total as i64 + 1).collect::<Vec<_>>()
        );
        views.push(view);
    }
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "devices disagree on the order"
    );

    // And each device's log sync says the same, in useq order.
    for d in &devices {
        let updates = d.client.sync_all(0).await.unwrap();
        let seqs: Vec<i64> = updates
            .iter()
            .filter_map(|u| match &u.body {
                UpdateBody::Message { msg } => Some(msg.seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs.len(), total + 1);
        let useqs: Vec<i64> = updates.iter().map(|u| u.useq).collect();
        assert_eq!(
            useqs,
            (1..=useqs.len() as i64).collect::<Vec<_>>(),
            "useq has a gap"
        );
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "log order differs from seq order");
    }
}

/// An app that restarts makes a new `Client` for the same device: its `send_text`s are new
/// messages, never taken for resends of the last run's (whose cmids it no longer knows).
async fn a_restarted_client_sends_new_messages(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let a = app.tcp_device("alice", "phone").await;
    let b = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&a, &b).await;
    let first = a
        .client
        .send_text(&conv, "before the restart")
        .await
        .unwrap();
    a.client.disconnect().await;
    let (again, _events) =
        courier_client::Client::connect(courier_client::ClientOptions::tcp(&a.session))
            .await
            .unwrap();
    let second = again.send_text(&conv, "after it").await.unwrap();
    assert_ne!(first.msg, second.msg);
    assert_eq!(second.seq, first.seq + 1);
    let page = app.api.history(a.token(), &conv, None, 50).await.unwrap();
    assert_eq!(page.messages.len(), 2);
}

async fn resend_with_same_cmid_returns_original_ack(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let a = app.tcp_device("alice", "phone").await;
    let mut b = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&a, &b).await;
    let req = courier_client::text_req(&conv, "cmid-1", "once");
    let first = a.client.send(&req).await.unwrap();
    let again = a.client.send(&req).await.unwrap();
    assert_eq!(first, again);
    // Even a different text with the same cmid is the same message.
    let third = a
        .client
        .send(&courier_client::text_req(&conv, "cmid-1", "twice?"))
        .await
        .unwrap();
    assert_eq!(first, third);
    let page = app.api.history(a.token(), &conv, None, 50).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    // Bob got exactly one message update so far.
    b.next_message().await;
    let extra = b
        .drain_for(std::time::Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::Update(u) if matches!(u.body, UpdateBody::Message { .. })))
        .count();
    assert_eq!(extra, 0);
    // A burst of the same cmid at once (likely one batch): one message, one ack for all.
    let burst = courier_client::text_req(&conv, "burst", "at once");
    let sends: Vec<_> = (0..8)
        .map(|_| {
            let (c, r) = (a.client.clone(), burst.clone());
            tokio::spawn(async move { c.send(&r).await.unwrap() })
        })
        .collect();
    let mut acks = Vec::new();
    for s in sends {
        acks.push(s.await.unwrap());
    }
    assert!(acks.windows(2).all(|w| w[0] == w[1]), "{acks:?}");
    assert_eq!(acks[0].seq, 2);
    let page = app.api.history(a.token(), &conv, None, 50).await.unwrap();
    assert_eq!(page.messages.len(), 2);
    // The same cmid from another device is a different message.
    let a2 = app.tcp_device("alice", "laptop").await;
    let other = a2.client.send(&req).await.unwrap();
    assert_ne!(other.msg, first.msg);
    assert_eq!(other.seq, 3);
}

async fn setup_pair(app: &TestApp) -> (Device, Device, ConvId) {
    app.users(&["alice", "bob"]).await;
    let a = app.tcp_device("alice", "phone").await;
    let b = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&a, &b).await;
    (a, b, conv)
}

async fn sync_returns_complete_pages(db: Db) {
    let app = spawn_app(db).await;
    let (a, b, conv) = setup_pair(&app).await;
    b.client.disconnect().await;
    for n in 0..25 {
        a.client.send_text(&conv, &format!("m{n}")).await.unwrap();
    }
    // A new device of bob's catches up from zero in pages of 10.
    let b2 = app.tcp_device("bob", "tablet").await;
    let mut after = 0;
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let page = b2.client.sync(after, 10).await.unwrap();
        pages += 1;
        assert!(page.updates.len() <= 10);
        assert!(page.updates.iter().all(|u| u.useq > after));
        if let Some(l) = page.updates.last() {
            after = l.useq;
        }
        got.extend(page.updates);
        if !page.more {
            assert_eq!(after, page.head, "the last page ends at the head");
            break;
        }
    }
    // 1 member update (conversation created) + 25 messages.
    assert_eq!(got.len(), 26);
    assert_eq!(pages, 3);
    let useqs: Vec<i64> = got.iter().map(|u| u.useq).collect();
    assert_eq!(useqs, (1..=26).collect::<Vec<_>>());
    assert!(matches!(got[0].body, UpdateBody::Member { .. }));
    // Past the head: empty and up to date.
    let page = b2.client.sync(26, 10).await.unwrap();
    assert!(page.updates.is_empty() && !page.more && page.head == 26);
    // Bad limits are refused.
    let err = b2.client.sync(0, 0).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(courier_client::protocol::ErrorCode::BadRequest)
    );
}

async fn ack_moves_forward_only(db: Db) {
    let app = spawn_app(db).await;
    let (a, b, conv) = setup_pair(&app).await;
    for n in 0..3 {
        a.client.send_text(&conv, &format!("m{n}")).await.unwrap();
    }
    // bob's log: 1 member + 3 messages.
    assert_eq!(b.client.ack(3).await.unwrap(), 3);
    assert_eq!(b.client.ack(2).await.unwrap(), 3, "ack never moves back");
    let err = b.client.ack(99).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(courier_client::protocol::ErrorCode::AckAhead)
    );
    assert_eq!(b.client.ack(4).await.unwrap(), 4);
}

/// alice (phone) sends five messages to a group with bob (phone, laptop) and carol (phone,
/// tablet); bob's and carol's logs then hold "created" and the five messages.
async fn five_messages_to_bob_and_carol(app: &TestApp) -> [Device; 5] {
    app.users(&["alice", "bob", "carol"]).await;
    let a = app.tcp_device("alice", "phone").await;
    let phone = app.tcp_device("bob", "phone").await;
    let laptop = app.tcp_device("bob", "laptop").await;
    let carol = app.tcp_device("carol", "phone").await;
    let tablet = app.tcp_device("carol", "tablet").await;
    let group = app.group(&a, "acks", &[&phone, &carol]).await;
    for n in 0..5 {
        a.client.send_text(&group, &format!("m{n}")).await.unwrap();
    }
    [a, phone, laptop, carol, tablet]
}

/// Acks arriving together (on SQLite they share a write batch): each gets its own answer, a
/// bad one fails alone, and one user's two devices acknowledging the same messages give the
/// sender one ✓✓ receipt, not two.
async fn acks_at_once_each_get_their_own_answer(db: Db) {
    let app = spawn_app(db).await;
    let [a, phone, laptop, carol, tablet] = five_messages_to_bob_and_carol(&app).await;
    let (p, l, c, t) = tokio::join!(
        phone.client.ack(6),
        laptop.client.ack(6),
        carol.client.ack(4),
        tablet.client.ack(99),
    );
    assert_eq!((p.unwrap(), l.unwrap(), c.unwrap()), (6, 6, 4));
    assert_eq!(
        t.unwrap_err().code(),
        Some(courier_client::protocol::ErrorCode::AckAhead)
    );
    // The failed ack moved nothing: the tablet's cursor is still 0.
    assert_eq!(tablet.client.ack(0).await.unwrap(), 0);

    // The receipts were committed with the acks: alice's log holds bob's ✓✓ once, up to seq
    // 5, and carol's up to seq 3.
    let bob = phone.session.user.clone();
    let carol_id = carol.session.user.clone();
    let page = a.client.sync(0, 100).await.unwrap();
    let mut heard: Vec<(UserId, i64)> = page
        .updates
        .iter()
        .filter_map(|u| {
            receipt_of(u, &bob)
                .map(|(d, _)| (bob.clone(), d))
                .or_else(|| receipt_of(u, &carol_id).map(|(d, _)| (carol_id.clone(), d)))
        })
        .collect();
    heard.sort();
    let mut want = vec![(bob, 5), (carol_id, 3)];
    want.sort();
    assert_eq!(heard, want);
}

/// The store's set of acks, called with every case at once (what a busy batch holds): moves,
/// a repeat of a device (it goes in the next round), an ack ahead of the log, a device of
/// someone else, and two devices of one user covering the same messages.
async fn one_ack_set_answers_each_ack_alone(db: Db) {
    use backend::store::receipts::Ack;
    use sea_orm::TransactionTrait;
    let app = spawn_app(db).await;
    let [a, phone, laptop, carol, _] = five_messages_to_bob_and_carol(&app).await;
    let ack = |d: &Device, useq| Ack {
        user: d.session.user.clone(),
        device: d.session.device.clone(),
        useq,
    };
    let foreign = Ack {
        user: phone.session.user.clone(),
        device: carol.session.device.clone(),
        useq: 1,
    };
    let acks = [
        ack(&phone, 6),
        ack(&laptop, 6),
        ack(&carol, 99),
        foreign,
        ack(&phone, 3),
        ack(&carol, 4),
    ];
    let store = backend::Store::new(
        backend::db::open(&app.settings.database_url())
            .await
            .unwrap(),
    );
    let txn = store.db.begin().await.unwrap();
    let answers = backend::Store::ack_set(&txn, &acks.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let code = |i: usize| answers[i].as_ref().err().map(|e| e.code());
    let cursor = |i: usize| answers[i].as_ref().ok().map(|(c, _)| *c);
    assert_eq!(cursor(0), Some(6));
    assert_eq!(cursor(1), Some(6));
    assert_eq!(code(2), Some(courier_client::protocol::ErrorCode::AckAhead));
    assert_eq!(code(3), Some(courier_client::protocol::ErrorCode::NotFound));
    assert_eq!(cursor(4), Some(6), "an ack behind the cursor leaves it");
    assert_eq!(cursor(5), Some(4));
    // One ✓✓ for bob (up to seq 5), carried by one of his devices' answers; one for carol
    // (up to seq 3); every receipt goes to the other two members' logs.
    let receipts: Vec<(usize, String)> = answers
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            a.as_ref()
                .map(|(_, out)| out.iter().map(|o| (i, o.json.clone())).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(receipts.len(), 2, "{receipts:?}");
    let by = |seq: &str| {
        receipts
            .iter()
            .find(|(_, json)| json.contains(seq))
            .map(|r| r.0)
    };
    assert!(
        by(r#""delivered_seq":5"#).is_some_and(|i| i <= 1),
        "{receipts:?}"
    );
    assert_eq!(by(r#""delivered_seq":3"#), Some(5), "{receipts:?}");
    let page = a.client.sync(0, 100).await.unwrap();
    let bob = phone.session.user.clone();
    let delivered: Vec<i64> = page
        .updates
        .iter()
        .filter_map(|u| receipt_of(u, &bob).map(|(d, _)| d))
        .collect();
    assert_eq!(delivered, [5]);
    // The failed acks moved nothing.
    assert_eq!(carol.client.ack(0).await.unwrap(), 4);
}

/// The SDK's ordered mode: a burst from concurrent senders and a reconnect after missed
/// updates still give the app useq 1, 2, 3… exactly once.
async fn ordered_delivery_survives_bursts_and_reconnects(db: Db) {
    const PER_SENDER: usize = 100;
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "carol"]).await;
    let a = app.tcp_device("alice", "phone").await;
    let c = app.tcp_device("carol", "phone").await;
    let mut b = app
        .device("bob", "phone", |s| ClientOptions::tcp(s).ordered_from(0))
        .await;
    let group = app.group(&a, "burst", &[&b, &c]).await;
    let mut senders = Vec::new();
    for (who, client) in [("a", a.client.clone()), ("c", c.client.clone())] {
        for lane in 0..4 {
            let (client, group) = (client.clone(), group.clone());
            senders.push(tokio::spawn(async move {
                for n in 0..PER_SENDER / 4 {
                    client
                        .send_text(&group, &format!("{who}{lane}-{n}"))
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for s in senders {
        s.await.unwrap();
    }
    // "created", the messages, and the receipts of senders replying past each other's
    // messages: whatever bob's log holds now.
    let total = b.client.sync(0, 1).await.unwrap().head;
    assert!(total > 2 * PER_SENDER as i64);
    let mut last = 0;
    while last < total {
        let u = b.next_update(|_| true).await;
        assert_eq!(u.useq, last + 1, "ordered mode skipped or repeated");
        last = u.useq;
    }
    // Bob goes away; updates pile up; a new connection resumes from where the app got to.
    b.client.disconnect().await;
    drop(b.events);
    for n in 0..30 {
        a.client
            .send_text(&group, &format!("while away {n}"))
            .await
            .unwrap();
    }
    let (client, mut events) =
        courier_client::Client::connect(ClientOptions::tcp(&b.session).ordered_from(last))
            .await
            .unwrap();
    let head = client.sync(0, 1).await.unwrap().head;
    assert!(head >= total + 30);
    let deadline = tokio::time::Instant::now() + crate::helpers::WAIT;
    while last < head {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Update(u))) => {
                assert_eq!(u.useq, last + 1);
                last = u.useq;
            }
            Ok(Some(_)) => {}
            _ => panic!("resumed device stopped at useq {last}"),
        }
    }
    let extra = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        loop {
            if let Some(Event::Update(u)) = events.recv().await {
                return u.useq;
            }
        }
    })
    .await;
    assert!(
        extra.is_err(),
        "an update was delivered twice or beyond the head: {extra:?}"
    );
    client.disconnect().await;
}

/// A backlog of maximum-size messages comes back in pages cut by size, not just by count.
async fn big_backlog_syncs_in_bounded_pages(db: Db) {
    let app = spawn_app(db).await;
    let (a, b, conv) = setup_pair(&app).await;
    b.client.disconnect().await;
    let text = "ж".repeat(courier_client::protocol::ops::MAX_TEXT_CHARS - 1);
    let mut sends = Vec::new();
    for lane in 0..4 {
        let (c, conv, text) = (a.client.clone(), conv.clone(), text.clone());
        sends.push(tokio::spawn(async move {
            for _ in 0..40 {
                c.send_text(&conv, &format!("{lane}{text}")).await.unwrap();
            }
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
    let b2 = app.tcp_device("bob", "tablet").await;
    let (mut after, mut total, mut pages) = (0, 0, 0);
    loop {
        let page = b2.client.sync(after, 500).await.unwrap();
        pages += 1;
        let bytes = serde_json::to_vec(&page.updates).unwrap().len();
        assert!(bytes < 700 * 1024, "page of {bytes} bytes");
        total += page.updates.len();
        after = page.updates.last().map_or(after, |u| u.useq);
        if !page.more {
            break;
        }
    }
    assert_eq!(total, 161);
    assert!(
        pages >= 3,
        "a 1.3 MB backlog must take several pages, took {pages}"
    );
}

/// A plain MQTT client publishes one device's requests back to back, never waiting for an
/// answer: sends, an ack, a `sync` and more sends. Each is answered in the order it was
/// published, the sends take seqs in that order, and the `sync` sees exactly the sends
/// published before it (the server may queue a device's next writes while its last ones
/// commit, but never lets a later request overtake an earlier one).
async fn requests_sent_without_waiting_take_effect_and_answer_in_order(db: Db) {
    const BEFORE: usize = 40;
    const AFTER: usize = 40;
    let app = spawn_app(db).await;
    let (mut raw, mut b, conv) = app.raw_alice_and_bob().await;
    let mut requests: Vec<(&str, serde_json::Value)> = Vec::new();
    let send = |n: usize| serde_json::json!({"id": n, "conv": conv, "cmid": format!("c{n}"), "kind": "text", "text": format!("#{n}")});
    for n in 0..BEFORE {
        requests.push(("send", send(n)));
        if n == BEFORE / 2 {
            requests.push(("ack", serde_json::json!({"id": "ack", "useq": 1})));
        }
    }
    requests.push((
        "sync",
        serde_json::json!({"id": "sync", "after": 0, "limit": 500}),
    ));
    for n in BEFORE..BEFORE + AFTER {
        requests.push(("send", send(n)));
    }
    let answers = raw.requests(&requests).await;
    let ids: Vec<&serde_json::Value> = answers.iter().map(|a| &a["id"]).collect();
    let expected: Vec<&serde_json::Value> = requests.iter().map(|(_, r)| &r["id"]).collect();
    assert_eq!(ids, expected, "answers out of order");
    assert!(answers.iter().all(|a| a["ok"] == true), "{answers:?}");
    let seqs: Vec<i64> = answers
        .iter()
        .filter_map(|a| a["result"]["seq"].as_i64())
        .collect();
    assert_eq!(seqs, (1..=(BEFORE + AFTER) as i64).collect::<Vec<_>>());
    let sync = answers.iter().find(|a| a["id"] == "sync").unwrap();
    let synced = sync["result"]["updates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["type"] == "message")
        .count();
    assert_eq!(synced, BEFORE, "the sync saw a different set of sends");
    // bob gets them all, in order.
    for n in 1..=(BEFORE + AFTER) as i64 {
        let u = b.next_message().await;
        let UpdateBody::Message { msg } = u.body else {
            unreachable!()
        };
        assert_eq!(msg.seq, n);
    }
}
