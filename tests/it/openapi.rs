//! The OpenAPI document at `/v1/openapi.json`: OpenAPI 3.1, made from the router, so every
//! path it names is served (none falls through to "no such route"), with the wire types'
//! schemas, the error body and its codes, and the security schemes.

use crate::helpers::{spawn_app, Db};
use reqwest::Method;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_document_describes_every_route_the_server_has() {
    let app = spawn_app(Db::Sqlite).await;
    let base = format!("http://{}", app.addrs.http);
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{base}/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc, serde_json::to_value(backend::http::openapi()).unwrap());

    // Every operation is routed: a call with made-up ids reaches its handler (which may
    // refuse it), never the fallback.
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            operations += 1;
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
            let r = http
                .request(m.clone(), format!("{base}{concrete}"))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            assert!(
                !text.contains("no such route"),
                "{method} {path} is in the document but not routed ({status})"
            );
        }
    }
    assert!(operations >= 50, "{operations} operations");
    for path in [
        "/v1/users",
        "/v1/sessions",
        "/v1/conversations",
        "/v1/conversations/{id}/messages",
        "/v1/uploads/{id}",
        "/v1/media/{id}",
        "/v1/search",
        "/healthz",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }

    // Bodies are the wire types, errors have their envelope and every code.
    let schemas = &doc["components"]["schemas"];
    for name in [
        "Session",
        "Conversation",
        "ConversationPage",
        "HistoryPage",
        "MediaFile",
        "ErrorEnvelope",
        "ErrorBody",
    ] {
        assert!(schemas.get(name).is_some(), "schema {name} missing");
    }
    let codes = serde_json::to_string(&schemas["ErrorCode"]).unwrap();
    for code in [
        "bad_json",
        "bad_request",
        "unauthorized",
        "not_member",
        "rate_limited",
        "quota_exceeded",
        "unavailable",
    ] {
        assert!(
            codes.contains(code),
            "error code {code} missing from {codes}"
        );
    }
    let log_in = &paths["/v1/sessions"]["post"];
    assert!(
        log_in["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap()
            .ends_with("/LogIn")
    );
    assert!(log_in["responses"]["429"].is_object(), "refusals listed");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["device_token"]["scheme"], "bearer");
    assert_eq!(
        paths["/v1/conversations"]["get"]["security"][0]["device_token"],
        serde_json::json!([])
    );
}

/// docs/openapi.json is the document the server serves (`BLESS=1` rewrites it), so it can be
/// read and fed to generators without a running server.
#[test]
fn docs_openapi_json_is_the_servers_document() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let made = serde_json::to_string_pretty(&backend::http::openapi()).unwrap() + "\n";
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(path, &made).unwrap();
        return;
    }
    let kept = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        kept == made,
        "docs/openapi.json is out of date: BLESS=1 cargo test -p courier --test it openapi::docs"
    );
}

/// Where `.ci/run` installs schemathesis (a Python venv), or `SCHEMATHESIS`.
fn schemathesis() -> std::path::PathBuf {
    let path = std::env::var_os("SCHEMATHESIS")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(&std::env::var("HOME").unwrap_or_default())
                .join(".cache/courier/schemathesis/bin/schemathesis")
        });
    assert!(
        path.exists(),
        "{} is missing: python3 -m venv ~/.cache/courier/schemathesis && \
         ~/.cache/courier/schemathesis/bin/pip install schemathesis==4.32.5 (.ci/run does)",
        path.display()
    );
    path
}

/// Property-based conformance against the real server, driven by the document: schemathesis
/// generates requests for every operation (with a real device token) and fails on any 5xx, and
/// on any answer whose status, content type, headers or body the document does not describe.
/// Left out: the broker hooks (off unless configured, and for brokers, not apps) and the tus
/// PATCH (a byte stream schemathesis cannot make).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_server_error_or_undocumented_answer() {
    let tool = schemathesis();
    let app = spawn_app(Db::Sqlite).await;
    app.users(&["schema"]).await;
    let token = app.session("schema", "fuzzer").await.token;
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(600),
        tokio::process::Command::new(&tool)
            .arg("run")
            .arg(format!("http://{}/v1/openapi.json", app.addrs.http))
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance",
                "--exclude-tag",
                "broker hooks",
                "--exclude-name",
                "PATCH /v1/uploads/{id}",
                "--max-examples",
                "30",
                "--generation-deterministic",
            ])
            .env("NO_COLOR", "1")
            .current_dir(app.data_dir())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("schemathesis took over 10 minutes")
    .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
}
