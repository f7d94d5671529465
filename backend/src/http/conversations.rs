//! `/v1/conversations`: create, list, one, history, members and their roles, the group's
//! title and picture, and each member's own settings.

use super::error::ApiQuery;
use super::{ApiJson, AppState, Authed};
use crate::error::{Error, Result};
use crate::shared::Limit;
use crate::store::log::Outgoing;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use protocol::http::{
    AddMembers, ConvKind, Conversation, ConversationChange, ConversationPage, HistoryPage,
    NewConversation, RoleChange, SettingsPatch,
};
use protocol::{ConvId, ErrorCode, UserId};
use serde::Deserialize;

fn conv_id(id: &str) -> Result<ConvId> {
    ConvId::parse(id).ok_or_else(|| Error::client(ErrorCode::NotFound, "no such conversation"))
}

/// `POST /v1/conversations` → 201 with the new conversation, or 200 with the existing direct one.
#[utoipa::path(post, path = "/conversations", tag = "conversations", security(("device_token" = [])), request_body = protocol::http::NewConversation, responses((status = 201, body = protocol::http::Conversation), super::openapi::Refusals))]
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
    let status = match created.is_empty() {
        false => StatusCode::CREATED,
        true => StatusCode::OK,
    };
    deliver(&state, &created).await;
    Ok((status, Json(conv)))
}

async fn deliver(state: &AppState, outs: &[Outgoing]) {
    for out in outs {
        state.publisher.deliver(out).await;
    }
}

/// `limit` 1–100 (default 50); `before` the previous page's `next_before`; `archived`: only
/// archived ones.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    before: Option<String>,
    limit: Option<u64>,
    #[serde(default)]
    archived: bool,
}

/// `GET /v1/conversations?limit=&before=&archived=`: pinned first, then by activity.
#[utoipa::path(get, path = "/conversations", tag = "conversations", security(("device_token" = [])), params(ListQuery), responses((status = 200, body = protocol::http::ConversationPage), super::openapi::Refusals))]
pub async fn list(
    State(state): State<AppState>,
    Authed(me): Authed,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ConversationPage>> {
    state
        .store
        .shared
        .limit(Limit::History, me.user.as_str())
        .await?;
    let (conversations, next_before) = state
        .store
        .list_conversations(
            &me.user,
            q.archived,
            q.before.as_deref(),
            q.limit.unwrap_or(50),
        )
        .await?;
    Ok(Json(ConversationPage {
        conversations,
        next_before,
    }))
}

/// `PATCH /v1/conversations/{id}` (group admins): title and picture.
#[utoipa::path(patch, path = "/conversations/{id}", tag = "conversations", security(("device_token" = [])), params(("id" = String, Path, description = "a group the caller administers")), request_body = protocol::http::ConversationChange, responses((status = 200, body = protocol::http::Conversation), super::openapi::Refusals))]
pub async fn change(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ConversationChange>,
) -> Result<Json<Conversation>> {
    state.spend(Limit::Settings, &me.user).await?;
    let (conv, outs) = state
        .store
        .change_group(&conv_id(&id)?, &me.user, body)
        .await?;
    deliver(&state, &outs).await;
    Ok(Json(conv))
}

/// `PATCH /v1/conversations/{id}/members/{user} {"role"}` (group admins).
#[utoipa::path(patch, path = "/conversations/{id}/members/{user}", tag = "conversations", security(("device_token" = [])), params(("id" = String, Path, description = "a group the caller administers"), ("user" = String, Path, description = "the member")), request_body = protocol::http::RoleChange, responses((status = 200, body = protocol::http::Conversation), super::openapi::Refusals))]
pub async fn set_role(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path((id, user)): Path<(String, String)>,
    ApiJson(body): ApiJson<RoleChange>,
) -> Result<Json<Conversation>> {
    state.spend(Limit::Settings, &me.user).await?;
    let who =
        UserId::parse(&user).ok_or_else(|| Error::client(ErrorCode::NotFound, "no such member"))?;
    let (conv, outs) = state
        .store
        .set_role(&conv_id(&id)?, &me.user, &who, body.role)
        .await?;
    deliver(&state, &outs).await;
    Ok(Json(conv))
}

/// `PATCH /v1/conversations/{id}/settings`: the caller's own settings.
#[utoipa::path(patch, path = "/conversations/{id}/settings", tag = "conversations", security(("device_token" = [])), params(("id" = String, Path, description = "the conversation")), request_body = protocol::http::SettingsPatch, responses((status = 200, body = protocol::http::Conversation), super::openapi::Refusals))]
pub async fn settings(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SettingsPatch>,
) -> Result<Json<Conversation>> {
    state.spend(Limit::Settings, &me.user).await?;
    let (conv, out) = state
        .store
        .change_conv_settings(&me.user, &conv_id(&id)?, body)
        .await?;
    deliver(&state, out.as_slice()).await;
    Ok(Json(conv))
}

/// `GET /v1/conversations/{id}/avatar`: the group's picture, for its members.
#[utoipa::path(get, path = "/conversations/{id}/avatar", tag = "conversations", security(("device_token" = [])), params(("id" = String, Path, description = "a group of the caller’s")), responses((status = 200, description = "the group’s picture, 256 px WebP", content_type = "image/webp", body = Vec<u8>), (status = 304, description = "unchanged (If-None-Match)"), super::openapi::Refusals))]
pub async fn avatar(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    state.spend(Limit::Download, &me.user).await?;
    let none = || Error::client(ErrorCode::NotFound, "no picture to show");
    let conv = ConvId::parse(&id).ok_or_else(none)?;
    let key = state
        .store
        .group_avatar_of(&me.user, &conv)
        .await?
        .ok_or_else(none)?;
    super::profiles::serve_avatar(&state, &key, &headers).await
}

/// `GET /v1/conversations/{id}`
#[utoipa::path(get, path = "/conversations/{id}", tag = "conversations", security(("device_token" = [])), params(("id" = String, Path, description = "the conversation")), responses((status = 200, body = protocol::http::Conversation), super::openapi::Refusals))]
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

/// `before` a seq (default: the newest), `limit` 1–100 (default 50).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    before: Option<i64>,
    limit: Option<u64>,
}

