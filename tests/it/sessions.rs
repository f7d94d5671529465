//! Sessions that expire (#16 item 5): a device's token unused for longer than
//! `--token-idle-ttl` stops working over HTTP and MQTT (and the device leaves the list), while
//! a device that keeps using its token, or stays connected, keeps it; `DELETE /v1/devices`
//! signs out every other device at once, closing their connections; so does a new password
//! (`POST /v1/me/password`), which needs the old one.

use crate::acl::assert_refused;
use crate::helpers::{spawn_app, spawn_app_with, Db};
use courier_client::protocol::ErrorCode;
use courier_client::{Client, ClientOptions};
use std::time::Duration;

crate::on_both_databases!(
    idle_tokens_expire_and_used_ones_are_renewed,
    other_devices_are_signed_out_at_once,
    a_new_password_signs_out_the_other_devices
);

const TTL: Duration = Duration::from_secs(3);

async fn idle_tokens_expire_and_used_ones_are_renewed(db: Db) {
    let app = spawn_app_with(db, |s| s.token_idle_ttl = TTL).await;
    app.user("alice").await;
    let busy = app.session("alice", "phone").await;
    let idle = app.session("alice", "tablet").await;
    let connected = app.tcp_device("alice", "laptop").await;
    // `busy` uses its token every 400 ms, for longer than the expiry; the others do not.
    for _ in 0..12 {
        app.api.devices(&busy.token).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // `idle`'s token is refused, over HTTP and over MQTT, and it left the list.
    let e = app.api.devices(&idle.token).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    assert_refused(&idle, "NotAuthorized").await;
    let listed = app.api.devices(&busy.token).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|d| d.id.as_str()).collect();
    assert!(!ids.contains(&idle.device.as_str()), "{ids:?}");
    // A connected device is in use: its HTTP token and a reconnect still work.
    assert!(ids.contains(&connected.session.device.as_str()), "{ids:?}");
    app.api.conversations(connected.token()).await.unwrap();
    let laptop = listed
        .iter()
        .find(|d| d.id == connected.session.device)
        .unwrap();
    assert_eq!(laptop.platform, "test");
    assert!(laptop.online && laptop.last_seen.is_some(), "{laptop:?}");
    // `busy` still works over MQTT too.
    let (client, _events) = Client::connect(ClientOptions::tcp(&busy)).await.unwrap();
    client.sync(0, 10).await.unwrap();
}

async fn other_devices_are_signed_out_at_once(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let phone = app.tcp_device("alice", "phone").await;
    let mut laptop = app.tcp_device("alice", "laptop").await;
    let tablet = app.session("alice", "tablet").await;
    let bob = app.tcp_device("bob", "phone").await;
    app.api.revoke_other_devices(phone.token()).await.unwrap();
    laptop
        .expect_closed("a signed-out device stayed connected")
        .await;
    for session in [&laptop.session, &tablet] {
        let e = app.api.devices(&session.token).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
        assert_refused(session, "NotAuthorized").await;
    }
    // This device, and everyone else's, go on.
    let listed = app.api.devices(phone.token()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].current);
    phone.client.sync(0, 10).await.unwrap();
    bob.client.sync(0, 10).await.unwrap();
    assert_eq!(app.api.devices(bob.token()).await.unwrap().len(), 1);
}

async fn a_new_password_signs_out_the_other_devices(db: Db) {
    let app = spawn_app(db).await;
    app.user("alice").await;
    let phone = app.tcp_device("alice", "phone").await;
    let mut laptop = app.tcp_device("alice", "laptop").await;
    // A wrong old password changes nothing.
    let e = app
        .api
        .change_password(phone.token(), "not my password", "a brand new password")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
    let e = app
        .api
        .change_password(phone.token(), "correct horse battery", "short")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
    app.api.devices(laptop.token()).await.unwrap();

    app.api
        .change_password(
            phone.token(),
            "correct horse battery",
            "a brand new password",
        )
        .await
        .unwrap();
    laptop
        .expect_closed("the other device stayed connected")
        .await;
    assert_refused(&laptop.session, "NotAuthorized").await;
    // This device goes on; the old password no longer logs in, the new one does.
    phone.client.sync(0, 10).await.unwrap();
    app.api.devices(phone.token()).await.unwrap();
    let e = app
        .api
        .log_in("alice", "correct horse battery", "again", "test")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadCredentials), "{e}");
    app.api
        .log_in("alice", "a brand new password", "again", "test")
        .await
        .unwrap();
}
