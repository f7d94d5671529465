//! HTTP bodies under `/v1` (JSON; `Authorization: Bearer <device token>`).

use crate::ids::{ConvId, DeviceId, FileId, MsgId, UserId};
use serde::{Deserialize, Serialize};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignUp {
    /// 3–32 letters, digits, `.`, `_` or `-`; case-insensitive.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{3,32}$"))]
    pub username: String,
    /// 8–256 bytes (the schema says 8–64 characters, which always fit).
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 64))]
    pub password: String,
    /// An invite code; needed when the server takes sign-ups by invitation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedUp {
    pub user: UserId,
}

/// A user as others see them (`GET /v1/users?names=…` or `?ids=…`, `GET /v1/me`,
/// conversation listings, `profile` updates).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Profile {
    pub user: UserId,
    pub username: String,
    /// What apps show instead of the username, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Where the avatar is served (`/v1/users/{id}/avatar?v=…`, relative to the server): a
    /// new avatar is a new address. Absent when the user has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    /// The account was deleted: `username` is empty and there is no name or avatar; apps
    /// show "deleted account".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl Profile {
    /// How a deleted account shows: its id, nothing else.
    pub fn deleted(user: UserId) -> Self {
        Self {
            user,
            username: String::new(),
            display_name: None,
            avatar: None,
            deleted: true,
        }
    }
}

/// `DELETE /v1/me`: the account's password, to delete it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccount {
    pub password: String,
}

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 64;

/// `PATCH /v1/me`: each field given is set (`null` clears it); absent ones stay.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::http::present"
    )]
    pub display_name: Option<Option<String>>,
    /// The id of an uploaded image file of the caller's.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::http::present"
    )]
    pub avatar: Option<Option<FileId>>,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or set: serde's `Option`
/// alone reads both absent and `null` as `None`.
mod present {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Most names or ids one `GET /v1/users` looks up.
pub const USER_LOOKUP_LIMIT: usize = 100;

/// Most active devices a user has: a log-in beyond them revokes the one seen longest ago.
pub const MAX_DEVICES: u64 = 10;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogIn {
    pub username: String,
    pub password: String,
    /// Shown in the user's device list: 1–128 bytes (the schema says 1–32 characters, which
    /// always fit).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 32))]
    pub device_name: String,
    /// `ios`, `android`, `web`, …: at most 32 bytes.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9 ._-]{0,32}$"))]
    pub platform: String,
}

/// One of the caller's active devices (`GET /v1/devices`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: DeviceId,
    pub name: String,
    pub platform: String,
    /// When it logged in (Unix ms).
    pub created_at: i64,
    /// Connected now, as its last presence event said.
    pub online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    /// The device whose token made this request.
    pub current: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MqttEndpoints {
    /// `host:port` of the MQTT TCP listener.
    pub tcp: String,
    /// `ws://host:port/mqtt` of the MQTT WebSocket listener (`wss://` when the server has TLS
    /// on).
    pub ws: String,
    /// `host:port` of the MQTT-over-TLS listener, when the server has TLS on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub user: UserId,
    pub device: DeviceId,
    pub token: String,
    pub mqtt: MqttEndpoints,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewConversation {
    pub kind: ConvKind,
    pub members: Vec<UserId>,
    #[serde(default)]
    pub title: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvKind {
    Direct,
    Group,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConvId,
    pub kind: ConvKind,
    #[serde(default)]
    pub title: Option<String>,
    /// The group's picture, served to its members (a new address for every new picture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    pub members: Vec<UserId>,
    pub admins: Vec<UserId>,
    pub created_at: i64,
    /// When the conversation was last active for the caller (Unix ms): its newest message,
    /// or when the caller joined if that is later. Lists are ordered by it, pinned first.
    #[serde(default)]
    pub activity: i64,
    /// The caller's own settings for the conversation.
    #[serde(flatten)]
    pub settings: ConvSettings,
    /// A message after `read_seq` mentions the caller (by id, or `@all`).
    #[serde(default)]
    pub mentioned: bool,
    /// The newest message's seq (0 when empty).
    pub last_seq: i64,
    /// The caller's read watermark.
    pub read_seq: i64,
    /// Messages after `read_seq` that the caller can see, not counting their own and deleted
    /// ones.
    pub unread: i64,
    /// The other members' presence (for groups, the first [`PRESENCE_LIMIT`] by user id).
    #[serde(default)]
    pub presence: Vec<Presence>,
    /// The other members' watermarks (for groups, the first [`PRESENCE_LIMIT`] by user id):
    /// what a client needs to draw ✓✓ and blue ticks on messages it did not see receipts for.
    #[serde(default)]
    pub receipts: Vec<MemberReceipt>,
    /// The other members' profiles, names and avatars (for groups, the first
    /// [`PRESENCE_LIMIT`] by user id; `GET /v1/users?ids=` has the others).
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// The newest message as the caller sees it (as in history), for a list's preview line;
    /// absent while the conversation is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<crate::Message>,
}

/// A user's own settings for one conversation, on every listing entry and in `settings`
/// updates.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvSettings {
    /// Muted until this time (Unix ms), `-1` for always; `null` when not muted. A muted
    /// conversation sends no push notices (but for mentions) and stays archived.
    #[serde(default)]
    pub muted_until: Option<i64>,
    /// Pinned to the top of the list (at most [`MAX_PINNED`]).
    #[serde(default)]
    pub pinned: bool,
    /// Archived: listed only with `?archived=true`, until a new message arrives (unless muted).
    #[serde(default)]
    pub archived: bool,
    /// Marked unread by the user; `read` clears it.
    #[serde(default)]
    pub marked_unread: bool,
}

/// Most conversations one user may pin.
pub const MAX_PINNED: usize = 5;

impl ConvSettings {
    /// Muted at `now` (Unix ms).
    pub fn muted_at(&self, now: i64) -> bool {
        self.muted_until.is_some_and(|t| t == -1 || t > now)
    }
}

/// `PATCH /v1/conversations/{id}/settings`: any of the fields; `muted_until: null` unmutes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::http::present"
    )]
    pub muted_until: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marked_unread: Option<bool>,
}

