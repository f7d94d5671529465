//! A device's request as a fuzz target (`fuzz/fuzz_targets/request.rs`, and the corpus replay
//! in `tests/it/fuzz_corpus.rs`): the input is a topic, a newline, then the payload; both go
//! through everything the backend checks before storage sees a request (topic, op, JSON,
//! storability, the op's body and its own checks). Panics are the failures, and so is a topic
//! that does not print back as itself, or a message content that passes its checks but could
//! not be stored.

use crate::envelope::check_storable;
use crate::ops::{
    check_text, AckReq, DeleteReq, EditReq, Op, ReactReq, ReadReq, SendReq, SyncReq, TypingReq,
};
use crate::topic::DeviceTopic;
use serde_json::Value;

/// Feeds `data` (`topic\npayload`) to request parsing.
pub fn request(data: &[u8]) {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let topic = String::from_utf8_lossy(&data[..split]);
    let payload = data.get(split + 1..).unwrap_or_default();
    if let Ok(t) = DeviceTopic::parse(&topic) {
        assert_eq!(t.to_string(), topic, "a parsed topic prints back as itself");
    }
    let op = topic.rsplit('/').next().and_then(Op::parse);
    let Ok(body) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    if check_storable(&body).is_err() {
        return;
    }
    let Some(op) = op else { return };
    match op {
        Op::Send => {
            let Ok(req) = serde_json::from_value::<SendReq>(body) else {
                return;
            };
            if let Ok(content) = req.content() {
                let stored = serde_json::to_value(&content).expect("content serialises");
                assert!(check_storable(&stored).is_ok(), "{stored}");
            }
        }
        Op::Edit => {
            if let Ok(req) = serde_json::from_value::<EditReq>(body) {
                let _ = check_text(&req.text);
            }
        }
        Op::React => {
            if let Ok(req) = serde_json::from_value::<ReactReq>(body) {
                let _ = req.check();
            }
        }
        Op::Ack => drop(serde_json::from_value::<AckReq>(body)),
        Op::Read => drop(serde_json::from_value::<ReadReq>(body)),
        Op::Sync => drop(serde_json::from_value::<SyncReq>(body)),
        Op::Delete => drop(serde_json::from_value::<DeleteReq>(body)),
        Op::Typing => drop(serde_json::from_value::<TypingReq>(body)),
    }
}
