//! `req/read`: `{"id","conv","seq":N}` → `{"conv","read_seq"}`. Moves the read watermark;
//! the receipt reaches the other members and the reader's other devices.

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::Result;
use protocol::ops::{ReadReq, ReadResult};
use serde_json::Value;

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) -> Result<Done> {
    let req: ReadReq = parse(body)?;
    let (read_seq, receipt) = engine.store.read(&caller.user, &req.conv, req.seq).await?;
    Ok(Done::answer(ReadResult {
        conv: req.conv,
        read_seq,
    })
    .and_deliver(receipt))
}
