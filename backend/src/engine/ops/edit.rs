//! `req/edit`: `{"id","msg","text"}` → `{"msg","conv","seq","edited_at"}`. The sender replaces
//! the text of a text message within the edit window; every member gets an `edit` update.

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::Result;
use protocol::ops::EditReq;
use serde_json::Value;

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) -> Result<Done> {
    let req: EditReq = parse(body)?;
    let (result, out) = engine
        .store
        .edit(&caller.user, &req.msg, &req.text, engine.config.edit_window)
        .await?;
    Ok(Done::answer(result).and_deliver(out))
}
