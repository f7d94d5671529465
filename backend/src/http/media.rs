//! Media over HTTP: `POST /v1/media` (a simple upload: the body is the file), `GET
//! /v1/media/{id}` (the bytes, with HTTP Range) and `GET /v1/media/{id}/info`.
//!
//! An upload is streamed to a temporary file while it is hashed (SHA-256) and counted; its
//! type is read from its first bytes. Bytes already stored under the same hash are not written
//! again: the new file just points at the existing blob.

use super::error::ApiQuery;
use super::{AppState, Authed};
use crate::error::{Error, Result};
use crate::shared::Limit;
use crate::store::gc::Usage;
use crate::store::media::{content_sha, media_file, Added, NewFile};
use crate::store::Store;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use media_worker::blob::{ByteRange, Object};
use media_worker::sniff::SNIFF_BYTES;
use media_worker::{blob_key, sniff, strip, BlobStore};
use protocol::http::MediaFile;
use protocol::{ErrorCode, UserId};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// What the media routes need.
#[derive(Clone)]
pub struct Media {
    pub store: Arc<dyn BlobStore>,
    /// Where uploads are spooled while they arrive.
    pub spool: PathBuf,
    /// Largest upload, in bytes.
    pub max_upload: u64,
    /// What each user may hold.
    pub quota: Usage,
    /// Wakes the processing jobs runner when a job is queued.
    pub jobs: Arc<tokio::sync::Notify>,
    /// Each user's uploads being received.
    pub slots: Arc<super::upload_slots::UploadSlots>,
}

impl Media {
    /// `owner`'s usage, if one more file of `bytes` fits their quota; `quota_exceeded`
    /// otherwise. An early answer: the store checks again as it records the file.
    pub async fn within_quota(&self, store: &Store, owner: &UserId, bytes: u64) -> Result<Usage> {
        let used = store.usage(owner).await?;
        match used.fits(&self.quota, bytes) {
            true => Ok(used),
            false => Err(used.refusal(&self.quota)),
        }
    }
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name as the user knows it (shown to recipients; never used as a path).
    name: Option<String>,
    /// Store the file as uploaded: an image keeps its EXIF (GPS included), XMP and comments.
    #[serde(default)]
    keep_metadata: bool,
}

pub(super) fn clean_name(name: Option<String>) -> Result<Option<String>> {
    let Some(name) = name else { return Ok(None) };
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(Error::client(
            ErrorCode::BadRequest,
            "`name` is 1-255 characters without control characters",
        ));
    }
    Ok(Some(name))
}

/// A spooled upload; its temporary file goes when this does.
struct Spooled {
    path: PathBuf,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub(super) fn io(e: std::io::Error) -> Error {
    Error::Internal(format!("upload spool: {e}"))
}

#[utoipa::path(post, path = "/media", tag = "media", security(("device_token" = [])), params(UploadQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file’s bytes; its type is read from them"), responses((status = 201, body = protocol::http::MediaFile), (status = 415, description = "`unsupported_media`", body = super::openapi::ErrorEnvelope), super::openapi::Refusals))]
pub async fn upload(
    State(state): State<AppState>,
    Authed(me): Authed,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<MediaFile>)> {
    state.spend(Limit::Upload, &me.user).await?;
    let media = &state.media;
    let name = clean_name(q.name)?;
    let too_large = || {
        Error::client(
            ErrorCode::PayloadTooLarge,
            format!("uploads are limited to {} bytes", media.max_upload),
        )
    };
    // A declared length over the limit is refused before a byte is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > media.max_upload) {
        return Err(too_large());
    }
    let _slot = media.slots.take(&me.user).await;
    let used = media
        .within_quota(&state.store, &me.user, declared.unwrap_or(0))
        .await?;
    tokio::fs::create_dir_all(&media.spool).await.map_err(io)?;
    let spooled = Spooled {
        path: media.spool.join(crate::util::new_id('s')),
    };
    let mut out = tokio::fs::File::create(&spooled.path).await.map_err(io)?;
    let (mut hasher, mut size, mut head) = (Sha256::new(), 0u64, Vec::new());
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Error::client(ErrorCode::BadRequest, format!("upload interrupted: {e}"))
        })?;
        size += chunk.len() as u64;
        if size > media.max_upload {
            return Err(too_large());
        }
        if used.bytes + size > media.quota.bytes {
            let streamed = Usage {
                bytes: used.bytes + size,
                ..used
            };
            return Err(streamed.refusal(&media.quota));
        }
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    drop(out);
    let complete = Complete {
        path: &spooled.path,
        head: &head,
        sha256: hex(&hasher.finalize()),
        size,
        name,
        keep_metadata: q.keep_metadata,
        upload: None,
    };
    let file = ingest(&state, &me.user, complete).await?;
    Ok((StatusCode::CREATED, Json(file)))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A complete upload in the spool.
