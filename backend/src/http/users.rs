//! `POST /v1/users` (sign up), `GET /v1/users?names=…|ids=…` (look users up) and
//! `POST /v1/sessions` (log in, registering a device), `/v1/me/settings` (the caller's
//! account settings), `/v1/me/storage` (what they store, against their quota) and
//! `/v1/me/password` (a new password, signing out the other devices), `DELETE /v1/me`
//! (deleting the account).

use super::{ApiJson, AppState, Authed};
use crate::error::Result;
use crate::shared::{address_key, Limit};
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use protocol::http::{
    AccountSettings, DeleteAccount, LogIn, MqttEndpoints, PasswordChange, Profile, Session,
    SettingsChange, SignUp, SignedUp, StorageUse, USER_LOOKUP_LIMIT,
};
use std::net::SocketAddr;

#[utoipa::path(post, path = "/users", tag = "accounts", request_body = protocol::http::SignUp, responses((status = 201, body = protocol::http::SignedUp), (status = 409, description = "`username_taken`", body = super::openapi::ErrorEnvelope), super::openapi::Refusals))]
pub async fn sign_up(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<SignUp>,
) -> Result<(StatusCode, Json<SignedUp>)> {
    let limits = &state.store.shared;
    limits.limit(Limit::Signup, &address_key(peer.ip())).await?;
    limits.limit(Limit::SignupAll, "").await?;
    let user = state
        .store
        .create_user(
            &body.username,
            &body.password,
            state.signup,
            body.invite.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(SignedUp { user })))
}

#[utoipa::path(post, path = "/sessions", tag = "accounts", request_body = protocol::http::LogIn, responses((status = 200, body = protocol::http::Session), super::openapi::Refusals))]
pub async fn log_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LogIn>,
) -> Result<Json<Session>> {
    let limits = &state.store.shared;
    limits.limit(Limit::Login, &address_key(peer.ip())).await?;
    // The bucket of the name as stored (lower case); names are at most 32 bytes, so longer
    // text names no account and is cut rather than kept whole in the bucket's key.
    let account: String = body.username.to_lowercase().chars().take(33).collect();
    limits.limit(Limit::LoginAccount, &account).await?;
    let logged_in = state
        .store
        .log_in(
            &body.username,
            &body.password,
            &body.device_name,
            &body.platform,
        )
        .await?;
    // Deliveries from this process reach the new device from now on, and not the one it
    // replaced, whose connection closes.
    state.publisher.directory().invalidate(&logged_in.auth.user);
    if let Some(old) = &logged_in.replaced {
        state.publisher.kick(old);
    }
    let (auth, token) = (logged_in.auth, logged_in.token);
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
    let ws = if state.mqtt.tls.is_some() {
        "wss"
    } else {
        "ws"
    };
    MqttEndpoints {
        tcp: format!("{host}:{}", state.mqtt.tcp),
        ws: format!("{ws}://{host}:{}/mqtt", state.mqtt.ws),
        tls: state.mqtt.tls.map(|port| format!("{host}:{port}")),
    }
}

/// Comma-separated usernames or user ids.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Lookup {
    #[serde(default)]
    names: Option<String>,
    #[serde(default)]
    ids: Option<String>,
}

