//! The uploads of one user are received a few at a time ([`AT_ONCE`]); the user's others wait
//! for a slot before a byte of their body is read, so they meet TCP backpressure instead of
//! the server's cores and disk, and one user's fifty uploads at once cannot crowd out another
//! user's one. Slots are first come, first served within a user.
//!
//! Only users with an upload running or waiting have an entry, so the map is bounded by the
//! HTTP connections (themselves capped).

use protocol::UserId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Uploads (a `POST /v1/media`, or a resumable upload's `PATCH`) of one user received at once.
pub const AT_ONCE: usize = 4;

#[derive(Default)]
pub struct UploadSlots {
    users: Mutex<HashMap<UserId, Arc<Semaphore>>>,
}

/// A user's slot, held while their upload is received and stored.
pub struct Slot {
    slots: Arc<UploadSlots>,
    user: UserId,
    permit: Option<OwnedSemaphorePermit>,
}

impl UploadSlots {
    /// Waits for one of `user`'s slots.
    pub async fn take(self: &Arc<Self>, user: &UserId) -> Slot {
        let gate = self
            .users
            .lock()
            .unwrap()
            .entry(user.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(AT_ONCE)))
            .clone();
        let permit = gate.acquire_owned().await.expect("slots are never closed");
        Slot {
            slots: self.clone(),
            user: user.clone(),
            permit: Some(permit),
        }
    }

    /// Users with an upload running or waiting.
    pub fn users(&self) -> usize {
        self.users.lock().unwrap().len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut users = self.slots.users.lock().unwrap();
        // Nobody else holds or awaits this user's gate (those clone it under this lock).
        if users
            .get(&self.user)
            .is_some_and(|gate| Arc::strong_count(gate) == 1)
        {
            users.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_user_waits_for_their_own_slots_only_and_entries_go() {
        let slots = Arc::new(UploadSlots::default());
        let (alice, bob) = (
            UserId::from_trusted("alice".into()),
            UserId::from_trusted("bob".into()),
        );
        let mut held = Vec::new();
        for _ in 0..AT_ONCE {
            held.push(slots.take(&alice).await);
        }
        // Alice's next waits; bob's does not.
        let waiting = tokio::spawn({
            let (slots, alice) = (slots.clone(), alice.clone());
            async move { slots.take(&alice).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        let bobs = tokio::time::timeout(Duration::from_secs(1), slots.take(&bob))
            .await
            .expect("bob has slots of his own");
        drop(bobs);
        assert_eq!(slots.users(), 1);
        held.pop();
        let next = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("a freed slot goes to the one waiting")
            .unwrap();
        drop(next);
        held.clear();
        assert_eq!(slots.users(), 0);
    }
}
