//! Updates: the entries of a user's ordered log, delivered on `in` and returned by `sync`.
//! Each is `{"useq":N, "ts":…, "type":…, …}`.

use crate::envelope::{ErrorBody, ErrorCode};
use crate::ids::{ConvId, DeviceId, MsgId, UserId};
use serde::{Deserialize, Serialize};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub useq: i64,
    pub ts: i64,
    #[serde(flatten)]
    pub body: UpdateBody,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UpdateBody {
    /// A new message in one of the user's conversations (the user's own included).
    Message { msg: Message },
    /// A member's watermarks moved: `delivered_seq` (✓✓) and `read_seq` (read).
    Receipt {
        conv: ConvId,
        user: UserId,
        delivered_seq: i64,
        read_seq: i64,
    },
    /// Membership changed: the user joined a new conversation, or members were added or removed.
    Member {
        conv: ConvId,
        action: MemberAction,
        users: Vec<UserId>,
        by: UserId,
    },
    /// A message's text was replaced by its sender.
    Edit {
        conv: ConvId,
        msg: MsgId,
        seq: i64,
        text: String,
        edited_at: i64,
        by: UserId,
    },
    /// A message was deleted: for everyone (its content is gone), or for this user only.
    Delete {
        conv: ConvId,
        msg: MsgId,
        seq: i64,
        #[serde(rename = "for")]
        scope: DeleteScope,
        by: UserId,
    },
    /// A file's processing ended: thumbnails, previews and dimensions are ready (or it failed).
    Media {
        file: crate::FileId,
        /// `ready` or `failed`.
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        width: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        height: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<i64>,
        thumb: bool,
        preview: bool,
        poster: bool,
    },
    /// A user's display name or avatar changed: sent to everyone who shares a conversation
    /// with them, and to their own devices.
    Profile { profile: crate::http::Profile },
    /// The user changed their own settings for a conversation (mute, pin, archive, marked
    /// unread): sent to their devices only.
    Settings {
        conv: ConvId,
        #[serde(flatten)]
        settings: crate::http::ConvSettings,
    },
    /// `user` added (`on`) or removed a reaction.
    Reaction {
        conv: ConvId,
        msg: MsgId,
        seq: i64,
        user: UserId,
        emoji: String,
        on: bool,
    },
}

impl UpdateBody {
    /// Every `type` tag [`UpdateBody::kind`] gives.
    pub const KINDS: [&'static str; 9] = [
        "message", "receipt", "member", "edit", "delete", "reaction", "media", "profile",
        "settings",
    ];

    /// The `type` tag, also the log row's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Message { .. } => "message",
            Self::Receipt { .. } => "receipt",
            Self::Member { .. } => "member",
            Self::Edit { .. } => "edit",
            Self::Delete { .. } => "delete",
            Self::Reaction { .. } => "reaction",
            Self::Media { .. } => "media",
            Self::Profile { .. } => "profile",
            Self::Settings { .. } => "settings",
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteScope {
    Me,
    Everyone,
}

/// The users who reacted to a message with one emoji.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReactionSummary {
    pub emoji: String,
    pub users: Vec<UserId>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberAction {
    /// The conversation was created with these members.
    Created,
    Added,
    Removed,
    /// `users` became admins: an admin made them so, or the group's last admin left and its
    /// longest-standing member takes over (then `by` is the admin who left).
    Promoted,
    /// `users` are no longer admins.
    Demoted,
}

/// What a `system` message records.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemEvent {
    /// The group was created with `users`.
    Created,
    /// `users` were added by the sender.
    Added,
    /// `users` were removed by the sender.
    Removed,
    /// The sender left.
    Left,
    /// The sender renamed the group to `title`.
    TitleChanged,
    /// The sender set or cleared the group's picture.
    AvatarChanged,
    /// `users` now have `role`: given by the sender, or, when the last admin left, passed on
    /// to the longest-standing member (then the sender is the admin who left).
    RoleChanged,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MsgId,
    pub conv: ConvId,
    pub seq: i64,
    pub sender: UserId,
    pub device: DeviceId,
    pub ts: i64,
    pub cmid: String,
    #[serde(flatten)]
    pub content: Content,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MsgId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_of: Option<MsgId>,
    /// Set once the sender edited the text (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// Set when the message was deleted (then `kind` is `deleted` and the content is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<DeleteScope>,
    /// The viewer blocked the sender: the content is gone for them (`kind` is `deleted`,
    /// `deleted` is `me`); apps leave the message out. It still takes its `seq`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    /// The sender's account was deleted since: show the sender as a deleted account (no
    /// name or avatar).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sender_deleted: bool,
    /// Current reactions, by emoji (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionSummary>,
}

