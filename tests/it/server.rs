//! Process-level behaviour: settings, a taken port, migrations.

use crate::helpers::test_settings;
use backend::store::invites::Signup;
use courier::App;

#[tokio::test]
async fn taken_port_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    for (flag, set) in [
        (
            "--http",
            (|s: &mut courier::Settings, a| s.http = a)
                as fn(&mut courier::Settings, std::net::SocketAddr),
        ),
        ("--mqtt", |s, a| s.mqtt = a),
        ("--mqtt-ws", |s, a| s.mqtt_ws = a),
    ] {
        let mut s = test_settings(dir.path());
        set(&mut s, port);
        let err = App::bind(s)
            .await
            .err()
            .expect("bind must fail")
            .to_string();
        assert!(err.contains("is in use") && err.contains(flag), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[tokio::test]
async fn restart_keeps_data_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    backend::db::open(&url).await.unwrap();
    let db = backend::db::open(&url).await.unwrap();
    let store = backend::Store::new(db);
    store
        .create_user("persisted", "long enough pw", Signup::Open, None)
        .await
        .unwrap();
    drop(store);
    let store = backend::Store::new(backend::db::open(&url).await.unwrap());
    let err = store
        .create_user("persisted", "long enough pw", Signup::Open, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        courier_client::protocol::ErrorCode::UsernameTaken
    );
}
