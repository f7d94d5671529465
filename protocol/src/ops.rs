//! Request and result bodies, one per op (`u/{user}/d/{device}/req/{op}`).

use crate::envelope::{ErrorBody, ErrorCode};
use crate::ids::{is_id, ConvId, MsgId};
use crate::update::{Attachment, Contact, Content, DeleteScope, Location, Update};
use serde::{Deserialize, Serialize};

/// The ops Courier answers; the topic's last level names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Send,
    Ack,
    Read,
    Sync,
    Typing,
    Edit,
    Delete,
    React,
}

impl Op {
    /// Every op.
    pub const ALL: [Op; 8] = [
        Self::Send,
        Self::Ack,
        Self::Read,
        Self::Sync,
        Self::Typing,
        Self::Edit,
        Self::Delete,
        Self::React,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "send" => Self::Send,
            "ack" => Self::Ack,
            "read" => Self::Read,
            "sync" => Self::Sync,
            "typing" => Self::Typing,
            "edit" => Self::Edit,
            "delete" => Self::Delete,
            "react" => Self::React,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Ack => "ack",
            Self::Read => "read",
            Self::Sync => "sync",
            Self::Typing => "typing",
            Self::Edit => "edit",
            Self::Delete => "delete",
            Self::React => "react",
        }
    }
}

/// Longest text (in characters) a text message or caption may carry.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest client message id.
pub const MAX_CMID_LEN: usize = 64;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SendReq {
    pub conv: ConvId,
    pub cmid: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MsgId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_of: Option<MsgId>,
    /// Text messages only: member user ids the text mentions, or `@all` (group admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<String>>,
}

/// Most mentions one message carries.
pub const MAX_MENTIONS: usize = 50;
/// The mention of every member of a group (admins only).
pub const MENTION_ALL: &str = "@all";

fn invalid(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidMessage, message)
}

