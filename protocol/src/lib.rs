//! Courier's wire contract, shared by the broker, the backend and every client.
//!
//! Nothing here does I/O: these are the topics devices speak on ([`topic`]), the request and
//! answer envelopes ([`envelope`]), the request and result bodies of each op ([`ops`]), the
//! updates on a device's ordered stream ([`update`]) and the HTTP bodies ([`http`]).
//! `docs/protocol.md` describes the same contract in prose; keep the two in step.

pub mod envelope;
pub mod fuzzing;
pub mod http;
pub mod ids;
pub mod ops;
pub mod search;
pub mod topic;
pub mod update;

pub use envelope::{ErrorBody, ErrorCode, Response};
pub use ids::{ConvId, DeviceId, FileId, MsgId, UserId};
pub use topic::{DeviceTopic, Stream, TopicError};
pub use update::{Message, Update, UpdateBody};