/// `GET /v1/conversations/{id}/messages?before=&limit=`: newest first, keyset by seq.
#[utoipa::path(get, path = "/conversations/{id}/messages", tag = "conversations", security(("device_token" = [])), params(("id" = String, Path, description = "the conversation"), HistoryQuery), responses((status = 200, body = protocol::http::HistoryPage), super::openapi::Refusals))]
pub async fn history(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
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
#[utoipa::path(post, path = "/conversations/{id}/members", tag = "conversations", security(("device_token" = [])), params(("id" = String, Path, description = "a group of the caller’s")), request_body = protocol::http::AddMembers, responses((status = 200, body = protocol::http::Conversation), super::openapi::Refusals))]
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
    let (conv, outs) = state
        .store
        .add_members(&conv_id(&id)?, &me.user, &body.members)
        .await?;
    deliver(&state, &outs).await;
    Ok(Json(conv))
}

/// `DELETE /v1/conversations/{id}/members/{user}` (group admins, or a member leaving).
#[utoipa::path(delete, path = "/conversations/{id}/members/{user}", tag = "conversations", security(("device_token" = [])), params(("id" = String, Path, description = "a group of the caller’s"), ("user" = String, Path, description = "the member (the caller: leave)")), responses((status = 204, description = "removed (or left)"), super::openapi::Refusals))]
pub async fn remove_member(
    State(state): State<AppState>,
    Authed(me): Authed,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode> {
    let who =
        UserId::parse(&user).ok_or_else(|| Error::client(ErrorCode::NotFound, "no such member"))?;
    let outs = state
        .store
        .remove_member(&conv_id(&id)?, &me.user, &who)
        .await?;
    deliver(&state, &outs).await;
    Ok(StatusCode::NO_CONTENT)
}
