//! One user's write can never fail another's: a request the databases could not store is
//! refused before it reaches a write batch, and a write the database refuses anyway fails
//! alone while the rest of its batch commits.

use crate::helpers::{refused, spawn_app, Db};
use courier_client::protocol::{ErrorCode, UpdateBody};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

crate::on_both_databases!(
    a_nul_is_refused_before_any_batch,
    a_write_the_database_refuses_fails_alone
);

fn error_code(answer: &Value) -> &str {
    assert_eq!(answer["ok"], false, "{answer}");
    answer["error"]["code"].as_str().expect("an error code")
}

fn send(id: &str, conv: &impl serde::Serialize, cmid: &str, text: &str) -> Value {
    json!({"id": id, "conv": conv, "cmid": cmid, "kind": "text", "text": text})
}

/// PostgreSQL cannot store U+0000 in `text` or `jsonb`. Such requests, published in the same
/// run as good ones (so in the same batch), are refused alone with `bad_request`; over HTTP
/// too.
async fn a_nul_is_refused_before_any_batch(db: Db) {
    let app = spawn_app(db).await;
    let (mut a, mut b, conv) = app.raw_alice_and_bob().await;
    let answers = a
        .requests(&[
            ("send", send("1", &conv, "c1", "first")),
            ("send", send("2", &conv, "bad\u{0}", "nul in cmid")),
            ("send", send("3", &conv, "c3", "nul \u{0} in text")),
            ("read", json!({"id": "4", "conv": "c\u{0}", "seq": 1})),
            ("ack", json!({"id": "5", "useq": 1, "k\u{0}": true})),
            ("send", send("6", &conv, "c6", "last")),
        ])
        .await;
    let ids: Vec<&str> = answers.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(answers[0]["result"]["seq"], 1, "{answers:?}");
    for bad in &answers[1..5] {
        assert_eq!(error_code(bad), "bad_request");
    }
    assert_eq!(answers[5]["result"]["seq"], 2, "{answers:?}");
    for seq in 1..=2 {
        let u = b.next_message().await;
        let UpdateBody::Message { msg } = u.body else {
            unreachable!()
        };
        assert_eq!(msg.seq, seq);
    }

    // HTTP paths and queries: a NUL there is the client's mistake too (PostgreSQL refuses it,
    // SQLite finds nothing), never a server error.
    for path in [
        "/media/f%00x".to_owned(),
        "/media/f%00x/info".to_owned(),
        format!("/conversations/{conv}%00/messages"),
        "/users?names=a%00b".to_owned(),
    ] {
        let (status, body) = app
            .api
            .raw(app.api.request(reqwest::Method::GET, &path, Some(&a.token)))
            .await
            .unwrap();
        assert!(
            !status.is_server_error(),
            "{path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }

    // HTTP bodies: a sign-up and a group title.
    assert_eq!(
        refused(app.api.sign_up("ev\u{0}il", "long enough password").await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        refused(
            app.api
                .create_group(
                    &a.token,
                    "ti\u{0}tle",
                    std::slice::from_ref(&b.session.user)
                )
                .await
        ),
        ErrorCode::BadRequest
    );
}

/// A database trigger refuses one message: its send fails, while the sends queued with it in
/// the same batch commit, with gapless seqs, and are delivered.
async fn a_write_the_database_refuses_fails_alone(db: Db) {
    let app = spawn_app(db).await;
    let (mut a, mut b, conv) = app.raw_alice_and_bob().await;
    let admin = sea_orm::Database::connect(&app.settings.database_url())
        .await
        .unwrap();
    let refuse: &[&str] = match db {
        Db::Sqlite => &["CREATE TRIGGER refuse_poison BEFORE INSERT ON messages \
             WHEN NEW.cmid = 'poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END"],
        Db::Postgres => &[
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.cmid = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ],
    };
    for sql in refuse {
        admin.execute_unprepared(sql).await.unwrap();
    }

    let mut requests: Vec<(&str, Value)> = Vec::new();
    for n in 0..20 {
        let cmid = if n == 7 {
            "poison".to_owned()
        } else {
            format!("c{n}")
        };
        requests.push(("send", send(&n.to_string(), &conv, &cmid, "hello")));
    }
    let answers = a.requests(&requests).await;
    let ids: Vec<String> = answers
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, (0..20).map(|n| n.to_string()).collect::<Vec<_>>());
    assert_eq!(error_code(&answers[7]), "internal");
    let seqs: Vec<i64> = answers
        .iter()
        .filter_map(|a| a["result"]["seq"].as_i64())
        .collect();
    assert_eq!(seqs, (1..=19).collect::<Vec<_>>(), "{answers:?}");
    for seq in 1..=19 {
        let u = b.next_message().await;
        let UpdateBody::Message { msg } = u.body else {
            unreachable!()
        };
        assert_eq!(msg.seq, seq);
        assert_ne!(msg.cmid, "poison");
    }
}