/// A message text: not blank, at most [`MAX_TEXT_CHARS`] characters.
pub fn check_text(text: &str) -> Result<(), ErrorBody> {
    if text.trim().is_empty() {
        return Err(invalid("a text message needs non-empty `text`"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(invalid(format!(
            "`text` is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}

/// Most photos in one image message.
pub const MAX_IMAGES: usize = 10;

impl SendReq {
    /// `attachments` as `[{"file":id}]`, between `least` and `most` distinct files.
    fn attachments(&self, least: usize, most: usize) -> Result<Vec<Attachment>, ErrorBody> {
        let list = self.attachments.as_deref().unwrap_or_default();
        let shape = || {
            invalid(format!(
                "a {} message needs `attachments`: {least}..={most} of {{\"file\":id}}, each file once",
                self.kind
            ))
        };
        if list.len() < least || list.len() > most {
            return Err(shape());
        }
        let mut out: Vec<Attachment> = Vec::with_capacity(list.len());
        for item in list {
            let file = item
                .as_object()
                .filter(|o| o.len() == 1)
                .and_then(|o| o.get("file"))
                .and_then(|f| f.as_str())
                .and_then(crate::FileId::parse)
                .ok_or_else(shape)?;
            if out.iter().any(|a| a.file == file) {
                return Err(shape());
            }
            out.push(Attachment {
                file,
                mime: String::new(),
                size: 0,
                name: None,
                status: None,
                width: None,
                height: None,
                duration_ms: None,
            });
        }
        Ok(out)
    }

    /// `mentions`, each once: user ids or `@all`, at most [`MAX_MENTIONS`]. Whether they
    /// are members (and `@all` an admin's) is the store's to check.
    fn mentions(&self) -> Result<Vec<String>, ErrorBody> {
        let list = self.mentions.as_deref().unwrap_or_default();
        if list.len() > MAX_MENTIONS {
            return Err(invalid(format!(
                "a message mentions at most {MAX_MENTIONS} users"
            )));
        }
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for m in list {
            if m != MENTION_ALL && crate::UserId::parse(m).is_none() {
                return Err(invalid("`mentions` holds user ids or \"@all\""));
            }
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
        Ok(out)
    }

    /// Checks the client message id and turns the kind-specific fields into [`Content`],
    /// refusing fields that do not belong to the kind.
    pub fn content(&self) -> Result<Content, ErrorBody> {
        if self.cmid.is_empty() || self.cmid.len() > MAX_CMID_LEN {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("cmid must be 1..={MAX_CMID_LEN} bytes"),
            ));
        }
        let extra = |allowed: &[&str]| -> Result<(), ErrorBody> {
            let present = [
                ("text", self.text.is_some()),
                ("sticker", self.sticker.is_some()),
                ("location", self.location.is_some()),
                ("contact", self.contact.is_some()),
                ("attachments", self.attachments.is_some()),
                ("mentions", self.mentions.is_some()),
            ];
            match present
                .iter()
                .find(|(name, here)| *here && !allowed.contains(name))
            {
                Some((name, _)) => Err(invalid(format!(
                    "a {} message cannot carry `{name}`",
                    self.kind
                ))),
                None => Ok(()),
            }
        };
        match self.kind.as_str() {
            "text" => {
                extra(&["text", "mentions"])?;
                let text = self.text.as_deref().unwrap_or_default();
                check_text(text)?;
                Ok(Content::Text {
                    text: text.into(),
                    mentions: self.mentions()?,
                })
            }
            "sticker" => {
                extra(&["sticker"])?;
                match self.sticker.as_deref() {
                    Some(id) if is_id(id) => Ok(Content::Sticker { sticker: id.into() }),
                    _ => Err(invalid("a sticker message needs a `sticker` id")),
                }
            }
            "location" => {
                extra(&["location"])?;
                let location = self
                    .location
                    .clone()
                    .ok_or_else(|| invalid("a location message needs `location`"))?;
                location.validate()?;
                Ok(Content::Location { location })
            }
            "contact" => {
                extra(&["contact"])?;
                let contact = self
                    .contact
                    .clone()
                    .ok_or_else(|| invalid("a contact message needs `contact`"))?;
                contact.validate()?;
                Ok(Content::Contact { contact })
            }
            "image" | "video" => {
                extra(&["attachments", "text"])?;
                let most = if self.kind == "image" { MAX_IMAGES } else { 1 };
                let attachments = self.attachments(1, most)?;
                let text = match self.text.as_deref() {
                    Some(t) => {
                        check_text(t)?;
                        Some(t.to_owned())
                    }
                    None => None,
                };
                Ok(if self.kind == "image" {
                    Content::Image { attachments, text }
                } else {
                    Content::Video { attachments, text }
                })
            }
            "voice" | "file" => {
                extra(&["attachments"])?;
                let attachments = self.attachments(1, 1)?;
                Ok(if self.kind == "voice" {
                    Content::Voice { attachments }
                } else {
                    Content::File { attachments }
                })
            }
            "system" => Err(invalid("system messages are made by the server only")),
            other => Err(ErrorBody::new(
                ErrorCode::UnsupportedKind,
                format!(
                    "unknown message kind `{}`",
                    other.chars().take(32).collect::<String>()
                ),
            )),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SendResult {
    pub msg: MsgId,
    pub conv: ConvId,
    pub seq: i64,
    pub ts: i64,
    pub cmid: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AckReq {
    pub useq: i64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AckResult {
    pub useq: i64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadReq {
    pub conv: ConvId,
    pub seq: i64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadResult {
    pub conv: ConvId,
    pub read_seq: i64,
}

/// Largest page `sync` returns.
pub const MAX_SYNC_LIMIT: u32 = 500;
pub const DEFAULT_SYNC_LIMIT: u32 = 100;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncReq {
    pub after: i64,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncResult {
    pub updates: Vec<Update>,
    /// More updates follow after the last one in `updates`.
    pub more: bool,
    /// The user's newest `useq` when the page was read.
    pub head: i64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TypingReq {
    pub conv: ConvId,
    pub on: bool,
}

/// `edit`: replace the text of one of the caller's text messages (within the edit window).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EditReq {
    pub msg: MsgId,
    pub text: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EditResult {
    pub msg: MsgId,
    pub conv: ConvId,
    pub seq: i64,
    pub edited_at: i64,
}

/// `delete`: `for` is `me` (hide it from the caller's own devices) or `everyone` (the sender,
/// within the edit window: the content is erased for every member).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeleteReq {
    pub msg: MsgId,
    #[serde(rename = "for")]
    pub scope: DeleteScope,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeleteResult {
    pub msg: MsgId,
    pub conv: ConvId,
    pub seq: i64,
    #[serde(rename = "for")]
    pub scope: DeleteScope,
}

/// Longest reaction, in bytes (an emoji with modifiers and joiners fits).
pub const MAX_EMOJI_BYTES: usize = 32;

/// `react`: add (`on: true`, the default) or remove the caller's reaction `emoji`. A user has
/// at most one reaction per emoji per message.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReactReq {
    pub msg: MsgId,
    pub emoji: String,
    #[serde(default = "yes")]
    pub on: bool,
}

fn yes() -> bool {
    true
}

impl ReactReq {
    pub fn check(&self) -> Result<(), ErrorBody> {
        let e = &self.emoji;
        if e.is_empty()
            || e.len() > MAX_EMOJI_BYTES
            || e.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("`emoji` must be 1..={MAX_EMOJI_BYTES} bytes without spaces"),
            ));
        }
        Ok(())
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReactResult {
    pub msg: MsgId,
    pub conv: ConvId,
    pub seq: i64,
    pub emoji: String,
    pub on: bool,
}

/// Events on `eph`: never stored, QoS 0.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Ephemeral {
    Typing {
        conv: ConvId,
        user: crate::UserId,
        on: bool,
    },
    /// A user who shares a conversation with this device's user came online or went away.
    Presence {
        user: crate::UserId,
        online: bool,
        /// When the user was last connected (Unix ms); absent if never.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seen: Option<i64>,
    },
}
