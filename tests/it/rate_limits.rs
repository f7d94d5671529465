//! Rate limits in one process (the buckets in memory): sends per device, uploads per user,
//! log-ins per address. A hit is a typed `rate_limited` error with the wait, and changes
//! nothing; other devices and users keep their own buckets. (Shared through Redis between
//! processes: `scale_out.rs`.)

use crate::helpers::{spawn_app_with, Setup};
use crate::on_both_databases;
use backend::shared::{Limits, Rate};
use courier_client::protocol::ErrorCode;
use courier_client::ClientError;
use std::time::Duration;

/// A 1×1 PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\xdac\xfc\xcf\xc0\xf0\x1f\0\x05\x05\x02\x02\xa2\xb0\xf7\xe9\0\0\0\0IEND\xaeB`\x82";

fn per_minute(count: u32) -> Option<Rate> {
    Some(Rate {
        count,
        per: Duration::from_secs(60),
    })
}

fn retry_after_ms(e: &ClientError) -> u64 {
    assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e}");
    let ClientError::Server(body) = e else {
        unreachable!()
    };
    body.details.as_ref().unwrap()["retry_after_ms"]
        .as_u64()
        .unwrap()
}

async fn limits_hold_per_device_user_and_address(setup: Setup) {
    let app = spawn_app_with(setup, |s| {
        s.limits = Limits {
            send: per_minute(3),
            upload: per_minute(2),
            login: per_minute(5),
        };
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let alice_laptop = app.tcp_device("alice", "laptop").await;
    let bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&alice, &bob).await;

    // Sends: 3 per device; the 4th is refused and stores nothing.
    for i in 0..3 {
        alice
            .client
            .send_text(&conv, &format!("m{i}"))
            .await
            .unwrap();
    }
    let e = alice
        .client
        .send_text(&conv, "one too many")
        .await
        .unwrap_err();
    let wait = retry_after_ms(&e);
    assert!((1..=20_000).contains(&wait), "{wait}");
    alice_laptop
        .client
        .send_text(&conv, "my own bucket")
        .await
        .unwrap();
    bob.client.send_text(&conv, "mine too").await.unwrap();
    let page = app.api.history(bob.token(), &conv, None, 50).await.unwrap();
    assert_eq!(page.messages.len(), 5);
    assert!(page
        .messages
        .iter()
        .all(|m| !format!("{m:?}").contains("one too many")));

    // Uploads: 2 per user, whichever device; both upload routes count.
    app.api
        .upload(alice.token(), PNG.to_vec(), Some("a.png"))
        .await
        .unwrap();
    app.api
        .upload(alice_laptop.token(), PNG.to_vec(), Some("b.png"))
        .await
        .unwrap();
    let refused = app
        .api
        .upload(alice.token(), PNG.to_vec(), Some("c.png"))
        .await
        .unwrap_err();
    retry_after_ms(&refused);
    let tus = reqwest::Client::new()
        .post(format!("http://{}/v1/uploads", app.addrs.http))
        .bearer_auth(alice.token())
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "67")
        .send()
        .await
        .unwrap();
    assert_eq!(tus.status(), 429);
    let secs: u64 = tus.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&secs), "{secs}");
    app.api
        .upload(bob.token(), PNG.to_vec(), Some("d.png"))
        .await
        .unwrap();

    // Log-ins: 5 per address, good passwords or bad (three happened above).
    let bad = app.api.log_in("bob", "wrong", "x", "t").await.unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::BadCredentials));
    app.session("bob", "tablet").await;
    let e = app
        .api
        .log_in("bob", "correct horse battery", "y", "t")
        .await
        .unwrap_err();
    retry_after_ms(&e);
}

on_both_databases!(limits_hold_per_device_user_and_address);
