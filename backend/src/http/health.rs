//! Health for orchestrators and Prometheus: `GET /healthz` (the process answers),
//! `GET /readyz` (what it depends on answers) and `GET /metrics` (see `crate::metrics`).
//!
//! `/readyz` is 503 while the database or the broker is unreachable (nothing can be
//! committed or delivered) and 200 otherwise; Redis or the object store being down is
//! `"status":"degraded"` but still 200, since messaging works without them and taking every
//! replica out of a load balancer for it would turn a partial outage into a full one.

use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Each dependency gets this long to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is up", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

async fn check<E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<(), E>>,
) -> String {
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(Ok(())) => "ok".into(),
        Ok(Err(e)) => format!("unreachable: {e}"),
        Err(_) => "unreachable: no answer within 2 s".into(),
    }
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready: each dependency’s state", body = serde_json::Value), (status = 503, description = "not ready", body = serde_json::Value)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (database, objects, redis) = tokio::join!(
        check(state.store.db.ping()),
        check(state.media.store.check()),
        async {
            match state.store.shared.ping().await {
                None => "not configured".to_owned(),
                Some(r) => check(async { r }).await,
            }
        },
    );
    let broker = if state.engine_ready.load(Ordering::Relaxed) {
        "ok".to_owned()
    } else {
        "unreachable: the engine is not subscribed to the broker".to_owned()
    };
    let hard = database == "ok" && broker == "ok";
    let soft = objects == "ok" && (redis == "ok" || redis == "not configured");
    let (code, status) = match (hard, soft) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unready"),
        (true, false) => (StatusCode::OK, "degraded"),
        (true, true) => (StatusCode::OK, "ready"),
    };
    let body = json!({
        "status": status,
        "checks": { "database": database, "broker": broker, "objects": objects, "redis": redis },
    });
    (code, Json(body))
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
}
