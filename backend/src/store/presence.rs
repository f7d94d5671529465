//! Presence and last seen, from the broker's connect/disconnect events (and a device's own
//! presence publishes, its Last Will included): per device `online` and `last_seen_at`; a
//! user is online while any of their devices is.

use super::Store;
use crate::entity::{devices, members};
use crate::error::Result;
use crate::shared::DevicePresence;
use protocol::http::Presence;
use protocol::{DeviceId, UserId};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use std::collections::{BTreeMap, HashMap};

/// Writes `device`'s presence (see [`Store::set_device_presence`]) with `db`, alone or in a
/// write batch's transaction; the device's user, if the device is known.
pub(super) async fn write_device_presence<C: ConnectionTrait>(
    db: &C,
    device: &DeviceId,
    online: bool,
    ts: i64,
) -> Result<Option<UserId>> {
    devices::Entity::update_many()
        .col_expr(devices::Column::Online, Expr::value(online))
        .col_expr(devices::Column::LastSeenAt, Expr::value(ts))
        .filter(devices::Column::Id.eq(device.as_str()))
        .filter(
            Condition::any()
                .add(devices::Column::LastSeenAt.is_null())
                .add(devices::Column::LastSeenAt.lte(ts)),
        )
        .exec(db)
        .await?;
    Ok(devices::Entity::find_by_id(device.as_str())
        .select_only()
        .column(devices::Column::UserId)
        .into_tuple::<String>()
        .one(db)
        .await?
        .map(UserId::from_trusted))
}

impl Store {
    /// Records that `device` went online or offline at `ts`. An event older than the last
    /// one recorded for the device is ignored (events may arrive out of order). Returns the
    /// device's user if the device is known.
    pub async fn set_device_presence(
        &self,
        device: &DeviceId,
        online: bool,
        ts: i64,
    ) -> Result<Option<UserId>> {
        let user = write_device_presence(&self.db, device, online, ts).await?;
        self.presence_written(device, online, ts, user.as_ref())
            .await;
        Ok(user)
    }

    /// What follows a device's presence write once committed: the shared state learns it.
    pub(super) async fn presence_written(
        &self,
        device: &DeviceId,
        online: bool,
        ts: i64,
        user: Option<&UserId>,
    ) {
        if let Some(user) = user {
            let p = DevicePresence { online, ts };
            self.shared.record_presence(user, device, p).await;
        }
    }

    /// After a restart of the embedded broker nobody is connected: every device that was
    /// online was last seen now.
    pub async fn reset_presence(&self, now: i64) -> Result<u64> {
        self.shared.reset_presence(now).await;
        let r = devices::Entity::update_many()
            .col_expr(devices::Column::Online, Expr::value(false))
            .col_expr(devices::Column::LastSeenAt, Expr::value(now))
            .filter(devices::Column::Online.eq(true))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }

    /// Presence of each of `users` (in the order given; users without devices are offline,
    /// never seen): from the shared record (Redis, or this process's memory when it is the
    /// whole server), and from the database's copy for users the shared one does not know.
    pub async fn presence(&self, users: &[UserId]) -> Result<Vec<Presence>> {
        let mut by_user: BTreeMap<&str, (bool, Option<i64>)> = BTreeMap::new();
        let shared = self.shared.presence(users).await.unwrap_or_default();
        for (user, devices) in &shared {
            let e = by_user.entry(user.as_str()).or_default();
            for p in devices.values() {
                e.0 |= p.online;
                e.1 = e.1.max(Some(p.ts));
            }
        }
        let unknown: Vec<&str> = users
            .iter()
            .map(UserId::as_str)
            .filter(|u| !by_user.contains_key(u))
            .collect();
        if !unknown.is_empty() {
            let rows = self.device_presence(unknown.iter().copied()).await?;
            for (user, online, seen) in rows {
                let Some(u) = unknown.iter().find(|u| **u == user) else {
                    continue;
                };
                let e = by_user.entry(u).or_default();
                e.0 |= online;
                e.1 = e.1.max(seen);
            }
        }
        Ok(users
            .iter()
            .map(|u| {
                let (online, last_seen) = by_user.get(u.as_str()).copied().unwrap_or_default();
                Presence {
                    user: u.clone(),
                    online,
                    last_seen,
                }
            })
            .collect())
    }

    /// Users among `users` known to be away: every device of theirs recorded offline, in the
    /// shared presence or, without one, in the database's copy (for push notices when the
    /// broker runs in another process). A device never recorded at all (a client that does
    /// not announce itself to a broker without presence events) leaves its user unclaimed.
    pub async fn known_away(&self, users: &[UserId]) -> Result<Vec<UserId>> {
        let recorded: HashMap<&UserId, Vec<Option<bool>>> = match self.shared.presence(users).await
        {
            Some(shared) => users
                .iter()
                .filter_map(|u| {
                    let devices = shared.get(u)?;
                    Some((u, devices.values().map(|p| Some(p.online)).collect()))
                })
                .collect(),
            None => {
                let rows = self
                    .device_presence(users.iter().map(UserId::as_str))
                    .await?;
                let mut by_user: HashMap<&UserId, Vec<Option<bool>>> = HashMap::new();
                for (user, online, seen) in rows {
                    if let Some(u) = users.iter().find(|u| u.as_str() == user) {
                        by_user.entry(u).or_default().push(seen.map(|_| online));
                    }
                }
                by_user
            }
        };
        Ok(users
            .iter()
            .filter(|u| {
                recorded
                    .get(u)
                    .is_some_and(|d| !d.is_empty() && d.iter().all(|p| *p == Some(false)))
            })
            .cloned()
            .collect())
    }

    /// The database's copy: (user, online, last seen) of each active device of `users`.
    async fn device_presence<'a>(
        &self,
        users: impl Iterator<Item = &'a str>,
    ) -> Result<Vec<(String, bool, Option<i64>)>> {
        Ok(devices::Entity::find()
            .select_only()
            .column(devices::Column::UserId)
            .column(devices::Column::Online)
            .column(devices::Column::LastSeenAt)
            .filter(devices::Column::UserId.is_in(users))
            .filter(devices::Column::RevokedAt.is_null())
            .into_tuple()
            .all(&self.read)
            .await?)
    }

    /// Everyone who shares a conversation with `user` (not `user`), but those blocked either
    /// way: who hears `user`'s presence.
    pub async fn contacts(&self, user: &UserId) -> Result<Vec<UserId>> {
        let blocked = self.blocked_either_way(user).await?;
        let mut all = self.sharing_with(user).await?;
        all.retain(|u| !blocked.contains(u));
        Ok(all)
    }

    /// Everyone who shares a conversation with `user` (not `user`).
    pub async fn sharing_with(&self, user: &UserId) -> Result<Vec<UserId>> {
        let convs = Query::select()
            .column(members::Column::ConvId)
            .from(members::Entity)
            .and_where(members::Column::UserId.eq(user.as_str()))
            .to_owned();
        let rows: Vec<String> = members::Entity::find()
            .select_only()
            .column(members::Column::UserId)
            .distinct()
            .filter(members::Column::ConvId.in_subquery(convs))
            .filter(members::Column::UserId.ne(user.as_str()))
            .into_tuple()
            .all(&self.read)
            .await?;
        Ok(rows.into_iter().map(UserId::from_trusted).collect())
    }
}
