//! Authentication and authorisation for an external MQTT broker, applying the same rules as
//! Courier's own broker (device id + token on CONNECT; a device publishes only its own
//! `req/{op}` and `presence`, subscribes only to its own `in`, `rsp`, `eph`; the service
//! identity may do anything).
//!
//! `/v1/broker/auth` and `/v1/broker/acl` answer two contracts at once:
//! - EMQX 5 HTTP authentication / authorization: `200 {"result":"allow"|"deny","is_superuser"}`;
//! - mosquitto-go-auth's HTTP backend in `json` response mode: `{"ok":bool,"error":…}`.
//!
//! `/v1/broker/vernemq` is VerneMQ's webhooks contract: the `vernemq-hook` header names the
//! hook (`auth_on_register`, `auth_on_publish`, `auth_on_subscribe`, and their `_m5` forms),
//! the answer is `{"result":"ok"}` or `{"result":{"error":"not_allowed"}}`.
//!
//! Requests are JSON. Fields: `clientid`, `username`, `password` and optionally `peerhost`
//! (auth); `topic` and either `action` (`publish`/`subscribe`, EMQX) or `acc` (1 read, 2 write,
//! 3 both, 4 subscribe, go-auth) for authorisation. The caller must present the hook secret (`--broker-hook-secret`)
//! as `Authorization: Bearer <secret>`, or as `User-Agent: courier-hook/<secret>` for
//! mosquitto-go-auth, which can set no other header (`auth_opt_http_user_agent`), or as a
//! `?secret=` query parameter for VerneMQ, whose webhooks send no configurable header. Without
//! a configured secret the endpoints do not exist.

use super::{ApiJson, AppState};
use crate::edge::auth::{DeviceAuthenticator, SERVICE_USERNAME};
use crate::error::{Error, Result};
use crate::util::constant_time_eq;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use broker::{Authenticator, Identity};
use protocol::ErrorCode;
use serde::{Deserialize, Serialize};

