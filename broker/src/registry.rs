//! Live connections by client id: one connection per device (a new CONNECT takes the session
//! over after the old connection has left the router), and kicks for revoked devices.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, DropGuard};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kick {
    /// The same client id connected again.
    TakenOver,
    /// The device was revoked.
    Revoked,
}

struct Live {
    serial: u64,
    kick: oneshot::Sender<Kick>,
    gone: CancellationToken,
}

#[derive(Default)]
pub struct Registry {
    live: Mutex<HashMap<String, Live>>,
    next_serial: AtomicU64,
}

/// Held by a connection while it is registered; dropping it tells a waiting successor that
/// this connection is gone from the router.
pub struct Registration {
    pub serial: u64,
    pub kicked: oneshot::Receiver<Kick>,
    _gone: DropGuard,
}

impl Registry {
    /// Registers `client_id`, first kicking any live connection with the same id and waiting
    /// (bounded) until it has left the router.
    pub async fn register(&self, client_id: &str) -> Registration {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        loop {
            let previous = {
                let mut live = self.live.lock().expect("registry lock");
                match live.remove(client_id) {
                    Some(old) => old,
                    None => {
                        let (kick, kicked) = oneshot::channel();
                        let gone = CancellationToken::new();
                        live.insert(
                            client_id.to_owned(),
                            Live {
                                serial,
                                kick,
                                gone: gone.clone(),
                            },
                        );
                        return Registration {
                            serial,
                            kicked,
                            _gone: gone.drop_guard(),
                        };
                    }
                }
            };
            let _ = previous.kick.send(Kick::TakenOver);
            let _ = tokio::time::timeout(Duration::from_secs(5), previous.gone.cancelled()).await;
        }
    }

    pub fn unregister(&self, client_id: &str, serial: u64) {
        let mut live = self.live.lock().expect("registry lock");
        if live.get(client_id).is_some_and(|l| l.serial == serial) {
            live.remove(client_id);
        }
    }

    /// Closes the connection of `client_id` if there is one; returns whether there was.
    pub fn kick(&self, client_id: &str, why: Kick) -> bool {
        let taken = self.live.lock().expect("registry lock").remove(client_id);
        match taken {
            Some(live) => live.kick.send(why).is_ok(),
            None => false,
        }
    }

    pub fn count(&self) -> usize {
        self.live.lock().expect("registry lock").len()
    }

    pub fn is_connected(&self, client_id: &str) -> bool {
        self.live
            .lock()
            .expect("registry lock")
            .contains_key(client_id)
    }
}
