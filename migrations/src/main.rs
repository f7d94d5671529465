//! `courier-migrations`: runs sea-orm-migration's CLI (`up`, `down`, `status`, `fresh`, …)
//! against `DATABASE_URL`. `courier migrate` does the same from the main binary.

#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli(migrations::Migrator).await;
}
