//! The auth/ACL hooks an external broker calls (EMQX HTTP authentication/authorization,
//! mosquitto-go-auth's HTTP backend): the same rules as Courier's own broker, behind the hook
//! secret, on both databases.

use crate::helpers::{spawn_app_with, Setup, TestApp};
use crate::on_both_databases;
use serde_json::{json, Value};

const HOOK_SECRET: &str = "hook-secret-for-tests";
const SERVICE_SECRET: &str = "service-secret-for-tests";

async fn hook(app: &TestApp, path: &str, secret: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/v1/broker/{path}", app.addrs.http))
        .json(&body);
    if let Some(s) = secret {
        req = req.bearer_auth(s);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn verdict(app: &TestApp, path: &str, body: Value) -> (String, bool) {
    let (status, v) = hook(app, path, Some(HOOK_SECRET), body).await;
    assert_eq!(status, 200, "{v}");
    let result = v["result"].as_str().unwrap().to_owned();
    assert_eq!(
        v["ok"].as_bool(),
        Some(result == "allow"),
        "both contracts agree: {v}"
    );
    (result, v["is_superuser"].as_bool().unwrap())
}

async fn hooks_apply_the_brokers_rules(setup: Setup) {
    let app = spawn_app_with(setup, |s| {
        s.broker_hook_secret = Some(HOOK_SECRET.into());
        s.service_secret = Some(SERVICE_SECRET.into());
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let alice = app.session("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    let (user, device) = (alice.user.as_str(), alice.device.as_str());
    let auth = |password: &str, clientid: &str, username: &str| json!({"clientid": clientid, "username": username, "password": password});

    // Authentication: device id + token, as on Courier's own broker.
    let allow = ("allow".to_owned(), false);
    let deny = ("deny".to_owned(), false);
    assert_eq!(
        verdict(&app, "auth", auth(&alice.token, device, device)).await,
        allow
    );
    assert_eq!(
        verdict(&app, "auth", auth(&bob.token, device, device)).await,
        deny
    );
    assert_eq!(
        verdict(&app, "auth", auth(&alice.token, "other", device)).await,
        deny
    );
    assert_eq!(verdict(&app, "auth", auth("", "", "")).await, deny);
    let service = auth(SERVICE_SECRET, "courier-backend-1", "courier-backend");
    assert_eq!(
        verdict(&app, "auth", service).await,
        ("allow".to_owned(), true),
        "the service identity is a superuser"
    );
    let wrong_service = auth("guess", "x", "courier-backend");
    assert_eq!(verdict(&app, "auth", wrong_service).await, deny);
    assert_eq!(
        verdict(&app, "superuser", json!({"username": "courier-backend"})).await,
        ("allow".to_owned(), true)
    );
    assert_eq!(
        verdict(&app, "superuser", json!({"username": device})).await,
        deny
    );

    // Authorisation, EMQX style (`action`) and go-auth style (`acc`).
    let acl = |topic: String, action: &str| json!({"clientid": device, "username": device, "topic": topic, "action": action});
    let own = |stream: &str| format!("u/{user}/d/{device}/{stream}");
    for (topic, action, expected) in [
        (own("req/send"), "publish", &allow),
        (own("presence"), "publish", &allow),
        (own("in"), "subscribe", &allow),
        (own("rsp"), "subscribe", &allow),
        (own("eph"), "subscribe", &allow),
        (own("in"), "publish", &deny),
        (own("req/send"), "subscribe", &deny),
        (own("#"), "subscribe", &deny),
        ("u/+/d/+/in".to_owned(), "subscribe", &deny),
        (
            format!("u/{}/d/{}/in", bob.user, bob.device),
            "subscribe",
            &deny,
        ),
        (
            format!("u/{}/d/{}/req/send", bob.user, bob.device),
            "publish",
            &deny,
        ),
        ("$SYS/brokers".to_owned(), "subscribe", &deny),
    ] {
        assert_eq!(
            &verdict(&app, "acl", acl(topic.clone(), action)).await,
            expected,
            "{action} {topic}"
        );
    }
    let go_auth = |topic: String, acc: u8| json!({"clientid": device, "username": device, "topic": topic, "acc": acc});
    assert_eq!(
        verdict(&app, "acl", go_auth(own("req/send"), 2)).await,
        allow
    );
    assert_eq!(verdict(&app, "acl", go_auth(own("in"), 4)).await, allow);
    assert_eq!(verdict(&app, "acl", go_auth(own("in"), 1)).await, allow);
    assert_eq!(verdict(&app, "acl", go_auth(own("in"), 2)).await, deny);
    let service_acl = json!({"username": "courier-backend", "topic": "$share/courier/u/+/d/+/req/+", "action": "subscribe"});
    assert_eq!(
        verdict(&app, "acl", service_acl).await,
        ("allow".to_owned(), true)
    );

    // A revoked device is refused from then on, on both hooks.
    app.api
        .revoke_device(&alice.token, device)
        .await
        .expect("revoke");
    assert_eq!(
        verdict(&app, "auth", auth(&alice.token, device, device)).await,
        deny
    );
    assert_eq!(
        verdict(&app, "acl", acl(own("req/send"), "publish")).await,
        deny
    );

    // Only the broker, holding the hook secret, may ask; bad requests get typed errors.
    let body = auth(&bob.token, bob.device.as_str(), bob.device.as_str());
    let (status, v) = hook(&app, "auth", None, body.clone()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = hook(&app, "auth", Some("wrong"), body.clone()).await;
    assert_eq!(status, 401);
    // mosquitto-go-auth can only carry the secret in its User-Agent.
    let go_auth = reqwest::Client::builder()
        .user_agent(format!("courier-hook/{HOOK_SECRET}"))
        .build()
        .unwrap();
    let r = go_auth
        .post(format!("http://{}/v1/broker/auth", app.addrs.http))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let (status, v) = hook(&app, "acl", Some(HOOK_SECRET), json!({"username": "x"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, v) = hook(
        &app,
        "acl",
        Some(HOOK_SECRET),
        json!({"username": "x", "topic": "t", "action": "launch"}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
}

/// VerneMQ's webhooks: the hook named in a header, the secret in the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vernemq_webhooks_apply_the_same_rules() {
    let app = spawn_app_with(crate::helpers::Db::Sqlite, |s| {
        s.broker_hook_secret = Some(HOOK_SECRET.into());
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let alice = app.session("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    let (user, device) = (alice.user.as_str(), alice.device.as_str());
    let call = |hook: &'static str, secret: &'static str, body: Value| {
        let url = format!(
            "http://{}/v1/broker/vernemq?secret={secret}",
            app.addrs.http
        );
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("vernemq-hook", hook)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let ok = json!({"result": "ok"});
    let no = json!({"result": {"error": "not_allowed"}});
    let register = |token: &str| json!({"client_id": device, "username": device, "password": token, "peer_addr": "127.0.0.1", "peer_port": 5000, "mountpoint": "", "clean_session": true});
    assert_eq!(
        call("auth_on_register", HOOK_SECRET, register(&alice.token)).await,
        (200, ok.clone())
    );
    assert_eq!(
        call("auth_on_register_m5", HOOK_SECRET, register(&alice.token)).await,
        (200, ok.clone())
    );
    assert_eq!(
        call("auth_on_register", HOOK_SECRET, register(&bob.token)).await,
        (200, no.clone())
    );
    let publish = |topic: String| json!({"client_id": device, "username": device, "mountpoint": "", "qos": 1, "topic": topic, "payload": "e30=", "retain": false});
    let own = |stream: &str| format!("u/{user}/d/{device}/{stream}");
    assert_eq!(
        call("auth_on_publish", HOOK_SECRET, publish(own("req/send"))).await,
        (200, ok.clone())
    );
    assert_eq!(
        call("auth_on_publish", HOOK_SECRET, publish(own("in"))).await,
        (200, no.clone())
    );
    let subscribe = |topics: Vec<String>| {
        let topics: Vec<Value> = topics
            .into_iter()
            .map(|t| json!({"topic": t, "qos": 1}))
            .collect();
        json!({"client_id": device, "username": device, "mountpoint": "", "topics": topics})
    };
    assert_eq!(
        call(
            "auth_on_subscribe",
            HOOK_SECRET,
            subscribe(vec![own("in"), own("rsp"), own("eph")])
        )
        .await,
        (200, ok.clone())
    );
    let foreign = format!("u/{}/d/{}/in", bob.user, bob.device);
    assert_eq!(
        call(
            "auth_on_subscribe",
            HOOK_SECRET,
            subscribe(vec![own("in"), foreign])
        )
        .await,
        (200, no.clone()),
        "one foreign filter refuses the whole SUBSCRIBE"
    );
    let (status, _) = call("auth_on_register", "wrong", register(&alice.token)).await;
    assert_eq!(status, 401);
    let (status, v) = call("on_deliver", HOOK_SECRET, publish(own("in"))).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
}

/// Without a hook secret there are no hooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hooks_are_off_without_a_secret() {
    let app = spawn_app_with(crate::helpers::Db::Sqlite, |_| {}).await;
    let (status, v) = hook(&app, "auth", Some(""), json!({})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

on_both_databases!(
    service_logins_are_limited_per_address,
    hooks_apply_the_brokers_rules
);

/// The service identity's secret cannot be guessed at speed: every login as it spends from
/// the client address's bucket, on Courier's own broker and through the hooks (EMQX's
/// `peerhost`), and an address over its limit is refused even with the right secret while
/// other addresses and devices are not.
async fn service_logins_are_limited_per_address(setup: Setup) {
    let app = spawn_app_with(setup, |s| {
        s.broker_hook_secret = Some(HOOK_SECRET.into());
        s.service_secret = Some(SERVICE_SECRET.into());
        s.limits.apply("service_login=5/1h").unwrap();
    })
    .await;
    app.user("alice").await;
    let alice = app.session("alice", "phone").await;
    let mqtt = |password: &str| {
        let mut o = rumqttc::v5::MqttOptions::new("impostor", "127.0.0.1", app.addrs.mqtt.port());
        o.set_credentials("courier-backend", password);
        let (_c, mut el) = rumqttc::v5::AsyncClient::new(o, 10);
        async move {
            match el.poll().await {
                Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => format!("{code:?}"),
                Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::ConnAck(
                    _,
                ))) => "accepted".to_owned(),
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(mqtt(SERVICE_SECRET).await, "accepted");
    for _ in 0..4 {
        assert_eq!(mqtt("guess").await, "BadUserNamePassword");
    }
    assert_eq!(
        mqtt(SERVICE_SECRET).await,
        "NotAuthorized",
        "over the limit"
    );
    // Devices log in as ever.
    let mut o =
        rumqttc::v5::MqttOptions::new(alice.device.as_str(), "127.0.0.1", app.addrs.mqtt.port());
    o.set_credentials(alice.device.as_str(), alice.token.as_str());
    let (_c, mut el) = rumqttc::v5::AsyncClient::new(o, 10);
    assert!(matches!(
        el.poll().await,
        Ok(rumqttc::v5::Event::Incoming(
            rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_)
        ))
    ));

    // Through the hooks, per the address the broker reports.
    let login = |password: &str, peer: &str| json!({"clientid": "x", "username": "courier-backend", "password": password, "peerhost": peer});
    for _ in 0..5 {
        let (result, _) = verdict(&app, "auth", login("guess", "203.0.113.7")).await;
        assert_eq!(result, "deny");
    }
    let (result, _) = verdict(&app, "auth", login(SERVICE_SECRET, "203.0.113.7")).await;
    assert_eq!(result, "deny", "over the limit");
    let (result, _) = verdict(&app, "auth", login(SERVICE_SECRET, "203.0.113.8")).await;
    assert_eq!(result, "allow", "another address has its own bucket");
}
