//! `req/ack`: `{"id","useq":N}` → `{"useq":cursor}`. Cumulative and forward-only; moves the
//! user's delivered watermarks and tells the senders (✓✓).

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::Result;
use protocol::ops::{AckReq, AckResult};
use serde_json::Value;

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) -> Result<Done> {
    let req: AckReq = parse(body)?;
    let (useq, receipts) = engine
        .store
        .ack(&caller.user, &caller.device, req.useq)
        .await?;
    Ok(Done::answer(AckResult { useq }).and_deliver(receipts))
}
