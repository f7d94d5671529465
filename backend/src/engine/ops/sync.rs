//! `req/sync`: `{"id","after":N,"limit":L}` → `{"updates":[…],"more":bool,"head":M}`.
//! Pages of the user's log after `after`, at most `limit` updates and about 512 KiB;
//! `more == false` means up to date as of `head`.

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::{Error, Result};
use protocol::ops::{SyncReq, SyncResult, DEFAULT_SYNC_LIMIT, MAX_SYNC_LIMIT};
use protocol::ErrorCode;
use serde_json::Value;

/// Largest sync answer, in bytes of updates.
pub const MAX_PAGE_BYTES: usize = 512 * 1024;

pub async fn handle(engine: &Engine, caller: &Caller, body: Value) -> Result<Done> {
    let req: SyncReq = parse(body)?;
    let limit = req.limit.unwrap_or(DEFAULT_SYNC_LIMIT);
    if limit == 0 || limit > MAX_SYNC_LIMIT {
        return Err(Error::client(
            ErrorCode::BadRequest,
            format!("`limit` must be 1..={MAX_SYNC_LIMIT}"),
        ));
    }
    let mut page = engine
        .store
        .read_log(&caller.user, req.after, limit)
        .await?;
    // Keep answers well inside clients' packet limits: cut the page by size, keeping at
    // least one update; the client asks again from where the page ends.
    let mut bytes = 0;
    let mut keep = page.updates.len();
    for (i, u) in page.updates.iter().enumerate() {
        bytes += serde_json::to_vec(u).map(|v| v.len()).unwrap_or(0);
        if bytes > MAX_PAGE_BYTES && i > 0 {
            keep = i;
            break;
        }
    }
    if keep < page.updates.len() {
        page.updates.truncate(keep);
        page.more = true;
    }
    Ok(Done::answer(SyncResult {
        updates: page.updates,
        more: page.more,
        head: page.head,
    }))
}
