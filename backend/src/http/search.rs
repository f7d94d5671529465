//! `GET /v1/search?q=&conv=&before=&limit=`: the caller's messages that hold the query's
//! words, newest first (`store::search`).

use super::error::ApiQuery;
use super::{AppState, Authed};
use crate::error::{Error, Result};
use crate::shared::Limit;
use axum::extract::State;
use axum::Json;
use protocol::http::SearchPage;
use protocol::{ConvId, ErrorCode};
use serde::Deserialize;

/// `q` the words; `conv` one conversation; `before` the previous page's cursor; `limit`
/// 1–50 (default 20).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    q: String,
    conv: Option<String>,
    before: Option<String>,
    limit: Option<u64>,
}

#[utoipa::path(get, path = "/search", tag = "conversations", security(("device_token" = [])), params(SearchQuery), responses((status = 200, body = protocol::http::SearchPage), super::openapi::Refusals))]
pub async fn search(
    State(state): State<AppState>,
    Authed(me): Authed,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<SearchPage>> {
    state.spend(Limit::Search, &me.user).await?;
    let conv = match q.conv.as_deref() {
        Some(c) => Some(
            ConvId::parse(c)
                .ok_or_else(|| Error::client(ErrorCode::NotFound, "no such conversation"))?,
        ),
        None => None,
    };
    let (messages, next_before) = state
        .store
        .search(
            &me.user,
            &q.q,
            conv.as_ref(),
            q.before.as_deref(),
            q.limit.unwrap_or(20),
        )
        .await?;
    Ok(Json(SearchPage {
        messages,
        next_before,
    }))
}
