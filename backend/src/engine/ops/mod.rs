//! One file per op; `Engine::dispatch` is the one match over them.

pub mod ack;
pub mod delete;
pub mod edit;
pub mod react;
pub mod read;
pub mod send;
pub mod sync;
pub mod typing;

use crate::error::{Error, Result};
use crate::store::batch::Written;
use crate::store::log::Outgoing;
use protocol::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A handled request: the answer's result (JSON text) for `rsp`, then the committed updates
/// to publish.
pub struct Done {
    pub result: String,
    pub deliver: Vec<Outgoing>,
}

impl Done {
    pub fn answer(result: impl serde::Serialize) -> Self {
        Self::json(serde_json::to_string(&result).expect("result serialises"))
    }

    /// A result that is JSON text already.
    pub fn json(result: String) -> Self {
        Self {
            result,
            deliver: vec![],
        }
    }

    pub fn and_deliver(mut self, out: impl IntoIterator<Item = Outgoing>) -> Self {
        self.deliver.extend(out);
        self
    }
}

/// The request body as the op's type; field errors become `bad_request`.
pub fn parse<T: DeserializeOwned>(body: Value) -> Result<T> {
    serde_json::from_value(body).map_err(|e| Error::client(ErrorCode::BadRequest, e.to_string()))
}

/// A committed batched write, answered by its op.
pub fn written(w: Written) -> Done {
    match w {
        Written::Sent(sent) => send::done(sent),
        Written::Acked(useq, receipts) => ack::done(useq, receipts),
        Written::Read(conv, read_seq, receipt) => read::done(conv, read_seq, receipt),
        Written::Presence(_) => unreachable!("presence is written for the broker, not an op"),
    }
}
