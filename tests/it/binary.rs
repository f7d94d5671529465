//! The real `courier` binary: `migrate`, a taken port, serving and graceful SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn courier() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_courier"));
    c.env("NO_COLOR", "1").env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("COURIER_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs `cmd`, asserts it succeeded, returns its stdout.
pub(crate) fn succeed(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn migrate_runs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    for _ in 0..2 {
        let stdout = succeed(courier().args(["migrate", "--database-url", &url]));
        assert!(stdout.contains("migrations applied"));
    }
}

#[test]
fn config_file_sets_what_flags_leave_unset() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("from-config.db");
    let config = dir.path().join("courier.toml");
    std::fs::write(
        &config,
        format!("database_url = \"sqlite://{}?mode=rwc\"\n", db.display()),
    )
    .unwrap();
    succeed(courier().arg("migrate").arg("--config").arg(&config));
    assert!(db.exists(), "the TOML database_url was not used");
    // Unknown keys are refused with a clear error.
    std::fs::write(&config, "htp = \"127.0.0.1:1\"\n").unwrap();
    let out = courier()
        .arg("migrate")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`htp` is not a setting"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `courier config`: every setting once, its effective value (secrets redacted) and where it
/// came from; the output loads back as a config file.
#[test]
fn config_prints_effective_settings_and_their_sources() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("courier.toml");
    std::fs::write(
        &config,
        "http = \"127.0.0.1:9000\"\nmqtt = \"127.0.0.1:9001\"\nedit_window = \"15m\"\n\
         broker_hook_secret = \"file-secret-0123456789\"\nrate = [\"sync=7/1m\"]\n",
    )
    .unwrap();
    let out = succeed(
        courier()
            .env("COURIER_CONFIG", &config)
            .env("COURIER_MQTT", "127.0.0.1:9002")
            .env("COURIER_REDIS_URL", "redis://:hunter22@127.0.0.1:6379/0")
            .args([
                "config",
                "--mqtt-ws",
                "127.0.0.1:9003",
                "--rate",
                "send=off",
            ]),
    );
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("# {key} ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
            .to_owned()
    };
    let file = format!("# file {}", config.display());
    assert!(line("http").contains("\"127.0.0.1:9000\"") && line("http").ends_with(&file));
    assert!(line("mqtt").contains("9002") && line("mqtt").ends_with("# env COURIER_MQTT"));
    assert!(line("mqtt_ws").contains("9003") && line("mqtt_ws").ends_with("# flag --mqtt-ws"));
    assert!(line("edit_window").contains("\"15m\""));
    assert!(line("max_upload_size").starts_with("max_upload_size = 104857600"));
    assert!(line("max_upload_size").ends_with("# default"));
    assert!(line("rate").contains("[\"sync=7/1m\", \"send=off\"]"));
    assert!(line("broker_hook_secret").contains("<redacted>"));
    assert!(line("push_webhook").starts_with("# push_webhook (unset)"));
    assert!(line("redis_url").contains("redis://:***@127.0.0.1:6379/0"));
    assert!(
        !out.contains("hunter22") && !out.contains("file-secret"),
        "{out}"
    );
    // Each setting exactly once.
    let keys: Vec<&str> = out
        .lines()
        .map(|l| l.trim_start_matches("# ").split([' ', '=']).next().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<_> = keys.iter().collect();
    assert_eq!(keys.len(), unique.len(), "{out}");

    // The output is a config file: with the secret filled back in, it gives the same settings.
    let again = dir.path().join("again.toml");
    std::fs::write(&again, out.replace("<redacted>", "file-secret-0123456789")).unwrap();
    let reloaded = succeed(courier().env("COURIER_CONFIG", &again).arg("config"));
    let values = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" # ").next().unwrap().trim().to_owned())
            .filter(|l| !l.starts_with("broker_hook_secret") && !l.starts_with("redis_url"))
            .collect()
    };
    assert_eq!(values(&out), values(&reloaded));
}

#[test]
fn taken_port_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = courier()
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--mqtt",
            &addr,
            "--mqtt-ws",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--mqtt") && stderr.contains("in use"),
        "{stderr}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = courier()
        .args(["serve", "--log-format", "json", "--http", "127.0.0.1:0"])
        .args(["--mqtt", "127.0.0.1:0", "--mqtt-ws", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut serving = None;
    for line in lines {
        let line = line.unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
        if v["message"] == "courier is serving" {
            serving = Some(v);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let v = serving.expect("the serving line");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["role"], "all");
    assert!(v["http"].as_str().unwrap().starts_with("127.0.0.1:"), "{v}");
}

#[test]
fn serves_from_env_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = courier()
        .env("COURIER_HTTP", "127.0.0.1:0")
        .env("COURIER_MQTT", "127.0.0.1:0")
        .env("COURIER_MQTT_WS", "127.0.0.1:0")
        .env("COURIER_DATA_DIR", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let http = loop {
        let line = lines.next().expect("server exited").unwrap();
        if let Some(rest) = line.split("http=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let started = Instant::now();
    let ready = loop {
        match http_status(&http, "/readyz") {
            Some(200) => break true,
            _ if started.elapsed() > Duration::from_secs(20) => break false,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(ready, "server never became ready");
    assert!(
        dir.path().join("courier.db").exists(),
        "SQLite lives in the data dir"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// A plain HTTP/1.0 GET; the status code, if the server answered.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn split_roles_need_a_strong_shared_service_secret() {
    for role in ["broker", "backend"] {
        let dir = tempfile::tempdir().unwrap();
        let out = courier()
            .args(["serve", "--role", role, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{role} started without a secret");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--service-secret"), "{role}: {err}");
        let with_secret = |secret: &str| {
            let out = courier()
                .args([
                    "serve",
                    "--role",
                    role,
                    "--service-secret",
                    secret,
                    "--data-dir",
                ])
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(!out.status.success(), "{role} started");
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        // A guessable secret, or an example file's placeholder, is refused.
        for weak in ["s", "change-me-service-secret"] {
            let err = with_secret(weak);
            assert!(err.contains("at least 16 bytes"), "{role}: {err}");
        }
        let err = with_secret("a-long-enough-shared-secret");
        assert!(err.contains("PostgreSQL"), "{role}: {err}");
    }
    let out = courier()
        .args(["serve", "--role", "router"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

#[tokio::test]
async fn processes_starting_together_migrate_once() {
    let (url, _db) = crate::helpers::fresh_postgres().await;
    let children: Vec<_> = (0..4)
        .map(|_| {
            courier()
                .args(["migrate", "--database-url", &url])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
