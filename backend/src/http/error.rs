//! HTTP error mapping: one status per wire code, JSON bodies, and a JSON extractor whose
//! rejections speak the same codes.

use crate::error::Error;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{ErrorBody, ErrorCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub fn status(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        BadJson | BadRequest | UnknownOp | InvalidMessage | UnsupportedKind => {
            StatusCode::BAD_REQUEST
        }
        PayloadTooLarge | QuotaExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        Unauthorized | BadCredentials => StatusCode::UNAUTHORIZED,
        NotMember | Forbidden | ConsentRequired | Blocked | Suspended | TooLate => {
            StatusCode::FORBIDDEN
        }
        NotFound => StatusCode::NOT_FOUND,
        UsernameTaken | AckAhead | CursorExpired => StatusCode::CONFLICT,
        RateLimited => StatusCode::TOO_MANY_REQUESTS,
        UnsupportedMedia => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = self.body();
        crate::metrics::error(body.code, "http");
        let retry_after = body
            .details
            .as_ref()
            .and_then(|d| d.get("retry_after_ms"))
            .and_then(|ms| ms.as_u64())
            .map(|ms| ms.div_ceil(1000).to_string());
        let mut r = (
            status(body.code),
            Json(serde_json::json!({ "error": body })),
        )
            .into_response();
        if let Some(secs) = retry_after.and_then(|s| s.parse().ok()) {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs);
        }
        r
    }
}

pub async fn not_found() -> Error {
    Error::client(ErrorCode::NotFound, "no such route")
}

/// `Query<T>` whose rejections are Courier errors (`bad_request`, as JSON like every other).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Error> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(q)) => Ok(Self(q)),
            Err(rejection) => {
                Err(ErrorBody::new(ErrorCode::BadRequest, rejection.body_text()).into())
            }
        }
    }
}

/// `Json<T>` whose rejections are Courier errors (`bad_json`, `bad_request`, …).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match Json::<Value>::from_request(req, state).await {
            Ok(Json(v)) => {
                // Every body is an object; serde would take an array for a struct too.
                if !v.is_object() {
                    let body =
                        ErrorBody::new(ErrorCode::BadRequest, "the body must be a JSON object");
                    return Err(body.into());
                }
                protocol::envelope::check_storable(&v)?;
                serde_json::from_value(v)
                    .map(Self)
                    .map_err(|e| ErrorBody::new(ErrorCode::BadRequest, e.to_string()).into())
            }
            Err(rejection) => {
                let code = match &rejection {
                    JsonRejection::JsonSyntaxError(_) => ErrorCode::BadJson,
                    // Over the body limit; else the body failed to arrive (too slow, cut).
                    JsonRejection::BytesRejection(_)
                        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                    {
                        ErrorCode::PayloadTooLarge
                    }
                    _ => ErrorCode::BadRequest,
                };
                Err(ErrorBody::new(code, rejection.body_text()).into())
            }
        }
    }
}
