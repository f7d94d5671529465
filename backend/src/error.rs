//! The backend's one error type. Client mistakes carry a wire [`ErrorCode`]; storage failures
//! become `unavailable`/`internal` (and are logged, while client mistakes are not). The HTTP
//! mapping lives in `http::error`, the MQTT one in `engine::respond`.

use protocol::{ErrorBody, ErrorCode};
use sea_orm::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {}", .0.code, .0.message)]
    Client(ErrorBody),
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn client(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Client(ErrorBody::new(code, message))
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Client(body) => body.code,
            Self::Db(e) if is_nul_refused(e) => ErrorCode::BadRequest,
            Self::Db(e) if is_unavailable(e) => ErrorCode::Unavailable,
            Self::Db(_) | Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The body sent to the client: client errors verbatim, server errors without internals.
    pub fn body(&self) -> ErrorBody {
        match self {
            Self::Client(body) => body.clone(),
            // Request bodies are checked for NUL before any write; a path or query value that
            // carries one reaches PostgreSQL, which refuses it: the client's mistake.
            Self::Db(e) if is_nul_refused(e) => ErrorBody::new(
                ErrorCode::BadRequest,
                "text may not contain the NUL character (\\u0000)",
            ),
            other => {
                tracing::error!(error = %other, "request failed");
                let code = other.code();
                let message = match code {
                    ErrorCode::Unavailable => {
                        "storage is unavailable; retry (a send with the same cmid is stored once)"
                    }
                    _ => "internal error; retry (a send with the same cmid is stored once)",
                };
                ErrorBody::new(code, message)
            }
        }
    }
}

impl From<ErrorBody> for Error {
    fn from(body: ErrorBody) -> Self {
        Self::Client(body)
    }
}

/// PostgreSQL refusing a NUL byte in text (SQLSTATE 22021).
fn is_nul_refused(e: &DbErr) -> bool {
    let text = e.to_string();
    text.contains("invalid byte sequence for encoding") && text.contains("0x00")
}

fn is_unavailable(e: &DbErr) -> bool {
    matches!(e, DbErr::Conn(_) | DbErr::ConnectionAcquire(_))
}

/// A foreign-key violation (a row referred to was deleted concurrently).
pub fn is_foreign_key_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
    )
}

/// A unique-constraint violation (a concurrent duplicate insert).
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
