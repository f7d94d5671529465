//! Message search. Text messages and captions are indexed as they are stored (folded by
//! `protocol::search::fold`, in `message_search`), re-indexed when edited and dropped when
//! deleted for everyone, each in the transaction that makes the change. A search finds the
//! messages of the caller's conversations that hold every word of the query (the last one as
//! a prefix, for search as you type), newest first, leaving out what the caller cannot see:
//! messages deleted for everyone, deleted for them, or hidden because they blocked the sender.

use super::changes::decorate;
use super::log::message_from_row;
use super::{rows, Store};
use crate::entity::{message_search, messages};
use crate::error::{Error, Result};
use protocol::search::{fold, terms, MAX_QUERY_CHARS};
use protocol::update::Content;
use protocol::{ConvId, ErrorCode, Message, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, Statement,
};
use serde::Serialize;

/// Most messages one search returns.
pub const MAX_SEARCH_PAGE: u64 = 50;

/// The searchable text of a message: a text message's, or a caption.
pub(super) fn searchable(content: &Content) -> Option<&str> {
    match content {
        Content::Text { text, .. } => Some(text),
        Content::Image { text, .. } | Content::Video { text, .. } => text.as_deref(),
        _ => None,
    }
}

/// What the index holds for a message: its folded text, then its conversation's id as one
/// more word, so that a search within a conversation is an intersection inside the index
/// rather than a walk through every match of the query (ids are letters and digits, which
/// both databases keep as one word).
pub fn indexed_body(conv: &str, text: &str) -> String {
    format!("{} {}", fold(text), conv.to_lowercase())
}

/// Indexes new messages, in one statement.
pub(super) async fn index<'a, C: ConnectionTrait>(
    db: &C,
    msgs: impl Iterator<Item = &'a Message>,
) -> Result<()> {
    #[derive(Serialize)]
    struct Row<'a> {
        m: &'a str,
        b: String,
    }
    const SQL: &str = "INSERT INTO message_search (msg_id, body) \
        SELECT j.value->>'m', j.value->>'b' FROM {rows}";
    let rows: Vec<Row> = msgs
        .filter_map(|m| {
            searchable(&m.content).map(|t| Row {
                m: m.id.as_str(),
                b: indexed_body(m.conv.as_str(), t),
            })
        })
        .collect();
    if !rows.is_empty() {
        db.execute_raw(rows::over(db, SQL, &rows)).await?;
    }
    Ok(())
}

/// A message's text changed: search its new text.
pub(super) async fn reindex<C: ConnectionTrait>(
    db: &C,
    conv: &str,
    msg: &str,
    text: &str,
) -> Result<()> {
    message_search::Entity::update_many()
        .col_expr(
            message_search::Column::Body,
            Expr::value(indexed_body(conv, text)),
        )
        .filter(message_search::Column::MsgId.eq(msg))
        .exec(db)
        .await?;
    Ok(())
}

/// A message was deleted for everyone: it is found no more.
pub(super) async fn unindex<C: ConnectionTrait>(db: &C, msg: &str) -> Result<()> {
    message_search::Entity::delete_many()
        .filter(message_search::Column::MsgId.eq(msg))
        .exec(db)
        .await?;
    Ok(())
}

/// A search cursor: the index row of the last message found (newer messages have higher
/// ones), opaque to clients.
fn parse_cursor(s: &str) -> Result<i64> {
    s.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        Error::client(
            ErrorCode::BadRequest,
            "`before` is not a cursor from a search",
        )
    })
}

