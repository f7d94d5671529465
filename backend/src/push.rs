//! Push notifications for users who are away. When a new message reaches a user with no
//! connected device, a content-free notice (user, device, push token, conversation, unread
//! count, badge, whether it mentions them) is POSTed to the configured webhook for each of their devices with a push
//! token, in Courier's own format or as a gorush `/api/push` request ([`PushFormat`]); the
//! receiver relays it to FCM/APNs/Web Push. The notice carries no message text, so
//! nothing private leaves through the push provider. A muted conversation sends notices only
//! while an unread message there mentions the user, and the badge leaves muted ones out.
//!
//! Never on the delivery path: [`Pusher::notify`] only queues (a bounded queue; when it is
//! full the notice is dropped and counted — the messages themselves are in the log). Notices
//! for the same (user, conversation) that are still queued are coalesced: the one sent carries
//! the unread count at sending time. Failed POSTs are retried with exponential backoff.

use crate::store::Store;
use protocol::http::PushNotice;
use protocol::{ConvId, UserId};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// What the webhook speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PushFormat {
    /// Courier's own notice: one [`PushNotice`] per POST, for a relay of your own.
    #[default]
    Courier,
    /// gorush's `POST /api/push` (`{"notifications":[…]}`): gorush hands each one to FCM,
    /// APNs or Huawei Push Kit by the device's provider.
    Gorush,
}

#[derive(Clone, Debug)]
pub struct PushConfig {
    /// The webhook URL (http:// or https://).
    pub url: String,
    pub format: PushFormat,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<String>,
    /// Tries per notice, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubles after each failure.
    pub first_backoff: Duration,
}

impl PushConfig {
    pub fn new(url: String, format: PushFormat, token: Option<String>) -> Self {
        Self {
            url,
            format,
            token,
            attempts: 6,
            first_backoff: Duration::from_millis(250),
        }
    }
}

/// Notices waiting to be sent, at most.
const QUEUE: usize = 10_000;
/// POSTs in flight, at most.
const IN_FLIGHT: usize = 32;

pub struct Pusher {
    tx: mpsc::Sender<(UserId, ConvId)>,
    queued: Mutex<HashSet<(UserId, ConvId)>>,
    pub dropped: AtomicU64,
    pub sent: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
}

impl Pusher {
    /// Starts the sending task (inside the tokio runtime).
    pub fn start(store: Store, config: PushConfig) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let pusher = Arc::new(Self {
            tx,
            queued: Mutex::new(HashSet::new()),
            dropped: AtomicU64::new(0),
            sent: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
        });
        tokio::spawn(run(Arc::downgrade(&pusher), store, config, rx));
        pusher
    }

    /// Queues a notice for `user` about `conv`; returns at once.
    pub fn notify(&self, user: &UserId, conv: &ConvId) {
        let key = (user.clone(), conv.clone());
        if !self.queued.lock().expect("push lock").insert(key.clone()) {
            return;
        }
        if self.tx.try_send(key.clone()).is_err() {
            self.queued.lock().expect("push lock").remove(&key);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(user = %user, "push queue full; notice dropped");
        }
    }
}

async fn run(
    pusher: std::sync::Weak<Pusher>,
    store: Store,
    config: PushConfig,
    mut rx: mpsc::Receiver<(UserId, ConvId)>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let config = Arc::new(config);
    while let Some((user, conv)) = rx.recv().await {
        let Some(p) = pusher.upgrade() else { return };
        p.queued
            .lock()
            .expect("push lock")
            .remove(&(user.clone(), conv.clone()));
        let notices = match notices(&store, &user, &conv).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "push: cannot read unread counts; notice dropped");
                p.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        for notice in notices {
            let Some(body) = body(config.format, &notice) else {
                tracing::debug!(provider = %notice.provider, "push: gorush has no such provider; notice skipped");
                continue;
            };
            let permit = slots.clone().acquire_owned().await.expect("open semaphore");
            let (http, config) = (http.clone(), config.clone());
            let (sent, failed) = (p.sent.clone(), p.failed.clone());
            tokio::spawn(async move {
                let ok = post(&http, &config, &notice, &body).await;
                if ok { sent } else { failed }.fetch_add(1, Ordering::Relaxed);
                crate::metrics::push_notice(if ok { "sent" } else { "failed" });
                drop(permit);
            });
        }
    }
}

