//! The HTTP API under `/v1` (axum): accounts, devices, conversations, history; and the web
//! chat at `/`.
//! One file per resource; errors become `{"error":{"code","message"}}` in `error.rs`.

mod auth;
mod blocks;
pub mod broker_hooks;
mod conversations;
mod devices;
mod error;
mod health;
pub mod media;
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
use axum::routing::{delete, get, head, patch, post, put};
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

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

/// The public API; `/metrics` too unless it has a listener of its own.
pub fn router(state: AppState, with_metrics: bool) -> Router {
    let v1 = Router::new()
        .route("/users", post(users::sign_up).get(users::lookup))
        .route("/sessions", post(users::log_in))
        .route(
            "/me/settings",
            get(users::settings).patch(users::change_settings),
        )
        .route(
            "/me",
            get(profiles::me)
                .patch(profiles::change)
                .delete(users::delete_account),
        )
        .route("/users/{id}/avatar", get(profiles::avatar))
        .route("/me/storage", get(users::storage))
        .route("/me/password", post(users::change_password))
        .route("/blocks", post(blocks::block).get(blocks::list))
        .route("/blocks/{id}", delete(blocks::unblock))
        .route("/reports", post(reports::file))
        .route("/broker/auth", post(broker_hooks::authenticate))
        .route("/broker/superuser", post(broker_hooks::superuser))
        .route("/broker/acl", post(broker_hooks::authorize))
        .route("/broker/vernemq", post(broker_hooks::vernemq))
        .route(
            "/devices",
            get(devices::list).delete(devices::revoke_others),
        )
        .route("/devices/{id}", delete(devices::revoke))
        .route(
            "/devices/{id}/push",
            put(devices::set_push).delete(devices::clear_push),
        )
        .route(
            "/conversations",
            post(conversations::create).get(conversations::list),
        )
        .route(
            "/conversations/{id}",
            get(conversations::one).patch(conversations::change),
        )
        .route(
            "/conversations/{id}/settings",
            patch(conversations::settings),
        )
        .route("/conversations/{id}/avatar", get(conversations::avatar))
        .route("/search", get(search::search))
        .route("/conversations/{id}/messages", get(conversations::history))
        .route(
            "/conversations/{id}/members",
            post(conversations::add_members),
        )
        .route(
            "/conversations/{id}/members/{user}",
            delete(conversations::remove_member).patch(conversations::set_role),
        );
    // Uploads stream to disk under their own limit, not the JSON body limit.
    let uploads = Router::new()
        .route("/media", post(media::upload))
        .route("/uploads", post(uploads::create).options(uploads::options))
        .route(
            "/uploads/{id}",
            head(uploads::head)
                .patch(uploads::patch)
                .delete(uploads::terminate)
                .get(uploads::status),
        )
        .layer(axum::middleware::map_response(close_on_error))
        .layer(DefaultBodyLimit::disable());
    let v1 = v1
        .route("/media/{id}", get(media::download))
        .route("/media/{id}/info", get(media::info))
        .route("/media/{id}/{which}", get(media::derived))
        .merge(uploads);
    let public = Router::new()
        .nest("/v1", v1)
        .route("/", get(web::index))
        .route("/web/{name}", get(web::file))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    let public = match with_metrics {
        true => public.route("/metrics", get(health::metrics)),
        false => public,
    };
    public
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
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
