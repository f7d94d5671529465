//! MQTT framing for one connection: picks 3.1.1 or 5 from the CONNECT packet and then reads
//! and writes packets with rumqttd's public codec (`rumqttd::protocol::{v4::V4, v5::V5}`).

use bytes::{BufMut, BytesMut};
use rumqttd::protocol::{self, v4::V4, v5::V5, Packet, Protocol};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("first packet is not CONNECT")]
    NotConnect,
    #[error("unsupported MQTT protocol level {0}")]
    UnsupportedLevel(u8),
    #[error("packet of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("malformed packet: {0}")]
    Malformed(String),
}

/// What the first bytes of a connection say, once enough of them arrived.
pub enum Sniff {
    NeedMore,
    Connect(Version),
}

/// Looks at the CONNECT fixed header and protocol name/level without consuming anything.
pub fn sniff(buf: &[u8]) -> Result<Sniff, CodecError> {
    let Some(&first) = buf.first() else {
        return Ok(Sniff::NeedMore);
    };
    if first != 0x10 {
        return Err(CodecError::NotConnect);
    }
    // Remaining length: 1-4 bytes of 7-bit groups.
    let mut pos = 1;
    loop {
        let Some(&b) = buf.get(pos) else {
            return Ok(Sniff::NeedMore);
        };
        pos += 1;
        if b & 0x80 == 0 {
            break;
        }
        if pos > 4 {
            return Err(CodecError::Malformed("remaining length".into()));
        }
    }
    // Protocol name (length-prefixed) then the level byte.
    let Some(name_len) = buf.get(pos..pos + 2) else {
        return Ok(Sniff::NeedMore);
    };
    let name_len = u16::from_be_bytes([name_len[0], name_len[1]]) as usize;
    let level_at = pos + 2 + name_len;
    let Some(&level) = buf.get(level_at) else {
        return Ok(Sniff::NeedMore);
    };
    if &buf[pos + 2..level_at] != b"MQTT" {
        return Err(CodecError::UnsupportedLevel(level));
    }
    match level {
        4 => Ok(Sniff::Connect(Version::V311)),
        5 => Ok(Sniff::Connect(Version::V5)),
        other => Err(CodecError::UnsupportedLevel(other)),
    }
}

pub struct Codec {
    pub version: Version,
    max_packet: usize,
    v4: V4,
    v5: V5,
}

impl Codec {
    pub fn new(version: Version, max_packet: usize) -> Self {
        Self {
            version,
            max_packet,
            v4: V4,
            v5: V5,
        }
    }

    /// One whole packet from `buf`, or `None` until more bytes arrive. Packets only a server
    /// sends (CONNACK, SUBACK, UNSUBACK, PINGRESP) are refused: clients do not send them, and
    /// rumqttd's MQTT 5 reader panics on a CONNACK or UNSUBACK with a body (found by the
    /// `mqtt_edge` fuzz target).
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        if let Some(&first) = buf.first() {
            if matches!(first >> 4, 2 | 9 | 11 | 13) {
                let kind = first >> 4;
                return Err(CodecError::Malformed(format!(
                    "packet type {kind} is sent by servers only"
                )));
            }
        }
        let result = match self.version {
            Version::V311 => self.v4.read_mut(buf, self.max_packet),
            Version::V5 => self.v5.read_mut(buf, self.max_packet),
        };
        match result {
            Ok(packet) => Ok(Some(packet)),
            Err(protocol::Error::InsufficientBytes(_)) => Ok(None),
            Err(protocol::Error::PayloadSizeLimitExceeded(n)) => Err(CodecError::TooLarge(n)),
            Err(e) => Err(CodecError::Malformed(e.to_string())),
        }
    }

    /// Appends `packet` to `out`. MQTT 3.1.1 has no properties, so they are dropped.
    pub fn write(&self, packet: Packet, out: &mut BytesMut) -> Result<(), CodecError> {
        let result = match self.version {
            Version::V311 => self.v4.write(strip_properties(packet), out),
            Version::V5 => self.v5.write(packet, out),
        };
        result
            .map(drop)
            .map_err(|e| CodecError::Malformed(e.to_string()))
    }
}

