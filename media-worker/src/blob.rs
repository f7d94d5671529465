//! Object storage behind one small trait. [`LocalStore`] keeps objects as files under a
//! directory (the default); [`crate::s3::S3Store`] keeps them in an S3/MinIO bucket.
//!
//! Writes are atomic: an object is written to a temporary name and renamed into place, so a
//! reader never sees half an object and a crash leaves no partial one under its key.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no object {0}")]
    NotFound(String),
    #[error("object store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store: {0}")]
    Other(String),
}

/// A byte range of an object, both ends inclusive (HTTP `Range: bytes=first-last`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

/// An object being read: its bytes as a stream.
pub struct Object {
    /// Size of the whole object.
    pub size: u64,
    /// The part being read (the whole object when no range was asked).
    pub range: ByteRange,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

impl Object {
    /// Writes the bytes being read to a new file at `path`.
    pub async fn write_to(mut self, path: &Path) -> Result<(), StoreError> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let mut out = tokio::fs::File::create(path).await?;
        while let Some(chunk) = self.body.next().await {
            out.write_all(&chunk?).await?;
        }
        out.flush().await?;
        Ok(())
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores the file at `path` under `key` (replacing nothing: keys are content addresses).
    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<(), StoreError>;
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;
    /// Size of an object in bytes.
    async fn size(&self, key: &str) -> Result<u64, StoreError>;
    /// Reads the object, or `range` of it.
    async fn read(&self, key: &str, range: Option<ByteRange>) -> Result<Object, StoreError>;
    /// A short-lived URL from which a client may fetch the object itself (HTTP Range
    /// included), or `None` when this store has no such URLs and Courier streams the bytes.
    async fn presigned_get(&self, _key: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Checks that the store answers (readiness).
    async fn check(&self) -> Result<(), StoreError>;
}

/// Objects as files under `root`.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        // Keys are made by Courier, but never let one climb out of the root.
        let ok = !key.is_empty()
            && key
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\\'));
        if !ok {
            return Err(StoreError::Other(format!("bad object key {key:?}")));
        }
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl BlobStore for LocalStore {
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        _content_type: &str,
    ) -> Result<(), StoreError> {
        let dest = self.path(key)?;
        let dir = dest.parent().expect("keys have a parent");
        tokio::fs::create_dir_all(dir).await?;
        let tmp = dir.join(format!(
            ".{}.{}.part",
            dest.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("object"),
            std::process::id()
        ));
        tokio::fs::copy(path, &tmp).await?;
        tokio::fs::File::open(&tmp).await?.sync_all().await?;
        tokio::fs::rename(&tmp, &dest).await?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(tokio::fs::try_exists(self.path(key)?).await?)
    }

    async fn size(&self, key: &str) -> Result<u64, StoreError> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(key.into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, key: &str, range: Option<ByteRange>) -> Result<Object, StoreError> {
        let path = self.path(key)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(key.into()))
            }
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        let range = range.unwrap_or(ByteRange {
            first: 0,
            last: size.saturating_sub(1),
        });
        file.seek(SeekFrom::Start(range.first)).await?;
        let len = if size == 0 {
            0
        } else {
            range.last - range.first + 1
        };
        let body = tokio_util::io::ReaderStream::new(file.take(len));
        Ok(Object {
            size,
            range,
            body: Box::pin(body),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        tokio::fs::create_dir_all(&self.root).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    async fn body(o: Object) -> (u64, Vec<u8>) {
        let parts: Vec<Bytes> = o.body.try_collect().await.unwrap();
        (o.size, parts.concat())
    }

    #[tokio::test]
    async fn stores_reads_ranges_and_refuses_escaping_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("objects"));
        let src = dir.path().join("upload");
        std::fs::write(&src, b"0123456789").unwrap();
        store
            .put_file("blobs/ab/cd/abcd", &src, "text/plain")
            .await
            .unwrap();
        assert!(store.exists("blobs/ab/cd/abcd").await.unwrap());
        let (size, all) = body(store.read("blobs/ab/cd/abcd", None).await.unwrap()).await;
        assert_eq!((size, all.as_slice()), (10, &b"0123456789"[..]));
        let part = ByteRange { first: 2, last: 4 };
        let (_, some) = body(store.read("blobs/ab/cd/abcd", Some(part)).await.unwrap()).await;
        assert_eq!(some, b"234");
        assert!(matches!(
            store.read("blobs/none", None).await,
            Err(StoreError::NotFound(_))
        ));
        for bad in ["../x", "a//b", "", "a/./b"] {
            assert!(store.exists(bad).await.is_err(), "{bad}");
        }
        store.delete("blobs/ab/cd/abcd").await.unwrap();
        assert!(!store.exists("blobs/ab/cd/abcd").await.unwrap());
    }
}