impl Store {
    /// Messages `user` can see that hold every word of `query`, newest first, in `conv` or in
    /// all of the user's conversations; and the cursor for the next page.
    pub async fn search(
        &self,
        user: &UserId,
        query: &str,
        conv: Option<&ConvId>,
        before: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<Message>, Option<String>)> {
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::client(
                ErrorCode::BadRequest,
                format!("`q` is longer than {MAX_QUERY_CHARS} characters"),
            ));
        }
        let words = terms(query);
        if words.is_empty() {
            return Err(Error::client(
                ErrorCode::BadRequest,
                "`q` needs at least one word",
            ));
        }
        let before = before.map(parse_cursor).transpose()?;
        let limit = limit.clamp(1, MAX_SEARCH_PAGE);
        let backend = self.read.get_database_backend();
        // Every word, the last as a prefix; the words are letters and digits only.
        let last = words.len() - 1;
        type Term = fn(&str, bool) -> String;
        // Each finds the matching index rows newest first (highest row first), so a page
        // stops after its `limit` rows that the caller can see.
        let (tables, matches, key, term, and): (&str, &str, &str, Term, &str) = match backend {
            // The matches come from the GIN index first (OFFSET 0 keeps the planner from
            // walking every row newest first instead, testing each against the query).
            DbBackend::Postgres => (
                "(SELECT id, msg_id FROM message_search \
                   WHERE doc @@ to_tsquery('simple', $1) OFFSET 0) s \
                 JOIN messages m ON m.id = s.msg_id \
                 JOIN members mb ON mb.conv_id = m.conv_id AND mb.user_id = $2",
                "TRUE",
                "s.id",
                |w, prefix| format!("{w}{}", if prefix { ":*" } else { "" }),
                " & ",
            ),
            // FTS5 walks its matches by rowid (the index row) when ordered and bounded by it.
            // CROSS JOIN keeps it the outer loop: SQLite's planner would otherwise run the
            // full-text query once per message of the caller's conversations.
            _ => (
                "message_search_fts f CROSS JOIN message_search s ON s.id = f.rowid \
                 CROSS JOIN messages m ON m.id = s.msg_id \
                 CROSS JOIN members mb ON mb.conv_id = m.conv_id AND mb.user_id = $2",
                "message_search_fts MATCH $1",
                "f.rowid",
                |w, prefix| format!("\"{w}\"{}", if prefix { "*" } else { "" }),
                " ",
            ),
        };
        let mut q: Vec<String> = words
            .iter()
            .enumerate()
            .map(|(i, w)| term(w, i == last))
            .collect();
        // Within a conversation: its id is a word of each of its messages.
        if let Some(conv) = conv.filter(|c| c.as_str().bytes().all(|b| b.is_ascii_alphanumeric())) {
            q.push(term(&conv.as_str().to_lowercase(), false));
        }
        let q = q.join(and);
        let mut values: Vec<sea_orm::Value> = vec![q.into(), user.as_str().into()];
        let mut extra = String::new();
        if let Some(conv) = conv {
            values.push(conv.as_str().into());
            extra.push_str(&format!(" AND m.conv_id = ${}", values.len()));
        }
        if let Some(row) = before {
            values.push(row.into());
            extra.push_str(&format!(" AND {key} < ${}", values.len()));
        }
        values.push(((limit + 1) as i64).into());
        let sql = format!(
            "SELECT s.id AS search_row, m.* FROM {tables} \
             WHERE {matches} AND m.deleted_at IS NULL{extra} \
             AND NOT EXISTS (SELECT 1 FROM hidden_messages h \
                 WHERE h.user_id = $2 AND h.msg_id = m.id) \
             ORDER BY {key} DESC LIMIT ${}",
            values.len()
        );
        let sql = match backend {
            DbBackend::Postgres => sql,
            // SQLite numbers its parameters `?NNN`.
            _ => sql.replace('$', "?"),
        };
        let found = self
            .read
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        let mut rows = Vec::with_capacity(found.len());
        for r in &found {
            rows.push((
                r.try_get::<i64>("", "search_row")?,
                messages::Model::from_query_result(r, "")?,
            ));
        }
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next = match more {
            true => rows.last().map(|(row, _)| row.to_string()),
            false => None,
        };
        let mut msgs = rows
            .into_iter()
            .map(|(_, m)| message_from_row(m))
            .collect::<Result<Vec<_>>>()?;
        decorate(&self.read, user, &mut msgs).await?;
        Ok((msgs, next))
    }
}
