//! Group commit: a batch of writes from many devices in one transaction — one commit, one
//! fsync — while each write still succeeds or fails on its own.
//!
//! Sends are stored as a set ([`Store::send_set`]); acks and reads (on the one writer SQLite
//! has, where they would otherwise each wait for the connection and pay a commit of their
//! own) run one after another in the same transaction first. A client error in any of them is
//! found before it writes anything, so it fails alone.

use super::log::Outgoing;
use super::messages::{SendJob, Sent};
use super::Store;
use crate::error::{Error, Result};
use protocol::{ConvId, DeviceId, UserId};
use sea_orm::TransactionTrait;

/// One write of a batch.
pub enum Write {
    Send(Box<SendJob>),
    /// Moves a device's cursor ([`Store::ack`]).
    Ack {
        user: UserId,
        device: DeviceId,
        useq: i64,
    },
    /// Moves a member's read watermark ([`Store::read`]).
    Read {
        user: UserId,
        conv: ConvId,
        seq: i64,
    },
}

/// What a committed write did.
pub enum Written {
    Sent(Sent),
    /// The device's cursor, and the receipts to deliver.
    Acked(i64, Vec<Outgoing>),
    /// The conversation, the member's read watermark there, and the receipt to deliver.
    Read(ConvId, i64, Option<Outgoing>),
}

impl Store {
    /// Stores `jobs` in one transaction. The outer error means the commit itself failed (or
    /// the database did, mid-batch) and nothing of the batch was stored.
    pub async fn write_batch(&self, jobs: &[Write]) -> Result<Vec<Result<Written>>> {
        let txn = self.db.begin().await?;
        let mut results: Vec<Option<Result<Written>>> = Vec::with_capacity(jobs.len());
        let mut sends = Vec::new();
        for job in jobs {
            let done = match job {
                Write::Send(s) => {
                    sends.push(&**s);
                    results.push(None);
                    continue;
                }
                Write::Ack { user, device, useq } => Self::ack_in(&txn, user, device, *useq)
                    .await
                    .map(|(useq, out)| Written::Acked(useq, out)),
                Write::Read { user, conv, seq } => Self::read_in(&txn, user, conv, *seq)
                    .await
                    .map(|(seq, out)| Written::Read(conv.clone(), seq, out)),
            };
            match done {
                Err(e @ (Error::Db(_) | Error::Internal(_))) => return Err(e),
                done => results.push(Some(done)),
            }
        }
        let mut sent = Self::send_set(&txn, &sends).await?.into_iter();
        txn.commit().await?;

        let results: Vec<Result<Written>> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| sent.next().expect("one per send").map(Written::Sent)))
            .collect();
        let mut convs: Vec<&ConvId> = results
            .iter()
            .filter_map(|r| match r {
                Ok(Written::Sent(Sent::New { ack, .. })) => Some(&ack.conv),
                _ => None,
            })
            .collect();
        convs.sort_unstable();
        convs.dedup();
        for conv in convs {
            self.shared.conversation_changed(conv).await;
        }
        Ok(results)
    }
}
