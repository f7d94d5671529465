//! MQTT framing for one connection: picks 3.1.1 or 5 from the CONNECT packet and then reads
//! and writes packets with rumqttd's public codec (`rumqttd::protocol::{v4::V4, v5::V5}`).

use bytes::BytesMut;
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

    /// One whole packet from `buf`, or `None` until more bytes arrive.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
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

/// Builds a PUBLISH of any QoS through rumqttd's public wire-independent serialisation
/// (its constructor only makes QoS 0).
pub fn make_publish(
    topic: &[u8],
    payload: &[u8],
    qos: u8,
    retain: bool,
    pkid: u16,
) -> protocol::Publish {
    let mut raw = BytesMut::with_capacity(5 + topic.len() + payload.len());
    raw.extend_from_slice(&[0x30 | (qos << 1) | retain as u8]);
    raw.extend_from_slice(&pkid.to_be_bytes());
    raw.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    raw.extend_from_slice(topic);
    raw.extend_from_slice(payload);
    protocol::Publish::deserialize(raw.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn publish_keeps_qos_and_pkid() {
        let p = make_publish(b"a/b", b"hi", 1, false, 7);
        let mut out = BytesMut::new();
        Codec::new(Version::V311, 1024)
            .write(Packet::Publish(p, None), &mut out)
            .unwrap();
        assert_eq!(out[0], 0x32);
    }
}
