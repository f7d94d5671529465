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
                b: fold(t),
            })
        })
        .collect();
    if !rows.is_empty() {
        db.execute_raw(rows::over(db, SQL, &rows)).await?;
    }
    Ok(())
}

/// A message's text changed: search its new text.
pub(super) async fn reindex<C: ConnectionTrait>(db: &C, msg: &str, text: &str) -> Result<()> {
    message_search::Entity::update_many()
        .col_expr(message_search::Column::Body, Expr::value(fold(text)))
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

/// A search cursor: the last message's time and id (`{ts}.{id}`).
fn cursor(m: &Message) -> String {
    format!("{}.{}", m.ts, m.id)
}

fn parse_cursor(s: &str) -> Result<(i64, String)> {
    let bad = || {
        Error::client(
            ErrorCode::BadRequest,
            "`before` is not a cursor from a search",
        )
    };
    let (ts, id) = s.split_once('.').ok_or_else(bad)?;
    let ts = ts.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(bad());
    }
    Ok((ts, id.to_owned()))
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
        let (matcher, term, and): (&str, Term, &str) = match backend {
            DbBackend::Postgres => (
                "s.id IN (SELECT id FROM message_search \
                 WHERE to_tsvector('simple', body) @@ to_tsquery('simple', $1))",
                |w, prefix| format!("{w}{}", if prefix { ":*" } else { "" }),
                " & ",
            ),
            _ => (
                "s.id IN (SELECT rowid FROM message_search_fts WHERE message_search_fts MATCH $1)",
                |w, prefix| format!("\"{w}\"{}", if prefix { "*" } else { "" }),
                " ",
            ),
        };
        let q = words
            .iter()
            .enumerate()
            .map(|(i, w)| term(w, i == last))
            .collect::<Vec<_>>()
            .join(and);
        let mut values: Vec<sea_orm::Value> = vec![q.into(), user.as_str().into()];
        let mut extra = String::new();
        if let Some(conv) = conv {
            values.push(conv.as_str().into());
            extra.push_str(&format!(" AND m.conv_id = ${}", values.len()));
        }
        if let Some((ts, id)) = &before {
            values.push((*ts).into());
            let t = values.len();
            values.push(id.clone().into());
            let i = values.len();
            extra.push_str(&format!(
                " AND (m.created_at < ${t} OR (m.created_at = ${t} AND m.id < ${i}))"
            ));
        }
        values.push(((limit + 1) as i64).into());
        let sql = format!(
            "SELECT m.* FROM message_search s \
             JOIN messages m ON m.id = s.msg_id \
             JOIN members mb ON mb.conv_id = m.conv_id AND mb.user_id = $2 \
             WHERE {matcher} AND m.deleted_at IS NULL{extra} \
             AND NOT EXISTS (SELECT 1 FROM hidden_messages h \
                 WHERE h.user_id = $2 AND h.msg_id = m.id) \
             ORDER BY m.created_at DESC, m.id DESC LIMIT ${}",
            values.len()
        );
        let sql = match backend {
            DbBackend::Postgres => sql,
            // SQLite numbers its parameters `?NNN`.
            _ => sql.replace('$', "?"),
        };
        let rows = messages::Model::find_by_statement(Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .all(&self.read)
        .await?;
        let more = rows.len() as u64 > limit;
        let mut msgs = rows
            .into_iter()
            .take(limit as usize)
            .map(message_from_row)
            .collect::<Result<Vec<_>>>()?;
        decorate(&self.read, user, &mut msgs).await?;
        let next = if more { msgs.last().map(cursor) } else { None };
        Ok((msgs, next))
    }
}
