//! TLS on every listener with one pair of flags (`--tls-cert`, `--tls-key`): HTTPS, MQTT over
//! TLS (`--mqtts`) and WebSocket over TLS (`wss://`), with a test CA. A stock client
//! (`mosquitto_sub --cafile`) and the Rust SDK over TLS and over `wss://` talk to the server; a
//! client that does not trust the CA, or speaks plain text to a TLS port, gets nowhere. The
//! certificate is re-read when its files change, and connections made before stay up.

use crate::helpers::{spawn_app_with, Db, Device, TestApp};
use courier_client::protocol::UpdateBody;
use courier_client::{tls_with_root_ca, Client, ClientOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A certificate authority made for one test.
pub struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes a fresh certificate for `localhost` and `127.0.0.1` (`cert.pem`, `key.pem`) and
    /// this CA (`ca.pem`) into `dir`.
    pub fn issue(&self, dir: &Path) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join("ca.pem"), &self.pem).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    }

    pub fn client_tls(&self) -> Arc<rustls::ClientConfig> {
        tls_with_root_ca(self.pem.as_bytes()).unwrap()
    }
}

/// A server with TLS on, from `cert.pem` and `key.pem` in `dir`.
pub async fn tls_app(dir: &Path) -> TestApp {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    spawn_app_with(Db::Sqlite, |s| {
        s.tls_cert = Some(cert);
        s.tls_key = Some(key);
        s.mqtts = "127.0.0.1:0".parse().unwrap();
    })
    .await
}

/// alice's phone over MQTT over TLS and bob's laptop over `wss://`, trusting `ca`.
async fn tls_devices(app: &TestApp, ca: &TestCa) -> (Device, Device) {
    let alice = app
        .device("alice", "phone", |s| {
            ClientOptions::tls(s).unwrap().with_tls(ca.client_tls())
        })
        .await;
    let bob = app
        .device("bob", "laptop", |s| {
            ClientOptions::ws(s).with_tls(ca.client_tls())
        })
        .await;
    (alice, bob)
}

/// The certificate a TLS handshake with `port` on 127.0.0.1 shows.
async fn served_certificate(ca: &TestCa, port: u16) -> CertificateDer<'static> {
    let connector = tokio_rustls::TlsConnector::from(ca.client_tls());
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn certificate_in(dir: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(dir.join("cert.pem")).unwrap()
}