/// One notice per device of `user` with a push token.
async fn notices(
    store: &Store,
    user: &UserId,
    conv: &ConvId,
) -> crate::error::Result<Vec<PushNotice>> {
    let targets = store.push_targets(user).await?;
    if targets.is_empty() {
        return Ok(vec![]);
    }
    let Some(state) = store.notice_state(user, conv).await? else {
        return Ok(vec![]);
    };
    // A muted conversation notifies only of messages that mention the user.
    if state.muted && !state.mentioned {
        return Ok(vec![]);
    }
    let ts = crate::util::now_ms();
    Ok(targets
        .into_iter()
        .map(|t| PushNotice {
            user: user.clone(),
            device: t.device,
            provider: t.provider,
            token: t.token,
            conv: conv.clone(),
            unread: state.unread,
            badge: state.badge,
            mentioned: state.mentioned,
            ts,
        })
        .collect())
}

/// The request body for `notice`; `None` when gorush cannot reach the device's provider
/// (Web Push, or a provider of the app's own).
fn body(format: PushFormat, notice: &PushNotice) -> Option<serde_json::Value> {
    match format {
        PushFormat::Courier => serde_json::to_value(notice).ok(),
        PushFormat::Gorush => gorush(notice),
    }
}

/// One gorush notification. It stays content-free: no title or text, only what the app
/// needs to fetch and show the message itself (`data`), the badge, and a collapse key per
/// conversation so a newer notice replaces an older one on the device. On iOS it is a
/// background notice with `mutable-content`, for the app's notification service extension.
fn gorush(n: &PushNotice) -> Option<serde_json::Value> {
    let platform = match n.provider.to_ascii_lowercase().as_str() {
        "apns" | "ios" => 1,
        "fcm" | "android" => 2,
        "hms" | "huawei" => 3,
        _ => return None,
    };
    let mut note = serde_json::json!({
        "tokens": [n.token],
        "platform": platform,
        "badge": n.badge,
        "priority": "high",
        "data": {
            "user": n.user,
            "device": n.device,
            "conv": n.conv,
            "unread": n.unread,
            "badge": n.badge,
            "mentioned": n.mentioned,
            "ts": n.ts,
        },
    });
    let fields = note.as_object_mut().expect("an object");
    if platform == 1 {
        fields.insert("content_available".into(), true.into());
        fields.insert("mutable_content".into(), true.into());
        fields.insert("collapse_id".into(), n.conv.as_str().into());
    } else {
        fields.insert("collapse_key".into(), n.conv.as_str().into());
    }
    Some(serde_json::json!({ "notifications": [note] }))
}

/// POSTs with retries; true once the receiver answered 2xx.
async fn post(
    http: &reqwest::Client,
    config: &PushConfig,
    notice: &PushNotice,
    body: &serde_json::Value,
) -> bool {
    let mut wait = config.first_backoff;
    for attempt in 1..=config.attempts {
        let mut req = http.post(&config.url).json(body);
        if let Some(t) = &config.token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return true,
            // The receiver refused this notice itself; retrying will not help.
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                tracing::warn!(status = %r.status(), "push webhook refused a notice");
                return false;
            }
            Ok(r) => tracing::debug!(status = %r.status(), attempt, "push webhook failed"),
            Err(e) => tracing::debug!(error = %e, attempt, "push webhook unreachable"),
        }
        if attempt < config.attempts {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }
    tracing::warn!(device = %notice.device, "push notice not delivered after retries");
    false
}
