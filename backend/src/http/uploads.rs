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
//! Any backend can continue an upload another one started (no stickiness): each PATCH's bytes
//! are spooled locally while they arrive, then stored as one piece in the object store and
//! recorded with the new offset in the database (`store::uploads`). The PATCH that completes
//! the upload puts the pieces together. One PATCH at a time per upload, across processes: a
//! PATCH holds a lease on the upload, renewed while it runs (another PATCH meanwhile gets
//! 423); a backend that dies mid-PATCH keeps the bytes it had recorded, and its lease runs out
//! within [`LEASE`].

use super::media::{clean_name, hex, info_of, ingest, io, Complete};
use super::{AppState, Authed};
use crate::error::{Error, Result};
use crate::shared::Limit;
use crate::store::uploads::part_key;
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
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const TUS_VERSION: &str = "1.0.0";
const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
const FILE_ID: HeaderName = HeaderName::from_static("courier-file-id");

/// How long a PATCH holds its upload unless renewed; it renews every third of it, so an upload
/// whose backend died is free again within this long.
pub const LEASE: Duration = Duration::from_secs(15);
/// Pieces an upload may be stored in (one per PATCH that brought bytes); a PATCH past it is
/// refused, so a client cannot make an upload of a million one-byte objects.
pub const MAX_PARTS: usize = 1000;

/// A PATCH's (or a deletion's) hold on an upload: renewed in the background while it lives,
/// given back when dropped.
struct Hold {
    state: AppState,
    id: String,
    holder: String,
    renew: tokio::task::JoinHandle<()>,
}

impl Hold {
    /// The upload, unless another request holds it.
    async fn take(state: &AppState, id: &str) -> Result<Option<Self>> {
        let holder = crate::util::new_token()[..32].to_owned();
        if !state.store.lock_upload(id, &holder, LEASE).await? {
            return Ok(None);
        }
        let renew = {
            let (store, id, holder) = (state.store.clone(), id.to_owned(), holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE / 3).await;
                    if !matches!(store.lock_upload(&id, &holder, LEASE).await, Ok(true)) {
                        return;
                    }
                }
            })
        };
        Ok(Some(Self {
            state: state.clone(),
            id: id.to_owned(),
            holder,
            renew,
        }))
    }

    /// Gives the upload back now, so the client's next PATCH (which may come as soon as this
    /// one's answer) finds it free.
    async fn release(mut self) {
        self.renew.abort();
        let holder = std::mem::take(&mut self.holder);
        if let Err(e) = self.state.store.unlock_upload(&self.id, &holder).await {
            tracing::debug!(error = %e, "upload lease not given back; it runs out");
        }
    }

    /// A spool file of this hold's own.
    fn spool(&self, what: &str) -> PathBuf {
        self.state
            .media
            .spool
            .join("tus")
            .join(format!("{}.{}.{what}", self.id, self.holder))
    }
}

impl Drop for Hold {
    /// A hold not [released](Hold::release) (an error, a dropped request) is given back in the
    /// background.
    fn drop(&mut self) {
        self.renew.abort();
        if self.holder.is_empty() {
            return;
        }
        let (store, id, holder) = (
            self.state.store.clone(),
            self.id.clone(),
            std::mem::take(&mut self.holder),
        );
        tokio::spawn(async move {
            if let Err(e) = store.unlock_upload(&id, &holder).await {
                tracing::debug!(error = %e, "upload lease not given back; it runs out");
            }
        });
    }
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

#[utoipa::path(options, path = "/uploads", tag = "uploads", responses((status = 204, description = "Tus-Version, Tus-Extension (creation,termination), Tus-Max-Size")))]
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

#[utoipa::path(post, path = "/uploads", tag = "uploads", security(("device_token" = [])), params(("Tus-Resumable" = String, Header, description = "1.0.0"), ("Upload-Length" = u64, Header, description = "the file’s size"), ("Upload-Metadata" = Option<String>, Header, description = "`filename`, `keep_metadata`: base64 values")), responses((status = 201, description = "Location: /v1/uploads/{id}"), (status = 412, description = "no Tus-Resumable: 1.0.0"), super::openapi::Refusals))]
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
    Ok(tus(
        StatusCode::CREATED,
        &[(header::LOCATION, format!("/v1/uploads/{}", upload.id))],
    ))
}

