//! Who may sign up: `--signup open` (anyone, the default), `invite` (with a code an operator
//! makes with `courier invite`, one use spent per sign-up) or `closed`.

use crate::binary::{courier, succeed};
use crate::helpers::{refused, spawn_app_with, Db};
use courier::settings::SignupMode;
use courier_client::protocol::ErrorCode;
use std::time::Duration;

crate::on_both_databases!(invites_are_needed_spent_once_and_expire);

const PASSWORD: &str = "correct horse battery";

async fn invites_are_needed_spent_once_and_expire(db: Db) {
    let app = spawn_app_with(db, |s| s.signup = SignupMode::Invite).await;
    let api = &app.api;
    assert_eq!(
        refused(api.sign_up("ann", PASSWORD).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(
            api.sign_up_invited("ann", PASSWORD, Some("not-a-code"))
                .await
        ),
        ErrorCode::Forbidden
    );

    // A code for two sign-ups, made by the CLI against the server's database.
    let url = app.settings.database_url();
    let out = tokio::task::spawn_blocking(move || {
        succeed(courier().args(["invite", "--uses", "2", "--database-url", &url]))
    })
    .await
    .unwrap();
    let code = out.trim().to_owned();
    assert_eq!(code.len(), 24, "{out}");
    api.sign_up_invited("ann", PASSWORD, Some(&code))
        .await
        .unwrap();
    // A sign-up that fails (the name is taken) spends nothing.
    assert_eq!(
        refused(api.sign_up_invited("ANN", PASSWORD, Some(&code)).await),
        ErrorCode::UsernameTaken
    );
    api.sign_up_invited("ben", PASSWORD, Some(&code))
        .await
        .unwrap();
    assert_eq!(
        refused(api.sign_up_invited("cat", PASSWORD, Some(&code)).await),
        ErrorCode::Forbidden
    );
    // Signed-up users log in as usual.
    app.session("ann", "phone").await;

    // An expired code makes nobody.
    let store = backend::Store::new(
        backend::db::open(&app.settings.database_url())
            .await
            .unwrap(),
    );
    let (brief, _) = store
        .create_invite(5, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        refused(api.sign_up_invited("dan", PASSWORD, Some(&brief)).await),
        ErrorCode::Forbidden
    );
    // Nor does a valid one on a closed server.
    let closed = spawn_app_with(db, |s| s.signup = SignupMode::Closed).await;
    let store = backend::Store::new(
        backend::db::open(&closed.settings.database_url())
            .await
            .unwrap(),
    );
    let (good, _) = store
        .create_invite(5, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        refused(
            closed
                .api
                .sign_up_invited("eve", PASSWORD, Some(&good))
                .await
        ),
        ErrorCode::Forbidden
    );
}
