//! `req/read`: `{"id","conv","seq":N}` → `{"conv","read_seq"}`. Moves the read watermark;
//! the receipt reaches the other members and the reader's other devices. On SQLite it joins
//! the write batch ([`write`], then [`done`]); on PostgreSQL it commits on its own
//! ([`handle`]).

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::Result;
use crate::store::batch::Write;
use crate::store::log::Outgoing;
use protocol::ops::{ReadReq, ReadResult};
use protocol::ConvId;
use serde_json::Value;

pub fn write(caller: &Caller, body: Value) -> Result<Write> {
    let req: ReadReq = parse(body)?;
    Ok(Write::Read {
        user: caller.user.clone(),
        conv: req.conv,
        seq: req.seq,
    })
}

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) -> Result<Done> {
    let req: ReadReq = parse(body)?;
    let (read_seq, receipt) = engine.store.read(&caller.user, &req.conv, req.seq).await?;
    Ok(done(req.conv, read_seq, receipt))
}

pub fn done(conv: ConvId, read_seq: i64, receipt: Option<Outgoing>) -> Done {
    Done::answer(ReadResult { conv, read_seq }).and_deliver(receipt)
}
