//! Reports and suspension (#16 item 3): users report users and messages (a message as the
//! reporter saw it, only one they can see); an operator lists open reports and resolves them
//! with `courier admin`, and suspends an account: its connected devices are closed, its
//! CONNECTs refused as not authorised, its HTTP requests and log-ins answered 403
//! `suspended`, until `courier admin unsuspend`. Everyone else carries on.

use crate::acl::assert_refused;
use crate::binary::courier;
use crate::helpers::{refusal as code, spawn_app, Db, TestApp};
use courier_client::protocol::http::{NewReport, ReportReason};
use courier_client::protocol::{ErrorCode, MsgId, UpdateBody, UserId};
use courier_client::{Client, ClientOptions, Event};
use std::time::Duration;

crate::on_both_databases!(
    reports_keep_what_the_reporter_saw,
    a_suspended_account_is_closed_and_refused_until_unsuspended
);

fn report(user: Option<&UserId>, msg: Option<&MsgId>, reason: ReportReason) -> NewReport {
    NewReport {
        user: user.cloned(),
        msg: msg.cloned(),
        reason,
        note: None,
    }
}

/// `courier admin ARGS` against the app's database, as an operator runs it: its stdout.
fn admin(app: &TestApp, args: &[&str]) -> String {
    let out = courier()
        .arg("admin")
        .args(args)
        .env("COURIER_DATABASE_URL", app.settings.database_url())
        .env("COURIER_DATA_DIR", &app.settings.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "courier admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn reports_keep_what_the_reporter_saw(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob", "carol"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let bob = app.tcp_device("bob", "phone").await;
    let carol = app.session("carol", "phone").await;
    let conv = app.direct(&alice, &bob).await;
    let spam = bob
        .client
        .send_text(&conv, "cheap pills \u{1b}[31m")
        .await
        .unwrap();
    alice.next_message().await;
    let b = bob.session.user.clone();

    let mut filed = report(None, Some(&spam.msg), ReportReason::Spam);
    filed.note = Some("  keeps sending this  ".into());
    let r = app.api.report(alice.token(), &filed).await.unwrap();
    assert_eq!(
        (r.user.clone(), r.msg.clone()),
        (b.clone(), Some(spam.msg.clone()))
    );
    let on_user = report(Some(&b), None, ReportReason::Abuse);
    let r2 = app.api.report(alice.token(), &on_user).await.unwrap();
    assert_ne!(r.id, r2.id);
    // The sender edits it afterwards: the report keeps what alice saw.
    bob.client.edit(&spam.msg, "nothing to see").await.unwrap();

    // Refused, and nothing filed: a message carol cannot see, herself, nothing named, a user
    // who is not the message's sender, an unknown reason, a long note, no such user.
    let e = app
        .api
        .report(
            &carol.token,
            &report(None, Some(&spam.msg), ReportReason::Spam),
        )
        .await;
    assert_eq!(code(e), Some(ErrorCode::NotFound));
    let me = alice.session.user.clone();
    let e = app
        .api
        .report(alice.token(), &report(Some(&me), None, ReportReason::Other))
        .await;
    assert_eq!(code(e), Some(ErrorCode::BadRequest));
    let e = app
        .api
        .report(alice.token(), &report(None, None, ReportReason::Other))
        .await;
    assert_eq!(code(e), Some(ErrorCode::BadRequest));
    let e = app
        .api
        .report(
            alice.token(),
            &report(Some(&carol.user), Some(&spam.msg), ReportReason::Spam),
        )
        .await;
    assert_eq!(code(e), Some(ErrorCode::BadRequest));
    let mut long = report(Some(&b), None, ReportReason::Other);
    long.note = Some("x".repeat(1001));
    assert_eq!(
        code(app.api.report(alice.token(), &long).await),
        Some(ErrorCode::BadRequest)
    );
    let ghost = UserId::parse("u_nobody_here").unwrap();
    let e = app
        .api
        .report(
            alice.token(),
            &report(Some(&ghost), None, ReportReason::Spam),
        )
        .await;
    assert_eq!(code(e), Some(ErrorCode::NotFound));
    let raw = reqwest::Client::new()
        .post(format!("http://{}/v1/reports", app.addrs.http))
        .bearer_auth(alice.token())
        .json(&serde_json::json!({ "user": b, "reason": "meh" }))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);

    // The operator's view: both open reports, oldest first, names, the note and the message
    // as alice saw it (its control character shown escaped, not obeyed).
    let listed = admin(&app, &["reports"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert!(
        lines[0].starts_with(&r.id) && lines[0].contains("spam"),
        "{listed}"
    );
    assert!(lines[0].contains("bob reported by alice"), "{listed}");
    assert!(listed.contains("note: keeps sending this\n"), "{listed}");
    assert!(
        listed.contains("cheap pills") && !listed.contains("nothing to see"),
        "{listed}"
    );
    assert!(!listed.contains('\u{1b}'), "{listed:?}");
    assert!(
        listed.contains(&r2.id) && listed.contains("abuse"),
        "{listed}"
    );
    assert_eq!(listed.matches(" reported by ").count(), 2, "{listed}");
    admin(&app, &["resolve", &r.id]);
    let listed = admin(&app, &["reports"]);
    assert!(
        !listed.contains(&r.id) && listed.contains(&r2.id),
        "{listed}"
    );
    let again = courier()
        .args(["admin", "resolve", &r.id])
        .env("COURIER_DATABASE_URL", app.settings.database_url())
        .output()
        .unwrap();
    assert!(!again.status.success(), "resolving twice");
}

async fn a_suspended_account_is_closed_and_refused_until_unsuspended(db: Db) {
    let app = spawn_app(db).await;
    app.users(&["alice", "bob"]).await;
    let mut alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let bob_laptop = app.session("bob", "laptop").await;
    let conv = app.direct(&alice, &bob).await;

    admin(&app, &["suspend", "bob"]);
    // Closed within a couple of seconds, by the server's own round.
    let events = bob.drain_for(Duration::from_secs(4)).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Disconnected(_))),
        "{events:?}"
    );
    bob.client.disconnect().await;
    // Refused everywhere: MQTT, HTTP (within the token cache's second), a new log-in.
    assert_refused(&bob.session, "NotAuthorized").await;
    assert_refused(&bob_laptop, "NotAuthorized").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = app.api.conversations(bob.token()).await;
    assert_eq!(code(e), Some(ErrorCode::Suspended));
    let status = reqwest::Client::new()
        .get(format!("http://{}/v1/devices", app.addrs.http))
        .bearer_auth(&bob_laptop.token)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 403);
    let body: serde_json::Value = status.json().await.unwrap();
    assert_eq!(body["error"]["code"], "suspended");
    let e = app
        .api
        .log_in("bob", "correct horse battery", "tablet", "test")
        .await;
    assert_eq!(code(e), Some(ErrorCode::Suspended));
    // A wrong password still says only that.
    let e = app
        .api
        .log_in("bob", "wrong password!", "tablet", "test")
        .await;
    assert_eq!(code(e), Some(ErrorCode::BadCredentials));
    // alice carries on.
    alice.client.send_text(&conv, "still here").await.unwrap();

    admin(&app, &["unsuspend", "bob"]);
    app.api.conversations(bob.token()).await.unwrap();
    let (client, _events) = Client::connect(ClientOptions::tcp(&bob.session))
        .await
        .unwrap();
    client.send_text(&conv, "back").await.unwrap();
    alice.next_message().await;
    let caught_up = client.sync_all(0).await.unwrap();
    assert!(caught_up
        .iter()
        .any(|u| matches!(&u.body, UpdateBody::Message { .. })));
    // Unknown names are an operator's error.
    let out = courier()
        .args(["admin", "suspend", "nobody"])
        .env("COURIER_DATABASE_URL", app.settings.database_url())
        .output()
        .unwrap();
    assert!(!out.status.success());
}
