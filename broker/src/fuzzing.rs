//! The MQTT edge as a fuzz target (`fuzz/fuzz_targets/mqtt_edge.rs`, and the corpus replay in
//! `tests/it/fuzz_corpus.rs`): bytes a client sends go through the version sniff, the packet
//! codec (both versions, and the publish peek the fast path uses), and every topic and filter
//! they carry through the ACL of a device. Panics are the failures, and so is the ACL granting
//! a device anything outside its own topics.

use crate::acl::Identity;
use crate::codec::{peek_publish, sniff, Codec, Sniff, Version};
use bytes::BytesMut;
use rumqttd::protocol::Packet;

const USER: &str = "ufuzz";
const DEVICE: &str = "dfuzz";

/// Feeds `data` to the edge's parsing and authorisation.
pub fn mqtt_edge(data: &[u8]) {
    let _ = sniff(data);
    let _ = peek_publish(data);
    let device = Identity::Device {
        user: USER.into(),
        device: DEVICE.into(),
    };
    let own = format!("u/{USER}/d/{DEVICE}/");
    // As a connection would: the version from the CONNECT if it parses, else both.
    let versions = match sniff(data) {
        Ok(Sniff::Connect(v)) => vec![v],
        _ => vec![Version::V311, Version::V5],
    };
    for version in versions {
        let mut codec = Codec::new(version, 64 * 1024);
        let mut buf = BytesMut::from(data);
        // Each read consumes a packet; a bounded number of rounds ends any stall.
        for _ in 0..64 {
            let Ok(Some(packet)) = codec.read(&mut buf) else {
                break;
            };
            match &packet {
                Packet::Publish(p, _) => {
                    let topic = String::from_utf8_lossy(&p.topic);
                    if device.may_publish(&topic) {
                        let rest = topic.strip_prefix(&own).unwrap_or_else(|| {
                            panic!("a device may publish to another's topic {topic:?}")
                        });
                        assert!(rest == "presence" || rest.starts_with("req/"), "{topic:?}");
                    }
                }
                Packet::Subscribe(s, _) => {
                    for f in &s.filters {
                        if device.may_subscribe(&f.path) {
                            let rest = f.path.strip_prefix(&own).unwrap_or_else(|| {
                                panic!("a device may subscribe to {:?}", f.path)
                            });
                            assert!(["in", "rsp", "eph"].contains(&rest), "{:?}", f.path);
                        }
                    }
                }
                _ => {}
            }
            // What was read can be written back.
            let _ = codec.write(packet, &mut BytesMut::new());
        }
    }
}
