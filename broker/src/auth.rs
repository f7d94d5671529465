//! Authentication of MQTT CONNECT, supplied by whoever embeds the broker (the backend checks
//! device tokens against the database).

use crate::acl::Identity;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

/// Why a CONNECT was refused; each maps to a CONNACK code for 3.1.1 and for 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown device or wrong token (3.1.1: 4, 5: 0x86).
    BadCredentials,
    /// A revoked device, or a client id that is not the device id (3.1.1: 5, 5: 0x87).
    NotAuthorized,
    /// The credential store cannot be reached (3.1.1: 3, 5: 0x88).
    Unavailable,
    /// The device connects more often than it may (3.1.1: 3, 5: 0x9F): try again later.
    TooOften,
}

pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Identity, Refusal>> + Send + 'a>>;

pub trait Authenticator: Send + Sync + 'static {
    /// `peer`: the client's address, where known (a broker's hook may not say).
    fn authenticate<'a>(
        &'a self,
        client_id: &'a str,
        username: &'a str,
        password: &'a str,
        peer: Option<IpAddr>,
    ) -> AuthFuture<'a>;
}
