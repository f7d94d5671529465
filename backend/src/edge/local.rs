//! The in-process adapter (`--role all`): the engine writes straight into device connections'
//! outboxes, and connections hand requests to the engine's lanes.

use super::{Edge, Out};
use crate::engine::lanes::Lanes;
use broker::{Broker, Close, Inbound, Upstream};
use bytes::Bytes;
use protocol::{DeviceId, UserId};
use std::future::Future;
use std::pin::Pin;

impl Edge for Broker {
    fn send(&self, user: &UserId, device: &DeviceId, stream: Out, payload: Bytes) {
        crate::metrics::published(stream.name());
        self.deliver(user.as_str(), device.as_str(), stream, payload);
    }

    fn connected(&self, device: &DeviceId) -> Option<bool> {
        Some(self.is_connected(device.as_str()))
    }

    fn kick(&self, device: &DeviceId) {
        Broker::kick(self, device.as_str(), Close::Revoked);
    }
}

impl Upstream for Lanes {
    fn submit(&self, msg: Inbound) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(Lanes::submit(self, msg))
    }
}
