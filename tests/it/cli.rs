//! The terminal client, as a user runs it: `courier user add|group-adds`, `login`,
//! `device list|revoke`, `conv create|list` and two `courier chat` processes talking through a
//! real server.

use crate::binary::courier;
use crate::helpers::{spawn_app, Db, TestApp};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

fn cli(app: &TestApp, sessions: &std::path::Path) -> Command {
    let mut c = courier();
    c.env("COURIER_SERVER", format!("http://{}", app.addrs.http))
        .env("COURIER_SESSION_FILE", sessions)
        .env("COURIER_PASSWORD", PASSWORD);
    c
}

/// Runs a CLI command to completion: its stdout, or a panic with its stderr.
fn run(mut cmd: Command, args: &[&str]) -> String {
    let out = cmd.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "courier {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running `courier chat`: type lines into it, wait for lines out of it.
struct Chat {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Chat {
    fn start(mut cmd: Command, args: &[&str]) -> Self {
        let mut child = cmd
            .arg("chat")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits (up to 15 s) for an output line containing `text`.
    fn expect(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(text) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {text:?}; got:\n{}", self.seen.join("\n"));
    }

    fn quit(mut self) {
        self.say("/quit");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("chat did not quit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_terminals_talk() {
    let app = spawn_app(Db::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions.json");
    // The CLI runs as child processes; this thread waits on them while the server runs on
    // the runtime's other threads.
    tokio::task::block_in_place(|| {
        let c = || cli(&app, &sessions);
        assert!(run(c(), &["user", "add", "alice"]).contains("user alice created"));
        assert!(run(c(), &["user", "add", "bob"]).contains("user bob created"));
        let taken = c().args(["user", "add", "bob"]).output().unwrap();
        assert!(!taken.status.success());
        assert!(String::from_utf8_lossy(&taken.stderr).contains("username_taken"));

        // One log-in per user, kept in the session file and reused.
        assert!(run(c(), &["login", "-u", "alice"]).contains("signed in as alice"));
        let devices = run(c(), &["device", "list", "-u", "alice"]);
        assert_eq!(devices.lines().count(), 1, "{devices}");
        assert!(devices.contains("(this terminal)"), "{devices}");
        let conv = run(c(), &["conv", "create", "-u", "alice", "--with", "bob"]);
        let conv = conv.trim().to_owned();
        let again = run(c(), &["conv", "create", "-u", "alice", "--with", "bob"]);
        assert_eq!(again.trim(), conv, "a direct conversation is made once");
        let listed = run(c(), &["conv", "list", "-u", "bob"]);
        assert!(
            listed.contains(&conv) && listed.contains("alice"),
            "{listed}"
        );
        let unknown = c()
            .args(["conv", "create", "-u", "alice", "--with", "nobody"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user named nobody"));

        // Two terminals: messages both ways, with ✓ and read receipts.
        let mut alice = Chat::start(c(), &["-u", "alice", "--with", "bob"]);
        let mut bob = Chat::start(c(), &["-u", "bob", "--conv", &conv]);
        alice.expect(&format!("--- {conv} ---"));
        bob.expect(&format!("--- {conv} ---"));
        alice.say("hello bob");
        alice.expect("me: hello bob  ✓ #1");
        bob.expect("alice: hello bob");
        alice.expect("read by bob up to #1");
        bob.say("hi alice");
        alice.expect("bob: hi alice");
        bob.expect("read by alice up to #2");
        alice.quit();
        bob.quit();

        // History shows up when a terminal opens the conversation again.
        let mut later = Chat::start(c(), &["-u", "bob", "--with", "alice"]);
        later.expect("alice: hello bob");
        later.expect("me: hi alice");
        later.quit();

        // Revoking a device: its saved session stops working, the next command signs in anew.
        let bob_devices = run(c(), &["device", "list", "-u", "bob"]);
        let bob_device = bob_devices.split_whitespace().next().unwrap().to_owned();
        run(c(), &["device", "revoke", "-u", "bob", &bob_device]);
        let after = run(c(), &["device", "list", "-u", "bob"]);
        assert!(!after.contains(&bob_device), "{after}");
        assert_eq!(after.lines().count(), 1, "a fresh device: {after}");

        // Groups: bob wrote to alice, so alice may add him; carol, a stranger, must say so.
        run(c(), &["user", "add", "carol"]);
        run(
            c(),
            &[
                "conv",
                "create",
                "-u",
                "alice",
                "--group",
                "Team",
                "--members",
                "bob",
            ],
        );
        let strangers = [
            "conv",
            "create",
            "-u",
            "alice",
            "--group",
            "T",
            "--members",
            "carol",
        ];
        let refused = c().args(strangers).output().unwrap();
        assert!(!refused.status.success());
        let why = String::from_utf8_lossy(&refused.stderr);
        assert!(why.contains("consent_required"), "{why}");
        let shown = run(c(), &["user", "group-adds", "-u", "carol"]);
        assert_eq!(shown.trim(), "group adds: contacts");
        let set = run(c(), &["user", "group-adds", "everyone", "-u", "carol"]);
        assert_eq!(set.trim(), "group adds: everyone");
        run(c(), &strangers);
        assert!(run(c(), &["conv", "list", "-u", "carol"]).contains("T"));

        // A display name, shown with the username.
        let named = run(c(), &["user", "name", "-u", "alice", "Alice A."]);
        assert_eq!(named.trim(), "Alice A. (alice)");
        let listed = run(c(), &["conv", "list", "-u", "bob"]);
        assert!(listed.contains("Alice A. (alice)"), "{listed}");

        // A group run from the terminal: renamed by its admin (not by a member), pinned and
        // muted by bob, bob made an admin; the chat shows each change as a line, and search
        // finds a message without its accents.
        let crew = run(
            c(),
            &[
                "conv",
                "create",
                "-u",
                "alice",
                "--group",
                "Crew",
                "--members",
                "bob",
            ],
        );
        let crew = crew.trim().to_owned();
        run(c(), &["conv", "rename", "-u", "alice", &crew, "Crew 2"]);
        let refused = c()
            .args(["conv", "rename", "-u", "bob", &crew, "mine"])
            .output()
            .unwrap();
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("forbidden"));
        let set = run(
            c(),
            &[
                "conv", "set", "-u", "bob", &crew, "--pin", "true", "--mute", "always",
            ],
        );
        assert!(set.contains("[pinned] [muted]"), "{set}");
        let listed = run(c(), &["conv", "list", "-u", "bob"]);
        let first = listed.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&crew) && first.contains("Crew 2"),
            "{listed}"
        );
        run(c(), &["conv", "role", "-u", "alice", &crew, "bob", "admin"]);
        let mut chat = Chat::start(c(), &["-u", "bob", "--conv", &crew]);
        chat.expect("· Alice A. (alice) created the group with");
        chat.expect("· Alice A. (alice) named the group \"Crew 2\"");
        chat.expect("· Alice A. (alice) made me an admin");
        chat.say("hẹn gặp ở Đà Lạt");
        chat.expect("✓ #4");
        chat.quit();
        let found = run(c(), &["conv", "search", "-u", "alice", "da lat"]);
        assert!(
            found.contains("hẹn gặp ở Đà Lạt") && found.contains(&crew),
            "{found}"
        );
        run(c(), &["conv", "leave", "-u", "bob", &crew]);
        assert!(!run(c(), &["conv", "list", "-u", "bob"]).contains(&crew));
    });
}

/// The two routes the CLI added to the HTTP API check their input.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_lookup_and_device_list_check_their_input() {
    let app = spawn_app(Db::Postgres).await;
    app.users(&["alice", "bob"]).await;
    let alice = app.session("alice", "phone").await;
    let bob = app.session("bob", "phone").await;
    let found = app
        .api
        .users(&alice.token, &["BOB", "nobody"], &[alice.user.as_str()])
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = found
        .iter()
        .map(|u| (u.username.as_str(), u.user.as_str()))
        .collect();
    assert_eq!(
        names,
        [("alice", alice.user.as_str()), ("bob", bob.user.as_str())]
    );
    let http = reqwest::Client::new();
    let url = |q: &str| format!("http://{}/v1/users{q}", app.addrs.http);
    let r = http.get(url("?names=bob")).send().await.unwrap();
    assert_eq!(r.status(), 401, "signed-in users only");
    let r = http
        .get(url(""))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let many = (0..101)
        .map(|i| format!("u{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let r = http
        .get(url(&format!("?names={many}")))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Devices: only the caller's, the calling one marked; revoked ones gone.
    let laptop = app.session("alice", "laptop").await;
    let mine = app.api.devices(&laptop.token).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|d| d.id != bob.device));
    let current: Vec<bool> = mine.iter().map(|d| d.current).collect();
    assert_eq!(current, [false, true], "oldest first, the laptop is asking");
    app.api
        .revoke_device(&laptop.token, alice.device.as_str())
        .await
        .unwrap();
    let mine = app.api.devices(&laptop.token).await.unwrap();
    assert_eq!(mine.len(), 1);
    let r = http
        .get(format!("http://{}/v1/devices", app.addrs.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
