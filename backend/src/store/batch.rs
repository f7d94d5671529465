//! Group commit: a batch of writes from many devices in one transaction — one commit, one
//! fsync — while each write still succeeds or fails on its own.
//!
//! Acks, reads and presence join on the one writer SQLite has, where alone each would wait for
//! the connection and pay a commit of its own (a device connecting and leaving is two
//! presence writes: a reconnecting crowd's commits would queue every send behind them).
//! Presence is written first, then acks as one set ([`Store::ack_set`]), then reads one
//! after another, then sends as one set ([`Store::send_set`]). A client error
//! in any of them is found before it writes anything, so it fails alone.

use super::log::Outgoing;
use super::messages::{SendJob, Sent};
use super::presence::write_device_presence;
use super::receipts::Ack;
use super::Store;
use crate::error::{Error, Result};
use protocol::{ConvId, DeviceId, UserId};
use sea_orm::TransactionTrait;

/// One write of a batch.
pub enum Write {
    Send(Box<SendJob>),
    /// Moves a device's cursor ([`Store::ack`]).
    Ack(Ack),
    /// Moves a member's read watermark ([`Store::read`]).
    Read {
        user: UserId,
        conv: ConvId,
        seq: i64,
    },
    /// A device went online or offline ([`Store::set_device_presence`]).
    Presence {
        device: DeviceId,
        online: bool,
        ts: i64,
    },
}

/// What a committed write did.
pub enum Written {
    Sent(Sent),
    /// The device's cursor, and the receipts to deliver.
    Acked(i64, Vec<Outgoing>),
    /// The conversation, the member's read watermark there, and the receipt to deliver.
    Read(ConvId, i64, Option<Outgoing>),
    /// The device's user, if the device is known.
    Presence(Option<UserId>),
}

impl Store {
    /// Stores `jobs` in one transaction. The outer error means the commit itself failed (or
    /// the database did, mid-batch) and nothing of the batch was stored.
    pub async fn write_batch(&self, jobs: &[Write]) -> Result<Vec<Result<Written>>> {
        let txn = self.db.begin().await?;
        let mut results: Vec<Option<Result<Written>>> = jobs.iter().map(|_| None).collect();
        // The acks as one set, then the reads in turn, then the sends as one set.
        let (ack_at, acks): (Vec<usize>, Vec<&Ack>) = jobs
            .iter()
            .enumerate()
            .filter_map(|(i, j)| match j {
                Write::Ack(a) => Some((i, a)),
                _ => None,
            })
            .unzip();
        for (i, acked) in ack_at.into_iter().zip(Self::ack_set(&txn, &acks).await?) {
            results[i] = Some(acked.map(|(useq, out)| Written::Acked(useq, out)));
        }
        for (i, job) in jobs.iter().enumerate() {
            if let Write::Presence { device, online, ts } = job {
                let user = write_device_presence(&txn, device, *online, *ts).await?;
                results[i] = Some(Ok(Written::Presence(user)));
            }
        }
        for (i, job) in jobs.iter().enumerate() {
            if let Write::Read { user, conv, seq } = job {
                match Self::read_in(&txn, user, conv, *seq).await {
                    Err(e @ (Error::Db(_) | Error::Internal(_))) => return Err(e),
                    read => {
                        results[i] =
                            Some(read.map(|(seq, out)| Written::Read(conv.clone(), seq, out)))
                    }
                }
            }
        }
        let sends: Vec<&SendJob> = jobs
            .iter()
            .filter_map(|j| match j {
                Write::Send(s) => Some(&**s),
                _ => None,
            })
            .collect();
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
        for (job, result) in jobs.iter().zip(&results) {
            if let (Write::Presence { device, online, ts }, Ok(Written::Presence(user))) =
                (job, result)
            {
                self.presence_written(device, *online, *ts, user.as_ref())
                    .await;
            }
        }
        Ok(results)
    }
}
