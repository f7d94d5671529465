//! `GET /v1/me`, `PATCH /v1/me {"display_name"?, "avatar"?}`: the caller's profile.
//! `GET /v1/users/{id}/avatar`: a user's avatar, for them and whoever shares a conversation
//! with them (404 for anyone else, as for no avatar). What a change does: `store::profiles`.

use super::{ApiJson, AppState, Authed};
use crate::error::{Error, Result};
use crate::shared::Limit;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use protocol::http::{Profile, ProfileChange};
use protocol::{ErrorCode, UserId};

#[utoipa::path(get, path = "/me", tag = "accounts", security(("device_token" = [])), responses((status = 200, body = protocol::http::Profile), super::openapi::Refusals))]
pub async fn me(State(state): State<AppState>, Authed(me): Authed) -> Result<Json<Profile>> {
    Ok(Json(state.store.profile(&me.user).await?))
}

#[utoipa::path(patch, path = "/me", tag = "accounts", security(("device_token" = [])), request_body = protocol::http::ProfileChange, responses((status = 200, body = protocol::http::Profile), super::openapi::Refusals))]
pub async fn change(
    State(state): State<AppState>,
    Authed(me): Authed,
    ApiJson(change): ApiJson<ProfileChange>,
) -> Result<Json<Profile>> {
    state.spend(Limit::Profile, &me.user).await?;
    let (profile, out) = state.store.change_profile(&me.user, change).await?;
    if let Some(out) = out {
        state.publisher.deliver(&out).await;
    }
    Ok(Json(profile))
}

#[utoipa::path(get, path = "/users/{id}/avatar", tag = "accounts", security(("device_token" = [])), params(("id" = String, Path, description = "the user")), responses((status = 200, description = "the avatar, 256 px WebP", content_type = "image/webp", body = Vec<u8>), (status = 304, description = "unchanged (If-None-Match)"), super::openapi::Refusals))]
pub async fn avatar(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    state.spend(Limit::Download, &me.user).await?;
    let none = || Error::client(ErrorCode::NotFound, "no avatar to show");
    let user = UserId::parse(&id).ok_or_else(none)?;
    let key = state
        .store
        .avatar_of(&me.user, &user)
        .await?
        .ok_or_else(none)?;
    serve_avatar(&state, &key, &headers).await
}

/// An avatar (a user's or a group's) from its stored square.
pub(super) async fn serve_avatar(
    state: &AppState,
    key: &str,
    headers: &HeaderMap,
) -> Result<Response> {
    // The key names the stored derivative: a new avatar is a new key.
    let etag = format!("avatar-{}", crate::util::token_hash(key));
    super::media::serve(state, key, "image/webp", None, &etag, headers).await
}