fn strip_properties(packet: Packet) -> Packet {
    match packet {
        Packet::Publish(p, _) => Packet::Publish(p, None),
        Packet::PubAck(p, _) => Packet::PubAck(p, None),
        Packet::SubAck(p, _) => Packet::SubAck(p, None),
        Packet::UnsubAck(p, _) => Packet::UnsubAck(p, None),
        Packet::PubRec(p, _) => Packet::PubRec(p, None),
        Packet::PubRel(p, _) => Packet::PubRel(p, None),
        Packet::PubComp(p, _) => Packet::PubComp(p, None),
        Packet::Disconnect(p, _) => Packet::Disconnect(p, None),
        Packet::ConnAck(p, _) => Packet::ConnAck(p, None),
        other => other,
    }
}

/// Appends a PUBLISH to `out`, written here rather than through rumqttd's types (which keep
/// QoS and packet id private) so a delivery costs one copy of its payload and nothing else.
/// Never retained; no properties on MQTT 5.
/// What follows a PUBLISH's fixed header: topic, packet id, (empty) properties, payload.
fn publish_body_len(version: Version, topic: usize, payload: usize, qos: u8) -> usize {
    let props = usize::from(version == Version::V5);
    let pkid = if qos > 0 { 2 } else { 0 };
    2 + topic + pkid + props + payload
}

/// The whole PUBLISH that [`write_publish`] writes, in bytes.
pub fn publish_size(version: Version, topic: usize, payload: usize, qos: u8) -> usize {
    let body = publish_body_len(version, topic, payload, qos);
    let len_bytes = match body {
        0..128 => 1,
        128..16_384 => 2,
        16_384..2_097_152 => 3,
        _ => 4,
    };
    1 + len_bytes + body
}

pub fn write_publish(
    out: &mut BytesMut,
    version: Version,
    topic: &[u8],
    payload: &[u8],
    qos: u8,
    pkid: u16,
    dup: bool,
) {
    let len = publish_body_len(version, topic.len(), payload.len(), qos);
    let props = usize::from(version == Version::V5);
    out.reserve(5 + len);
    out.put_u8(0x30 | (u8::from(dup && qos > 0) << 3) | (qos << 1));
    let mut rest = len;
    loop {
        let mut byte = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if rest == 0 {
            break;
        }
    }
    out.put_u16(topic.len() as u16);
    out.extend_from_slice(topic);
    if qos > 0 {
        out.put_u16(pkid);
    }
    if props == 1 {
        out.put_u8(0);
    }
    out.extend_from_slice(payload);
}

/// QoS, packet id and DUP flag of the PUBLISH at the front of `buf` (rumqttd keeps them
/// private).
pub fn peek_publish(buf: &[u8]) -> Option<(u8, u16, bool)> {
    let first = *buf.first()?;
    if first >> 4 != 3 {
        return None;
    }
    let qos = (first >> 1) & 3;
    let mut pos = 1;
    while buf.get(pos)? & 0x80 != 0 {
        pos += 1;
    }
    pos += 1;
    let topic_len = u16::from_be_bytes([*buf.get(pos)?, *buf.get(pos + 1)?]) as usize;
    let at = pos + 2 + topic_len;
    let pkid = if qos > 0 {
        u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?])
    } else {
        0
    };
    Some((qos, pkid, first & 0x08 != 0))
}

/// MQTT 3.1.1 packets written by hand, for tools and tests that speak MQTT without a client
/// library (idle crowds, hostile devices).
pub mod raw {
    use super::{write_publish, Codec, Version};
    use bytes::BytesMut;
    use rumqttd::protocol::{Connect, Filter, Login, Packet, QoS, RetainForwardRule, Subscribe};

    fn encode(packet: Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        Codec::new(Version::V311, usize::MAX)
            .write(packet, &mut out)
            .expect("a well-formed packet");
        out.to_vec()
    }

