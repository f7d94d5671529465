//! Per-device topics: `u/{user}/d/{device}/{stream}`.
//!
//! | stream        | direction       | what                                  |
//! |---------------|-----------------|---------------------------------------|
//! | `req/{op}`    | device → server | requests                              |
//! | `in`          | server → device | the ordered update stream             |
//! | `rsp`         | server → device | answers to this device's requests     |
//! | `eph`         | server → device | ephemeral events (typing, presence)   |
//! | `presence`    | device → server | online/offline, the Last Will         |

use crate::ids::{is_id, DeviceId, UserId};
use std::fmt;

/// The filter the backend subscribes to for every device request.
pub const REQUEST_FILTER: &str = "u/+/d/+/req/+";
/// The filter the backend subscribes to for presence (device wills and broker events).
pub const PRESENCE_FILTER: &str = "u/+/d/+/presence";
/// The service identity publishes `courier/sys/kick/{device}` to have Courier's broker close
/// that device's connection (after a revocation, from a backend in another process). Devices
/// can neither publish nor subscribe there.
pub const KICK_PREFIX: &str = "courier/sys/kick/";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stream {
    Req(String),
    In,
    Rsp,
    Eph,
    Presence,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceTopic {
    pub user: UserId,
    pub device: DeviceId,
    pub stream: Stream,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a Courier device topic: {0}")]
pub struct TopicError(pub String);

impl DeviceTopic {
    pub fn new(user: &UserId, device: &DeviceId, stream: Stream) -> Self {
        Self {
            user: user.clone(),
            device: device.clone(),
            stream,
        }
    }

    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let err = || TopicError(topic.chars().take(200).collect());
        let mut parts = topic.split('/');
        let (Some("u"), Some(user), Some("d"), Some(device), Some(kind)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(err());
        };
        let user = UserId::parse(user).ok_or_else(err)?;
        let device = DeviceId::parse(device).ok_or_else(err)?;
        let stream = match (kind, parts.next()) {
            ("req", Some(op)) if is_id(op) => Stream::Req(op.to_owned()),
            ("in", None) => Stream::In,
            ("rsp", None) => Stream::Rsp,
            ("eph", None) => Stream::Eph,
            ("presence", None) => Stream::Presence,
            _ => return Err(err()),
        };
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self {
            user,
            device,
            stream,
        })
    }

    /// The device-topic prefix `u/{user}/d/{device}/`.
    pub fn prefix(user: &str, device: &str) -> String {
        format!("u/{user}/d/{device}/")
    }
}

impl fmt::Display for DeviceTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "u/{}/d/{}/", self.user, self.device)?;
        match &self.stream {
            Stream::Req(op) => write!(f, "req/{op}"),
            Stream::In => f.write_str("in"),
            Stream::Rsp => f.write_str("rsp"),
            Stream::Eph => f.write_str("eph"),
            Stream::Presence => f.write_str("presence"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for t in ["u/u1/d/d1/req/send", "u/u1/d/d1/in", "u/a/d/b/presence"] {
            assert_eq!(DeviceTopic::parse(t).unwrap().to_string(), t);
        }
    }

    #[test]
    fn refuses_other_shapes() {
        for t in [
            "u/u1/d/d1",
            "u/u1/d/d1/req",
            "u/u1/d/d1/req/a/b",
            "u/+/d/d1/in",
            "u/u1/d/#",
            "x/u1/d/d1/in",
            "u/u1/d/d1/in/extra",
        ] {
            assert!(DeviceTopic::parse(t).is_err(), "{t}");
        }
    }
}
