//! `req/send`: `{"id","conv","cmid","kind",…}` → `{"msg","conv","seq","ts","cmid"}`.
//! Answered only after the commit (group-committed by the batcher); a repeated
//! (device, cmid) gets the original answer. In steps, so a device's consecutive sends share a
//! batch while staying in order: [`start`] each in arrival order, queue them together
//! (`Batcher::enqueue`), then answer each with [`done`].

use super::{parse, Done};
use crate::engine::Caller;
use crate::error::Result;
use crate::store::batch::Write;
use crate::store::messages::{SendJob, Sent};
use protocol::ops::SendReq;
use serde_json::Value;

/// Everything up to the commit: checks the request and makes the job the batcher stores.
pub fn start(caller: &Caller, body: Value) -> Result<Write> {
    let req: SendReq = parse(body)?;
    let content = req.content()?;
    Ok(Write::Send(Box::new(SendJob {
        user: caller.user.clone(),
        device: caller.device.clone(),
        req,
        content,
    })))
}

/// After the commit: the answer, and the updates to deliver.
pub fn done(sent: Sent) -> Done {
    match sent {
        Sent::New { ack, out, also } => {
            crate::metrics::messages_stored(1);
            Done::answer(ack).and_deliver(std::iter::once(out).chain(also))
        }
        Sent::Duplicate(ack) => Done::answer(ack),
    }
}