    /// CONNECT with username = client id (as Courier devices connect).
    pub fn connect(client_id: &str, password: &str, clean: bool, keep_alive: u16) -> Vec<u8> {
        let connect = Connect {
            keep_alive,
            client_id: client_id.to_owned(),
            clean_session: clean,
        };
        let login = Login {
            username: client_id.to_owned(),
            password: password.to_owned(),
        };
        encode(Packet::Connect(connect, None, None, None, Some(login)))
    }

    /// SUBSCRIBE to `(filter, qos)` pairs.
    pub fn subscribe(pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        let filters = filters
            .iter()
            .map(|(path, qos)| Filter {
                path: (*path).to_owned(),
                qos: if *qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                },
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: RetainForwardRule::OnEverySubscribe,
            })
            .collect();
        encode(Packet::Subscribe(Subscribe { pkid, filters }, None))
    }

    /// PUBLISH at any QoS (2 included, which Courier itself never sends).
    pub fn publish(qos: u8, pkid: u16, topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_publish(
            &mut out,
            Version::V311,
            topic.as_bytes(),
            payload,
            qos,
            pkid,
            false,
        );
        out.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_size_is_what_is_written() {
        for v in [Version::V311, Version::V5] {
            for (payload, qos) in [(0, 0), (100, 1), (200, 0), (20_000, 1), (3_000_000, 1)] {
                let mut out = BytesMut::new();
                write_publish(&mut out, v, b"u/x/d/y/in", &vec![7; payload], qos, 1, false);
                assert_eq!(publish_size(v, 10, payload, qos), out.len());
            }
        }
    }

    #[test]
    fn sniffs_levels() {
        let v4 = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4];
        assert!(matches!(sniff(&v4), Ok(Sniff::Connect(Version::V311))));
        let v5 = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 5];
        assert!(matches!(sniff(&v5), Ok(Sniff::Connect(Version::V5))));
        assert!(matches!(sniff(&v5[..5]), Ok(Sniff::NeedMore)));
        assert!(matches!(sniff(&[0x30, 0]), Err(CodecError::NotConnect)));
        let v3 = [0x10, 14, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3];
        assert!(matches!(sniff(&v3), Err(CodecError::UnsupportedLevel(3))));
    }

    #[test]
    fn server_only_packets_are_refused_not_panicked_on() {
        // CONNACK and UNSUBACK with a body: rumqttd's MQTT 5 reader has no arm for them.
        for bytes in [
            &[0x20u8, 2, 0, 0][..],
            &[0xB0, 2, 0, 1],
            &[0x90, 2, 0, 1],
            &[0xD0, 0],
        ] {
            for version in [Version::V311, Version::V5] {
                let mut buf = BytesMut::from(bytes);
                let read = Codec::new(version, 4096).read(&mut buf);
                assert!(matches!(read, Err(CodecError::Malformed(_))), "{bytes:?}");
            }
        }
    }

    #[test]
    fn written_publishes_read_back() {
        for version in [Version::V311, Version::V5] {
            for (qos, pkid) in [(0u8, 0u16), (1, 7)] {
                let payload = vec![b'x'; 300]; // a two-byte remaining length
                let mut out = BytesMut::new();
                write_publish(&mut out, version, b"a/b", &payload, qos, pkid, true);
                assert_eq!(peek_publish(&out), Some((qos, pkid, qos > 0)));
                match Codec::new(version, 4096).read(&mut out) {
                    Ok(Some(Packet::Publish(p, _))) => {
                        assert_eq!(&p.topic[..], b"a/b");
                        assert_eq!(p.payload.len(), 300);
                        assert!(!p.retain);
                    }
                    other => panic!("{other:?}"),
                }
                assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn peeks_qos_and_pkid() {
        // PUBLISH qos1, topic "a/b", pkid 0x0102, payload "x"
        let raw = [0x32, 8, 0, 3, b'a', b'/', b'b', 1, 2, b'x'];
        assert_eq!(peek_publish(&raw), Some((1, 0x0102, false)));
        let raw0 = [0x30, 6, 0, 3, b'a', b'/', b'b', b'x'];
        assert_eq!(peek_publish(&raw0), Some((0, 0, false)));
        assert_eq!(peek_publish(&[0x82, 0]), None);
    }
}
