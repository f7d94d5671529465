//! A real S3 endpoint inside the test process: s3s-fs (a file-backed S3 implementation) behind
//! s3s's Signature V4 checks, on a free port. Requests that are not signed with its keys, and
//! presigned URLs that were tampered with or have expired, are refused as S3 refuses them.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const ACCESS_KEY: &str = "courier-test";
pub const SECRET_KEY: &str = "courier-test-secret-key";

pub struct S3Endpoint {
    pub addr: SocketAddr,
    root: tempfile::TempDir,
    server: JoinHandle<()>,
}

impl Drop for S3Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl S3Endpoint {
    pub async fn start() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs root");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind S3");
        let addr = listener.local_addr().expect("bound");
        let server = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Self { addr, root, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the bucket's objects lie on disk (s3s-fs keeps `bucket/key` as a file path).
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.path().join(bucket)
    }
}

/// Courier's settings for a bucket on `endpoint`.
pub fn config(endpoint: &S3Endpoint) -> media_worker::S3Config {
    media_worker::S3Config {
        endpoint: endpoint.url(),
        public_endpoint: None,
        bucket: "courier-media".into(),
        region: "us-east-1".into(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        url_ttl: std::time::Duration::from_secs(300),
    }
}
