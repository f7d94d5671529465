//! Topic ACL and authentication at the broker edge.

use crate::helpers::{spawn_app, Db};
use courier_client::protocol::UpdateBody;
use courier_client::{Client, ClientError, ClientOptions, Event};
use std::time::Duration;

crate::on_both_databases!(
    foreign_subscriptions_yield_nothing,
    foreign_publishes_create_nothing,
    bad_token_and_revoked_device_cannot_connect,
    a_users_devices_are_capped_by_replacing_the_longest_unseen,
);

async fn foreign_subscriptions_yield_nothing(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "mallory"]).await;
    let a = app.tcp_device("alice", "phone").await;
    let mut b = app.tcp_device("bob", "phone").await;
    for opts in [ClientOptions::tcp as fn(&_) -> ClientOptions, |s| {
        ClientOptions::tcp(s).v5()
    }] {
        let mut m = app.device("mallory", "phone", opts).await;
        let bob_in = format!("u/{}/d/{}/in", b.session.user, b.session.device);
        let bob_rsp = format!("u/{}/d/{}/rsp", b.session.user, b.session.device);
        let my_req = format!("u/{}/d/{}/req/#", m.session.user, m.session.device);
        for filter in [
            "#",
            "u/+/d/+/in",
            bob_in.as_str(),
            bob_rsp.as_str(),
            my_req.as_str(),
            "$share/g/u/+/d/+/req/+",
        ] {
            m.client.subscribe_raw(filter).await.unwrap();
        }
        let conv = app.direct(&a, &b).await;
        a.client.send_text(&conv, "private").await.unwrap();
        b.next_message().await;
        let events = m.drain_for(Duration::from_millis(800)).await;
        let mut refused = 0;
        for e in &events {
            match e {
                Event::SubAck(granted) => refused += granted.iter().filter(|g| !**g).count(),
                Event::Foreign { topic, .. } => panic!("mallory received {topic}"),
                Event::Update(u) => {
                    assert!(
                        !matches!(u.body, UpdateBody::Message { .. }),
                        "mallory got a message"
                    );
                }
                _ => {}
            }
        }
        assert_eq!(
            refused, 6,
            "every foreign filter is refused in the SUBACK: {events:?}"
        );
        m.client.disconnect().await;
    }
}

async fn foreign_publishes_create_nothing(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "mallory"]).await;
    let a = app.tcp_device("alice", "phone").await;
    let b = app.tcp_device("bob", "phone").await;
    let mut m = app.tcp_device("mallory", "phone").await;
    let conv = app.direct(&a, &b).await;
    let forged = format!(
        r#"{{"id":1,"conv":"{conv}","cmid":"forged","kind":"text","text":"from bob, honest"}}"#
    );
    // Into bob's request topic, and into alice's stream directly.
    for topic in [
        format!("u/{}/d/{}/req/send", b.session.user, b.session.device),
        format!("u/{}/d/{}/in", a.session.user, a.session.device),
        format!("u/{}/d/{}/rsp", a.session.user, a.session.device),
    ] {
        m.client
            .publish_raw(&topic, forged.clone().into_bytes())
            .await
            .unwrap();
    }
    // On MQTT 5 the refusal is visible: PUBACK with reason 0x87 (not authorised).
    let ms = app.session("mallory", "raw5").await;
    let mut o =
        rumqttc::v5::MqttOptions::new(ms.device.to_string(), "127.0.0.1", app.addrs.mqtt.port());
    o.set_credentials(ms.device.to_string(), ms.token.clone());
    let (raw, mut el) = rumqttc::v5::AsyncClient::new(o, 10);
    let bob_send = format!("u/{}/d/{}/req/send", b.session.user, b.session.device);
    raw.publish(
        bob_send,
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
        "{}",
    )
    .await
    .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(ack)) =
                el.poll().await.expect("connected")
            {
                return ack.reason;
            }
        }
    })
    .await
    .expect("a PUBACK");
    assert_eq!(
        reason,
        rumqttc::v5::mqttbytes::v5::PubAckReason::NotAuthorized
    );
    let m5 = app
        .device("mallory", "laptop", |s| ClientOptions::tcp(s).v5())
        .await;
    m5.client
        .publish_raw(
            &format!("u/{}/d/{}/req/send", b.session.user, b.session.device),
            forged.into_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let page = app.api.history(a.token(), &conv, None, 50).await.unwrap();
    assert!(page.messages.is_empty(), "a forged message was stored");
    let convs = app.api.conversations(b.token()).await.unwrap();
    assert_eq!(convs[0].last_seq, 0);
    // Mallory's connection still works for her own requests.
    let mallory = m.session.user.clone();
    let own = app.direct(&m, &a).await;
    m.client.send_text(&own, "hello").await.unwrap();
    assert!(m
        .drain_for(Duration::from_millis(100))
        .await
        .iter()
        .all(|e| !matches!(e, Event::Foreign { .. })));
    let _ = mallory;
}

