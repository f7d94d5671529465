//! Who may publish and subscribe where. A device owns exactly its own topics:
//! it publishes under `u/{user}/d/{device}/req/{op}` and `…/presence`, and subscribes to
//! `…/in`, `…/rsp` and `…/eph`. The backend's service identity may use every topic.

use protocol::topic::{DeviceTopic, Stream};

/// An authenticated MQTT identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Device {
        user: String,
        device: String,
    },
    /// Courier's own backend (or another trusted service): full access.
    Service,
}

impl Identity {
    fn owns(&self, topic: &DeviceTopic) -> bool {
        match self {
            Identity::Device { user, device } => {
                topic.user.as_str() == user && topic.device.as_str() == device
            }
            Identity::Service => true,
        }
    }

    pub fn may_publish(&self, topic: &str) -> bool {
        if *self == Identity::Service {
            return !topic.is_empty();
        }
        match DeviceTopic::parse(topic) {
            Ok(t) => self.owns(&t) && matches!(t.stream, Stream::Req(_) | Stream::Presence),
            Err(_) => false,
        }
    }

    pub fn may_subscribe(&self, filter: &str) -> bool {
        if *self == Identity::Service {
            return !filter.is_empty();
        }
        // Exact topics only: a parsed device topic has no wildcard level.
        match DeviceTopic::parse(filter) {
            Ok(t) => self.owns(&t) && matches!(t.stream, Stream::In | Stream::Rsp | Stream::Eph),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity::Device {
            user: "ua".into(),
            device: "da".into(),
        }
    }

    #[test]
    fn device_owns_only_its_topics() {
        let a = alice();
        assert!(a.may_publish("u/ua/d/da/req/send"));
        assert!(a.may_publish("u/ua/d/da/presence"));
        assert!(!a.may_publish("u/ua/d/da/in"));
        assert!(!a.may_publish("u/ub/d/db/req/send"));
        assert!(!a.may_publish("u/ua/d/db/req/send"));
        assert!(a.may_subscribe("u/ua/d/da/in"));
        assert!(a.may_subscribe("u/ua/d/da/rsp"));
        assert!(a.may_subscribe("u/ua/d/da/eph"));
        for f in [
            "#",
            "u/+/d/+/in",
            "u/ua/d/+/in",
            "u/ua/d/da/#",
            "u/ub/d/db/in",
            "u/ua/d/da/req/send",
            "$share/g/u/ua/d/da/in",
            "$SYS/#",
        ] {
            assert!(!a.may_subscribe(f), "{f}");
        }
    }

    #[test]
    fn service_reaches_everything() {
        assert!(Identity::Service.may_subscribe("$share/courier/u/+/d/+/req/+"));
        assert!(Identity::Service.may_publish("u/ub/d/db/in"));
    }
}