pub(super) struct Complete<'a> {
    pub path: &'a std::path::Path,
    /// Its first bytes, to type it by.
    pub head: &'a [u8],
    pub sha256: String,
    pub size: u64,
    pub name: Option<String>,
    /// Store it as uploaded, metadata included (the uploader's choice).
    pub keep_metadata: bool,
    /// The resumable upload it completes, if it is one.
    pub upload: Option<&'a str>,
}

/// A complete upload, typed; an image stripped of its metadata (unless it is to be kept);
/// stored unless the same bytes are stored already; and recorded as a file of `owner`'s.
pub(super) async fn ingest(
    state: &AppState,
    owner: &protocol::UserId,
    upload: Complete<'_>,
) -> Result<MediaFile> {
    let Some(detected) = sniff(upload.head) else {
        return Err(Error::client(
            ErrorCode::UnsupportedMedia,
            "this file type is not accepted (images, videos, audio, PDF, office documents, text and zip are)",
        ));
    };
    let Complete {
        mut path,
        mut sha256,
        mut size,
        name,
        ..
    } = upload;
    // The stripped copy, if one is made; its spool file goes when this does.
    let stripped;
    if strip::strippable(detected.mime) && !upload.keep_metadata {
        let out = Spooled {
            path: state.media.spool.join(crate::util::new_id('s')),
        };
        (sha256, size) = strip_into(path, &out.path, detected.mime).await?;
        stripped = out;
        path = &stripped.path;
    }
    let new = NewFile {
        sha256,
        size,
        detected,
        name,
    };
    // Bytes already stored are not written again: the file joins their blob. Otherwise (or
    // when that blob is collected meanwhile) they go to a key of their own first; a few
    // rounds at most, since each collection needs the blob unreferenced.
    let mut stored: Option<String> = None;
    for _ in 0..4 {
        let quota = (&state.media.quota, upload.upload);
        let added = state.store.add_file(owner, &new, stored.as_deref(), quota);
        let added = match added.await {
            Ok(added) => added,
            Err(e) => {
                // Refused (over the quota, say): the bytes stored for it go.
                if let Some(key) = &stored {
                    forget_copy(state, key).await;
                }
                return Err(e);
            }
        };
        match added {
            Added::File { file, queued, kept } => {
                if let (Some(key), false) = (&stored, kept) {
                    // Someone stored the same bytes first: this copy is not needed.
                    forget_copy(state, key).await;
                }
                if queued {
                    state.media.jobs.notify_one();
                }
                return Ok(*file);
            }
            Added::NeedsBytes if stored.is_none() => {
                let key = blob_key(&new.sha256, &crate::util::new_id('o'));
                state
                    .media
                    .store
                    .put_file(&key, path, detected.mime)
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?;
                stored = Some(key);
            }
            Added::NeedsBytes => {}
        }
    }
    Err(Error::Internal(
        "the upload's blob kept being collected".into(),
    ))
}

/// Deletes the object `key`, stored for an upload that turned out not to need it.
async fn forget_copy(state: &AppState, key: &str) {
    if let Err(e) = state.media.store.delete(key).await {
        tracing::warn!(error = %e, key, "an unneeded copy was not deleted");
    }
}

