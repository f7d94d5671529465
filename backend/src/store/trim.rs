//! Log trimming. A user's log is cut only below the lowest cursor of their active devices
//! and only where entries are older than the retention period. A device is active while it is
//! connected or was seen within the retention period; one that stayed away longer no longer
//! holds the log back, and if it returns below the trimmed range its `sync` answers
//! `cursor_expired` (with the new floor) instead of silently skipping updates.

use super::Store;
use crate::entity::{devices, updates, users};
use crate::error::Result;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use std::time::Duration;

/// Users looked at per round trip.
const USERS_PER_PAGE: u64 = 500;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    pub users: u64,
    pub entries: u64,
}

impl Store {
    /// Trims every user's log as the rules allow at time `now` (Unix ms).
    pub async fn trim_logs(&self, retention: Duration, now: i64) -> Result<Trimmed> {
        let cutoff = now - retention.as_millis() as i64;
        let mut total = Trimmed::default();
        let mut after = String::new();
        loop {
            let page: Vec<(String, i64, i64)> = users::Entity::find()
                .select_only()
                .column(users::Column::Id)
                .column(users::Column::LastUseq)
                .column(users::Column::LogFloor)
                .filter(users::Column::Id.gt(after.as_str()))
                .order_by_asc(users::Column::Id)
                .limit(USERS_PER_PAGE)
                .into_tuple()
                .all(&self.db)
                .await?;
            let Some(last) = page.last() else {
                return Ok(total);
            };
            after = last.0.clone();
            for (user, head, floor) in page {
                if head <= floor {
                    continue;
                }
                let n = self.trim_user(&user, floor, cutoff).await?;
                if n > 0 {
                    total.users += 1;
                    total.entries += n;
                }
            }
        }
    }

    /// Trims one user's log below `min(lowest active cursor, newest entry older than
    /// cutoff)`; returns how many entries went.
    async fn trim_user(&self, user: &str, floor: i64, cutoff: i64) -> Result<u64> {
        let txn = self.db.begin().await?;
        let devs: Vec<(i64, bool, Option<i64>, i64)> = devices::Entity::find()
            .select_only()
            .column(devices::Column::Cursor)
            .column(devices::Column::Online)
            .column(devices::Column::LastSeenAt)
            .column(devices::Column::CreatedAt)
            .filter(devices::Column::UserId.eq(user))
            .filter(devices::Column::RevokedAt.is_null())
            .into_tuple()
            .all(&txn)
            .await?;
        let lowest_active = devs
            .iter()
            .filter(|(_, online, seen, created)| *online || seen.unwrap_or(*created) >= cutoff)
            .map(|(cursor, ..)| *cursor)
            .min();
        let old_enough: Option<i64> = updates::Entity::find()
            .select_only()
            .column_as(updates::Column::Useq.max(), "useq")
            .filter(updates::Column::UserId.eq(user))
            .filter(updates::Column::CreatedAt.lt(cutoff))
            .into_tuple::<Option<i64>>()
            .one(&txn)
            .await?
            .flatten();
        let Some(old_enough) = old_enough else {
            return Ok(0);
        };
        let new_floor = lowest_active.map_or(old_enough, |c| c.min(old_enough));
        if new_floor <= floor {
            return Ok(0);
        }
        let gone = updates::Entity::delete_many()
            .filter(updates::Column::UserId.eq(user))
            .filter(updates::Column::Useq.lte(new_floor))
            .exec(&txn)
            .await?
            .rows_affected;
        users::Entity::update_many()
            .col_expr(users::Column::LogFloor, Expr::value(new_floor))
            .filter(users::Column::Id.eq(user))
            .filter(users::Column::LogFloor.lt(new_floor))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(gone)
    }
}
