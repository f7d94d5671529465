//! Answers on `rsp`: `{"id":…, "ok":true, "result":{…}}` or
//! `{"id":…, "ok":false, "error":{"code":"not_member", "message":"…"}}`.
//! HTTP errors use the same [`ErrorBody`] inside `{"error":{…}}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Stable snake_case error codes, shared by MQTT answers and HTTP errors.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload is not valid UTF-8 JSON (the answer's id is null).
    BadJson,
    /// A field is missing, has the wrong type or an invalid value.
    BadRequest,
    /// The topic names an op Courier does not have.
    UnknownOp,
    /// The request payload is over the server's request size limit.
    PayloadTooLarge,
    /// The message content is invalid for its kind (empty text, text too long, …).
    InvalidMessage,
    /// The kind is not one Courier knows, or needs a capability not enabled here.
    UnsupportedKind,
    /// The user is not a member of the conversation.
    NotMember,
    /// The referenced thing does not exist (or is not visible to the caller).
    NotFound,
    /// The caller is not allowed to do this (e.g. not a group admin).
    Forbidden,
    /// A group add names users whose settings refuse adds from the caller (`details.users`).
    ConsentRequired,
    /// One of the two users blocked the other: no direct messages, no new direct
    /// conversation, no group adds between them.
    Blocked,
    /// `ack` names an update past the head of the user's log.
    AckAhead,
    /// `edit` or `delete` for everyone after the edit window closed.
    TooLate,
    /// `sync` asked for updates the server no longer keeps (the log was trimmed past them);
    /// `details.floor` says where the log now starts: reload from history, sync after it.
    CursorExpired,
    /// The request is over a rate limit; retry later.
    RateLimited,
    /// An upload whose bytes are not a type Courier accepts (detected from the bytes).
    UnsupportedMedia,
    /// An upload that would take the user past their storage quota (`details`: `used_bytes`,
    /// `used_files`, `quota_bytes`, `quota_files`).
    QuotaExceeded,
    /// HTTP: no or bad bearer token.
    Unauthorized,
    /// HTTP: wrong username or password.
    BadCredentials,
    /// HTTP: an operator suspended this account; its devices are refused until unsuspended.
    Suspended,
    /// HTTP: the username is already registered.
    UsernameTaken,
    /// Storage is unavailable; nothing was committed, retry later.
    Unavailable,
    /// An unexpected server error; nothing was committed.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadRequest => "bad_request",
            Self::UnknownOp => "unknown_op",
            Self::PayloadTooLarge => "payload_too_large",
            Self::InvalidMessage => "invalid_message",
            Self::UnsupportedKind => "unsupported_kind",
            Self::NotMember => "not_member",
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::ConsentRequired => "consent_required",
            Self::Blocked => "blocked",
            Self::AckAhead => "ack_ahead",
            Self::TooLate => "too_late",
            Self::CursorExpired => "cursor_expired",
            Self::RateLimited => "rate_limited",
            Self::UnsupportedMedia => "unsupported_media",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Unauthorized => "unauthorized",
            Self::BadCredentials => "bad_credentials",
            Self::Suspended => "suspended",
            Self::UsernameTaken => "username_taken",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// Machine-readable extras for some codes (`cursor_expired`: `{"floor":N}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

/// One answer on `rsp`. `id` echoes the request's id (any JSON value; null when unknown).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: Value,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub fn ok(id: Value, result: Value) -> Self {
        Self {
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: Value, error: ErrorBody) -> Self {
        Self {
            id,
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

/// Checks that every text in a request body (keys and string values, at any depth) can be
/// stored by both databases: PostgreSQL's `text` and `jsonb` refuse the NUL character, so a
/// request carrying one is refused here, before it reaches a write batch it would fail whole.
/// (JSON text is valid UTF-8 once parsed; nesting depth is bounded by the parser.)
pub fn check_storable(body: &Value) -> Result<(), ErrorBody> {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
    if has_nul(body) {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "text may not contain the NUL character (\\u0000)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_anywhere_in_a_body_is_refused() {
        for bad in [
            r#"{"cmid":"a\u0000b"}"#,
            r#"{"content":{"text":["x","\u0000"]}}"#,
            r#"{"a\u0000":1}"#,
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert_eq!(check_storable(&v).unwrap_err().code, ErrorCode::BadRequest);
        }
        // An escaped backslash followed by `u0000` is plain text, not a NUL.
        let v: Value = serde_json::from_str(r#"{"text":"\\u0000 and ☃"}"#).unwrap();
        assert!(check_storable(&v).is_ok());
    }
}
