//! Resumable uploads under `/v1/uploads`, speaking tus 1.0 (core, creation and termination), so
//! the stock tus clients (tus-js-client, TUSKit, tus-android-client) work unchanged:
//!
//! - `OPTIONS /v1/uploads`: what the server supports.
//! - `POST /v1/uploads` with `Upload-Length` (and optionally `Upload-Metadata`, `filename`
//!   or `name`): 201 with `Location: /v1/uploads/{id}`.
//! - `HEAD /v1/uploads/{id}`: `Upload-Offset`, the bytes the server holds — where to resume.
//! - `PATCH /v1/uploads/{id}` with `Upload-Offset` and an
//!   `application/offset+octet-stream` body: appends. The bytes that arrived before a broken
//!   connection are kept. The PATCH that completes the upload also types, stores and records
//!   the file, and answers with its id in `Courier-File-Id`.
//! - `DELETE /v1/uploads/{id}`: drops the upload.
//! - `GET /v1/uploads/{id}`: `{"offset","length","file"?}` (Courier's own, for any client).
//!
//! The bytes so far live in a spool file named after the upload; its length is the offset.
//! One PATCH at a time per upload (another one meanwhile gets 423).

use super::media::{clean_name, hex, info_of, ingest, io, Complete};
use super::{AppState, Authed};
use crate::error::{Error, Result};
use crate::shared::Limit;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use futures_util::StreamExt;
use media_worker::sniff::SNIFF_BYTES;
use protocol::ErrorCode;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use tokio::io::AsyncWriteExt;

const TUS_VERSION: &str = "1.0.0";
const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
const FILE_ID: HeaderName = HeaderName::from_static("courier-file-id");

/// Uploads with a PATCH in progress in this process.
static BUSY: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

struct Busy(String);

impl Busy {
    fn take(id: &str) -> Option<Self> {
        BUSY.lock()
            .expect("busy lock")
            .insert(id.to_owned())
            .then(|| Self(id.to_owned()))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.lock().expect("busy lock").remove(&self.0);
    }
}

fn spool(state: &AppState, id: &str) -> PathBuf {
    state.media.spool.join("tus").join(id)
}