/// What a message carries, by kind.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Content {
    Text {
        text: String,
        /// Who the text mentions: member user ids, or `@all` (group admins only). At most
        /// [`MAX_MENTIONS`](crate::ops::MAX_MENTIONS).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<String>,
    },
    Sticker {
        sticker: String,
    },
    Location {
        location: Location,
    },
    Contact {
        contact: Contact,
    },
    /// One to ten photos, with an optional caption.
    Image {
        attachments: Vec<Attachment>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// One video, with an optional caption.
    Video {
        attachments: Vec<Attachment>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// One voice note (an audio file).
    Voice {
        attachments: Vec<Attachment>,
    },
    /// One file of any accepted type.
    File {
        attachments: Vec<Attachment>,
    },
    /// A tombstone: the message was deleted (see [`Message::deleted`]).
    Deleted {},
    /// A line the server writes when the group or its members change; clients cannot send
    /// one. The sender is who made the change.
    System {
        event: SystemEvent,
        /// The users the change is about (added, removed, promoted, …).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        users: Vec<UserId>,
        /// `title_changed`: the new title (absent when it was cleared).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// `role_changed`: the role the users now have (`admin` or `member`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
}

/// A file carried by a message. Senders give only `file`; the server fills in the rest.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub file: crate::FileId,
    #[serde(default)]
    pub mime: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Processing when the message was sent: `none`, `pending`, `ready` or `failed`; a
    /// `media` update follows when a pending one ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

impl Content {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::Sticker { .. } => "sticker",
            Self::Location { .. } => "location",
            Self::Contact { .. } => "contact",
            Self::Image { .. } => "image",
            Self::Video { .. } => "video",
            Self::Voice { .. } => "voice",
            Self::File { .. } => "file",
            Self::Deleted {} => "deleted",
            Self::System { .. } => "system",
        }
    }

    /// The files a media message carries.
    pub fn attachments(&self) -> &[Attachment] {
        match self {
            Self::Image { attachments, .. }
            | Self::Video { attachments, .. }
            | Self::Voice { attachments }
            | Self::File { attachments } => attachments,
            _ => &[],
        }
    }

    pub fn attachments_mut(&mut self) -> &mut [Attachment] {
        match self {
            Self::Image { attachments, .. }
            | Self::Video { attachments, .. }
            | Self::Voice { attachments }
            | Self::File { attachments } => attachments,
            _ => &mut [],
        }
    }

    /// The media class each attachment of this kind must have (`None`: any).
    pub fn required_class(&self) -> Option<&'static str> {
        match self {
            Self::Image { .. } => Some("image"),
            Self::Video { .. } => Some("video"),
            Self::Voice { .. } => Some("audio"),
            _ => None,
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lng: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Location {
    pub fn validate(&self) -> Result<(), ErrorBody> {
        let ok = self.lat.is_finite()
            && self.lng.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lng)
            && self.name.as_ref().is_none_or(|n| n.chars().count() <= 200);
        ok.then_some(()).ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::InvalidMessage,
                "`location` needs lat in [-90, 90], lng in [-180, 180] and a name of at most 200 characters",
            )
        })
    }
}

/// A shared contact card: a Courier user, or a name with a phone number.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl Contact {
    pub fn validate(&self) -> Result<(), ErrorBody> {
        let name_ok = !self.name.trim().is_empty() && self.name.chars().count() <= 200;
        let phone_ok = self.phone.as_ref().is_none_or(|p| {
            !p.is_empty()
                && p.len() <= 32
                && p.chars().all(|c| c.is_ascii_digit() || "+-() ".contains(c))
        });
        if !name_ok || !phone_ok || (self.user.is_none() && self.phone.is_none()) {
            return Err(ErrorBody::new(
                ErrorCode::InvalidMessage,
                "`contact` needs a name (1..=200 characters) and a user id or a phone number",
            ));
        }
        Ok(())
    }
}
