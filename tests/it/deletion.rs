//! Deleting an account (#16 item 4): with its password (`DELETE /v1/me`) or by an operator
//! (`courier admin delete-user`). Its devices are refused over MQTT and HTTP at once and
//! their connections closed; it leaves its groups (admin rights pass on); its messages stay
//! in the others' conversations from a deleted account (no name, no avatar); its direct
//! conversations can be read by the other side, not written to; its unsent uploads go; its
//! username is free again after the grace period, and not before.

use crate::acl::assert_refused;
use crate::binary::courier;
use crate::helpers::{refusal as code, spawn_app_with, Db};
use crate::storage::file_message;
use backend::entity::files;
use courier_client::protocol::update::Content;
use courier_client::protocol::{ErrorCode, UpdateBody};
use courier_client::Event;
use sea_orm::EntityTrait;
use std::time::Duration;

crate::on_both_databases!(a_deleted_account_is_gone_but_its_messages_stay);

const PASSWORD: &str = "correct horse battery";

async fn a_deleted_account_is_gone_but_its_messages_stay(db: Db) {
    let grace = Duration::from_secs(2);
    let app = spawn_app_with(db, |s| s.deleted_name_grace = grace).await;
    app.users(&["alice", "bob", "carol"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let laptop = app.session("alice", "laptop").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let mut carol = app.tcp_device("carol", "phone").await;
    let a = alice.session.user.clone();
    let direct = app.direct(&alice, &bob).await;
    let group = app.group(&alice, "book club", &[&bob, &carol]).await;
    let hello = alice.client.send_text(&direct, "hi bob").await.unwrap();
    alice.client.send_text(&group, "hi all").await.unwrap();
    let name = courier_client::protocol::http::ProfileChange {
        display_name: Some(Some("Alice A.".into())),
        avatar: None,
    };
    app.api.change_profile(alice.token(), &name).await.unwrap();
    let kept = app
        .api
        .upload(alice.token(), b"for bob\n".to_vec(), Some("b.txt"))
        .await
        .unwrap();
    alice
        .client
        .send(&file_message(&direct, "with-file", &kept.id))
        .await
        .unwrap();
    let unsent = app
        .api
        .upload(alice.token(), b"never sent\n".to_vec(), Some("a.txt"))
        .await
        .unwrap();

    // The wrong password changes nothing.
    let e = app
        .api
        .delete_account(alice.token(), "not my password")
        .await;
    assert_eq!(code(e), Some(ErrorCode::Forbidden));
    app.api.me(alice.token()).await.unwrap();

    app.api
        .delete_account(alice.token(), PASSWORD)
        .await
        .unwrap();
    alice
        .expect_closed("a deleted account's device stayed connected")
        .await;
    for session in [&alice.session, &laptop] {
        let e = app.api.me(&session.token).await;
        assert_eq!(code(e), Some(ErrorCode::Unauthorized));
        assert_refused(session, "NotAuthorized").await;
    }
    let e = app.api.log_in("alice", PASSWORD, "new phone", "test").await;
    assert_eq!(code(e), Some(ErrorCode::BadCredentials));

    // The group: she left, someone else is admin now.
    bob.next_update(|u| {
        matches!(&u.body, UpdateBody::Member { conv, users, .. } if *conv == group && users.contains(&a))
    })
    .await;
    // And that she is gone, as a profile with nothing of her.
    let said = bob
        .next_update(
            |u| matches!(&u.body, UpdateBody::Profile { profile } if profile.user == a && profile.deleted),
        )
        .await;
    let UpdateBody::Profile { profile } = said.body else {
        unreachable!()
    };
    assert!(profile.deleted && profile.username.is_empty() && profile.display_name.is_none());
    let g = app.api.conversation(bob.token(), &group).await.unwrap();
    assert!(!g.members.contains(&a) && !g.admins.is_empty(), "{g:?}");
    assert!(!g.admins.contains(&a));
    // Her messages stay, from a deleted account; her profile shows nothing of her.
    let page = app
        .api
        .history(bob.token(), &direct, None, 10)
        .await
        .unwrap();
    let msg = page.messages.iter().find(|m| m.id == hello.msg).unwrap();
    assert!(msg.sender_deleted && msg.sender == a, "{msg:?}");
    assert_eq!(
        msg.content,
        Content::Text {
            text: "hi bob".into(),
            mentions: vec![]
        }
    );
    let page = app
        .api
        .history(carol.token(), &group, None, 10)
        .await
        .unwrap();
    assert!(page
        .messages
        .iter()
        .filter(|m| m.sender == a)
        .all(|m| m.sender_deleted));
    let d = app.api.conversation(bob.token(), &direct).await.unwrap();
    let shown = &d.profiles[0];
    assert!(shown.deleted && shown.username.is_empty(), "{shown:?}");
    assert_eq!((&shown.display_name, &shown.avatar), (&None, &None));
    // The direct conversation is bob's to read, not to write to, nor to open again.
    let e = bob.client.send_text(&direct, "are you there?").await;
    assert_eq!(code(e), Some(ErrorCode::Forbidden));
    assert_eq!(
        code(app.api.create_direct(bob.token(), &a).await),
        Some(ErrorCode::NotFound)
    );
    // The file she sent stays bob's to download; the one she never sent is gone.
    let info = |id: &courier_client::protocol::FileId| {
        app.api.request(
            reqwest::Method::GET,
            &format!("/media/{id}/info"),
            Some(bob.token()),
        )
    };
    assert_eq!(app.api.raw(info(&kept.id)).await.unwrap().0, 200);
    let store = courier::app::open_store(&app.settings).await.unwrap();
    let gone = files::Entity::find_by_id(unsent.id.as_str())
        .one(&store.db)
        .await
        .unwrap();
    assert!(
        gone.is_none(),
        "an unsent upload of a deleted account stayed"
    );

    // Her name: not found by name, taken until the grace period is over, then free.
    assert!(app
        .api
        .users(bob.token(), &["alice"], &[])
        .await
        .unwrap()
        .is_empty());
    let e = app.api.sign_up("alice", "another password").await;
    assert_eq!(code(e), Some(ErrorCode::UsernameTaken));
    tokio::time::sleep(grace + Duration::from_secs(1)).await;
    let new_alice = app.api.sign_up("alice", "another password").await.unwrap();
    assert_ne!(new_alice, a);
    let d = app.api.conversation(bob.token(), &direct).await.unwrap();
    assert!(
        d.profiles[0].deleted,
        "the old conversation is still with the deleted account"
    );

    // An operator deletes carol: her connection closes within a couple of seconds.
    let out = courier()
        .args(["admin", "delete-user", "carol"])
        .env("COURIER_DATABASE_URL", app.settings.database_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = carol.drain_for(Duration::from_secs(4)).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Disconnected(_))),
        "{events:?}"
    );
    carol.client.disconnect().await;
    assert_refused(&carol.session, "NotAuthorized").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = app.api.me(carol.token()).await;
    assert_eq!(code(e), Some(ErrorCode::Unauthorized));
}
