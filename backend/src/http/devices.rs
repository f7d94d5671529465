//! `DELETE /v1/devices/{id}`: revoke one of the caller's devices; its token stops working and
//! its MQTT connection is closed.

use super::{AppState, Authed};
use crate::error::{Error, Result};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use protocol::ErrorCode;

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
    if let Some(kicker) = &state.kicker {
        kicker.kick(&id);
    }
    Ok(StatusCode::NO_CONTENT)
}
