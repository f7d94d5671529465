//! Who may sign up ([`Signup`]), and the invite codes an operator makes for `--signup invite`:
//! each good for a number of sign-ups until it expires, spent in the sign-up's own
//! transaction (a sign-up that fails spends nothing). Only a hash of a code is stored.

use super::Store;
use crate::entity::invites;
use crate::error::{Error, Result};
use crate::util::{new_invite_code, now_ms, token_hash};
use protocol::ErrorCode;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use std::time::Duration;

/// Who may sign up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Signup {
    /// Anyone (within the sign-up rate limits).
    #[default]
    Open,
    /// Only with an invite code from `courier invite create`.
    Invite,
    /// Nobody over HTTP.
    Closed,
}

fn refused(why: &str) -> Error {
    Error::client(ErrorCode::Forbidden, why)
}

impl Store {
    /// A new code good for `uses` sign-ups for `valid_for`; returns it (shown only now) and
    /// when it expires (Unix ms).
    pub async fn create_invite(&self, uses: u32, valid_for: Duration) -> Result<(String, i64)> {
        let code = new_invite_code();
        let now = now_ms();
        let expires_at = now.saturating_add(valid_for.as_millis().min(i64::MAX as u128) as i64);
        invites::Entity::insert(invites::ActiveModel {
            code_hash: Set(token_hash(&code)),
            uses_left: Set(i64::from(uses)),
            expires_at: Set(expires_at),
            created_at: Set(now),
        })
        .exec(&self.db)
        .await?;
        Ok((code, expires_at))
    }

    /// Whether `signup` lets this sign-up through, before any work is spent on it: `forbidden`
    /// when sign-up is closed, or needs an invite and `invite` is missing, unknown, used up
    /// or expired.
    pub(super) async fn admit_sign_up(&self, signup: Signup, invite: Option<&str>) -> Result<()> {
        match (signup, invite) {
            (Signup::Open, _) => Ok(()),
            (Signup::Closed, _) => Err(refused(
                "sign-up is closed on this server; ask its operator for an account",
            )),
            (Signup::Invite, None) => Err(refused("sign-up on this server needs an invite code")),
            (Signup::Invite, Some(code)) => {
                let found = invites::Entity::find_by_id(token_hash(code))
                    .one(&self.db)
                    .await?;
                match found {
                    Some(i) if i.uses_left > 0 && i.expires_at > now_ms() => Ok(()),
                    _ => Err(refused("that invite code is unknown, used up or expired")),
                }
            }
        }
    }
}

/// Spends one use of `code` inside a sign-up's transaction; `forbidden` when it has none left
/// (another sign-up took the last one since [`Store::admit_sign_up`]).
pub(super) async fn spend<C: ConnectionTrait>(db: &C, code: &str) -> Result<()> {
    let spent = invites::Entity::update_many()
        .col_expr(
            invites::Column::UsesLeft,
            Expr::col(invites::Column::UsesLeft).sub(1),
        )
        .filter(invites::Column::CodeHash.eq(token_hash(code)))
        .filter(invites::Column::UsesLeft.gt(0))
        .filter(invites::Column::ExpiresAt.gt(now_ms()))
        .exec(db)
        .await?;
    if spent.rows_affected != 1 {
        return Err(refused("that invite code is unknown, used up or expired"));
    }
    Ok(())
}
