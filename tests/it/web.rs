//! The web chat at `/`: its files as the server serves them, and the whole app driven in
//! headless Chromium by `web/tests/chat.test.mjs` (Playwright) against a real server — two
//! people sign up, talk, watch the ticks, send a photo, scroll back and lose the network. And
//! the JS SDK package (`sdk/js`): its tests in Node against a real server, in a runtime with
//! browser globals and in one without (as React Native is), and its generated types.
//!
//! Needs Node.js, `npm ci` in `web/` and `sdk/js/` (done here when their packages are
//! missing) and Chromium at `/usr/bin/chromium` (or `CHROMIUM`); `.ci/run` installs both. A
//! missing one fails the test.

use crate::helpers::{spawn_app, Db};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/js")
}

/// `npm ci` in web/ and sdk/js/ once, when their test dependencies are missing.
fn node_modules() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (dir, marker) in [
            (web_dir(), "playwright-core"),
            (sdk_dir(), "@asyncapi/parser"),
        ] {
            if dir.join("node_modules").join(marker).is_dir() {
                continue;
            }
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
                .current_dir(&dir)
                .status()
                .expect("npm (Node.js) is needed for the web tests: apt install npm");
            assert!(status.success(), "npm ci in {} failed", dir.display());
        }
    });
}

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: the browser tests need Chromium (apt install chromium; .ci/run does)"
    );
    path
}

