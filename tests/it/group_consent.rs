//! Who may add me to a group: `everyone`, `contacts` (the default: users I share a direct
//! conversation with that I started or wrote in) or `nobody`. A refused add is
//! `consent_required` naming the users, and changes nothing.

use crate::helpers::{refused, spawn_app, Db};
use courier_client::protocol::http::{GroupAdds, SettingsChange};
use courier_client::protocol::{ErrorCode, UserId};
use courier_client::ClientError;
use reqwest::{Method, StatusCode};
use serde_json::json;

crate::on_both_databases!(group_adds_need_consent, settings_refuse_bad_input);

/// The users a `consent_required` refusal names.
fn refused_users<T: std::fmt::Debug>(r: Result<T, ClientError>) -> Vec<String> {
    match r {
        Err(ClientError::Server(e)) if e.code == ErrorCode::ConsentRequired => {
            serde_json::from_value(e.details.expect("details")["users"].clone()).unwrap()
        }
        other => panic!("expected consent_required, got {other:?}"),
    }
}

async fn group_adds_need_consent(db: Db) {
    let app = spawn_app(db).await;
    for u in ["alice", "carol", "dave", "erin", "frank", "mallory"] {
        app.user(u).await;
    }
    let alice = app.tcp_device("alice", "phone").await;
    let carol = app.tcp_device("carol", "phone").await;
    let dave = app.tcp_device("dave", "phone").await;
    let erin = app.tcp_device("erin", "phone").await;
    let frank = app.tcp_device("frank", "phone").await;
    let mallory = app.tcp_device("mallory", "phone").await;
    let api = &app.api;
    let id = |d: &crate::helpers::Device| d.session.user.clone();

    // The default is contacts only.
    let settings = api.settings(carol.token()).await.unwrap();
    assert_eq!(settings.group_adds, GroupAdds::Contacts);

    // A stranger is refused, by name, and nothing is created for anyone.
    let users = refused_users(api.create_group(alice.token(), "g", &[id(&carol)]).await);
    assert_eq!(users, vec![id(&carol).to_string()]);
    assert!(api.conversations(alice.token()).await.unwrap().is_empty());
    assert!(api.conversations(carol.token()).await.unwrap().is_empty());

    // A direct conversation alice opened and only alice wrote in is no relationship: anyone
    // can open one.
    let direct = api.create_direct(alice.token(), &id(&carol)).await.unwrap();
    alice
        .client
        .send_text(&direct.id, "hi carol")
        .await
        .unwrap();
    refused_users(api.create_group(alice.token(), "g", &[id(&carol)]).await);
    // Once carol writes back, alice is her contact.
    carol
        .client
        .send_text(&direct.id, "hi alice")
        .await
        .unwrap();
    let g = api
        .create_group(alice.token(), "g", &[id(&carol)])
        .await
        .unwrap();

    // dave started a direct conversation with alice (and wrote nothing): that counts too.
    api.create_direct(dave.token(), &id(&alice)).await.unwrap();
    // frank lets anyone add him; erin lets nobody, not even a contact.
    api.set_group_adds(frank.token(), GroupAdds::Everyone)
        .await
        .unwrap();
    api.create_direct(erin.token(), &id(&alice)).await.unwrap();
    let after = api
        .set_group_adds(erin.token(), GroupAdds::Nobody)
        .await
        .unwrap();
    assert_eq!(after.group_adds, GroupAdds::Nobody);
    assert_eq!(
        api.settings(erin.token()).await.unwrap().group_adds,
        GroupAdds::Nobody
    );

    // An add naming one refusing user adds nobody: the members stay as they were.
    let add = |who: Vec<UserId>| {
        let path = format!("/conversations/{}/members", g.id);
        let request = api
            .request(Method::POST, &path, Some(alice.token()))
            .json(&json!({ "members": who }));
        async move { api.raw(request).await.unwrap() }
    };
    let (status, body) = add(vec![id(&dave), id(&erin), id(&frank), id(&mallory)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "consent_required");
    let mut expected = vec![id(&erin).to_string(), id(&mallory).to_string()];
    expected.sort();
    assert_eq!(body["error"]["details"]["users"], json!(expected));
    let now = api.conversation(alice.token(), &g.id).await.unwrap();
    assert_eq!(now.members.len(), 2, "{:?}", now.members);

    // The ones who consent are added.
    let (status, _) = add(vec![id(&dave), id(&frank)]).await;
    assert_eq!(status, StatusCode::OK);
    let now = api.conversation(alice.token(), &g.id).await.unwrap();
    assert_eq!(now.members.len(), 4);

    // Someone already in the group is not asked again, whatever they set since.
    api.set_group_adds(dave.token(), GroupAdds::Nobody)
        .await
        .unwrap();
    let (status, _) = add(vec![id(&dave)]).await;
    assert_eq!(status, StatusCode::OK);

    // The abuse case: a stranger making groups around alice gets none of them onto her list.
    let before = api.conversations(alice.token()).await.unwrap().len();
    for i in 0..20 {
        let title = format!("spam {i}");
        let r = api
            .create_group(mallory.token(), &title, &[id(&alice), id(&frank)])
            .await;
        assert_eq!(refused_users(r), vec![id(&alice).to_string()]);
    }
    assert_eq!(
        api.conversations(alice.token()).await.unwrap().len(),
        before
    );
    assert!(api.conversations(frank.token()).await.unwrap().len() == 1);
}

async fn settings_refuse_bad_input(db: Db) {
    let app = spawn_app(db).await;
    app.user("alice").await;
    let alice = app.session("alice", "phone").await;
    let api = &app.api;
    let patch = |body: serde_json::Value, token: Option<&str>| {
        let request = api
            .request(Method::PATCH, "/me/settings", token)
            .json(&body);
        async move { api.raw(request).await.unwrap() }
    };
    for bad in [
        json!({ "group_adds": "friends" }),
        json!({ "group_adds": 1 }),
        json!({ "who": "everyone" }),
        json!([]),
    ] {
        let (status, body) = patch(bad.clone(), Some(&alice.token)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            ["bad_request", "bad_json"].contains(&body["error"]["code"].as_str().unwrap()),
            "{body}"
        );
    }
    let (status, _) = patch(json!({ "group_adds": "everyone" }), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = patch(json!({ "group_adds": "everyone" }), Some("not-a-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // None of it changed anything; an empty change changes nothing either.
    let now = api
        .change_settings(&alice.token, &SettingsChange::default())
        .await
        .unwrap();
    assert_eq!(now.group_adds, GroupAdds::Contacts);
    assert_eq!(
        refused(api.settings("not-a-token").await),
        ErrorCode::Unauthorized
    );
}
