//! `req/delete`: `{"id","msg","for":"me"|"everyone"}` → `{"msg","conv","seq","for"}`. For me:
//! any member hides it from their own devices. For everyone: the sender, within the edit
//! window, erases it; every member gets a `delete` update.

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::Result;
use protocol::ops::DeleteReq;
use serde_json::Value;

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) -> Result<Done> {
    let req: DeleteReq = parse(body)?;
    let (result, out) = engine
        .store
        .delete(&caller.user, &req.msg, req.scope, engine.config.edit_window)
        .await?;
    Ok(Done::answer(result).and_deliver(out))
}
