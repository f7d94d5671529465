//! Message search. `message_search` holds each searchable message's text folded as
//! `protocol::search::fold` does (lower case, no diacritics), kept in step with sends, edits
//! and deletes in their own transactions. PostgreSQL searches it through a GIN index of its
//! stored `simple` tsvector; SQLite through an FTS5 table over it that triggers keep in step. Each
//! body ends with its conversation's id as one more word. The messages sent before this are
//! indexed here.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

// The tsvector is stored, so checking a match reads it instead of parsing the text again.
const POSTGRES: &[&str] = &[
    "CREATE TABLE message_search (id BIGSERIAL PRIMARY KEY, \
     msg_id VARCHAR(64) NOT NULL UNIQUE, body TEXT NOT NULL, \
     doc tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED)",
    "CREATE INDEX message_search_doc ON message_search USING GIN (doc)",
];

const SQLITE: &[&str] = &[
    "CREATE TABLE message_search (id INTEGER PRIMARY KEY, \
     msg_id VARCHAR(64) NOT NULL UNIQUE, body TEXT NOT NULL)",
    // Searches need which rows hold a word, not where in them: `detail=none` and no column
    // sizes keep each send's share of the index small.
    "CREATE VIRTUAL TABLE message_search_fts USING fts5(body, content='message_search', \
     content_rowid='id', tokenize='unicode61', detail=none, columnsize=0)",
    "CREATE TRIGGER message_search_added AFTER INSERT ON message_search BEGIN \
     INSERT INTO message_search_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER message_search_removed AFTER DELETE ON message_search BEGIN \
     INSERT INTO message_search_fts(message_search_fts, rowid, body) \
     VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER message_search_changed AFTER UPDATE ON message_search BEGIN \
     INSERT INTO message_search_fts(message_search_fts, rowid, body) \
     VALUES ('delete', old.id, old.body); \
     INSERT INTO message_search_fts(rowid, body) VALUES (new.id, new.body); END",
];

/// Messages indexed per statement of the backfill.
const CHUNK: usize = 500;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        let script = match backend {
            DbBackend::Postgres => POSTGRES,
            _ => SQLITE,
        };
        for sql in script {
            db.execute_unprepared(sql).await?;
        }
        // The backfill, in id order, a chunk at a time.
        let mut after = String::new();
        loop {
            let page = db
                .query_all_raw(Statement::from_sql_and_values(
                    backend,
                    match backend {
                        DbBackend::Postgres => {
                            "SELECT id, content, conv_id FROM messages WHERE id > $1 \
                             AND deleted_at IS NULL AND kind IN ('text', 'image', 'video') \
                             ORDER BY id LIMIT 500"
                        }
                        _ => {
                            "SELECT id, content, conv_id FROM messages WHERE id > ? \
                             AND deleted_at IS NULL AND kind IN ('text', 'image', 'video') \
                             ORDER BY id LIMIT 500"
                        }
                    },
                    [after.clone().into()],
                ))
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.try_get_by_index(0)?;
            let mut rows = Vec::with_capacity(CHUNK);
            for row in &page {
                let id: String = row.try_get_by_index(0)?;
                let content: String = row.try_get_by_index(1)?;
                let conv: String = row.try_get_by_index(2)?;
                let text = serde_json::from_str::<serde_json::Value>(&content)
                    .ok()
                    .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_owned));
                if let Some(text) = text {
                    // As the server indexes it (`store::search::indexed_body`).
                    let body = format!("{} {}", protocol::search::fold(&text), conv.to_lowercase());
                    rows.push((id, body));
                }
            }
            if rows.is_empty() {
                continue;
            }
            let mut insert = Query::insert();
            insert
                .into_table(Alias::new("message_search"))
                .columns([Alias::new("msg_id"), Alias::new("body")]);
            for (id, body) in rows {
                insert.values_panic([id.into(), body.into()]);
            }
            manager.exec_stmt(insert).await?;
            if page.len() < CHUNK {
                break;
            }
        }
        Ok(())
    }
}
