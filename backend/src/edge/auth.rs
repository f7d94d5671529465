//! Who may connect to Courier's edge: devices by id + token (checked against the database),
//! backends and other trusted services by the service secret.

use crate::shared::{address_key, Limit};
use crate::store::accounts::TokenCheck;
use crate::store::Store;
use crate::util::constant_time_eq;
use broker::{AuthFuture, Authenticator, Identity, Refusal};
use std::net::IpAddr;

/// The MQTT username of Courier's backend (and other trusted services).
pub const SERVICE_USERNAME: &str = "courier-backend";

pub struct DeviceAuthenticator {
    pub store: Store,
    pub service_secret: String,
}

impl Authenticator for DeviceAuthenticator {
    fn authenticate<'a>(
        &'a self,
        client_id: &'a str,
        username: &'a str,
        password: &'a str,
        peer: Option<IpAddr>,
    ) -> AuthFuture<'a> {
        Box::pin(async move {
            if username == SERVICE_USERNAME {
                // Every attempt spends from its address's bucket, right or wrong: the secret
                // cannot be guessed at speed, and backends connect rarely.
                let from = peer.map_or_else(|| "unknown".to_owned(), address_key);
                if self
                    .store
                    .shared
                    .limit(Limit::ServiceLogin, &from)
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        from,
                        "service logins from this address are over their limit"
                    );
                    return Err(Refusal::NotAuthorized);
                }
                return if !self.service_secret.is_empty()
                    && constant_time_eq(password.as_bytes(), self.service_secret.as_bytes())
                {
                    Ok(Identity::Service)
                } else {
                    Err(Refusal::BadCredentials)
                };
            }
            // MQTT client id = username = device id.
            if client_id != username {
                return Err(Refusal::NotAuthorized);
            }
            match self.store.check_device_token(username, password).await {
                Ok(TokenCheck::Valid(d)) => {
                    let over = self.store.shared.limit(Limit::Connect, username).await;
                    if over.is_err() {
                        tracing::info!(device = username, "connecting too often");
                        return Err(Refusal::TooOften);
                    }
                    Ok(Identity::Device {
                        user: d.user.into_string(),
                        device: d.device.into_string(),
                    })
                }
                Ok(TokenCheck::Revoked) => Err(Refusal::NotAuthorized),
                Ok(TokenCheck::Invalid) => Err(Refusal::BadCredentials),
                Err(e) => {
                    tracing::error!(error = %e, "token check failed");
                    Err(Refusal::Unavailable)
                }
            }
        })
    }
}
