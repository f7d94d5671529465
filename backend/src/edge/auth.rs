//! Who may connect to Courier's edge: devices by id + token (checked against the database),
//! backends and other trusted services by the service secret.

use crate::shared::{address_key, Limit};
use crate::store::accounts::TokenCheck;
use crate::store::Store;
use crate::util::constant_time_eq;
use broker::{AuthFuture, Authenticator, Identity, Refusal};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The MQTT username of Courier's backend (and other trusted services).
pub const SERVICE_USERNAME: &str = "courier-backend";

pub struct DeviceAuthenticator {
    store: Store,
    service_secret: String,
    cooling: Cooling,
}

impl DeviceAuthenticator {
    pub fn new(store: Store, service_secret: String) -> Self {
        Self {
            store,
            service_secret,
            cooling: Cooling::default(),
        }
    }
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
            if self.cooling.holds(username) {
                return Err(Refusal::TooOften);
            }
            match self.store.check_device_token(username, password).await {
                Ok(TokenCheck::Valid(d)) => {
                    if let Err(wait) = self.store.shared.take(Limit::Connect, username).await {
                        tracing::info!(device = username, "connecting too often");
                        self.cooling.start(username, wait);
                        return Err(Refusal::TooOften);
                    }
                    Ok(Identity::Device {
                        user: d.user.into_string(),
                        device: d.device.into_string(),
                    })
                }
                Ok(TokenCheck::Revoked | TokenCheck::Suspended) => Err(Refusal::NotAuthorized),
                Ok(TokenCheck::Invalid) => Err(Refusal::BadCredentials),
                Err(e) => {
                    tracing::error!(error = %e, "token check failed");
                    Err(Refusal::Unavailable)
                }
            }
        })
    }
}

/// Devices that connected too often, with the right token, until their bucket lets them in
/// again: their next attempts are refused without a database read, so a device reconnecting
/// in a loop costs the edge little. Only a device's token holder can put it here (the
/// bucket is spent after the token is checked), so nobody can lock out someone else's
/// device by knowing its id. Bounded: when full, expired entries go, and a device that
/// finds no room is only refused the expensive way.
#[derive(Default)]
struct Cooling {
    until: Mutex<HashMap<String, Instant>>,
}

impl Cooling {
    const MAX: usize = 50_000;

    fn holds(&self, device: &str) -> bool {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        match until.get(device) {
            Some(t) if *t > Instant::now() => true,
            Some(_) => {
                until.remove(device);
                false
            }
            None => false,
        }
    }

    fn start(&self, device: &str, wait: Duration) {
        let now = Instant::now();
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if until.len() >= Self::MAX {
            until.retain(|_, t| *t > now);
        }
        if until.len() < Self::MAX {
            until.insert(device.to_owned(), now + wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cooling_device_is_held_until_its_wait_is_over_and_the_map_stays_bounded() {
        let c = Cooling::default();
        assert!(!c.holds("d1"));
        c.start("d1", Duration::from_secs(60));
        c.start("d2", Duration::ZERO);
        assert!(c.holds("d1"));
        assert!(!c.holds("d2"), "a wait that is over holds nothing");
        for i in 0..Cooling::MAX + 10 {
            c.start(&format!("x{i}"), Duration::from_secs(60));
        }
        assert_eq!(c.until.lock().unwrap().len(), Cooling::MAX);
    }
}
