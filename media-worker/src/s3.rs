//! Objects in an S3 bucket (MinIO, AWS S3, or anything that speaks S3 with Signature V4),
//! through the `minio` crate. Downloads are handed to clients as short-lived presigned URLs,
//! so media bytes never pass through Courier on the way out; workers read objects directly.

use crate::blob::{BlobStore, ByteRange, Object, StoreError};
use async_trait::async_trait;
use minio::s3::builders::ObjectContent;
use minio::s3::creds::StaticProvider;
use minio::s3::error::{Error as S3Error, S3ServerError};
use minio::s3::http::BaseUrl;
use minio::s3::minio_error_response::MinioErrorCode;
use minio::s3::types::{Region, S3Api};
use minio::s3::{MinioClient, MinioClientBuilder};
use std::path::Path;
use std::time::Duration;

/// Where the bucket is and how to sign for it.
#[derive(Clone)]
pub struct S3Config {
    /// The S3 endpoint Courier talks to, e.g. `http://minio:9000`.
    pub endpoint: String,
    /// The endpoint clients reach in presigned URLs, when it differs from `endpoint` (a
    /// container network name inside, a public host name outside).
    pub public_endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// How long a presigned download URL stays valid.
    pub url_ttl: Duration,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("public_endpoint", &self.public_endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<set>")
            .field("url_ttl", &self.url_ttl)
            .finish()
    }
}

pub struct S3Store {
    client: MinioClient,
    /// Signs presigned URLs for the public endpoint (the same client when there is none).
    signer: MinioClient,
    bucket: String,
    url_ttl_secs: u32,
}

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

/// A missing object (or bucket) is `NotFound`; everything else is a store failure.
fn classify(key: &str, e: S3Error) -> StoreError {
    if let S3Error::S3Server(S3ServerError::S3Error(resp)) = &e {
        if matches!(
            resp.code(),
            MinioErrorCode::NoSuchKey | MinioErrorCode::ResourceNotFound
        ) {
            return StoreError::NotFound(key.into());
        }
    }
    StoreError::Other(format!("S3: {e}"))
}

fn client(endpoint: &str, config: &S3Config) -> Result<MinioClient, StoreError> {
    let mut base: BaseUrl = endpoint
        .parse()
        .map_err(|e| other(format!("bad S3 endpoint {endpoint:?}: {e}")))?;
    // A fixed region: no region lookups, and presigning needs no request.
    base.region = Region::new(config.region.as_str()).map_err(other)?;
    let creds = StaticProvider::new(&config.access_key, &config.secret_key, None);
    MinioClientBuilder::new(base)
        .provider(Some(creds))
        .app_info(Some(("courier".into(), env!("CARGO_PKG_VERSION").into())))
        .build()
        .map_err(other)
}

impl S3Store {
    /// Connects and creates the bucket if it is missing; fails when the endpoint cannot be
    /// reached or refuses the credentials.
    pub async fn connect(config: &S3Config) -> Result<Self, StoreError> {
        let client = client(&config.endpoint, config)?;
        let signer = match &config.public_endpoint {
            Some(public) => self::client(public, config)?,
            None => client.clone(),
        };
        let store = Self {
            client,
            signer,
            bucket: config.bucket.clone(),
            url_ttl_secs: config.url_ttl.as_secs().clamp(1, 7 * 86_400) as u32,
        };
        store.ensure_bucket().await?;
        Ok(store)
    }

    async fn ensure_bucket(&self) -> Result<(), StoreError> {
        let exists = self
            .client
            .bucket_exists(self.bucket.as_str())
            .map_err(other)?
            .build()
            .send()
            .await
            .map_err(|e| other(format!("S3 bucket {}: {e}", self.bucket)))?
            .exists();
        if exists {
            return Ok(());
        }
        match self
            .client
            .create_bucket(self.bucket.as_str())
            .map_err(other)?
            .build()
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Another replica made it first.
            Err(S3Error::S3Server(S3ServerError::S3Error(r)))
                if matches!(r.code(), MinioErrorCode::BucketAlreadyOwnedByYou) =>
            {
                Ok(())
            }
            Err(e) => Err(other(format!("creating S3 bucket {}: {e}", self.bucket))),
        }
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<(), StoreError> {
        self.client
            .put_object_content(self.bucket.as_str(), key, ObjectContent::from(path))
            .map_err(other)?
            .content_type(Some(content_type.to_owned()))
            .build()
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.size(key).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn size(&self, key: &str) -> Result<u64, StoreError> {
        let stat = self
            .client
            .stat_object(self.bucket.as_str(), key)
            .map_err(other)?
            .build()
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        stat.size().map_err(other)
    }

    async fn read(&self, key: &str, range: Option<ByteRange>) -> Result<Object, StoreError> {
        let size = self.size(key).await?;
        let range = range.unwrap_or(ByteRange {
            first: 0,
            last: size.saturating_sub(1),
        });
        if size == 0 {
            return Ok(Object {
                size,
                range,
                body: Box::pin(futures_util::stream::empty()),
            });
        }
        let resp = self
            .client
            .get_object(self.bucket.as_str(), key)
            .map_err(other)?
            .offset(Some(range.first))
            .length(Some(range.last - range.first + 1))
            .build()
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        let (body, _len) = resp.into_boxed_stream().map_err(other)?;
        Ok(Object { size, range, body })
    }

    async fn presigned_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let signed = self
            .signer
            .get_presigned_object_url(self.bucket.as_str(), key, http::Method::GET)
            .map_err(other)?
            .expiry_seconds(Some(self.url_ttl_secs))
            .build()
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        Ok(Some(signed.url))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object(self.bucket.as_str(), key)
            .map_err(other)?
            .build()
            .send()
            .await
            .map_err(|e| classify(key, e))?;
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.ensure_bucket().await
    }
}