#[utoipa::path(head, path = "/uploads/{id}", tag = "uploads", security(("device_token" = [])), params(("id" = String, Path, description = "one of the caller’s uploads"), ("Tus-Resumable" = String, Header, description = "1.0.0")), responses((status = 200, description = "Upload-Offset (where to resume), Upload-Length, Courier-File-Id once complete"), (status = 412, description = "no Tus-Resumable: 1.0.0"), super::openapi::Refusals))]
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
        Some(_) => upload.length,
        None => upload.received,
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

#[utoipa::path(get, path = "/uploads/{id}", tag = "uploads", security(("device_token" = [])), params(("id" = String, Path, description = "one of the caller’s uploads")), responses((status = 200, description = "`{\"offset\",\"length\",\"file\"}`", body = serde_json::Value), super::openapi::Refusals))]
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
        None => (upload.received as u64, None),
    };
    Ok(Json(serde_json::json!({
        "offset": offset,
        "length": upload.length,
        "file": file,
    })))
}

#[utoipa::path(patch, path = "/uploads/{id}", tag = "uploads", security(("device_token" = [])), params(("id" = String, Path, description = "one of the caller’s uploads"), ("Tus-Resumable" = String, Header, description = "1.0.0"), ("Upload-Offset" = u64, Header, description = "where these bytes go: the server’s offset")), request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"), responses((status = 204, description = "the new Upload-Offset; Courier-File-Id when complete"), (status = 409, description = "Upload-Offset is not the server’s (which the answer gives)"), (status = 415, description = "another content type, or a refused file type"), (status = 423, description = "another request holds the upload: retry"), (status = 412, description = "no Tus-Resumable: 1.0.0"), super::openapi::Refusals))]
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
    if let Some(done) = finished(&state, &me.user, &id, &headers).await? {
        return Ok(done);
    }
    let Some(hold) = Hold::take(&state, &id).await? else {
        return Ok(tus(StatusCode::LOCKED, &[]));
    };
    let _slot = state.media.slots.take(&me.user).await;
    // Read again under the hold: another backend may have moved the upload on, or finished it.
    if let Some(done) = finished(&state, &me.user, &id, &headers).await? {
        return Ok(done);
    }
    let upload = state.store.upload_of(&me.user, &id).await?;
    let (length, offset) = (upload.length as u64, upload.received as u64);
    if number(&headers, &UPLOAD_OFFSET) != Some(offset) {
        return Ok(tus(
            StatusCode::CONFLICT,
            &[(UPLOAD_OFFSET, offset.to_string())],
        ));
    }
    if state.store.upload_parts(&id).await?.len() >= MAX_PARTS {
        return Err(Error::client(
            ErrorCode::BadRequest,
            format!("an upload is stored in at most {MAX_PARTS} pieces; send bigger PATCHes or start again"),
        ));
    }

    // This PATCH's bytes, spooled here while they arrive.
    let piece = hold.spool("piece");
    tokio::fs::create_dir_all(piece.parent().expect("spool dir"))
        .await
        .map_err(io)?;
    let received = receive(body, &piece, length - offset).await;
    let stored = match &received {
        Ok((0, _)) => Ok(true),
        Ok((n, _)) => store_piece(&hold, &piece, offset, *n).await,
        Err(_) => Ok(true),
    };
    let _ = tokio::fs::remove_file(&piece).await;
    let (n, whole) = received?;
    if !stored? {
        // The lease ran out and another request took the upload meanwhile.
        return Ok(tus(StatusCode::LOCKED, &[]));
    }
    let written = offset + n;
    if !whole || written < length {
        hold.release().await;
        return Ok(tus(
            StatusCode::NO_CONTENT,
            &[(UPLOAD_OFFSET, written.to_string())],
        ));
    }
    // Complete: put the pieces together, hash, type, store, record.
    let path = hold.spool("whole");
    let assembled = assemble(&state, &id, length, &path).await;
    let file = match assembled {
        Ok(()) => {
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
            ingest(&state, &me.user, complete).await
        }
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&path).await;
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            // A refused file (e.g. an unaccepted type) ends the upload.
            state.store.delete_upload(&id).await?;
            return Err(e);
        }
    };
    state.store.finish_upload(&id, &file.id).await?;
    Ok(tus(
        StatusCode::NO_CONTENT,
        &[
            (UPLOAD_OFFSET, length.to_string()),
            (FILE_ID, file.id.to_string()),
        ],
    ))
}

