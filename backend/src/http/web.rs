//! The web chat: `/` and `/web/{file}`, served from files built into the binary
//! (`backend/build.rs`). A strict Content-Security-Policy: the page runs only its own scripts,
//! talks only to this origin and to MQTT over WebSocket, and shows media through blob: URLs.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self' ws: wss:; \
    worker-src 'self' blob:; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

#[utoipa::path(get, path = "/", tag = "web chat", responses((status = 200, description = "the web chat", content_type = "text/html", body = String)))]
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

#[utoipa::path(get, path = "/web/{name}", tag = "web chat", params(("name" = String, Path, description = "one of the page’s files")), responses((status = 200, description = "the file", body = String), (status = 404, description = "no such file", body = super::openapi::ErrorEnvelope)))]
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(&(_, mime, etag, bytes)) = ASSETS.iter().find(|(n, ..)| *n == name) else {
        return crate::error::Error::client(protocol::ErrorCode::NotFound, "no such file")
            .into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        bytes.into_response()
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::ETAG, HeaderValue::from_static(etag));
    // Revalidated on every load (a 304 when unchanged), so a new server version shows at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}