/// A tus answer: the status, `Tus-Resumable` and the given headers.
fn tus(status: StatusCode, headers: &[(HeaderName, String)]) -> Response {
    let mut r = status.into_response();
    let h = r.headers_mut();
    h.insert(TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
    for (name, value) in headers {
        h.insert(
            name.clone(),
            HeaderValue::from_str(value).expect("ascii header"),
        );
    }
    r
}

/// Every request but OPTIONS must say it speaks tus 1.0.0; the 412 answer if it does not.
fn version_refused(headers: &HeaderMap) -> Option<Response> {
    match headers.get(&TUS_RESUMABLE).and_then(|v| v.to_str().ok()) {
        Some(TUS_VERSION) => None,
        _ => Some(tus(
            StatusCode::PRECONDITION_FAILED,
            &[(HeaderName::from_static("tus-version"), TUS_VERSION.into())],
        )),
    }
}

fn number(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// What `Upload-Metadata: key base64,key base64,…` says: the file name (`filename` or
/// `name`), and `keep_metadata` (`true`: store the file as uploaded).
fn upload_metadata(headers: &HeaderMap) -> Result<(Option<String>, bool)> {
    let Some(meta) = headers.get("upload-metadata").and_then(|v| v.to_str().ok()) else {
        return Ok((None, false));
    };
    let (mut name, mut keep) = (None, false);
    for pair in meta.split(',') {
        let mut parts = pair.trim().splitn(2, ' ');
        let key = parts.next().unwrap_or_default();
        if !matches!(key, "filename" | "name" | "keep_metadata") {
            continue;
        }
        let value = base64::engine::general_purpose::STANDARD
            .decode(parts.next().unwrap_or_default().trim())
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| {
                Error::client(
                    ErrorCode::BadRequest,
                    "Upload-Metadata values are base64 UTF-8",
                )
            })?;
        match key {
            "keep_metadata" => keep = value == "true",
            _ if name.is_none() => name = clean_name(Some(value))?,
            _ => {}
        }
    }
    Ok((name, keep))
}

pub async fn options(State(state): State<AppState>) -> Response {
    tus(
        StatusCode::NO_CONTENT,
        &[
            (HeaderName::from_static("tus-version"), TUS_VERSION.into()),
            (
                HeaderName::from_static("tus-extension"),
                "creation,termination".into(),
            ),
            (
                HeaderName::from_static("tus-max-size"),
                state.media.max_upload.to_string(),
            ),
        ],
    )
}

pub async fn create(
    State(state): State<AppState>,
    Authed(me): Authed,
    headers: HeaderMap,
) -> Result<Response> {
    if let Some(r) = version_refused(&headers) {
        return Ok(r);
    }
    state
        .store
        .shared
        .limit(Limit::Upload, me.user.as_str())
        .await?;
    let Some(length) = number(&headers, &UPLOAD_LENGTH) else {
        return Err(Error::client(
            ErrorCode::BadRequest,
            "Upload-Length is required (deferred lengths are not supported)",
        ));
    };
    if length > state.media.max_upload {
        return Err(Error::client(
            ErrorCode::PayloadTooLarge,
            format!("uploads are limited to {} bytes", state.media.max_upload),
        ));
    }
    let (name, keep_metadata) = upload_metadata(&headers)?;
    state
        .media
        .within_quota(&state.store, &me.user, length)
        .await?;
    let upload = state
        .store
        .create_upload(&me.user, length, name, keep_metadata, &state.media.quota)
        .await?;
    let path = spool(&state, &upload.id);
    tokio::fs::create_dir_all(path.parent().expect("spool dir"))
        .await
        .map_err(io)?;
    tokio::fs::File::create(&path).await.map_err(io)?;
    Ok(tus(
        StatusCode::CREATED,
        &[(header::LOCATION, format!("/v1/uploads/{}", upload.id))],
    ))
}

/// Bytes held for an upload (0 once it completed and the spool file is gone).
async fn held(state: &AppState, id: &str) -> u64 {
    tokio::fs::metadata(spool(state, id))
        .await
        .map(|m| m.len())
        .unwrap_or(0)
}

pub async fn head(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    if let Some(r) = version_refused(&headers) {
        return Ok(r);
    }
    let upload = state.store.upload_of(&me.user, &id).await?;
    let offset = match &upload.file_id {
        Some(_) => upload.length as u64,
        None => held(&state, &id).await,
    };
    let mut out = vec![
        (UPLOAD_OFFSET, offset.to_string()),
        (UPLOAD_LENGTH, upload.length.to_string()),
        (header::CACHE_CONTROL, "no-store".into()),
    ];
    if let Some(f) = upload.file_id {
        out.push((FILE_ID, f));
    }
    Ok(tus(StatusCode::OK, &out))
}

pub async fn status(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>> {
    let upload = state.store.upload_of(&me.user, &id).await?;
    let (offset, file) = match &upload.file_id {
        Some(f) => (
            upload.length as u64,
            Some(info_of(&state, &me.user, f).await?),
        ),
        None => (held(&state, &id).await, None),
    };
    Ok(Json(serde_json::json!({
        "offset": offset,
        "length": upload.length,
        "file": file,
    })))
}

pub async fn patch(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    if let Some(r) = version_refused(&headers) {
        return Ok(r);
    }
    let is_tus_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "application/offset+octet-stream");
    if !is_tus_body {
        return Ok(tus(StatusCode::UNSUPPORTED_MEDIA_TYPE, &[]));
    }
    let upload = state.store.upload_of(&me.user, &id).await?;
    let Some(_busy) = Busy::take(&id) else {
        return Ok(tus(StatusCode::LOCKED, &[]));
    };
    let _slot = state.media.slots.take(&me.user).await;
    let length = upload.length as u64;
    let offset = if upload.file_id.is_some() {
        length
    } else {
        held(&state, &id).await
    };
    if number(&headers, &UPLOAD_OFFSET) != Some(offset) {
        return Ok(tus(
            StatusCode::CONFLICT,
            &[(UPLOAD_OFFSET, offset.to_string())],
        ));
    }
    let path = spool(&state, &id);
    let mut out = tokio::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .await
        .map_err(io)?;
    let mut written = offset;
    let mut stream = body.into_data_stream();
    let mut broken = false;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            // The connection broke: keep what arrived; the client resumes from HEAD.
            broken = true;
            break;
        };
        if written + chunk.len() as u64 > length {
            out.flush().await.map_err(io)?;
            return Err(Error::client(
                ErrorCode::BadRequest,
                "the body goes past Upload-Length",
            ));
        }
        out.write_all(&chunk).await.map_err(io)?;
        written += chunk.len() as u64;
    }
    out.flush().await.map_err(io)?;
    out.sync_data().await.map_err(io)?;
    drop(out);
    if broken || written < length {
        return Ok(tus(
            StatusCode::NO_CONTENT,
            &[(UPLOAD_OFFSET, written.to_string())],
        ));
    }
    // Complete: hash, type, store, record.
    let (sha256, head) = digest(&path).await?;
    let complete = Complete {
        path: &path,
        head: &head,
        sha256,
        size: length,
        name: upload.name,
        keep_metadata: upload.keep_metadata,
        upload: Some(&id),
    };
    let file = match ingest(&state, &me.user, complete).await {
        Ok(f) => f,
        Err(e) => {
            // A refused file (e.g. an unaccepted type) ends the upload.
            let _ = tokio::fs::remove_file(&path).await;
            state.store.delete_upload(&id).await?;
            return Err(e);
        }
    };
    state.store.finish_upload(&id, &file.id).await?;
    let _ = tokio::fs::remove_file(&path).await;
    Ok(tus(
        StatusCode::NO_CONTENT,
        &[
            (UPLOAD_OFFSET, length.to_string()),
            (FILE_ID, file.id.to_string()),
        ],
    ))
}

