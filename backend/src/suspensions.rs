//! Disconnecting suspended accounts. `courier admin suspend` runs as a process of its own and
//! writes only the database, so every server process looks, once a second, for accounts
//! suspended in the last [`WINDOW`] and closes their devices' connections on its edge. A
//! closed device that comes back is refused at CONNECT (not authorised), and its HTTP
//! requests get 403 `suspended`, so kicking the same device on a few rounds is harmless.

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
        match state.store.devices_suspended_since(since).await {
            Ok(devices) => {
                for (user, device) in devices {
                    state.publisher.directory().invalidate(&user);
                    state.publisher.kick(&device);
                }
            }
            Err(e) => tracing::warn!(error = %e, "suspended accounts not checked this round"),
        }
    }
}
