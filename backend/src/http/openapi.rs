//! The OpenAPI 3.1 document of the HTTP API, served at `GET /v1/openapi.json`. It is made
//! from the code: each route is registered together with its handler's `#[utoipa::path]`
//! description (`utoipa_axum::routes!`), and the bodies' schemas are the wire types' own
//! (`protocol`, feature `openapi`), so a route or a field cannot be added without it.

use protocol::ErrorBody;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error answer: `{"error":{"code","message","details"?}}`; the status follows the
/// code (docs/protocol.md, "Error codes").
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorEnvelope {
    error: ErrorBody,
}

/// The error answers most routes may give, by status.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Refusals {
    /// `bad_json`, `bad_request`: a malformed body, a missing or invalid field.
    #[response(status = 400)]
    BadRequest(ErrorEnvelope),
    /// `unauthorized`: no token, or one that is revoked or expired.
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope),
    /// `forbidden`, `not_member`, `blocked`, `suspended`, `consent_required`, `too_late`.
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
    /// `not_found`: nothing of the caller's (or visible to them) by that id.
    #[response(status = 404)]
    NotFound(ErrorEnvelope),
    /// `payload_too_large`, `quota_exceeded`.
    #[response(status = 413)]
    TooLarge(ErrorEnvelope),
    /// `rate_limited`, with `Retry-After` and `details.retry_after_ms`.
    #[response(status = 429)]
    RateLimited(ErrorEnvelope),
    /// `unavailable`: a dependency (database, Redis, object store) did not answer.
    #[response(status = 503)]
    Unavailable(ErrorEnvelope),
}

/// The document's frame: title, version, security schemes; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Courier HTTP API",
        description = "Accounts, devices, conversations, history, search and media of a Courier \
            server. Messages and updates flow over MQTT: see docs/asyncapi.yaml and \
            docs/protocol.md.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(ErrorEnvelope, protocol::ErrorCode))
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "device_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A device's token, from POST /v1/sessions (also its MQTT password)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "broker_hook_secret",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "--broker-hook-secret, presented by an external broker",
                    ))
                    .build(),
            ),
        );
    }
}