/// SHA-256 (hex) and the first bytes of a spooled file.
async fn digest(path: &std::path::Path) -> Result<(String, Vec<u8>)> {
    let path = path.to_owned();
    crate::cpu::heavy(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let (mut hasher, mut head) = (Sha256::new(), Vec::new());
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if head.len() < SNIFF_BYTES {
                head.extend_from_slice(&buf[..n.min(SNIFF_BYTES - head.len())]);
            }
            hasher.update(&buf[..n]);
        }
        Ok((hex(&hasher.finalize()), head))
    })
    .await?
    .map_err(io)
}

pub async fn terminate(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    if let Some(r) = version_refused(&headers) {
        return Ok(r);
    }
    state.store.upload_of(&me.user, &id).await?;
    let _ = tokio::fs::remove_file(spool(&state, &id)).await;
    state.store.delete_upload(&id).await?;
    Ok(tus(StatusCode::NO_CONTENT, &[]))
}

/// Drops uploads older than `expiry`: unfinished ones with their spooled bytes, and the
/// records of finished ones; returns how many went.
pub async fn expire(state: &AppState, expiry: std::time::Duration) -> Result<usize> {
    let cutoff = crate::util::now_ms() - expiry.as_millis() as i64;
    let mut gone = 0;
    loop {
        let stale = state.store.stale_uploads(cutoff, 500).await?;
        if stale.is_empty() {
            return Ok(gone);
        }
        let mut dropped = 0;
        for id in stale {
            // One still receiving bytes is left for the next round.
            let Some(_busy) = Busy::take(&id) else {
                continue;
            };
            let _ = tokio::fs::remove_file(spool(state, &id)).await;
            state.store.delete_upload(&id).await?;
            dropped += 1;
        }
        if dropped == 0 {
            return Ok(gone);
        }
        gone += dropped;
    }
}
