//! `req/ack`: `{"id","useq":N}` → `{"useq":cursor}`. Cumulative and forward-only; moves the
//! user's delivered watermarks and tells the senders (✓✓). On SQLite it joins the write batch
//! ([`write`], then [`done`]); on PostgreSQL it commits on its own ([`handle`]).

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::Result;
use crate::store::batch::Write;
use crate::store::log::Outgoing;
use crate::store::receipts::Ack;
use protocol::ops::{AckReq, AckResult};
use serde_json::Value;

pub fn write(caller: &Caller, body: Value) -> Result<Write> {
    let req: AckReq = parse(body)?;
    Ok(Write::Ack(Ack {
        user: caller.user.clone(),
        device: caller.device.clone(),
        useq: req.useq,
    }))
}

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) -> Result<Done> {
    let req: AckReq = parse(body)?;
    let (useq, receipts) = engine
        .store
        .ack(&caller.user, &caller.device, req.useq)
        .await?;
    Ok(done(useq, receipts))
}

pub fn done(useq: i64, receipts: Vec<Outgoing>) -> Done {
    Done::answer(AckResult { useq }).and_deliver(receipts)
}
