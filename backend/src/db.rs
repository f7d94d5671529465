//! Opening the database (SQLite file or PostgreSQL) and running pending migrations.

use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use std::time::Duration;

/// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`) and applies pending migrations.
pub async fn open(url: &str) -> Result<DatabaseConnection, DbErr> {
    let db = connect(url).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url);
    opts.sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        // Full sync: a send is acknowledged only once it would survive a power cut.
        // One writer at a time is SQLite's model; a single pooled connection serialises
        // transactions in-process instead of failing them with SQLITE_BUSY.
        opts.max_connections(1)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
    } else {
        opts.max_connections(16).min_connections(1);
    }
    Database::connect(opts).await
}