/// Writes `from` (an image of type `mime`) to `to` without its metadata; returns the copy's
/// SHA-256 and size.
async fn strip_into(
    from: &std::path::Path,
    to: &std::path::Path,
    mime: &'static str,
) -> Result<(String, u64)> {
    let (from, to) = (from.to_owned(), to.to_owned());
    let stripped = crate::cpu::heavy(move || {
        let mut input = std::io::BufReader::new(std::fs::File::open(from)?);
        let mut out = Hashing {
            inner: std::io::BufWriter::new(std::fs::File::create(to)?),
            hasher: Sha256::new(),
            size: 0,
        };
        strip::strip(mime, &mut input, &mut out)?;
        std::io::Write::flush(&mut out.inner).map_err(strip::StripError::Io)?;
        Ok::<_, strip::StripError>((hex(&out.hasher.finalize()), out.size))
    })
    .await?;
    stripped.map_err(|e| match e {
        strip::StripError::Io(e) => io(e),
        refused => Error::client(ErrorCode::UnsupportedMedia, refused.to_string()),
    })
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[utoipa::path(get, path = "/media/{id}/info", tag = "media", security(("device_token" = [])), params(("id" = String, Path, description = "a file the caller may see")), responses((status = 200, body = protocol::http::MediaFile), super::openapi::Refusals))]
pub async fn info(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<Json<MediaFile>> {
    state.spend(Limit::Download, &me.user).await?;
    Ok(Json(info_of(&state, &me.user, &id).await?))
}

pub(super) async fn info_of(
    state: &AppState,
    user: &protocol::UserId,
    id: &str,
) -> Result<MediaFile> {
    let (file, blob) = state.store.file_for(user, id).await?;
    Ok(media_file(&file, &blob))
}

/// `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` against an object of `size` bytes. `Ok(None)`:
/// no (usable) range, send it all; `Err(())`: unsatisfiable.
fn range(headers: &HeaderMap, size: u64) -> std::result::Result<Option<ByteRange>, ()> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: send the whole object
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (first, last) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (a, "") => (a.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().map_err(|_| ())?, b.parse().map_err(|_| ())?);
            if b < a {
                return Err(());
            }
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if size == 0 || first >= size {
        return Err(());
    }
    Ok(Some(ByteRange { first, last }))
}

/// `GET /v1/media/{id}/{thumb|preview|poster}`: a derivative, once processing made it.
#[utoipa::path(get, path = "/media/{id}/{which}", tag = "media", security(("device_token" = [])), params(("id" = String, Path, description = "a file the caller may see"), ("which" = String, Path, description = "`thumb`, `preview`, `poster` or a video rendition")), responses((status = 200, description = "the derivative", content_type = "application/octet-stream", body = Vec<u8>), (status = 302, description = "on S3: a short-lived presigned URL"), (status = 304, description = "unchanged (If-None-Match)"), super::openapi::Refusals))]
pub async fn derived(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path((id, which)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    state.spend(Limit::Download, &me.user).await?;
    let (_, blob) = state.store.file_for(&me.user, &id).await?;
    let key = match which.as_str() {
        "thumb" => blob.thumb_key,
        "preview" => blob.preview_key,
        "poster" => blob.poster_key,
        _ => None,
    };
    let Some(key) = key else {
        return Err(Error::client(
            ErrorCode::NotFound,
            format!("no {which} for this file (yet)"),
        ));
    };
    // Derivatives are named for their type: thumb.webp, preview.jpg or preview.mp4, poster.jpg.
    let mime = match key.rsplit('.').next() {
        Some("webp") => "image/webp",
        Some("mp4") => "video/mp4",
        _ => "image/jpeg",
    };
    let etag = format!("{}-{which}", content_sha(&blob.sha256));
    serve(&state, &key, mime, None, &etag, &headers).await
}

#[utoipa::path(get, path = "/media/{id}", tag = "media", security(("device_token" = [])), params(("id" = String, Path, description = "a file the caller may see")), responses((status = 200, description = "the bytes (Range supported: 206)", content_type = "application/octet-stream", body = Vec<u8>), (status = 206, description = "a range of them"), (status = 302, description = "on S3: a short-lived presigned URL"), (status = 304, description = "unchanged (If-None-Match)"), super::openapi::Refusals))]
pub async fn download(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    state.spend(Limit::Download, &me.user).await?;
    let (file, blob) = state.store.file_for(&me.user, &id).await?;
    serve(
        &state,
        &blob.storage_key,
        &file.mime,
        Some(blob.size as u64),
        content_sha(&blob.sha256),
        &headers,
    )
    .await
}

/// Redirects to the store's own short-lived URL when it has them (S3), or streams the object
/// honouring `Range`. `known_size` saves a lookup when the caller has it.
pub(super) async fn serve(
    state: &AppState,
    key: &str,
    mime: &str,
    known_size: Option<u64>,
    etag: &str,
    headers: &HeaderMap,
) -> Result<Response> {
    let store = &state.media.store;
    let internal = |e: media_worker::StoreError| Error::Internal(e.to_string());
    if let Some(url) = store.presigned_get(key).await.map_err(internal)? {
        let mut r = StatusCode::FOUND.into_response();
        let h = r.headers_mut();
        h.insert(
            header::LOCATION,
            HeaderValue::from_str(&url).map_err(|e| Error::Internal(e.to_string()))?,
        );
        // The URL expires: never cache the redirect itself.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(r);
    }
    let size = match known_size {
        Some(size) => size,
        None => store.size(key).await.map_err(internal)?,
    };
    let wanted = match range(headers, size) {
        Ok(r) => r,
        Err(()) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            return Ok(r);
        }
    };
    let Object { size, range, body } = store.read(key, wanted).await.map_err(internal)?;
    let status = if wanted.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut r = Response::new(Body::from_stream(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    let len = if size == 0 {
        0
    } else {
        range.last - range.first + 1
    };
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime).expect("our mime"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{etag}\"")).expect("hex"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.first, range.last))
                .expect("ascii"),
        );
    }
    Ok(r)
}