#[tokio::test]
async fn the_page_and_its_libraries_are_served_from_the_binary() {
    let app = spawn_app(Db::Sqlite).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", app.addrs.http);
    let index = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let h = index.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self' ws: wss:"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    let body = index.text().await.unwrap();
    assert!(
        body.contains("/web/app.js") && !body.contains("http"),
        "{body}"
    );
    for (file, mime, needle) in [
        ("app.js", "text/javascript; charset=utf-8", "Client"),
        (
            "courier.js",
            "text/javascript; charset=utf-8",
            "export class Client",
        ),
        ("style.css", "text/css; charset=utf-8", ".msg"),
        // From npm at build time.
        (
            "mqtt.esm.js",
            "text/javascript; charset=utf-8",
            "export default",
        ),
        ("tus.min.js", "text/javascript; charset=utf-8", "tus"),
    ] {
        let r = http.get(format!("{base}/web/{file}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{file}");
        assert_eq!(r.headers()["content-type"], mime, "{file}");
        let etag = r.headers()["etag"].clone();
        assert!(r.text().await.unwrap().contains(needle), "{file}");
        // Revalidation answers 304 without the body.
        let again = http
            .get(format!("{base}/web/{file}"))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{file}");
    }
    for missing in ["/web/nope.js", "/web/..%2Fbuild.rs", "/web/"] {
        let r = http.get(format!("{base}{missing}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }
}

/// Runs `script` (under `dir`) with node against the app: its output, or a panic with it.
async fn node(
    dir: &Path,
    script: &str,
    app: &crate::helpers::TestApp,
    env: &[(&str, &Path)],
) -> String {
    node_modules();
    let url = match app.settings.tls_cert {
        Some(_) => format!("https://localhost:{}", app.addrs.http.port()),
        None => format!("http://{}", app.addrs.http),
    };
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script)
        .current_dir(dir)
        .env("COURIER_URL", url)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} took over 5 minutes"))
        .expect("node (Node.js) is needed for the web tests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}/{script} failed:\n{stdout}\n{stderr}",
        dir.display()
    );
    format!("{stdout}{stderr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_sdk_keeps_order_and_sends_each_message_once() {
    let app = spawn_app(Db::Sqlite).await;
    // A phone's photo, for the upload with and without its metadata.
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("camera.jpg");
    let plain = crate::media_jobs::jpeg(64, 48);
    std::fs::write(&photo, media_worker::fixtures::camera_jpeg(&plain, 6)).unwrap();
    let out = node(
        &sdk_dir(),
        "test/sdk.test.mjs",
        &app,
        &[("COURIER_IMAGE", &photo)],
    )
    .await;
    assert!(out.contains("sdk: all checks passed"), "{out}");
    println!("{out}");
}

/// The SDK where there is no DOM (React Native, a worker, bare Node): no `window`,
/// `localStorage`, `EventTarget` or `CustomEvent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_sdk_runs_without_browser_globals() {
    let app = spawn_app(Db::Sqlite).await;
    let out = node(&sdk_dir(), "test/runtime.test.mjs", &app, &[]).await;
    assert!(out.contains("runtime: all checks passed"), "{out}");
}

/// The AsyncAPI document passes the AsyncAPI parser, and every payload a real session gets
/// on `rsp`, `in` and `eph` (every op, answered and refused, and the updates they make)
/// validates against its schema in the document (sdk/js/test/contract.test.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mqtt_payloads_match_the_asyncapi_document() {
    let app = spawn_app(Db::Sqlite).await;
    let out = node(&sdk_dir(), "test/contract.test.mjs", &app, &[]).await;
    assert!(out.contains("contract: all checks passed"), "{out}");
    println!("{out}");
}

/// sdk/js/types/courier.d.ts is what TypeScript makes of the SDK's JSDoc today
/// (`npm run types` in sdk/js rewrites it).
#[test]
fn the_js_sdk_types_are_generated_from_its_source() {
    node_modules();
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("node")
        .arg("node_modules/typescript/bin/tsc")
        .args(["-p", "tsconfig.json", "--outDir"])
        .arg(out.path())
        .current_dir(sdk_dir())
        .status()
        .expect("node (Node.js) is needed for the SDK's types");
    assert!(status.success(), "tsc failed on sdk/js/courier.js");
    let made = std::fs::read_to_string(out.path().join("courier.d.ts")).unwrap();
    let kept = std::fs::read_to_string(sdk_dir().join("types/courier.d.ts")).unwrap();
    assert!(
        made == kept,
        "sdk/js/types/courier.d.ts is out of date: run `npm run types` in sdk/js"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_in_headless_chromium() {
    let browser = chromium();
    // Push notices go to a local receiver the page's test reads back.
    let (push, _notices) = crate::push::receiver().await;
    let app =
        crate::helpers::spawn_app_with(Db::Sqlite, |s| s.push_webhook = Some(push.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photo.jpg");
    std::fs::write(&photo, crate::media_jobs::jpeg(1600, 1200)).unwrap();
    let clip = dir.path().join("clip.mp4");
    media_worker::fixtures::h264_clip("640x360", "2", &[], &clip);
    // Screenshots of every page when a step fails.
    let artifacts = web_dir().join("test-results");
    let _ = std::fs::remove_dir_all(&artifacts);
    let out = node(
        &web_dir(),
        "tests/chat.test.mjs",
        &app,
        &[
            ("COURIER_IMAGE", &photo),
            ("COURIER_VIDEO", &clip),
            ("COURIER_ARTIFACTS", &artifacts),
            ("CHROMIUM", Path::new(&browser)),
            ("COURIER_PUSH_LOG", Path::new(&push)),
        ],
    )
    .await;
    assert!(out.contains("web chat: all steps passed"), "{out}");
    println!("{out}");
}

/// The web chat over HTTPS and wss:// with one certificate (`--tls-cert`), in Chromium that
/// trusts the test CA through an NSS database (certutil), not by ignoring certificate errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_chat_works_over_https_with_a_test_ca() {
    let browser = chromium();
    let certs = tempfile::tempdir().unwrap();
    let ca = crate::tls::TestCa::new("Courier test CA");
    ca.issue(certs.path());
    let app = crate::tls::tls_app(certs.path()).await;
    let home = tempfile::tempdir().unwrap();
    let nssdb = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    let certutil = |args: &[&str]| {
        let status = Command::new("certutil")
            .args(["-d", &db])
            .args(args)
            .status()
            .expect("certutil (apt install libnss3-tools; .ci/run does)");
        assert!(status.success(), "certutil {args:?}");
    };
    certutil(&["-N", "--empty-password"]);
    let ca_pem = certs.path().join("ca.pem");
    certutil(&[
        "-A",
        "-t",
        "C,,",
        "-n",
        "Courier test CA",
        "-i",
        ca_pem.to_str().unwrap(),
    ]);
    let out = node(
        &web_dir(),
        "tests/https.test.mjs",
        &app,
        &[("CHROMIUM", Path::new(&browser)), ("HOME", home.path())],
    )
    .await;
    assert!(out.contains("https: all steps passed"), "{out}");
}
