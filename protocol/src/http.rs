//! HTTP bodies under `/v1` (JSON; `Authorization: Bearer <device token>`).

use crate::ids::{ConvId, DeviceId, UserId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignUp {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedUp {
    pub user: UserId,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogIn {
    pub username: String,
    pub password: String,
    pub device_name: String,
    pub platform: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MqttEndpoints {
    /// `host:port` of the MQTT TCP listener.
    pub tcp: String,
    /// `ws://host:port/mqtt` of the MQTT WebSocket listener.
    pub ws: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub user: UserId,
    pub device: DeviceId,
    pub token: String,
    pub mqtt: MqttEndpoints,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewConversation {
    pub kind: ConvKind,
    pub members: Vec<UserId>,
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvKind {
    Direct,
    Group,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConvId,
    pub kind: ConvKind,
    #[serde(default)]
    pub title: Option<String>,
    pub members: Vec<UserId>,
    pub admins: Vec<UserId>,
    pub created_at: i64,
    /// The newest message's seq (0 when empty).
    pub last_seq: i64,
    /// The caller's read watermark.
    pub read_seq: i64,
    /// `last_seq - read_seq`, not counting the caller's own messages.
    pub unread: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddMembers {
    pub members: Vec<UserId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Newest first.
    pub messages: Vec<crate::update::Message>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    #[serde(default)]
    pub next_before: Option<i64>,
}
