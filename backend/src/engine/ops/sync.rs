//! `req/sync`: `{"id","after":N,"limit":L}` → `{"updates":[…],"more":bool,"head":M}`.
//! Pages of the user's log after `after`, at most `limit` updates and about 512 KiB;
//! `more == false` means up to date as of `head`.

use super::{parse, Done};
use crate::engine::{Caller, Engine};
use crate::error::{Error, Result};
use protocol::ops::{SyncReq, DEFAULT_SYNC_LIMIT, MAX_SYNC_LIMIT};
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
    let page = engine
        .store
        .read_log(&caller.user, req.after, limit)
        .await?;
    crate::metrics::sync_page();
    // Each update is encoded once, straight into the answer. Answers stay well inside
    // clients' packet limits: the page is cut by size, keeping at least one update, and the
    // client asks again from where it ends.
    let mut json = String::with_capacity(64 * page.updates.len() + 64);
    json.push_str(r#"{"updates":["#);
    let mut more = page.more;
    for (i, u) in page.updates.iter().enumerate() {
        let one = serde_json::to_string(u).expect("update serialises");
        if i > 0 && json.len() + one.len() > MAX_PAGE_BYTES {
            more = true;
            break;
        }
        if i > 0 {
            json.push(',');
        }
        json.push_str(&one);
    }
    json.push_str(&format!(r#"],"more":{more},"head":{}}}"#, page.head));
    Ok(Done::json(json))
}
