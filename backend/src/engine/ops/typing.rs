//! `req/typing` (QoS 0, never answered): `{"conv","on":bool}` → `{"type":"typing",…}` on
//! `eph` of the other members' devices (not those blocked either way). Throttled per device and conversation: a repeated
//! "on" within [`REPEAT`] is dropped; changes always pass.

use super::parse;
use crate::engine::{Caller, Engine};
use crate::store::conversations::{member_ids, membership};
use protocol::ops::{Ephemeral, TypingReq};
use protocol::{ConvId, DeviceId};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const REPEAT: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct Throttle {
    last: Mutex<HashMap<(DeviceId, ConvId), (bool, Instant)>>,
}

impl Throttle {
    fn admit(&self, device: &DeviceId, conv: &ConvId, on: bool) -> bool {
        let mut last = self.last.lock().expect("throttle lock");
        let now = Instant::now();
        if last.len() > 100_000 {
            last.retain(|_, (_, at)| now.duration_since(*at) < REPEAT);
        }
        let key = (device.clone(), conv.clone());
        match last.get(&key) {
            Some((was_on, at)) if *was_on == on && now.duration_since(*at) < REPEAT => false,
            _ => {
                last.insert(key, (on, now));
                true
            }
        }
    }
}

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) {
    let Ok(req) = parse::<TypingReq>(body) else {
        return;
    };
    if !engine.typing.admit(&caller.device, &req.conv, req.on) {
        return;
    }
    if membership(&engine.store.read, &req.conv, &caller.user)
        .await
        .is_err()
    {
        return;
    }
    let Ok(members) = member_ids(&engine.store.read, &req.conv).await else {
        return;
    };
    // Nobody blocked either way hears it.
    let Ok(blocked) = engine.store.blocked_either_way(&caller.user).await else {
        return;
    };
    let others: Vec<_> = members
        .into_iter()
        .filter(|u| *u != caller.user && !blocked.contains(u))
        .collect();
    let event = Ephemeral::Typing {
        conv: req.conv,
        user: caller.user.clone(),
        on: req.on,
    };
    engine.publisher.ephemeral_to(&others, &event).await;
}
