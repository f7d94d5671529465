//! `req/react`: `{"id","msg","emoji","on"}` → `{"msg","conv","seq","emoji","on"}`. One
//! reaction per user per emoji; every member gets a `reaction` update when it changes.

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::Result;
use protocol::ops::ReactReq;
use serde_json::Value;

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) -> Result<Done> {
    let req: ReactReq = parse(body)?;
    req.check()?;
    let (result, out) = engine
        .store
        .react(&caller.user, &req.msg, &req.emoji, req.on)
        .await?;
    Ok(Done::answer(result).and_deliver(out))
}