async fn text_arrives(app: &TestApp, from: &Device, to: &mut Device, text: &str) {
    let conv = app.direct(from, to).await;
    from.client.send_text(&conv, text).await.unwrap();
    let u = to
        .next_update(|u| matches!(&u.body, UpdateBody::Message { .. }))
        .await;
    assert!(format!("{:?}", u.body).contains(text), "{u:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_listener_speaks_tls() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Courier test CA");
    ca.issue(certs.path());
    let app = tls_app(certs.path()).await;
    app.users(&["alice", "bob", "carol"]).await;

    // The log-in answer (over HTTPS) names the TLS endpoints.
    let session = app.session("alice", "phone").await;
    let mqtts = app.addrs.mqtts.expect("MQTT over TLS is on");
    assert_eq!(
        session.mqtt.tls,
        Some(format!("localhost:{}", mqtts.port()))
    );
    assert!(
        session.mqtt.ws.starts_with("wss://localhost:"),
        "{:?}",
        session.mqtt
    );

    // The SDK over MQTT over TLS, and over WebSocket over TLS.
    let (alice, mut bob) = tls_devices(&app, &ca).await;
    text_arrives(&app, &alice, &mut bob, "over wss").await;

    // A stock client: mosquitto_sub over TLS with the CA file.
    let carol = app.session("carol", "desktop").await;
    let topic = format!("u/{}/d/{}/in", carol.user, carol.device);
    let sub = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &mqtts.port().to_string()])
        .arg("--cafile")
        .arg(certs.path().join("ca.pem"))
        .args([
            "-i",
            carol.device.as_str(),
            "-u",
            carol.device.as_str(),
            "-P",
            &carol.token,
        ])
        .args(["-t", &topic, "-q", "1", "-C", "1", "-W", "20"])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (apt install mosquitto-clients)");
    let conv = app
        .api
        .create_direct(alice.token(), &carol.user)
        .await
        .unwrap()
        .id;
    // Send until mosquitto_sub is subscribed and has its copy.
    let got = async {
        loop {
            alice
                .client
                .send_text(&conv, "hello over mqtts")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let out = tokio::select! {
        out = sub.wait_with_output() => out.unwrap(),
        _ = got => unreachable!(),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("hello over mqtts"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A client that does not trust the CA gets no connection; neither does plain text.
    let untrusting = ClientOptions::tls(&session).unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), Client::connect(untrusting)).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "connected without trusting the CA"
    );
    let plain = reqwest::get(format!("http://{}/healthz", app.addrs.http)).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let mut plain_mqtt = ClientOptions::tcp(&session);
    plain_mqtt.transport = courier_client::Transport::Tcp {
        host: "127.0.0.1".into(),
        port: mqtts.port(),
    };
    let refused = tokio::time::timeout(Duration::from_secs(5), Client::connect(plain_mqtt)).await;
    assert!(!matches!(refused, Ok(Ok(_))), "plain MQTT on the TLS port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_renewed_certificate_is_served_without_dropping_connections() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Courier test CA");
    ca.issue(certs.path());
    let first = certificate_in(certs.path());
    let app = tls_app(certs.path()).await;
    app.users(&["alice", "bob"]).await;
    let mqtts = app.addrs.mqtts.unwrap().port();
    let https = app.addrs.http.port();
    assert_eq!(served_certificate(&ca, mqtts).await, first);
    let (alice, mut bob) = tls_devices(&app, &ca).await;

    // Renewal: new files in place; within a few seconds new handshakes show the new
    // certificate on every listener.
    ca.issue(certs.path());
    let second = certificate_in(certs.path());
    assert_ne!(first, second);
    let mut served = first.clone();
    for _ in 0..100 {
        served = served_certificate(&ca, mqtts).await;
        if served == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(served, second, "the renewed certificate is served");
    assert_eq!(served_certificate(&ca, https).await, second);
    // The connections made with the first certificate are still up.
    text_arrives(&app, &alice, &mut bob, "still connected").await;

    // A broken file is not taken: the certificate in use stays.
    std::fs::write(certs.path().join("cert.pem"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(served_certificate(&ca, mqtts).await, second);
    bob.client
        .send_text(&app.direct(&bob, &alice).await, "and still")
        .await
        .unwrap();
}

/// The real binary: SIGHUP re-reads the certificate (and does not stop the server); a key that
/// does not go with the certificate stops the start with a one-line error.
#[test]
fn sighup_reloads_and_a_bad_pair_is_refused_at_start() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Courier test CA");
    ca.issue(dir.path());
    let serve = |cert: &Path| {
        let mut c = crate::binary::courier();
        c.env("COURIER_HTTP", "127.0.0.1:0")
            .env("COURIER_MQTT", "127.0.0.1:0")
            .env("COURIER_MQTT_WS", "127.0.0.1:0")
            .env("COURIER_MQTTS", "127.0.0.1:0")
            .env("COURIER_DATA_DIR", dir.path())
            .env("COURIER_TLS_CERT", cert)
            .env("COURIER_TLS_KEY", dir.path().join("key.pem"));
        c
    };
    let mut child = serve(&dir.path().join("cert.pem"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut wait_for = |what: &str| loop {
        let line = lines.next().expect("server exited").unwrap();
        if line.contains(what) {
            return line;
        }
    };
    assert!(wait_for("courier is serving").contains("mqtt"));
    let kill = |signal: &str| {
        std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
    };
    kill("-HUP");
    wait_for("TLS certificate reloaded (SIGHUP)");
    kill("-TERM");
    assert!(child.wait().unwrap().success());

    // Another CA's certificate with this key: refused before anything is served.
    let other = tempfile::tempdir().unwrap();
    TestCa::new("Another CA").issue(other.path());
    let out = serve(&other.path().join("cert.pem")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("does not go with key"), "{stderr}");
}
