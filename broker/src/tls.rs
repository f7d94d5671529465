//! TLS for every listener (MQTT, MQTT over WebSocket, HTTPS): one certificate chain and key,
//! PEM files, re-read on SIGHUP or when the files change, without dropping a connection.
//! Every handshake asks [`Tls`] for the current certificate, so a reload changes what new
//! connections are shown; open ones keep the session they made.

use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate {0}: {1}")]
    Cert(PathBuf, String),
    #[error("cannot read TLS key {0}: {1}")]
    Key(PathBuf, String),
    #[error("TLS certificate {0} does not go with key {1}: {2}")]
    Mismatch(PathBuf, PathBuf, String),
}

/// The certificate every TLS listener shows, and where it is read from.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times and sizes when last read.
    seen: Mutex<Stamp>,
}

type Stamp = [Option<(SystemTime, u64)>; 2];

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.cert).finish()
    }
}

impl Tls {
    /// Reads `cert` (the chain, leaf first) and `key` (PKCS#8, PKCS#1 or SEC1); fails if either
    /// cannot be read or they do not belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let seen = stamp(cert, key);
        Ok(Arc::new(Self {
            current: RwLock::new(read(cert, key)?),
            cert: cert.into(),
            key: key.into(),
            seen: Mutex::new(seen),
        }))
    }

    /// Reads the files again. On error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp(&self.cert, &self.key);
        let fresh = read(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// An acceptor for one listener, offering `alpn` (e.g. `http/1.1`; empty for MQTT).
    pub fn acceptor(self: &Arc<Self>, alpn: &[&[u8]]) -> TlsAcceptor {
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Current(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsAcceptor::from(Arc::new(config))
    }

    /// Reloads on SIGHUP, and when either file's modification time or size changes (checked
    /// every `every`), until `shutdown`. A certificate that fails to load is logged and the
    /// old one kept (a renewal that writes the two files one after the other is picked up
    /// once both are in place).
    pub async fn watch(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(every);
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            let why = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hangup => "SIGHUP",
                _ = tick.tick() => {
                    let now = stamp(&self.cert, &self.key);
                    if *self.seen.lock().unwrap_or_else(|p| p.into_inner()) == now {
                        continue;
                    }
                    "the files changed"
                }
            };
            match self.reload() {
                Ok(()) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded ({why})")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate not reloaded; the old one stays")
                }
            }
        }
    }
}

#[derive(Debug)]
struct Current(Arc<Tls>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn read(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert(cert.into(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Cert(cert.into(), "no certificate in it".into()));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key(key.into(), e.to_string()))?;
    let signing = ring::default_provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError::Key(key.into(), e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| TlsError::Mismatch(cert.into(), key.into(), e.to_string()))?;
    Ok(Arc::new(certified))
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    [cert, key].map(|p| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    })
}