/// `PATCH /v1/conversations/{id}` (group admins): a new `title` and/or `avatar` (an image
/// file id of the caller's); `null` clears either.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationChange {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::http::present"
    )]
    pub title: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::http::present"
    )]
    pub avatar: Option<Option<FileId>>,
}

/// `PATCH /v1/conversations/{id}/members/{user}` (group admins).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

/// `GET /v1/conversations?limit=&before=&archived=`: a page of the list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationPage {
    pub conversations: Vec<Conversation>,
    /// Pass as `before` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

/// `GET /v1/search?q=&conv=&before=&limit=`: matching messages, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    pub messages: Vec<crate::update::Message>,
    /// Pass as `before` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

/// One member's watermarks in a conversation, as in a `receipt` update.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReceipt {
    pub user: UserId,
    /// Every message up to this seq reached a device of theirs (✓✓).
    pub delivered_seq: i64,
    /// Every message up to this seq was read (blue).
    pub read_seq: i64,
}

/// Most members whose presence a conversation summary lists.
pub const PRESENCE_LIMIT: usize = 50;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub user: UserId,
    /// Some device of the user is connected.
    pub online: bool,
    /// When a device of the user was last connected (Unix ms); absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
}

/// `PUT /v1/devices/{id}/push`: where to notify this device while it is away.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PushToken {
    /// `fcm`, `apns`, `webpush` or any name the webhook receiver understands (1..=16 bytes).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,16}$"))]
    pub provider: String,
    /// The provider's device token (1..=512 bytes, no whitespace).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[!-~]{1,512}$"))]
    pub token: String,
}

/// The body POSTed to the push webhook: content-free, so it is safe to relay to any push
/// provider.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushNotice {
    pub user: UserId,
    pub device: DeviceId,
    pub provider: String,
    pub token: String,
    pub conv: ConvId,
    /// Unread messages in `conv` for the user.
    pub unread: i64,
    /// Unread messages across the user's conversations that are not muted (an app badge).
    pub badge: i64,
    /// The new message mentions the user (by id or `@all`); a muted conversation notifies
    /// only such messages.
    #[serde(default)]
    pub mentioned: bool,
    /// When the notice was made (Unix ms): a retried notice keeps its own, so a receiver
    /// can drop one older than the last it relayed.
    pub ts: i64,
}