/// What the hooks need: the same authenticator the embedded broker uses, and the secret the
/// broker presents.
pub struct BrokerHooks {
    pub auth: DeviceAuthenticator,
    pub secret: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AuthRequest {
    #[serde(default)]
    clientid: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// The client's address (EMQX: `"peerhost": "${peerhost}"`), for the service identity's
    /// login limit.
    #[serde(default)]
    peerhost: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AclRequest {
    #[serde(default)]
    clientid: String,
    #[serde(default)]
    username: String,
    topic: String,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    acc: Option<u8>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct Verdict {
    /// EMQX: `allow` or `deny`.
    result: &'static str,
    /// EMQX: full access (the service identity).
    is_superuser: bool,
    /// mosquitto-go-auth (json mode).
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

impl Verdict {
    fn allow(is_superuser: bool) -> Json<Self> {
        Json(Self {
            result: "allow",
            is_superuser,
            ok: true,
            error: None,
        })
    }

    fn deny(why: &'static str) -> Json<Self> {
        Json(Self {
            result: "deny",
            is_superuser: false,
            ok: false,
            error: Some(why),
        })
    }
}

#[derive(Deserialize, Default)]
pub struct SecretQuery {
    #[serde(default)]
    secret: Option<String>,
}

fn hooks<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<&'a BrokerHooks> {
    let Some(hooks) = state.broker_hooks.as_deref() else {
        return Err(Error::client(ErrorCode::NotFound, "no such route"));
    };
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let presented = header(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| header(axum::http::header::USER_AGENT)?.strip_prefix("courier-hook/"))
        .or(query)
        .unwrap_or_default();
    if !constant_time_eq(presented.trim().as_bytes(), hooks.secret.as_bytes()) {
        return Err(Error::client(
            ErrorCode::Unauthorized,
            "broker hooks need `Authorization: Bearer <--broker-hook-secret>`",
        ));
    }
    Ok(hooks)
}

/// `POST /v1/broker/auth`: may this client connect?
#[utoipa::path(post, path = "/broker/auth", tag = "broker hooks", security(("broker_hook_secret" = [])), request_body = AuthRequest, responses((status = 200, body = Verdict), super::openapi::Refusals))]
pub async fn authenticate(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AuthRequest>,
) -> Result<Json<Verdict>> {
    let hooks = hooks(&state, &headers, None)?;
    Ok(
        match connect(
            hooks,
            &req.clientid,
            &req.username,
            &req.password,
            req.peerhost.as_deref(),
        )
        .await?
        {
            Some(identity) => Verdict::allow(identity == Identity::Service),
            None => Verdict::deny("bad credentials or revoked device"),
        },
    )
}

/// A CONNECT's verdict: the identity, `None` when refused; an error when the credential
/// store cannot answer (the broker should then refuse as unavailable, not as denied).
async fn connect(
    hooks: &BrokerHooks,
    clientid: &str,
    username: &str,
    password: &str,
    peer: Option<&str>,
) -> Result<Option<Identity>> {
    let peer = peer.and_then(|p| p.parse().ok());
    match hooks
        .auth
        .authenticate(clientid, username, password, peer)
        .await
    {
        Ok(identity) => Ok(Some(identity)),
        Err(broker::Refusal::Unavailable) => Err(Error::client(
            ErrorCode::Unavailable,
            "credential store unavailable",
        )),
        Err(_) => Ok(None),
    }
}

/// `POST /v1/broker/superuser` (mosquitto-go-auth): only the service identity.
#[utoipa::path(post, path = "/broker/superuser", tag = "broker hooks", security(("broker_hook_secret" = [])), request_body = AuthRequest, responses((status = 200, body = Verdict), super::openapi::Refusals))]
pub async fn superuser(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AuthRequest>,
) -> Result<Json<Verdict>> {
    hooks(&state, &headers, None)?;
    Ok(if req.username == SERVICE_USERNAME {
        Verdict::allow(true)
    } else {
        Verdict::deny("not a superuser")
    })
}

/// `POST /v1/broker/acl`: may this (already authenticated) client publish to or subscribe
/// to `topic`?
#[utoipa::path(post, path = "/broker/acl", tag = "broker hooks", security(("broker_hook_secret" = [])), request_body = AclRequest, responses((status = 200, body = Verdict), super::openapi::Refusals))]
pub async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AclRequest>,
) -> Result<Json<Verdict>> {
    hooks(&state, &headers, None)?;
    let (publish, subscribe) = match (req.action.as_deref(), req.acc) {
        (Some("publish"), _) => (true, false),
        (Some("subscribe"), _) => (false, true),
        (Some("all"), _) => (true, true),
        (None, Some(2)) => (true, false),
        // go-auth asks "read" (1) when delivering to a subscriber and "subscribe" (4) on
        // SUBSCRIBE: both are the subscribe rule.
        (None, Some(1 | 4)) => (false, true),
        (None, Some(3)) => (true, true),
        _ => {
            return Err(Error::client(
                ErrorCode::BadRequest,
                "`action` must be publish or subscribe (or `acc` 1, 2, 3 or 4)",
            ))
        }
    };
    let Some(identity) = identity(&state, &req.clientid, &req.username).await? else {
        return Ok(Verdict::deny("unknown or revoked device"));
    };
    let allowed = (!publish || identity.may_publish(&req.topic))
        && (!subscribe || identity.may_subscribe(&req.topic));
    Ok(if allowed {
        Verdict::allow(identity == Identity::Service)
    } else {
        Verdict::deny("topic not allowed for this client")
    })
}

/// Who an authenticated client is, from its client id and username: the service identity, or
/// an active device whose client id is its id. `None`: no such client may do anything.
async fn identity(state: &AppState, clientid: &str, username: &str) -> Result<Option<Identity>> {
    if username == SERVICE_USERNAME {
        // The broker authenticated it with the service secret before asking.
        return Ok(Some(Identity::Service));
    }
    if clientid != username && !clientid.is_empty() {
        return Ok(None);
    }
    Ok(state
        .store
        .active_device(username)
        .await?
        .map(|d| Identity::Device {
            user: d.user.into_string(),
            device: d.device.into_string(),
        }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct VerneRequest {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    topics: Vec<VerneTopic>,
    #[serde(default)]
    peer_addr: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct VerneTopic {
    topic: String,
}

/// `POST /v1/broker/vernemq`: VerneMQ's `auth_on_register`, `auth_on_publish` and
/// `auth_on_subscribe` webhooks (and their `_m5` forms).
#[utoipa::path(post, path = "/broker/vernemq", tag = "broker hooks", security(("broker_hook_secret" = [])), request_body = VerneRequest, responses((status = 200, description = "VerneMQ webhook answer", body = serde_json::Value), super::openapi::Refusals))]
pub async fn vernemq(
    State(state): State<AppState>,
    headers: HeaderMap,
    super::error::ApiQuery(q): super::error::ApiQuery<SecretQuery>,
    ApiJson(req): ApiJson<VerneRequest>,
) -> Result<Json<serde_json::Value>> {
    let hooks = hooks(&state, &headers, q.secret.as_deref())?;
    let hook = headers
        .get("vernemq-hook")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let username = req.username.as_deref().unwrap_or_default();
    let allowed = match hook.trim_end_matches("_m5") {
        "auth_on_register" => {
            let password = req.password.as_deref().unwrap_or_default();
            connect(
                hooks,
                &req.client_id,
                username,
                password,
                req.peer_addr.as_deref(),
            )
            .await?
            .is_some()
        }
        "auth_on_publish" => {
            let topic = req.topic.as_deref().unwrap_or_default();
            identity(&state, &req.client_id, username)
                .await?
                .is_some_and(|i| i.may_publish(topic))
        }
        "auth_on_subscribe" => {
            let who = identity(&state, &req.client_id, username).await?;
            !req.topics.is_empty()
                && who.is_some_and(|i| req.topics.iter().all(|t| i.may_subscribe(&t.topic)))
        }
        _ => {
            return Err(Error::client(
                ErrorCode::BadRequest,
                "the vernemq-hook header must name auth_on_register, auth_on_publish or \
                 auth_on_subscribe",
            ))
        }
    };
    Ok(Json(if allowed {
        serde_json::json!({ "result": "ok" })
    } else {
        serde_json::json!({ "result": { "error": "not_allowed" } })
    }))
}
