//! Opening the database (SQLite file or PostgreSQL) and running pending migrations.

use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
};
use std::time::Duration;

/// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`) and applies pending migrations.
pub async fn open(url: &str) -> Result<DatabaseConnection, DbErr> {
    let db = connect(url).await?;
    if db.get_database_backend() == DbBackend::Postgres {
        migrate_locked(url).await?;
    } else {
        Migrator::up(&db, None).await?;
    }
    Ok(db)
}

/// Any key will do, as long as every Courier process uses the same one.
const MIGRATION_LOCK: i64 = 0x0063_6f75_7269_6572; // "courier"

/// Several processes (a broker, backends, media workers) may start at once against one
/// PostgreSQL database: they take turns under an advisory lock, held by one connection of
/// its own, so only the first applies the migrations and the others find them done.
async fn migrate_locked(url: &str) -> Result<(), DbErr> {
    let mut opts = ConnectOptions::new(url);
    opts.sqlx_logging(false)
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10));
    let conn = Database::connect(opts).await?;
    let lock = |sql: &str| {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [MIGRATION_LOCK.into()])
    };
    conn.execute_raw(lock("SELECT pg_advisory_lock($1)"))
        .await?;
    let migrated = Migrator::up(&conn, None).await;
    let unlocked = conn
        .execute_raw(lock("SELECT pg_advisory_unlock($1)"))
        .await;
    let _ = conn.close().await;
    migrated?;
    unlocked.map(|_| ())
}

fn options(url: &str) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url);
    opts.sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10));
    opts
}

/// Connections for reads beside the writer, on SQLite: a WAL database is read by any number
/// of connections while one writes, each seeing what was committed when its statement began.
/// Two of them (reads are short; more would only compete for the same cores), `query_only`
/// so that nothing can write through them. None on PostgreSQL, whose pool serves both.
pub async fn connect_reader(url: &str) -> Result<Option<DatabaseConnection>, DbErr> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let mut opts = options(url);
    opts.max_connections(2)
        .min_connections(1)
        .map_sqlx_sqlite_opts(|o| {
            o.busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .pragma("query_only", "true")
                .pragma("temp_store", "memory")
                .row_buffer_size(1024)
        });
    Database::connect(opts).await.map(Some)
}

pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut opts = options(url);
    if url.starts_with("sqlite:") {
        // Full sync: a send is acknowledged only once it would survive a power cut.
        // One writer at a time is SQLite's model; a single pooled connection serialises
        // transactions in-process instead of failing them with SQLITE_BUSY.
        // A multi-row statement inside a transaction keeps a statement journal (to undo just
        // that statement); in memory it costs no file writes. The WAL is checkpointed every
        // ~16 MiB rather than every ~4 MiB: a page written by many batches is copied back to
        // the database once per checkpoint, and the file is cut back to 64 MiB afterwards.
        // A batch's set statements return a row per conversation or user: the worker thread
        // hands them all over at once instead of waiting, every 50 rows, for the batch's task.
        opts.max_connections(1)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .pragma("temp_store", "memory")
                    .pragma("wal_autocheckpoint", "4000")
                    .pragma("journal_size_limit", (64u32 << 20).to_string())
                    .row_buffer_size(1024)
            });
    } else {
        opts.max_connections(16).min_connections(1);
    }
    Database::connect(opts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The read connections see what the writer committed, while it holds a transaction
    /// open, and cannot write themselves.
    #[tokio::test]
    async fn reads_go_beside_the_writer_and_cannot_write() {
        let dir = std::env::temp_dir().join(format!("courier-db-{}", crate::util::new_id('t')));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("c.db").display());
        let write = open(&url).await.unwrap();
        let read = connect_reader(&url)
            .await
            .unwrap()
            .expect("SQLite has readers");
        let sql = |s: &str| Statement::from_string(DbBackend::Sqlite, s.to_owned());
        write
            .execute_raw(sql("CREATE TABLE t (n INTEGER)"))
            .await
            .unwrap();
        write
            .execute_raw(sql("INSERT INTO t VALUES (1)"))
            .await
            .unwrap();
        let txn = sea_orm::TransactionTrait::begin(&write).await.unwrap();
        txn.execute_raw(sql("INSERT INTO t VALUES (2)"))
            .await
            .unwrap();
        // The writer's one connection is taken; the reader still answers, with what was
        // committed.
        let count = |c: DatabaseConnection| async move {
            let row = c
                .query_one_raw(sql("SELECT COUNT(*) FROM t"))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        };
        assert_eq!(count(read.clone()).await, 1);
        txn.commit().await.unwrap();
        assert_eq!(count(read.clone()).await, 2);
        let refused = read.execute_raw(sql("INSERT INTO t VALUES (3)")).await;
        assert!(refused.is_err(), "a read connection wrote");
        assert_eq!(count(write).await, 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
