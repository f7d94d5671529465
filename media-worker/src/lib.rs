//! Courier's media side: where uploaded bytes live ([`blob`]: a small object-store trait with a
//! local-disk implementation, and [`s3`] for S3/MinIO buckets), what they are ([`sniff`]: the
//! type read from the bytes, never the client's claim), and what processing makes of them
//! ([`image`], [`video`]), one [`task`] at a time, each in a child process under OS limits
//! ([`isolate`]) and confined to its own files ([`sandbox`]). Image originals lose their
//! identifying metadata before they are stored ([`strip`]). The durable job queue and the
//! runner that drives these live in the backend.
//!
//! Objects are content addressed: an upload is stored under the SHA-256 of its bytes, so the
//! same bytes are written once however many users send them.

pub mod blob;
mod ffjpeg;
pub mod fixtures;
pub mod fuzzing;
pub mod image;
pub mod isolate;
mod jpeg_markers;
pub mod s3;
pub mod sandbox;
pub mod sniff;
pub mod strip;
pub mod task;
pub mod video;

pub use blob::{BlobStore, LocalStore, StoreError};
pub use isolate::{JobError, JobProcess, ProcessLimits};
pub use s3::{S3Config, S3Store};
pub use sniff::{sniff, Detected, MediaClass};
pub use task::{Facts, Job, Task};

/// The object key of a blob with this SHA-256 (hex): `blobs/ab/cd/abcd….<unique>`. Each
/// stored copy has a key of its own, so deleting a collected blob's object can never take
/// the bytes of a newer blob of the same content.
pub fn blob_key(sha256_hex: &str, unique: &str) -> String {
    format!(
        "blobs/{}/{}/{sha256_hex}.{unique}",
        &sha256_hex[..2],
        &sha256_hex[2..4]
    )
}

/// Why processing a file failed. Every one fails that file's job only.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The file is not what it claims, or is damaged.
    #[error("corrupt or unreadable: {0}")]
    Corrupt(String),
    /// The file is over a processing limit (pixels, duration, memory, time).
    #[error("over a limit: {0}")]
    TooLarge(String),
    #[error("processing failed: {0}")]
    Failed(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
