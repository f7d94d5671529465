//! The machine-readable contracts. The OpenAPI document at `/v1/openapi.json`: OpenAPI 3.1,
//! made from the router, so every path it names is served (none falls through to "no such
//! route"), with the wire types' schemas, the error body and its codes, and the security
//! schemes; schemathesis against the real server. The AsyncAPI document at
//! `/v1/asyncapi.json` (docs/asyncapi.yaml): every op and update type, with the same schemas
//! (the parser and real payloads check it in sdk/js/test/contract.test.mjs).

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
        "docs/openapi.json is out of date: BLESS=1 cargo test -p courier --test it contracts::docs"
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

fn yaml(v: &Value) -> yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(yaml).collect()),
        Value::Object(o) => Yaml::Hash(
            o.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), yaml(v)))
                .collect(),
        ),
    }
}

/// docs/asyncapi.yaml is the document the server serves (`BLESS=1` rewrites it), and it names
/// every op (a channel and an operation each) and every update type.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_asyncapi_document_covers_every_op_and_update() {
    use courier_client::protocol::ops::Op;
    use courier_client::protocol::UpdateBody;
    let doc = backend::http::asyncapi::document();
    let app = spawn_app(Db::Sqlite).await;
    let served: Value = reqwest::get(format!("http://{}/v1/asyncapi.json", app.addrs.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, doc);
    assert_eq!(doc["asyncapi"], "3.0.0");
    for op in Op::ALL {
        let name = op.as_str();
        assert!(doc["channels"][format!("req_{name}")]["address"]
            .as_str()
            .is_some_and(|a| a.ends_with(&format!("/req/{name}"))));
        let qos = if op == Op::Typing { 0 } else { 1 };
        assert_eq!(
            doc["operations"][name]["bindings"]["mqtt"]["qos"], qos,
            "{name}"
        );
    }
    // The update messages come from UpdateBody's schema; they are exactly the kinds the
    // server writes.
    let documented: std::collections::BTreeSet<String> = doc["channels"]["in"]["messages"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.trim_start_matches("update_").to_owned())
        .collect();
    let known: std::collections::BTreeSet<String> =
        UpdateBody::KINDS.iter().map(|k| k.to_string()).collect();
    assert_eq!(documented, known);
    for kind in ["typing", "presence"] {
        assert!(doc["channels"]["eph"]["messages"][format!("eph_{kind}")].is_object());
    }
    // The schemas are the OpenAPI document's where the types are the same.
    let openapi = serde_json::to_value(backend::http::openapi()).unwrap();
    let (ours, theirs) = (
        &doc["components"]["schemas"],
        &openapi["components"]["schemas"],
    );
    let both: Vec<&String> = ours
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| theirs.get(k.as_str()).is_some())
        .collect();
    for name in ["ErrorBody", "ErrorCode", "Content", "Attachment", "Message"] {
        assert!(
            both.iter().any(|k| *k == name),
            "{name} is not in both documents"
        );
    }
    for name in both {
        assert_eq!(
            ours[name], theirs[name],
            "{name} differs between the documents"
        );
    }

    let mut text = String::new();
    yaml_rust2::YamlEmitter::new(&mut text)
        .dump(&yaml(&doc))
        .unwrap();
    text.push('\n');
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/asyncapi.yaml");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(path, &text).unwrap();
        return;
    }
    let kept = std::fs::read_to_string(path).unwrap_or_default();
    let served_yaml = reqwest::get(format!("http://{}/v1/asyncapi.yaml", app.addrs.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        served_yaml, kept,
        "/v1/asyncapi.yaml serves docs/asyncapi.yaml"
    );
    assert!(
        kept == text,
        "docs/asyncapi.yaml is out of date: BLESS=1 cargo test -p courier --test it contracts::the_asyncapi"
    );
}
