//! `req/send`: `{"id","conv","cmid","kind",…}` → `{"msg","conv","seq","ts","cmid"}`.
//! Answered only after the commit (group-committed by the batcher); a repeated
//! (device, cmid) gets the original answer.

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::Result;
use crate::shared::Limit;
use crate::store::messages::{SendJob, Sent};
use protocol::ops::SendReq;
use serde_json::Value;

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) -> Result<Done> {
    let req: SendReq = parse(body)?;
    engine
        .store
        .shared
        .limit(Limit::Send, caller.device.as_str())
        .await?;
    let content = req.content()?;
    let job = SendJob {
        user: caller.user.clone(),
        device: caller.device.clone(),
        req,
        content,
    };
    match engine.sends.send(job).await? {
        Sent::New { ack, out, also } => {
            crate::metrics::messages_stored(1);
            Ok(Done::answer(ack).and_deliver(std::iter::once(out).chain(also)))
        }
        Sent::Duplicate(ack) => Ok(Done::answer(ack)),
    }
}
