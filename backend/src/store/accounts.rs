//! Users and devices: sign-up, log-in, token checks, revocation.

use super::invites::{self, Signup};
use super::passwords;
use super::Store;
use crate::entity::{devices, users};
use crate::error::{is_unique_violation, Error, Result};
use crate::util::{constant_time_eq, new_id, new_token, now_ms, token_hash};
use protocol::http::{AccountSettings, GroupAdds, SettingsChange, MAX_DEVICES};
use protocol::{DeviceId, ErrorCode, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};

/// A new device: who it is, its token (shown once), and the device it replaced to keep the
/// user within [`MAX_DEVICES`].
pub struct LoggedIn {
    pub auth: DeviceAuth,
    pub token: String,
    pub replaced: Option<DeviceId>,
}

/// At [`MAX_DEVICES`] active devices, revokes the one seen longest ago (never seen: created
/// longest ago; offline before online) to make room for one more.
async fn make_room_for_a_device<C: ConnectionTrait>(
    db: &C,
    user: &str,
) -> Result<Option<DeviceId>> {
    let active = devices::Entity::find()
        .filter(devices::Column::UserId.eq(user))
        .filter(devices::Column::RevokedAt.is_null());
    if active.clone().count(db).await? < MAX_DEVICES {
        return Ok(None);
    }
    // A connected device's `last_seen_at` is when it came online: offline ones go first.
    let oldest = active
        .order_by_asc(devices::Column::Online)
        .order_by_asc(Expr::cust("COALESCE(last_seen_at, created_at)"))
        .one(db)
        .await?
        .expect("counted above");
    devices::Entity::update_many()
        .col_expr(devices::Column::RevokedAt, now_ms().into())
        .filter(devices::Column::Id.eq(oldest.id.as_str()))
        .exec(db)
        .await?;
    Ok(Some(DeviceId::from_trusted(oldest.id)))
}

/// A device's identity once its token checked out.
#[derive(Clone, Debug)]
pub struct DeviceAuth {
    pub user: UserId,
    pub device: DeviceId,
}

/// Revokes every active device of `user`'s but `keep`; returns the ones revoked.
async fn revoke_others<C: ConnectionTrait>(
    txn: &C,
    user: &UserId,
    keep: &DeviceId,
) -> Result<Vec<DeviceId>> {
    let others: Vec<String> = devices::Entity::find()
        .select_only()
        .column(devices::Column::Id)
        .filter(devices::Column::UserId.eq(user.as_str()))
        .filter(devices::Column::Id.ne(keep.as_str()))
        .filter(devices::Column::RevokedAt.is_null())
        .into_tuple()
        .all(txn)
        .await?;
    devices::Entity::update_many()
        .col_expr(devices::Column::RevokedAt, now_ms().into())
        .filter(devices::Column::Id.is_in(others.iter().map(String::as_str)))
        .filter(devices::Column::RevokedAt.is_null())
        .exec(txn)
        .await?;
    Ok(others.into_iter().map(DeviceId::from_trusted).collect())
}

/// How often a token's last use is written at most: an idle expiry of days needs no write per
/// request.
pub const RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

pub enum TokenCheck {
    Valid(DeviceAuth),
    Revoked,
    /// The right token of an account an operator suspended.
    Suspended,
    Invalid,
}

fn suspended_error() -> Error {
    Error::client(ErrorCode::Suspended, "this account is suspended")
}

fn validate_password(password: &str) -> Result<()> {
    if !(8..=256).contains(&password.len()) {
        return Err(Error::client(
            ErrorCode::BadRequest,
            "password must be 8-256 bytes",
        ));
    }
    Ok(())
}

