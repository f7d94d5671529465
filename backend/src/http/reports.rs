//! `POST /v1/reports {"user"?, "msg"?, "reason", "note"?}`: report a user or a message to the
//! server's operators (`courier admin reports`). What is kept: `store::moderation`.

use super::{ApiJson, AppState, Authed};
use crate::error::Result;
use crate::shared::Limit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use protocol::http::{NewReport, Report};

/// 201 with the report.
#[utoipa::path(post, path = "/reports", tag = "safety", security(("device_token" = [])), request_body = protocol::http::NewReport, responses((status = 201, body = protocol::http::Report), super::openapi::Refusals))]
pub async fn file(
    State(state): State<AppState>,
    Authed(me): Authed,
    ApiJson(body): ApiJson<NewReport>,
) -> Result<(StatusCode, Json<Report>)> {
    state.spend(Limit::Report, &me.user).await?;
    let report = state.store.report(&me.user, body).await?;
    Ok((StatusCode::CREATED, Json(report)))
}
