//! `req/sync`: `{"id","after":N,"limit":L}` → `{"updates":[…],"more":bool,"head":M}`.
//! Pages of the user's log after `after`; `more == false` means up to date as of `head`.

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::{Error, Result};
use protocol::ops::{SyncReq, SyncResult, DEFAULT_SYNC_LIMIT, MAX_SYNC_LIMIT};
use protocol::ErrorCode;
use serde_json::Value;

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) -> Result<Done> {
    let req: SyncReq = parse(body)?;
    let limit = req.limit.unwrap_or(DEFAULT_SYNC_LIMIT);
    if limit == 0 || limit > MAX_SYNC_LIMIT {
        return Err(Error::client(
            ErrorCode::BadRequest,
            format!("`limit` must be 1..={MAX_SYNC_LIMIT}"),
        ));
    }
    let page = engine
        .store
        .read_log(&caller.user, req.after, limit)
        .await?;
    Ok(Done::answer(SyncResult {
        updates: page.updates,
        more: page.more,
        head: page.head,
    }))
}
