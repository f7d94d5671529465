//! `POST /v1/users` (sign up) and `POST /v1/sessions` (log in, registering a device).

use super::{ApiJson, AppState};
use crate::error::Result;
use crate::shared::Limit;
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use protocol::http::{LogIn, MqttEndpoints, Session, SignUp, SignedUp};
use std::net::SocketAddr;

pub async fn sign_up(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SignUp>,
) -> Result<(StatusCode, Json<SignedUp>)> {
    let user = state
        .store
        .create_user(&body.username, &body.password)
        .await?;
    Ok((StatusCode::CREATED, Json(SignedUp { user })))
}

pub async fn log_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LogIn>,
) -> Result<Json<Session>> {
    state
        .store
        .shared
        .limit(Limit::Login, &peer.ip().to_string())
        .await?;
    let (auth, token) = state
        .store
        .log_in(
            &body.username,
            &body.password,
            &body.device_name,
            &body.platform,
        )
        .await?;
    Ok(Json(Session {
        user: auth.user,
        device: auth.device,
        token,
        mqtt: endpoints(&state, &headers),
    }))
}

/// MQTT addresses for the client: the configured public host, else the host it used for HTTP.
fn endpoints(state: &AppState, headers: &HeaderMap) -> MqttEndpoints {
    let host = state.mqtt.public_host.clone().unwrap_or_else(|| {
        let authority = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        // Strip the HTTP port, keeping IPv6 brackets.
        match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => authority[..i].to_owned(),
            _ => authority.to_owned(),
        }
    });
    MqttEndpoints {
        tcp: format!("{host}:{}", state.mqtt.tcp),
        ws: format!("ws://{host}:{}/mqtt", state.mqtt.ws),
    }
}
