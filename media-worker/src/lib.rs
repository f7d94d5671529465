//! Courier's media side: where uploaded bytes live ([`blob`]: a small object-store trait with a
//! local-disk implementation), what they are ([`sniff`]: the type read from the bytes, never the
//! client's claim), and — as the pieces land — the processing jobs that make thumbnails and
//! previews.
//!
//! Objects are content addressed: an upload is stored under the SHA-256 of its bytes, so the
//! same bytes are written once however many users send them.

pub mod blob;
pub mod sniff;

pub use blob::{BlobStore, LocalStore, StoreError};
pub use sniff::{sniff, Detected, MediaClass};

/// The object key of a blob with this SHA-256 (hex): `blobs/ab/cd/abcd…`.
pub fn blob_key(sha256_hex: &str) -> String {
    format!(
        "blobs/{}/{}/{sha256_hex}",
        &sha256_hex[..2],
        &sha256_hex[2..4]
    )
}