fn validate_username(name: &str) -> Result<()> {
    let ok = (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then_some(()).ok_or_else(|| {
        Error::client(
            ErrorCode::BadRequest,
            "username must be 3-32 characters of letters, digits, '.', '_' or '-'",
        )
    })
}

impl Store {
    /// A new account, if `signup` lets it through (with `invite`, a code that one use of is
    /// spent on it).
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        signup: Signup,
        invite: Option<&str>,
    ) -> Result<UserId> {
        validate_username(username)?;
        validate_password(password)?;
        self.admit_sign_up(signup, invite).await?;
        let hash = passwords::hash(password.to_owned()).await?;
        let id = new_id('u');
        let user = users::ActiveModel {
            id: Set(id.clone()),
            username: Set(username.to_lowercase()),
            password_hash: Set(hash),
            last_useq: Set(0),
            log_floor: Set(0),
            created_at: Set(now_ms()),
            group_adds: Set(GroupAdds::default().as_str().to_owned()),
            // Not suspended, no display name or avatar.
            ..Default::default()
        };
        let txn = self.db.begin().await?;
        if let (Signup::Invite, Some(code)) = (signup, invite) {
            invites::spend(&txn, code).await?;
        }
        match users::Entity::insert(user).exec(&txn).await {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::client(
                    ErrorCode::UsernameTaken,
                    "that username is taken",
                ))
            }
            Err(e) => return Err(e.into()),
        }
        txn.commit().await?;
        Ok(UserId::from_trusted(id))
    }

    /// Checks the password and registers a new device with a fresh token.
    pub async fn log_in(
        &self,
        username: &str,
        password: &str,
        device_name: &str,
        platform: &str,
    ) -> Result<LoggedIn> {
        if device_name.is_empty() || device_name.len() > 128 || platform.len() > 32 {
            return Err(Error::client(
                ErrorCode::BadRequest,
                "device_name must be 1-128 bytes and platform at most 32",
            ));
        }
        let bad = || Error::client(ErrorCode::BadCredentials, "wrong username or password");
        // A deleted account's name answers like an unknown one (and costs the same hash).
        let user = users::Entity::find()
            .filter(users::Column::Username.eq(username.to_lowercase()))
            .filter(users::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let ok = passwords::verify(password.to_owned(), stored).await?;
        let user = match (user, ok) {
            (Some(user), true) => user,
            _ => return Err(bad()),
        };
        if user.suspended_at.is_some() {
            return Err(suspended_error());
        }
        let token = new_token();
        let device_id = new_id('d');
        let txn = self.db.begin().await?;
        // Log-ins of one user take turns, so together they stay within the cap.
        super::take_turns_as(&txn, &user.id).await?;
        let replaced = make_room_for_a_device(&txn, &user.id).await?;
        devices::ActiveModel {
            id: Set(device_id.clone()),
            user_id: Set(user.id.clone()),
            name: Set(device_name.to_owned()),
            platform: Set(platform.to_owned()),
            token_hash: Set(token_hash(&token)),
            // Nothing below the floor exists any more; a new device must not hold trimming back.
            cursor: Set(user.log_floor),
            created_at: Set(now_ms()),
            revoked_at: Set(None),
            online: Set(false),
            last_seen_at: Set(None),
            used_at: Set(None),
            push_provider: Set(None),
            push_token: Set(None),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        let auth = DeviceAuth {
            user: UserId::from_trusted(user.id),
            device: DeviceId::from_trusted(device_id),
        };
        if replaced.is_some() {
            self.tokens.forget_user(&auth.user);
        }
        Ok(LoggedIn {
            auth,
            token,
            replaced,
        })
    }

    /// MQTT CONNECT: the device id and its token.
    pub async fn check_device_token(&self, device: &str, token: &str) -> Result<TokenCheck> {
        // Not through the token cache: a connect is rare, and a device revoked through another
        // process must not come back on this one's broker for a second.
        let hash = token_hash(token);
        let Some(row) = devices::Entity::find_by_id(device).one(&self.read).await? else {
            return Ok(TokenCheck::Invalid);
        };
        if !constant_time_eq(row.token_hash.as_bytes(), hash.as_bytes()) {
            return Ok(TokenCheck::Invalid);
        }
        if row.revoked_at.is_some() || !self.use_token(&row).await? {
            return Ok(TokenCheck::Revoked);
        }
        if self.is_suspended(&row.user_id).await? {
            return Ok(TokenCheck::Suspended);
        }
        Ok(TokenCheck::Valid(DeviceAuth {
            user: UserId::from_trusted(row.user_id),
            device: DeviceId::from_trusted(row.id),
        }))
    }

    /// An active (not revoked) device by id.
    pub async fn active_device(&self, device: &str) -> Result<Option<DeviceAuth>> {
        self.active_device_where(devices::Column::Id.eq(device))
            .await
    }

    /// HTTP bearer token → device, if the token is in use (see [`Store::use_token`]);
    /// `suspended` for an account an operator suspended (within a second of it, through the
    /// token cache).
    pub async fn device_by_token(&self, token: &str) -> Result<Option<DeviceAuth>> {
        let hash = token_hash(token);
        if let Some(auth) = self.tokens.get(&hash) {
            return Ok(Some(auth));
        }
        let row = devices::Entity::find()
            .filter(devices::Column::TokenHash.eq(hash.as_str()))
            .filter(devices::Column::RevokedAt.is_null())
            .one(&self.read)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        if !self.use_token(&row).await? {
            return Ok(None);
        }
        if self.is_suspended(&row.user_id).await? {
            return Err(suspended_error());
        }
        let auth = DeviceAuth {
            user: UserId::from_trusted(row.user_id),
            device: DeviceId::from_trusted(row.id),
        };
        self.tokens.put(hash, auth.clone());
        Ok(Some(auth))
    }

    async fn is_suspended(&self, user: &str) -> Result<bool> {
        let at: Option<Option<i64>> = users::Entity::find_by_id(user)
            .select_only()
            .column(users::Column::SuspendedAt)
            .into_tuple()
            .one(&self.read)
            .await?;
        Ok(at.flatten().is_some())
    }

    /// A token of `row`'s was just presented. If it went unused for longer than
    /// [`Store::token_idle_ttl`] the device is revoked and the answer is false; otherwise its
    /// last use is renewed, written at most every [`RENEW_EVERY`] (or a tenth of the expiry).
    /// A connected device is in use; its log-in and its last presence count as uses.
    async fn use_token(&self, row: &devices::Model) -> Result<bool> {
        let now = now_ms();
        let ttl = self.token_idle_ttl.as_millis() as i64;
        let last = [Some(row.created_at), row.last_seen_at, row.used_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0);
        if !row.online && now.saturating_sub(last) > ttl {
            devices::Entity::update_many()
                .col_expr(devices::Column::RevokedAt, now.into())
                .filter(devices::Column::Id.eq(row.id.as_str()))
                .filter(devices::Column::RevokedAt.is_null())
                .exec(&self.db)
                .await?;
            tracing::info!(device = row.id, "token expired after going unused");
            return Ok(false);
        }
        let renew = (self.token_idle_ttl / 10).min(RENEW_EVERY).as_millis() as i64;
        if row
            .used_at
            .is_none_or(|used| now.saturating_sub(used) >= renew)
        {
            devices::Entity::update_many()
                .col_expr(devices::Column::UsedAt, Some(now).into())
                .filter(devices::Column::Id.eq(row.id.as_str()))
                .exec(&self.db)
                .await?;
        }
        Ok(true)
    }

    /// Revokes every active device of `user`'s but `keep`; returns the ones revoked.
    pub async fn revoke_other_devices(
        &self,
        user: &UserId,
        keep: &DeviceId,
    ) -> Result<Vec<DeviceId>> {
        let txn = self.db.begin().await?;
        let revoked = revoke_others(&txn, user, keep).await?;
        txn.commit().await?;
        self.tokens.forget_user(user);
        Ok(revoked)
    }

    /// `forbidden` unless `password` is `user`'s.
    pub(super) async fn check_password(&self, user: &UserId, password: &str) -> Result<()> {
        let stored = users::Entity::find_by_id(user.as_str())
            .one(&self.read)
            .await?
            .map(|u| u.password_hash);
        if !passwords::verify(password.to_owned(), stored).await? {
            return Err(Error::client(ErrorCode::Forbidden, "the password is wrong"));
        }
        Ok(())
    }

    /// Sets `user`'s password to `new` if `old` is the current one, and signs out every other
    /// device (in the same transaction); returns the devices signed out. A wrong `old` is
    /// `forbidden` and changes nothing.
    pub async fn change_password(
        &self,
        user: &UserId,
        keep: &DeviceId,
        old: &str,
        new: &str,
    ) -> Result<Vec<DeviceId>> {
        validate_password(new)?;
        self.check_password(user, old).await?;
        let hash = passwords::hash(new.to_owned()).await?;
        let txn = self.db.begin().await?;
        users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(hash))
            .filter(users::Column::Id.eq(user.as_str()))
            .exec(&txn)
            .await?;
        let revoked = revoke_others(&txn, user, keep).await?;
        txn.commit().await?;
        self.tokens.forget_user(user);
        Ok(revoked)
    }

    async fn active_device_where(
        &self,
        which: sea_orm::sea_query::SimpleExpr,
    ) -> Result<Option<DeviceAuth>> {
        let row = devices::Entity::find()
            .filter(which)
            .filter(devices::Column::RevokedAt.is_null())
            .one(&self.read)
            .await?;
        Ok(row.map(|row| DeviceAuth {
            user: UserId::from_trusted(row.user_id),
            device: DeviceId::from_trusted(row.id),
        }))
    }

    /// `user`'s active devices, oldest first.
    pub async fn devices_of(&self, user: &UserId) -> Result<Vec<devices::Model>> {
        Ok(devices::Entity::find()
            .filter(devices::Column::UserId.eq(user.as_str()))
            .filter(devices::Column::RevokedAt.is_null())
            .order_by_asc(devices::Column::CreatedAt)
            .order_by_asc(devices::Column::Id)
            .all(&self.read)
            .await?)
    }

    /// Revokes one of `user`'s devices. Returns false when it is not theirs (or not found).
    pub async fn revoke_device(&self, user: &UserId, device: &str) -> Result<bool> {
        let result = devices::Entity::update_many()
            .col_expr(devices::Column::RevokedAt, now_ms().into())
            .filter(devices::Column::Id.eq(device))
            .filter(devices::Column::UserId.eq(user.as_str()))
            .filter(devices::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        self.tokens.forget_user(user);
        Ok(result.rows_affected == 1)
    }

    /// The active devices of `users`, as (user, device) pairs.
    pub async fn active_devices(&self, users: &[UserId]) -> Result<Vec<(UserId, DeviceId)>> {
        let rows = devices::Entity::find()
            .filter(devices::Column::UserId.is_in(users.iter().map(UserId::as_str)))
            .filter(devices::Column::RevokedAt.is_null())
            .all(&self.read)
            .await?;
        Ok(rows
            .into_iter()
            .map(|d| {
                (
                    UserId::from_trusted(d.user_id),
                    DeviceId::from_trusted(d.id),
                )
            })
            .collect())
    }

    /// Whether every (distinct) id names a user whose account was not deleted.
    pub async fn user_exists(&self, ids: &[UserId]) -> Result<bool> {
        let distinct: std::collections::BTreeSet<&str> = ids.iter().map(UserId::as_str).collect();
        let found = users::Entity::find()
            .filter(users::Column::Id.is_in(distinct.iter().copied()))
            .filter(users::Column::DeletedAt.is_null())
            .count(&self.read)
            .await?;
        Ok(found == distinct.len() as u64)
    }
}

impl Store {
    /// `user`'s account settings.
    pub async fn account_settings(&self, user: &UserId) -> Result<AccountSettings> {
        let group_adds = users::Entity::find_by_id(user.as_str())
            .select_only()
            .column(users::Column::GroupAdds)
            .into_tuple::<String>()
            .one(&self.read)
            .await?
            .ok_or_else(|| Error::client(ErrorCode::Unauthorized, "no such user"))?;
        Ok(AccountSettings {
            group_adds: GroupAdds::parse(&group_adds),
        })
    }

    /// Applies `change` to `user`'s settings and returns them all.
    pub async fn change_settings(
        &self,
        user: &UserId,
        change: SettingsChange,
    ) -> Result<AccountSettings> {
        if let Some(group_adds) = change.group_adds {
            users::Entity::update_many()
                .col_expr(users::Column::GroupAdds, Expr::value(group_adds.as_str()))
                .filter(users::Column::Id.eq(user.as_str()))
                .exec(&self.db)
                .await?;
        }
        self.account_settings(user).await
    }
}

/// Where a push notification for a device goes.
#[derive(Clone, Debug)]
pub struct PushTarget {
    pub device: DeviceId,
    pub provider: String,
    pub token: String,
}

impl Store {
    /// Sets (or with `None` clears) the push token of one of `user`'s active devices; false if
    /// there is no such device.
    pub async fn set_push_token(
        &self,
        user: &UserId,
        device: &str,
        push: Option<(&str, &str)>,
    ) -> Result<bool> {
        let (provider, token) = push.unzip();
        let r = devices::Entity::update_many()
            .col_expr(
                devices::Column::PushProvider,
                sea_orm::sea_query::Expr::value(provider.map(str::to_owned)),
            )
            .col_expr(
                devices::Column::PushToken,
                sea_orm::sea_query::Expr::value(token.map(str::to_owned)),
            )
            .filter(devices::Column::Id.eq(device))
            .filter(devices::Column::UserId.eq(user.as_str()))
            .filter(devices::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// The user's active devices that registered a push token.
    pub async fn push_targets(&self, user: &UserId) -> Result<Vec<PushTarget>> {
        Ok(devices::Entity::find()
            .filter(devices::Column::UserId.eq(user.as_str()))
            .filter(devices::Column::RevokedAt.is_null())
            .filter(devices::Column::PushToken.is_not_null())
            .all(&self.read)
            .await?
            .into_iter()
            .filter_map(|d| {
                Some(PushTarget {
                    device: DeviceId::from_trusted(d.id),
                    provider: d.push_provider?,
                    token: d.push_token?,
                })
            })
            .collect())
    }
}
