//! `/v1/conversations`: create, list, one, history, members.

use super::{ApiJson, AppState, Authed};
use crate::error::{Error, Result};
use crate::shared::Limit;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use protocol::http::{AddMembers, ConvKind, Conversation, HistoryPage, NewConversation};
use protocol::{ConvId, ErrorCode, UserId};
use serde::Deserialize;

fn conv_id(id: &str) -> Result<ConvId> {
    ConvId::parse(id).ok_or_else(|| Error::client(ErrorCode::NotFound, "no such conversation"))
}

/// `POST /v1/conversations` → 201 with the new conversation, or 200 with the existing direct one.
pub async fn create(
    State(state): State<AppState>,
    Authed(me): Authed,
    ApiJson(body): ApiJson<NewConversation>,
) -> Result<(StatusCode, Json<Conversation>)> {
    if body.kind == ConvKind::Group {
        let others = body.members.iter().filter(|u| **u != me.user).count();
        let limits = &state.store.shared;
        limits
            .limit_n(Limit::GroupAdd, me.user.as_str(), others)
            .await?;
    }
    let (conv, created) = state
        .store
        .create_conversation(&me.user, body.kind, &body.members, body.title)
        .await?;
    let status = match created {
        Some(out) => {
            state.publisher.deliver(&out).await;
            StatusCode::CREATED
        }
        None => StatusCode::OK,
    };
    Ok((status, Json(conv)))
}

/// `GET /v1/conversations`
pub async fn list(
    State(state): State<AppState>,
    Authed(me): Authed,
) -> Result<Json<Vec<Conversation>>> {
    state
        .store
        .shared
        .limit(Limit::History, me.user.as_str())
        .await?;
    Ok(Json(state.store.list_conversations(&me.user).await?))
}

/// `GET /v1/conversations/{id}`
pub async fn one(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
) -> Result<Json<Conversation>> {
    state
        .store
        .shared
        .limit(Limit::History, me.user.as_str())
        .await?;
    Ok(Json(
        state.store.conversation(&conv_id(&id)?, &me.user).await?,
    ))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    before: Option<i64>,
    limit: Option<u64>,
}

/// `GET /v1/conversations/{id}/messages?before=&limit=`: newest first, keyset by seq.
pub async fn history(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryPage>> {
    state
        .store
        .shared
        .limit(Limit::History, me.user.as_str())
        .await?;
    let (messages, next_before) = state
        .store
        .history(&conv_id(&id)?, &me.user, q.before, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(HistoryPage {
        messages,
        next_before,
    }))
}

/// `POST /v1/conversations/{id}/members` (group admins).
pub async fn add_members(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AddMembers>,
) -> Result<Json<Conversation>> {
    let limits = &state.store.shared;
    limits
        .limit_n(Limit::GroupAdd, me.user.as_str(), body.members.len())
        .await?;
    let (conv, out) = state
        .store
        .add_members(&conv_id(&id)?, &me.user, &body.members)
        .await?;
    if let Some(out) = out {
        state.publisher.deliver(&out).await;
    }
    Ok(Json(conv))
}

/// `DELETE /v1/conversations/{id}/members/{user}` (group admins, or a member leaving).
pub async fn remove_member(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode> {
    let who =
        UserId::parse(&user).ok_or_else(|| Error::client(ErrorCode::NotFound, "no such member"))?;
    for out in state
        .store
        .remove_member(&conv_id(&id)?, &me.user, &who)
        .await?
    {
        state.publisher.deliver(&out).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
