//! One account floods, another keeps talking: with the server's standard limits, a device
//! that publishes thousands of requests without waiting gets `rate_limited` answers for all
//! but its bucket's worth (or, publishing faster than it reads its answers, is disconnected),
//! while another user's sends, made meanwhile, are each answered and delivered in order.

use crate::helpers::{spawn_app_with, Db, RawDevice};
use backend::shared::Limits;
use courier_client::protocol::UpdateBody;
use serde_json::json;

crate::on_both_databases!(a_flooding_device_does_not_stop_another_users_sends);

async fn a_flooding_device_does_not_stop_another_users_sends(db: Db) {
    const FLOOD: usize = 2_000;
    const SENDS: i64 = 20;
    let app = spawn_app_with(db, |s| s.limits = Limits::standard()).await;
    app.users(&["alice", "bob", "mallory"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&alice, &bob).await;
    let mallory = app.session("mallory", "script").await;
    let mut flooder = RawDevice::connect(&app, &mallory).await;
    let flood = tokio::spawn(async move {
        let requests: Vec<(&str, serde_json::Value)> = (0..FLOOD)
            .map(|n| ("sync", json!({"id": n, "after": 0, "limit": 500})))
            .collect();
        let _publisher = flooder.publish_all(&requests);
        // (answers, rate_limited, disconnected)
        let (mut answers, mut limited) = (0, 0);
        while answers < FLOOD {
            let Some(a) = flooder.next_answer().await else {
                return (answers, limited, true);
            };
            answers += 1;
            if a["error"]["code"] == "rate_limited" {
                limited += 1;
            }
        }
        (answers, limited, false)
    });
    for n in 1..=SENDS {
        let ack = alice
            .client
            .send_text(&conv, &format!("during the flood #{n}"))
            .await
            .unwrap();
        assert_eq!(ack.seq, n);
    }
    for n in 1..=SENDS {
        let u = bob.next_message().await;
        let UpdateBody::Message { msg } = u.body else {
            unreachable!()
        };
        assert_eq!(msg.seq, n);
    }
    let (answers, limited, disconnected) = flood.await.unwrap();
    let sync_bucket = backend::shared::Limit::Sync.standard().count as usize;
    assert!(
        disconnected || limited >= FLOOD - 2 * sync_bucket,
        "{answers} answers, {limited} limited, still connected"
    );
    // The server is still there for everyone, the flooder included.
    let after = app.tcp_device("mallory", "again").await;
    after.client.sync(0, 10).await.unwrap();
}
