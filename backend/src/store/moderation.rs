//! Moderation: reports users file (`POST /v1/reports`) and what operators do about them from
//! the command line (`courier admin reports|resolve|suspend|unsuspend`). A suspended account's
//! devices are refused (MQTT: not authorised; HTTP: 403 `suspended`, log-ins too) and, on every
//! server process, disconnected within a second (see `crate::revocations`).

use super::changes::{decorate, visible};
use super::log::message_from_row;
use super::Store;
use crate::entity::{devices, reports, users};
use crate::error::{Error, Result};
use crate::util::{new_id, now_ms};
use protocol::http::{NewReport, Report, MAX_REPORT_NOTE};
use protocol::{DeviceId, ErrorCode, MsgId, UserId};
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};

/// An open report as an operator lists it.
#[derive(Clone, Debug)]
pub struct OpenReport {
    pub id: String,
    pub reporter: String,
    pub user: String,
    pub reason: String,
    pub note: Option<String>,
    /// The message as the reporter saw it (JSON), for message reports.
    pub snapshot: Option<String>,
    pub created_at: i64,
}

impl Store {
    /// Files `reporter`'s report. A message report names the message's sender (who must be
    /// `report.user`, when that is given too) and keeps the message as the reporter sees it
    /// now; the reporter must be able to see it (`not_found` otherwise).
    pub async fn report(&self, reporter: &UserId, report: NewReport) -> Result<Report> {
        let bad = |why: &str| Error::client(ErrorCode::BadRequest, why.to_owned());
        let note = report
            .note
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        if let Some(n) = &note {
            if n.chars().count() > MAX_REPORT_NOTE || n.chars().any(|c| c.is_control() && c != '\n')
            {
                return Err(bad(
                    "`note` must be at most 1000 characters, without control characters",
                ));
            }
        }
        let (user, snapshot, conv) = match &report.msg {
            Some(id) => {
                let row = visible(&self.db, reporter, id).await?;
                let sender = UserId::from_trusted(row.sender_id.clone());
                if report.user.as_ref().is_some_and(|u| *u != sender) {
                    return Err(bad("`user` is not the sender of `msg`"));
                }
                let conv = row.conv_id.clone();
                let mut seen = [message_from_row(row)?];
                decorate(&self.db, reporter, &mut seen).await?;
                let json = serde_json::to_string(&seen[0]).expect("message serialises");
                (sender, Some(json), Some(conv))
            }
            None => {
                let Some(user) = report.user.clone() else {
                    return Err(bad("a report names a `user`, a `msg`, or both"));
                };
                if users::Entity::find_by_id(user.as_str())
                    .one(&self.db)
                    .await?
                    .is_none()
                {
                    return Err(Error::client(ErrorCode::NotFound, "no such user"));
                }
                (user, None, None)
            }
        };
        if user == *reporter {
            return Err(bad("you cannot report yourself"));
        }
        let id = new_id('r');
        let created_at = now_ms();
        reports::ActiveModel {
            id: Set(id.clone()),
            reporter_id: Set(reporter.to_string()),
            user_id: Set(user.to_string()),
            msg_id: Set(report.msg.as_ref().map(MsgId::to_string)),
            conv_id: Set(conv),
            reason: Set(report.reason.as_str().to_owned()),
            note: Set(note),
            snapshot: Set(snapshot),
            created_at: Set(created_at),
            resolved_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok(Report {
            id,
            user,
            msg: report.msg,
            reason: report.reason,
            created_at,
        })
    }

    /// Reports not resolved yet, oldest first, with usernames; at most `limit`.
    pub async fn open_reports(&self, limit: u64) -> Result<Vec<OpenReport>> {
        let rows = reports::Entity::find()
            .filter(reports::Column::ResolvedAt.is_null())
            .order_by_asc(reports::Column::CreatedAt)
            .limit(limit)
            .all(&self.read)
            .await?;
        let ids: Vec<&str> = rows
            .iter()
            .flat_map(|r| [r.reporter_id.as_str(), r.user_id.as_str()])
            .collect();
        let names: std::collections::HashMap<String, String> = users::Entity::find()
            .select_only()
            .columns([users::Column::Id, users::Column::Username])
            .filter(users::Column::Id.is_in(ids))
            .into_tuple()
            .all(&self.read)
            .await?
            .into_iter()
            .collect();
        let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
        Ok(rows
            .into_iter()
            .map(|r| OpenReport {
                reporter: name(&r.reporter_id),
                user: name(&r.user_id),
                id: r.id,
                reason: r.reason,
                note: r.note,
                snapshot: r.snapshot,
                created_at: r.created_at,
            })
            .collect())
    }

    /// Marks an open report resolved; whether there was one.
    pub async fn resolve_report(&self, id: &str) -> Result<bool> {
        let done = reports::Entity::update_many()
            .col_expr(reports::Column::ResolvedAt, Some(now_ms()).into())
            .filter(reports::Column::Id.eq(id))
            .filter(reports::Column::ResolvedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected > 0)
    }

    /// Suspends (`on`) or unsuspends the account named `username`; its id, or `not_found`.
    pub async fn set_suspended(&self, username: &str, on: bool) -> Result<UserId> {
        let Some(user) = users::Entity::find()
            .filter(users::Column::Username.eq(username.to_lowercase()))
            .one(&self.db)
            .await?
        else {
            return Err(Error::client(
                ErrorCode::NotFound,
                format!("no user {username}"),
            ));
        };
        let at = match (on, user.suspended_at) {
            (true, Some(at)) => Some(at),
            (true, None) => Some(now_ms()),
            (false, _) => None,
        };
        users::Entity::update_many()
            .col_expr(users::Column::SuspendedAt, at.into())
            .filter(users::Column::Id.eq(user.id.as_str()))
            .exec(&self.db)
            .await?;
        let id = UserId::from_trusted(user.id);
        self.tokens.forget_user(&id);
        Ok(id)
    }

    /// Devices to disconnect: those revoked at `since` or later, and the active ones of
    /// accounts suspended at `since` or later.
    pub async fn devices_to_close(&self, since: i64) -> Result<Vec<(UserId, DeviceId)>> {
        let suspended = Query::select()
            .column(users::Column::Id)
            .from(users::Entity)
            .and_where(users::Column::SuspendedAt.gte(since))
            .to_owned();
        let rows: Vec<(String, String)> = devices::Entity::find()
            .select_only()
            .columns([devices::Column::UserId, devices::Column::Id])
            .filter(
                Condition::any()
                    .add(devices::Column::RevokedAt.gte(since))
                    .add(
                        Condition::all()
                            .add(devices::Column::RevokedAt.is_null())
                            .add(devices::Column::UserId.in_subquery(suspended)),
                    ),
            )
            .into_tuple()
            .all(&self.read)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(u, d)| (UserId::from_trusted(u), DeviceId::from_trusted(d)))
            .collect())
    }
}