/// Who may add a user to a group (`group_adds` in `/v1/me/settings`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupAdds {
    /// Anyone who knows the user's id.
    Everyone,
    /// Contacts only: users sharing a direct conversation with this user that this user
    /// started or has written in. The default.
    #[default]
    Contacts,
    /// Nobody: this user joins groups only by creating them.
    Nobody,
}

impl GroupAdds {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Everyone => "everyone",
            Self::Contacts => "contacts",
            Self::Nobody => "nobody",
        }
    }

    /// The stored value; anything unknown reads as the default.
    pub fn parse(s: &str) -> Self {
        match s {
            "everyone" => Self::Everyone,
            "nobody" => Self::Nobody,
            _ => Self::Contacts,
        }
    }
}

/// The caller's account settings (`GET /v1/me/settings`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountSettings {
    pub group_adds: GroupAdds,
}

/// What the caller stores, against their quota (`GET /v1/me/storage`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageUse {
    /// Bytes in the caller's files and unfinished uploads.
    pub used_bytes: u64,
    /// The caller's files and unfinished uploads.
    pub used_files: u64,
    pub quota_bytes: u64,
    pub quota_files: u64,
}

/// `POST /v1/me/password`: the current password and the new one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub old: String,
    /// 8–256 bytes (the schema says 8–64 characters, which always fit).
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 64))]
    pub new: String,
}

/// `POST /v1/blocks`: the user to block.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockUser {
    pub user: UserId,
}

/// One entry of `GET /v1/blocks` (also `POST /v1/blocks`'s answer).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub user: UserId,
    pub username: String,
    /// When it was blocked (Unix ms).
    pub since: i64,
}

/// Why a report is filed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportReason {
    Spam,
    Abuse,
    Other,
}

impl ReportReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spam => "spam",
            Self::Abuse => "abuse",
            Self::Other => "other",
        }
    }
}

/// Longest `note` on a report, in characters.
pub const MAX_REPORT_NOTE: usize = 1000;

/// `POST /v1/reports`: a user, a message (its sender is the user reported), or both.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<MsgId>,
    pub reason: ReportReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A filed report (`POST /v1/reports`'s answer).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub user: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<MsgId>,
    pub reason: ReportReason,
    pub created_at: i64,
}

/// `PATCH /v1/me/settings`: the fields to change; absent ones stay.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_adds: Option<GroupAdds>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddMembers {
    pub members: Vec<UserId>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Newest first.
    pub messages: Vec<crate::update::Message>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    #[serde(default)]
    pub next_before: Option<i64>,
}

/// An uploaded file, as `POST /v1/media` answers and `GET /v1/media/{id}/info` shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaFile {
    pub id: FileId,
    /// The type read from the bytes (`image/jpeg`, `video/mp4`, `application/pdf`, …).
    pub mime: String,
    /// `image`, `video`, `audio` or `document`.
    pub class: String,
    pub size: u64,
    /// SHA-256 of the bytes, hex: the content address.
    pub sha256: String,
    /// The name the uploader gave, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_at: i64,
    /// Processing: `none` (nothing to make for this type), `pending`, `ready` or `failed`.
    pub status: String,
    /// Pixels as displayed (images, videos), once processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Videos and audio, once processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// Which derivatives exist: `GET /v1/media/{id}/thumb`, `/preview`, `/poster`.
    #[serde(default)]
    pub thumb: bool,
    #[serde(default)]
    pub preview: bool,
    #[serde(default)]
    pub poster: bool,
    /// Why processing failed (`status: failed`): `corrupt or unreadable: …` when the bytes do
    /// not parse as the type they were sniffed as (or are damaged), `over a limit: …` when
    /// decoding them would cost more than allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}
