//! `courier admin`: what an operator does about reports and accounts, run where the server's
//! database is reachable, with the server's settings (`--database-url`, `--config`). It writes
//! the database only; the running servers act on it within a second (a suspended account's
//! devices are disconnected by each server process, see `backend::revocations`).

use anyhow::bail;
use backend::store::Store;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Open reports, oldest first: id, when, reason, who was reported and by whom, the note,
    /// and the reported message as its reporter saw it
    Reports {
        /// Most reports to list
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Mark a report resolved (it leaves `courier admin reports`)
    Resolve {
        /// The report id
        id: String,
    },
    /// Suspend an account: its devices are disconnected and refused, its log-ins too, until
    /// `courier admin unsuspend`
    Suspend { username: String },
    /// Lift a suspension
    Unsuspend { username: String },
    /// Delete an account, as its owner would with `DELETE /v1/me`: it leaves its groups, its
    /// devices are signed out and disconnected, its messages stay (from a deleted account)
    DeleteUser { username: String },
}

pub async fn run(cmd: AdminCommand, store: &Store) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Reports { limit } => {
            let open = store.open_reports(limit).await?;
            if open.is_empty() {
                eprintln!("no open reports");
            }
            for r in open {
                println!(
                    "{}  {}  {}  {} reported by {}",
                    r.id, r.created_at, r.reason, r.user, r.reporter
                );
                if let Some(note) = r.note {
                    println!("    note: {}", super::printable(&note));
                }
                if let Some(msg) = r.snapshot {
                    println!("    message: {}", super::printable(&msg));
                }
            }
        }
        AdminCommand::Resolve { id } => {
            if !store.resolve_report(&id).await? {
                bail!("no open report {id}");
            }
            eprintln!("report {id} resolved");
        }
        AdminCommand::Suspend { username } => {
            let id = store.set_suspended(&username, true).await?;
            eprintln!("{username} ({id}) suspended: their devices are disconnected and refused");
        }
        AdminCommand::DeleteUser { username } => {
            let deleted = store.delete_account_named(&username).await?;
            eprintln!(
                "{username} ({}) deleted: {} device(s) signed out, {} group update(s) written",
                deleted.user,
                deleted.devices.len(),
                deleted.out.len()
            );
        }
        AdminCommand::Unsuspend { username } => {
            let id = store.set_suspended(&username, false).await?;
            eprintln!("{username} ({id}) may sign in again");
        }
    }
    Ok(())
}
