//! `POST /v1/blocks {"user"}`: block a user. `DELETE /v1/blocks/{id}`: unblock.
//! `GET /v1/blocks`: the caller's blocked users. What a block does: `store::blocks`.

use super::{ApiJson, AppState, Authed};
use crate::error::{Error, Result};
use crate::shared::Limit;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use protocol::http::{Block, BlockUser};
use protocol::{ErrorCode, UserId};

#[utoipa::path(get, path = "/blocks", tag = "safety", security(("device_token" = [])), responses((status = 200, body = Vec<protocol::http::Block>), super::openapi::Refusals))]
pub async fn list(State(state): State<AppState>, Authed(me): Authed) -> Result<Json<Vec<Block>>> {
    Ok(Json(state.store.blocks(&me.user).await?))
}

/// 201 with the block (200 when it was already there: nothing changes).
#[utoipa::path(post, path = "/blocks", tag = "safety", security(("device_token" = [])), request_body = protocol::http::BlockUser, responses((status = 201, body = protocol::http::Block), super::openapi::Refusals))]
pub async fn block(
    State(state): State<AppState>,
    Authed(me): Authed,
    ApiJson(body): ApiJson<BlockUser>,
) -> Result<(StatusCode, Json<Block>)> {
    state.spend(Limit::Block, &me.user).await?;
    let (block, new) = state.store.block(&me.user, &body.user).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(block)))
}

/// 204, or 404 when the user was not blocked.
#[utoipa::path(delete, path = "/blocks/{id}", tag = "safety", security(("device_token" = [])), params(("id" = String, Path, description = "the blocked user")), responses((status = 204, description = "unblocked"), super::openapi::Refusals))]
pub async fn unblock(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.spend(Limit::Block, &me.user).await?;
    let Some(other) = UserId::parse(&id) else {
        return Err(Error::client(
            ErrorCode::NotFound,
            "you did not block this user",
        ));
    };
    if !state.store.unblock(&me.user, &other).await? {
        return Err(Error::client(
            ErrorCode::NotFound,
            "you did not block this user",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
