//! The HTTP API under `/v1` (axum): accounts, devices, conversations, history; and the web
//! chat at `/`.
//! One file per resource; errors become `{"error":{"code","message"}}` in `error.rs`.

pub mod asyncapi;
mod auth;
mod blocks;
pub mod broker_hooks;
mod conversations;
mod devices;
mod error;
mod health;
pub mod media;
pub mod openapi;
mod profiles;
mod reports;
mod search;
pub mod serve;
pub mod upload_slots;
pub mod uploads;
mod users;
mod web;

use crate::publisher::Publisher;
use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::Authed;
pub use error::ApiJson;

/// Where devices reach MQTT, for the log-in answer.
#[derive(Clone, Debug)]
pub struct MqttPorts {
    /// Host to advertise; `None` means the host the client used for HTTP.
    pub public_host: Option<String>,
    pub tcp: u16,
    /// The WebSocket port; `wss://` when `tls` is set.
    pub ws: u16,
    /// The MQTT-over-TLS port, when the broker speaks TLS.
    pub tls: Option<u16>,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub publisher: Publisher,
    pub mqtt: MqttPorts,
    /// Set by the engine once it is subscribed to the request stream.
    pub engine_ready: Arc<AtomicBool>,
    pub media: media::Media,
    /// Auth/ACL endpoints for an external broker (`--broker-hook-secret`).
    pub broker_hooks: Option<Arc<broker_hooks::BrokerHooks>>,
    /// Who may sign up (`--signup`).
    pub signup: crate::store::invites::Signup,
}

impl AppState {
    /// Spends one of `user`'s `limit` (`rate_limited` when over it).
    pub async fn spend(
        &self,
        limit: crate::shared::Limit,
        user: &protocol::UserId,
    ) -> crate::error::Result<()> {
        self.store.shared.limit(limit, user.as_str()).await
    }
}

/// `/metrics` alone, for a listener of its own (`--metrics-listen`).
pub fn metrics_router() -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(error::not_found)
}

/// The public API; `/metrics` too unless it has a listener of its own. Each route is
/// registered with its handler's OpenAPI description (`routes!`), and the document they make
/// is served at `/v1/openapi.json` ([`openapi`]).
pub fn router(state: AppState, with_metrics: bool) -> Router {
    let (router, api) = api_router(with_metrics).split_for_parts();
    let api = std::sync::Arc::new(api);
    router
        .route(
            "/v1/openapi.json",
            get(move || {
                let api = api.clone();
                async move { axum::Json(api) }
            }),
        )
        .route(
            "/v1/asyncapi.json",
            get(|| async { axum::Json(asyncapi::cached().clone()) }),
        )
        .route("/v1/asyncapi.yaml", get(asyncapi::yaml))
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// The OpenAPI document of [`router`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router(true).split_for_parts().1
}

fn api_router(with_metrics: bool) -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(users::sign_up, users::lookup))
        .routes(routes!(users::log_in))
        .routes(routes!(users::settings, users::change_settings))
        .routes(routes!(
            profiles::me,
            profiles::change,
            users::delete_account
        ))
        .routes(routes!(profiles::avatar))
        .routes(routes!(users::storage))
        .routes(routes!(users::change_password))
        .routes(routes!(blocks::block, blocks::list))
        .routes(routes!(blocks::unblock))
        .routes(routes!(reports::file))
        .routes(routes!(broker_hooks::authenticate))
        .routes(routes!(broker_hooks::superuser))
        .routes(routes!(broker_hooks::authorize))
        .routes(routes!(broker_hooks::vernemq))
        .routes(routes!(devices::list, devices::revoke_others))
        .routes(routes!(devices::revoke))
        .routes(routes!(devices::set_push, devices::clear_push))
        .routes(routes!(conversations::create, conversations::list))
        .routes(routes!(conversations::one, conversations::change))
        .routes(routes!(conversations::settings))
        .routes(routes!(conversations::avatar))
        .routes(routes!(search::search))
        .routes(routes!(conversations::history))
        .routes(routes!(conversations::add_members))
        .routes(routes!(
            conversations::remove_member,
            conversations::set_role
        ));
    // Uploads stream to disk under their own limit, not the JSON body limit.
    let uploads = OpenApiRouter::new()
        .routes(routes!(media::upload))
        .routes(routes!(uploads::create, uploads::options))
        .routes(routes!(
            uploads::head,
            uploads::patch,
            uploads::terminate,
            uploads::status
        ))
        .layer(axum::middleware::map_response(close_on_error))
        .layer(DefaultBodyLimit::disable());
    let v1 = v1
        .routes(routes!(media::download))
        .routes(routes!(media::info))
        .routes(routes!(media::derived))
        .merge(uploads);
    let public = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/v1", v1)
        .routes(routes!(web::index))
        .routes(routes!(web::file))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz));
    match with_metrics {
        true => public.routes(routes!(health::metrics)),
        false => public,
    }
}

/// An upload refused before its body was read leaves the rest of the body on the connection:
/// close it rather than let the client reuse it.
async fn close_on_error(mut r: axum::response::Response) -> axum::response::Response {
    if r.status().is_client_error() || r.status().is_server_error() {
        r.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    r
}
