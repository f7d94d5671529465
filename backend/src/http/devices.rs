//! `GET /v1/devices`: the caller's active devices. `DELETE /v1/devices/{id}`: revoke one of
//! them; its token stops working and its MQTT connection is closed. `DELETE /v1/devices`: the
//! same for all but the calling one.
//! `PUT|DELETE /v1/devices/{id}/push`: its push token.

use super::{ApiJson, AppState, Authed};
use crate::error::{Error, Result};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use protocol::http::{DeviceInfo, PushToken};
use protocol::ErrorCode;

#[utoipa::path(get, path = "/devices", tag = "devices", security(("device_token" = [])), responses((status = 200, body = Vec<protocol::http::DeviceInfo>), super::openapi::Refusals))]
pub async fn list(
    State(state): State<AppState>,
    Authed(me): Authed,
) -> Result<axum::Json<Vec<DeviceInfo>>> {
    let rows = state.store.devices_of(&me.user).await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|d| DeviceInfo {
                current: d.id == me.device.as_str(),
                id: protocol::DeviceId::from_trusted(d.id),
                name: d.name,
                platform: d.platform,
                created_at: d.created_at,
                online: d.online,
                last_seen: d.last_seen_at,
            })
            .collect(),
    ))
}

/// `DELETE /v1/devices`: signs out every device of the caller's but this one. 204.
#[utoipa::path(delete, path = "/devices", tag = "devices", security(("device_token" = [])), responses((status = 204, description = "every other device of the caller is signed out"), super::openapi::Refusals))]
pub async fn revoke_others(
    State(state): State<AppState>,
    Authed(me): Authed,
) -> Result<StatusCode> {
    let revoked = state
        .store
        .revoke_other_devices(&me.user, &me.device)
        .await?;
    state.publisher.directory().invalidate(&me.user);
    for device in &revoked {
        state.publisher.kick(device);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/devices/{id}", tag = "devices", security(("device_token" = [])), params(("id" = String, Path, description = "one of the caller’s devices")), responses((status = 204, description = "signed out and disconnected"), super::openapi::Refusals))]
pub async fn revoke(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if !state.store.revoke_device(&me.user, &id).await? {
        return Err(Error::client(
            ErrorCode::NotFound,
            "no such device of yours",
        ));
    }
    state.publisher.directory().invalidate(&me.user);
    state.publisher.kick(&protocol::DeviceId::from_trusted(id));
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/devices/{id}/push` `{"provider","token"}`: where to notify this device of new
/// messages while it is away (see `push.rs`). 204.
#[utoipa::path(put, path = "/devices/{id}/push", tag = "devices", security(("device_token" = [])), params(("id" = String, Path, description = "one of the caller’s devices")), request_body = protocol::http::PushToken, responses((status = 204, description = "push notices for this device go with this token"), super::openapi::Refusals))]
pub async fn set_push(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PushToken>,
) -> Result<StatusCode> {
    let provider_ok = (1..=16).contains(&body.provider.len())
        && body
            .provider
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    let token_ok = (1..=512).contains(&body.token.len())
        && !body
            .token
            .chars()
            .any(|c| c.is_control() || c.is_whitespace());
    if !provider_ok || !token_ok {
        return Err(Error::client(
            ErrorCode::BadRequest,
            "`provider` is 1-16 letters, digits, '_' or '-'; `token` is 1-512 bytes without spaces",
        ));
    }
    let push = Some((body.provider.as_str(), body.token.as_str()));
    if !state.store.set_push_token(&me.user, &id, push).await? {
        return Err(Error::client(
            ErrorCode::NotFound,
            "no such device of yours",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/devices/{id}/push`: stop notifying this device. 204.
#[utoipa::path(delete, path = "/devices/{id}/push", tag = "devices", security(("device_token" = [])), params(("id" = String, Path, description = "one of the caller’s devices")), responses((status = 204, description = "no more push notices for this device"), super::openapi::Refusals))]
pub async fn clear_push(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if !state.store.set_push_token(&me.user, &id, None).await? {
        return Err(Error::client(
            ErrorCode::NotFound,
            "no such device of yours",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
