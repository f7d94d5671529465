//! Set statements whose text does not change with the number of rows: the rows go in as one
//! JSON array parameter, which the statement reads as a table (`j`, one element per row in
//! `j.value`, its fields as `j.value->>'name'`) — `jsonb_each` on SQLite,
//! `jsonb_array_elements` on PostgreSQL.
//!
//! On SQLite, `jsonb_each` rather than `json_each`: it hands each row over as binary JSON,
//! which `->>` reads as it is, where `json_each` turns each row back into text that every
//! `->>` then parses again (~15 % faster sends at 50 pairs; docs/benchmarks.md).
//!
//! A statement built row by row has a new text for every batch size, so the database parses
//! and plans it anew each time, at a cost that grows with its rows; these are prepared once
//! per connection and kept in its statement cache, however big the batch.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::Serialize;

/// `sql`, in which `{rows}` names the table of `rows` (aliased `j`), ready to run on `db`.
pub(super) fn over<C: ConnectionTrait, R: Serialize>(db: &C, sql: &str, rows: &[R]) -> Statement {
    let backend = db.get_database_backend();
    let table = match backend {
        DbBackend::Postgres => "jsonb_array_elements($1::jsonb) AS j(value)",
        _ => "jsonb_each($1) AS j",
    };
    let rows = serde_json::to_string(rows).expect("rows serialise");
    Statement::from_sql_and_values(backend, sql.replace("{rows}", table), [rows.into()])
}

/// `FOR NO KEY UPDATE` (of `table`) where writers must lock rows in key order first (see
/// `store`), else nothing.
pub(super) fn lock_clause<C: ConnectionTrait>(db: &C, table: &str) -> String {
    if super::locks_rows_in_order(db) {
        format!(" FOR NO KEY UPDATE OF {table}")
    } else {
        String::new()
    }
}
