//! `req/send`: `{"id","conv","cmid","kind",…}` → `{"msg","conv","seq","ts","cmid"}`.
//! Answered only after the commit; a repeated (device, cmid) gets the original answer.

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::Result;
use crate::store::messages::Sent;
use protocol::ops::SendReq;
use serde_json::Value;

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) -> Result<Done> {
    let req: SendReq = parse(body)?;
    let content = req.content()?;
    match engine
        .store
        .send(&caller.user, &caller.device, &req, content)
        .await?
    {
        Sent::New { ack, out } => Ok(Done::answer(ack).and_deliver([out])),
        Sent::Duplicate(ack) => Ok(Done::answer(ack)),
    }
}
