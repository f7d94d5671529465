//! `Authorization: Bearer <device token>` → the calling device.

use super::AppState;
use crate::error::Error;
use crate::store::accounts::DeviceAuth;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use protocol::ErrorCode;

pub struct Authed(pub DeviceAuth);

impl FromRequestParts<AppState> for Authed {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let unauthorized =
            || Error::client(ErrorCode::Unauthorized, "missing or invalid bearer token");
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or_else(unauthorized)?;
        match state.store.device_by_token(token).await? {
            Some(device) => Ok(Self(device)),
            None => Err(unauthorized()),
        }
    }
}