/// The answer for an upload that is already complete: its file again, for a client whose
/// completing PATCH lost its answer (or 409 with the final offset for any other offset).
async fn finished(
    state: &AppState,
    me: &protocol::UserId,
    id: &str,
    headers: &HeaderMap,
) -> Result<Option<Response>> {
    let upload = state.store.upload_of(me, id).await?;
    let Some(file) = upload.file_id else {
        return Ok(None);
    };
    let offset = upload.length.to_string();
    if number(headers, &UPLOAD_OFFSET) != Some(upload.length as u64) {
        return Ok(Some(tus(StatusCode::CONFLICT, &[(UPLOAD_OFFSET, offset)])));
    }
    Ok(Some(tus(
        StatusCode::NO_CONTENT,
        &[(UPLOAD_OFFSET, offset), (FILE_ID, file)],
    )))
}

/// Spools `body` into a new file at `path`: the bytes that arrived (all of them, or those
/// before a broken connection), and whether the body ended normally. A body longer than
/// `room` is refused; the bytes before the chunk that went past are kept.
async fn receive(body: Body, path: &std::path::Path, room: u64) -> Result<(u64, bool)> {
    let mut out = tokio::fs::File::create(path).await.map_err(io)?;
    let mut written = 0u64;
    let mut stream = body.into_data_stream();
    let mut outcome = Ok(true);
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            // The connection broke: keep what arrived; the client resumes from HEAD.
            outcome = Ok(false);
            break;
        };
        if written + chunk.len() as u64 > room {
            outcome = Err(Error::client(
                ErrorCode::BadRequest,
                "the body goes past Upload-Length",
            ));
            break;
        }
        out.write_all(&chunk).await.map_err(io)?;
        written += chunk.len() as u64;
    }
    out.flush().await.map_err(io)?;
    out.sync_data().await.map_err(io)?;
    outcome.map(|whole| (written, whole))
}

/// Stores the spooled piece of `size` bytes at `start` in the object store and records it;
/// false if the hold was lost meanwhile.
async fn store_piece(hold: &Hold, path: &std::path::Path, start: u64, size: u64) -> Result<bool> {
    let key = part_key(&hold.id, start);
    hold.state
        .media
        .store
        .put_file(&key, path, "application/octet-stream")
        .await
        .map_err(|e| Error::Internal(format!("storing an upload piece: {e}")))?;
    hold.state
        .store
        .add_upload_part(&hold.id, &hold.holder, start, size)
        .await
}

/// Writes upload `id`'s pieces, in order, into a new file at `path`; they must cover exactly
/// `length` bytes.
async fn assemble(state: &AppState, id: &str, length: u64, path: &std::path::Path) -> Result<()> {
    let mut out = tokio::fs::File::create(path).await.map_err(io)?;
    let mut at = 0u64;
    for (start, size) in state.store.upload_parts(id).await? {
        if start != at {
            return Err(Error::Internal(format!(
                "upload {id} has a gap at byte {at}"
            )));
        }
        let object = state
            .media
            .store
            .read(&part_key(id, start), None)
            .await
            .map_err(|e| Error::Internal(format!("reading an upload piece: {e}")))?;
        let mut body = object.body;
        let mut got = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(io)?;
            got += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(io)?;
        }
        if got != size {
            return Err(Error::Internal(format!(
                "upload {id}: the piece at {start} holds {got} bytes, not {size}"
            )));
        }
        at += size;
    }
    out.flush().await.map_err(io)?;
    if at != length {
        return Err(Error::Internal(format!(
            "upload {id}: {at} of {length} bytes stored"
        )));
    }
    Ok(())
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

#[utoipa::path(delete, path = "/uploads/{id}", tag = "uploads", security(("device_token" = [])), params(("id" = String, Path, description = "one of the caller’s uploads"), ("Tus-Resumable" = String, Header, description = "1.0.0")), responses((status = 204, description = "the upload and its bytes are gone"), (status = 412, description = "no Tus-Resumable: 1.0.0"), (status = 423, description = "a PATCH runs"), super::openapi::Refusals))]
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
    let Some(_hold) = Hold::take(&state, &id).await? else {
        return Ok(tus(StatusCode::LOCKED, &[]));
    };
    state.store.delete_upload(&id).await?;
    Ok(tus(StatusCode::NO_CONTENT, &[]))
}

/// Drops uploads older than `expiry`: unfinished ones with their stored pieces, and the
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
            let Some(_hold) = Hold::take(state, &id).await? else {
                continue;
            };
            state.store.delete_upload(&id).await?;
            dropped += 1;
        }
        if dropped == 0 {
            return Ok(gone);
        }
        gone += dropped;
    }
}
