//! Closing the connections of devices that may no longer connect, whichever process said so.
//! `courier admin suspend|delete-user` run as processes of their own and write only the
//! database, and a device revoked through one backend may be connected to another's broker:
//! so every server process looks, once a second, for devices revoked and accounts suspended
//! in the last [`WINDOW`] and closes those devices' connections on its edge. A closed device
//! that comes back is refused at CONNECT (not authorised), so closing it again on a later
//! round is harmless.

use crate::http::AppState;
use crate::util::now_ms;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(1);
/// How far back a round looks: wide enough for a slow commit or a round that failed.
const WINDOW: Duration = Duration::from_secs(60);

pub async fn watch(state: AppState, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let since = now_ms() - WINDOW.as_millis() as i64;
        match state.store.devices_to_close(since).await {
            Ok(devices) => {
                for (user, device) in devices {
                    state.publisher.directory().invalidate(&user);
                    state.publisher.kick(&device);
                }
            }
            Err(e) => tracing::warn!(error = %e, "revoked devices not checked this round"),
        }
    }
}