/// CONNECT with `session` is refused with `code`, over MQTT 3.1.1 and over MQTT 5.
pub(crate) async fn assert_refused(session: &courier_client::protocol::http::Session, code: &str) {
    for opts in [
        ClientOptions::tcp(session),
        ClientOptions::tcp(session).v5(),
    ] {
        match Client::connect(opts).await {
            Err(ClientError::Refused(why)) => assert!(why.contains(code), "{why}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("connected; expected a {code} refusal"),
        }
    }
}

async fn bad_token_and_revoked_device_cannot_connect(db: Db) {
    let app = spawn_app(db).await;
    app.user("alice").await;
    let session = app.session("alice", "phone").await;
    let mut bad = session.clone();
    bad.token = "0".repeat(64);
    assert_refused(&bad, "BadUserNamePassword").await;
    // A connected device is disconnected when revoked, and cannot come back.
    let mut phone = app.device("alice", "phone2", ClientOptions::tcp).await;
    let laptop = app.tcp_device("alice", "laptop").await;
    app.api
        .revoke_device(laptop.token(), phone.session.device.as_str())
        .await
        .unwrap();
    phone.expect_closed("revoked device stayed connected").await;
    assert_refused(&phone.session, "NotAuthorized").await;
    // Its HTTP token is dead too; revoking someone else's device is not possible.
    let err = app.api.conversations(phone.token()).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(courier_client::protocol::ErrorCode::Unauthorized)
    );
    app.user("bob").await;
    let bob = app.tcp_device("bob", "phone").await;
    let err = app
        .api
        .revoke_device(bob.token(), laptop.session.device.as_str())
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(courier_client::protocol::ErrorCode::NotFound)
    );
    // Client id must be the device id.
    let mut wrong = ClientOptions::tcp(&bob.session);
    wrong.device = laptop.session.device.clone();
    assert!(Client::connect(wrong).await.is_err());
}

/// Log-ins past `MAX_DEVICES` do not pile up devices: each revokes the device seen longest
/// ago (here the first, which connected and left), whose token then stops working; the
/// connected ones stay.
async fn a_users_devices_are_capped_by_replacing_the_longest_unseen(db: Db) {
    use courier_client::protocol::http::MAX_DEVICES;
    let app = spawn_app(db).await;
    app.user("alice").await;
    let first = app.tcp_device("alice", "first").await;
    first.client.disconnect().await;
    let mut connected = Vec::new();
    for n in 1..MAX_DEVICES {
        connected.push(app.tcp_device("alice", &format!("d{n}")).await);
    }
    let listed = app.api.devices(connected[0].token()).await.unwrap();
    assert_eq!(listed.len() as u64, MAX_DEVICES);

    let newest = app.session("alice", "newest").await;
    let listed = app.api.devices(&newest.token).await.unwrap();
    assert_eq!(listed.len() as u64, MAX_DEVICES);
    assert!(listed.iter().all(|d| d.id != first.session.device));
    assert_refused(&first.session, "NotAuthorized").await;
    let err = app.api.conversations(first.token()).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(courier_client::protocol::ErrorCode::Unauthorized)
    );
    for d in &connected {
        app.api.conversations(d.token()).await.unwrap();
    }
}