/// `GET /v1/users?names=alice,bob` or `?ids=u1,u2` (signed in): the profiles of those that
/// exist, by name.
#[utoipa::path(get, path = "/users", tag = "accounts", security(("device_token" = [])), params(Lookup), responses((status = 200, body = Vec<protocol::http::Profile>), super::openapi::Refusals))]
pub async fn lookup(
    State(state): State<AppState>,
    super::Authed(me): super::Authed,
    super::error::ApiQuery(q): super::error::ApiQuery<Lookup>,
) -> Result<Json<Vec<Profile>>> {
    state
        .store
        .shared
        .limit(Limit::History, me.user.as_str())
        .await?;
    let split = |s: &Option<String>| -> Vec<String> {
        s.as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (names, ids) = (split(&q.names), split(&q.ids));
    if names.is_empty() && ids.is_empty() {
        return Err(crate::error::Error::client(
            protocol::ErrorCode::BadRequest,
            "give `names` or `ids`, comma-separated",
        ));
    }
    if names.len() + ids.len() > USER_LOOKUP_LIMIT {
        return Err(crate::error::Error::client(
            protocol::ErrorCode::BadRequest,
            format!("at most {USER_LOOKUP_LIMIT} names and ids at once"),
        ));
    }
    Ok(Json(state.store.profiles_named(&names, &ids).await?))
}

/// `GET /v1/me/settings`
#[utoipa::path(get, path = "/me/settings", tag = "accounts", security(("device_token" = [])), responses((status = 200, body = protocol::http::AccountSettings), super::openapi::Refusals))]
pub async fn settings(
    State(state): State<AppState>,
    Authed(me): Authed,
) -> Result<Json<AccountSettings>> {
    Ok(Json(state.store.account_settings(&me.user).await?))
}

/// `PATCH /v1/me/settings`: changes the fields given.
#[utoipa::path(patch, path = "/me/settings", tag = "accounts", security(("device_token" = [])), request_body = protocol::http::SettingsChange, responses((status = 200, body = protocol::http::AccountSettings), super::openapi::Refusals))]
pub async fn change_settings(
    State(state): State<AppState>,
    Authed(me): Authed,
    ApiJson(change): ApiJson<SettingsChange>,
) -> Result<Json<AccountSettings>> {
    Ok(Json(state.store.change_settings(&me.user, change).await?))
}

/// `POST /v1/me/password` `{"old","new"}`: changes the password and signs out every other
/// device; this one keeps working. Guesses of `old` spend the account's log-in bucket. 204.
#[utoipa::path(post, path = "/me/password", tag = "accounts", security(("device_token" = [])), request_body = protocol::http::PasswordChange, responses((status = 204, description = "changed; every other device is signed out"), super::openapi::Refusals))]
pub async fn change_password(
    State(state): State<AppState>,
    Authed(me): Authed,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<StatusCode> {
    password_guess(&state, &me.user).await?;
    let signed_out = state
        .store
        .change_password(&me.user, &me.device, &body.old, &body.new)
        .await?;
    signed_off(&state, &me.user, &signed_out);
    Ok(StatusCode::NO_CONTENT)
}

/// A request that checks the caller's password spends the account's log-in bucket: `#` is
/// never in a username, so the bucket is the account's own, apart from log-ins by name.
async fn password_guess(state: &AppState, user: &protocol::UserId) -> Result<()> {
    let bucket = format!("#{user}");
    state.store.shared.limit(Limit::LoginAccount, &bucket).await
}

/// `user`'s `devices` may no longer connect: close their connections.
fn signed_off(state: &AppState, user: &protocol::UserId, devices: &[protocol::DeviceId]) {
    state.publisher.directory().invalidate(user);
    for device in devices {
        state.publisher.kick(device);
    }
}

/// `DELETE /v1/me` `{"password"}`: deletes the caller's account (`store::deletion`): every
/// device of theirs is signed out and disconnected at once. Guesses spend the account's
/// log-in bucket. 204.
#[utoipa::path(delete, path = "/me", tag = "accounts", security(("device_token" = [])), request_body = protocol::http::DeleteAccount, responses((status = 204, description = "the account is gone"), super::openapi::Refusals))]
pub async fn delete_account(
    State(state): State<AppState>,
    Authed(me): Authed,
    ApiJson(body): ApiJson<DeleteAccount>,
) -> Result<StatusCode> {
    password_guess(&state, &me.user).await?;
    let deleted = state.store.delete_account(&me.user, &body.password).await?;
    signed_off(&state, &deleted.user, &deleted.devices);
    for out in &deleted.out {
        state.publisher.deliver(out).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/me/storage`: what the caller stores, against their quota.
#[utoipa::path(get, path = "/me/storage", tag = "accounts", security(("device_token" = [])), responses((status = 200, body = protocol::http::StorageUse), super::openapi::Refusals))]
pub async fn storage(
    State(state): State<AppState>,
    Authed(me): Authed,
) -> Result<Json<StorageUse>> {
    let used = state.store.usage(&me.user).await?;
    let quota = state.media.quota;
    Ok(Json(StorageUse {
        used_bytes: used.bytes,
        used_files: used.files,
        quota_bytes: quota.bytes,
        quota_files: quota.files,
    }))
}
