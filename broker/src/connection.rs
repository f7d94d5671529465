//! One client connection, from the first byte to the close:
//! CONNECT (bounded by a timeout) → authenticate → take over any older connection of the same
//! client id → resume or start its session → CONNACK → serve → on close publish the Last Will
//! (unless the close was a clean DISCONNECT), keep a persistent session, leave the hub.
//!
//! Serving is one loop over four events: bytes from the client (each packet authorised and
//! routed: requests and presence to the engine, subscriptions into the device's bits), room to
//! write, something new in the outbox (or a kick), and the keep-alive deadline.

use crate::acl::Identity;
use crate::auth::Refusal;
use crate::codec::{
    peek_publish, publish_size, sniff, write_publish, Codec, CodecError, Sniff, Version,
};
use crate::hub::{Out, Peer, Registration};
use crate::outbox::{Close, Msg, Outbox};
use crate::pace::Pace;
use crate::transport::Transport;
use crate::upstream::{Inbound, Kind};
use crate::Shared;
use bytes::BytesMut;
use protocol::topic::{DeviceTopic, Stream, KICK_PREFIX};
use rumqttd::protocol::QoS;
use rumqttd::protocol::{
    ConnAck, ConnAckProperties, ConnectProperties, ConnectReturnCode, Disconnect,
    DisconnectReasonCode, LastWill, Packet, PingResp, PubAck, PubAckReason, PubComp, PubCompReason,
    PubRec, PubRecReason, Publish, SubAck, Subscribe, SubscribeReasonCode, UnsubAck,
    UnsubAckReason, Unsubscribe,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, field, info, info_span, Instrument};

/// QoS 2 publishes a client may have awaiting PUBREL (our Receive Maximum on MQTT 5).
pub const RECEIVE_MAX: u16 = 32;
/// Bytes of encoded packets a connection buffers before it stops taking from its outbox.
const WRITE_HIGH: usize = 64 * 1024;
/// Past this much unwritten output (acks to a client that sends but never reads) the
/// connection stops reading too.
const WRITE_MAX: usize = 256 * 1024;
/// Payload bytes of QoS 1 publishes a client may leave unacknowledged (one always goes, however
/// big): with sync pages of up to ~512 KiB on `rsp`, a count alone would let a device that never
/// sends PUBACK pin tens of MiB.
pub const INFLIGHT_BYTES: usize = 1 << 20;

/// Why the serving loop ended, which decides the Last Will and the session.
#[derive(Debug)]
enum End {
    /// The client sent DISCONNECT (with or without asking for its will).
    Clean { will: bool },
    /// Socket closed, keep-alive expired, protocol error: the will is published.
    Abnormal,
    /// Kicked by a newer connection, a revocation, or a full outbox.
    Kicked(Close),
    /// The server is shutting down.
    Shutdown,
}

pub async fn serve(io: Transport, peer: SocketAddr, shared: Arc<Shared>) {
    let span = info_span!("mqtt", %peer, client_id = field::Empty, v = field::Empty);
    serve_inner(io, peer, shared).instrument(span).await
}

async fn serve_inner(mut io: Transport, peer: SocketAddr, shared: Arc<Shared>) {
    let mut buf = BytesMut::new();
    // The steps before and after serving are boxed: only the serving loop's state stays in
    // every idle connection's task (memory per idle device).
    let connect = timeout(
        shared.config.connect_timeout,
        Box::pin(read_connect(
            &mut io,
            &mut buf,
            shared.config.max_packet_size,
        )),
    )
    .await;
    let (codec, connect) = match connect {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            debug!(error = %e, "no valid CONNECT");
            io.close().await;
            return;
        }
        Err(_) => {
            debug!("CONNECT timed out");
            io.close().await;
            return;
        }
    };
    let Packet::Connect(connect, props, will, _will_props, login) = connect else {
        io.close().await;
        return;
    };
    let span = tracing::Span::current();
    span.record("client_id", connect.client_id.as_str());
    span.record("v", if codec.version == Version::V5 { 5 } else { 4 });

    let identity = match Box::pin(authenticate(
        &shared,
        peer,
        &connect.client_id,
        login,
        will.as_ref(),
    ))
    .await
    {
        Ok(identity) => identity,
        Err(code) => {
            info!(?code, "CONNECT refused");
            Box::pin(refuse(&mut io, &codec, code)).await;
            return;
        }
    };

    let client_id = connect.client_id;
    let outbox = match identity {
        Identity::Device { .. } => {
            Outbox::new(shared.config.outbox_msgs, shared.config.outbox_bytes)
        }
        // A backend takes every device's requests: it is waited for, not dropped.
        Identity::Service => Outbox::new(64 * 1024, 256 << 20),
    };
    let registration = Box::pin(shared.hub.register(&client_id, identity.clone(), outbox)).await;
    let expiry = session_expiry(&shared, &identity, connect.clean_session, props.as_ref());
    let resumed = match connect.clean_session {
        true => {
            shared.hub.resume(&client_id);
            None
        }
        false => shared.hub.resume(&client_id),
    };
    let session_present = resumed.is_some();
    let client_max = props
        .as_ref()
        .and_then(|p| p.receive_maximum)
        .unwrap_or(u16::MAX);
    // MQTT 5: the client's Maximum Packet Size bounds what is sent to it.
    let client_max_packet = props
        .as_ref()
        .and_then(|p| p.max_packet_size)
        .map_or(usize::MAX, |n| n as usize);
    let our_max = match identity {
        Identity::Device { .. } => shared.config.max_inflight,
        Identity::Service => 1000,
    };
    let mut conn = Conn {
        shared: &shared,
        codec,
        client_id: &client_id,
        peer: registration.peer.clone(),
        inflight: Vec::new(),
        max_inflight: usize::from(client_max.clamp(1, our_max)),
        inflight_bytes: 0,
        client_max_packet,
        next_pkid: 0,
        awaiting_rel: Vec::new(),
        will,
        wbuf: BytesMut::new(),
        pace: match identity {
            Identity::Device { .. } if shared.config.device_pacing.is_some() => {
                Some(Pace::new(Instant::now()))
            }
            _ => None,
        },
    };
    let connack_props = (conn.codec.version == Version::V5).then(|| ConnAckProperties {
        max_packet_size: Some(shared.config.max_packet_size as u32),
        receive_max: Some(RECEIVE_MAX),
        retain_available: Some(0),
        shared_subscription_available: Some(u8::from(identity == Identity::Service)),
        wildcard_subscription_available: Some(u8::from(identity == Identity::Service)),
        subscription_identifiers_available: Some(0),
        topic_alias_max: Some(0),
        session_expiry_interval: expiry.map(|e| e.as_secs() as u32),
        ..Default::default()
    });
    let ack = ConnAck {
        session_present,
        code: ConnectReturnCode::Success,
    };
    let _ = conn
        .codec
        .write(Packet::ConnAck(ack, connack_props), &mut conn.wbuf);
    if let Some(stored) = resumed {
        conn.peer.subs.restore(stored.subs);
        for msg in stored.unacked {
            conn.send(msg, true);
        }
    }
    info!(identity = ?identity, session_present, "connected");
    if let Identity::Device { user, device } = &identity {
        Box::pin(shared.presence(user, device, true)).await;
    }

    let end = conn.run(&mut io, buf, connect.keep_alive).await;
    Box::pin(conn.goodbye(end, expiry, &identity, registration, &mut io)).await;
    info!("disconnected");
}

/// Checks the credentials and the Last Will; the CONNACK code on refusal.
async fn authenticate(
    shared: &Shared,
    peer: SocketAddr,
    client_id: &str,
    login: Option<rumqttd::protocol::Login>,
    will: Option<&LastWill>,
) -> Result<Identity, ConnectReturnCode> {
    let bad_id = client_id.is_empty() || client_id.contains(['+', '$', '#', '/']);
    let identity = match (login, bad_id) {
        (_, true) => return Err(ConnectReturnCode::ClientIdentifierNotValid),
        (None, _) => return Err(ConnectReturnCode::BadUserNamePassword),
        (Some(login), _) => {
            let auth = shared.auth.authenticate(
                client_id,
                &login.username,
                &login.password,
                Some(peer.ip()),
            );
            match timeout(shared.config.connect_timeout, auth).await {
                Ok(Ok(identity)) => identity,
                Ok(Err(Refusal::BadCredentials)) => {
                    return Err(ConnectReturnCode::BadUserNamePassword)
                }
                Ok(Err(Refusal::NotAuthorized)) => return Err(ConnectReturnCode::NotAuthorized),
                Ok(Err(Refusal::TooOften)) => {
                    return Err(ConnectReturnCode::ConnectionRateExceeded)
                }
                Ok(Err(Refusal::Unavailable)) | Err(_) => {
                    return Err(ConnectReturnCode::ServiceUnavailable)
                }
            }
        }
    };
    // A will may only go to the device's own presence topic.
    match will {
        Some(w) if !std::str::from_utf8(&w.topic).is_ok_and(|t| identity.may_publish(t)) => {
            Err(ConnectReturnCode::NotAuthorized)
        }
        _ => Ok(identity),
    }
}

async fn refuse(io: &mut Transport, codec: &Codec, code: ConnectReturnCode) {
    // The two versions name "server unavailable" differently (3 vs 0x88); rumqttd's v5
    // writer has no code for the 3.1.1 name.
    let code = match (codec.version, code) {
        (Version::V5, ConnectReturnCode::ServiceUnavailable) => {
            ConnectReturnCode::ServerUnavailable
        }
        // 3.1.1 has no "rate exceeded": "server unavailable" also says "try again later".
        (Version::V311, ConnectReturnCode::ConnectionRateExceeded) => {
            ConnectReturnCode::ServiceUnavailable
        }
        (_, c) => c,
    };
    let mut out = BytesMut::new();
    let ack = ConnAck {
        session_present: false,
        code,
    };
    if codec.write(Packet::ConnAck(ack, None), &mut out).is_ok() {
        let _ = io.write_all(&mut out).await;
    }
    io.close().await;
}

/// How long a device's session outlives its connection, or `None` when it ends with it:
/// MQTT 5's Session Expiry Interval, and for 3.1.1 `clean_session = false`, both capped.
fn session_expiry(
    shared: &Shared,
    identity: &Identity,
    clean: bool,
    props: Option<&ConnectProperties>,
) -> Option<Duration> {
    if *identity == Identity::Service {
        return None;
    }
    let asked = match props {
        Some(p) => Duration::from_secs(u64::from(p.session_expiry_interval.unwrap_or(0))),
        None if clean => Duration::ZERO,
        None => shared.config.max_session_expiry,
    };
    (!asked.is_zero()).then(|| asked.min(shared.config.max_session_expiry))
}

async fn read_connect(
    io: &mut Transport,
    buf: &mut BytesMut,
    max_packet: usize,
) -> Result<(Codec, Packet), CodecError> {
    let closed = || CodecError::Malformed("closed before CONNECT".into());
    let version = loop {
        match sniff(buf)? {
            Sniff::Connect(v) => break v,
            Sniff::NeedMore => {
                if io.read(buf).await.map_err(|_| closed())? == 0 {
                    return Err(closed());
                }
            }
        }
    };
    let mut codec = Codec::new(version, max_packet);
    loop {
        if let Some(packet) = codec.read(buf)? {
            return Ok((codec, packet));
        }
        if io.read(buf).await.map_err(|_| closed())? == 0 {
            return Err(closed());
        }
    }
}

struct Conn<'a> {
    shared: &'a Shared,
    codec: Codec,
    client_id: &'a str,
    peer: Arc<Peer>,
    /// QoS 1 publishes written and not yet acknowledged, oldest first.
    inflight: Vec<(u16, Msg)>,
    max_inflight: usize,
    /// Payload bytes in `inflight`.
    inflight_bytes: usize,
    /// The largest packet the client accepts (its MQTT 5 Maximum Packet Size).
    client_max_packet: usize,
    next_pkid: u16,
    /// QoS 2 publishes taken and waiting for the client's PUBREL.
    awaiting_rel: Vec<u16>,
    will: Option<LastWill>,
    /// Encoded packets not yet written.
    wbuf: BytesMut,
    /// Devices' place against [`crate::BrokerConfig::device_pacing`]; `None` if unpaced.
    pace: Option<Pace>,
}

impl Conn<'_> {
    async fn run(&mut self, io: &mut Transport, mut rbuf: BytesMut, keep_alive: u16) -> End {
        // MQTT: the server closes after 1.5 × keep-alive without a packet.
        let keep_alive = Duration::from_secs(u64::from(keep_alive));
        let grace = keep_alive + keep_alive / 2;
        let mut deadline = Instant::now() + grace;
        // The CONNECT may have arrived with more packets behind it.
        if rbuf.is_empty() {
            rbuf = BytesMut::new();
        } else {
            if let Some(end) = Box::pin(self.packets(&mut rbuf, io)).await {
                return end;
            }
        }
        loop {
            self.fill();
            let (mut reader, mut writer) = io.halves();
            let writing = writer.pending(&self.wbuf);
            let paused = self.paused();
            let reading = self.wbuf.len() < WRITE_MAX && paused.is_none();
            tokio::select! {
                biased;
                _ = self.shared.shutdown.cancelled() => {
                    let bye = self.bye(io, DisconnectReasonCode::ServerShuttingDown, End::Shutdown);
                    return Box::pin(bye).await;
                }
                _ = self.peer.outbox.changed() => {
                    if let Some(why) = self.peer.outbox.closed() {
                        return Box::pin(self.kicked(io, why)).await;
                    }
                }
                w = writer.write(&mut self.wbuf), if writing => {
                    if w.is_err() {
                        return End::Abnormal;
                    }
                }
                r = reader.read(&mut rbuf), if reading => {
                    match r {
                        Ok(0) | Err(_) => return End::Abnormal,
                        Ok(_) => deadline = Instant::now() + grace,
                    }
                    if let Some(end) = Box::pin(self.packets(&mut rbuf, io)).await {
                        return end;
                    }
                }
                _ = sleep_until(paused.unwrap_or(deadline)), if paused.is_some() => {
                    // Its next packet is due: the ones already read first.
                    if let Some(end) = Box::pin(self.packets(&mut rbuf, io)).await {
                        return end;
                    }
                }
                _ = sleep_until(deadline), if !grace.is_zero() => {
                    debug!("keep-alive expired");
                    let bye = self.bye(io, DisconnectReasonCode::KeepAliveTimeout, End::Abnormal);
                    return Box::pin(bye).await;
                }
            }
        }
    }

    /// Handles every whole packet in `rbuf`.
    async fn packets(&mut self, rbuf: &mut BytesMut, io: &mut Transport) -> Option<End> {
        loop {
            if self.paused().is_some() {
                break;
            }
            let front = peek_publish(rbuf);
            match self.codec.read(rbuf) {
                Ok(None) => break,
                Ok(Some(packet)) => {
                    self.count(&packet);
                    if let Some(end) = self.inbound(packet, front).await {
                        // Bounded: a client that stopped reading does not hold the goodbye.
                        let flush = io.write_all(&mut self.wbuf);
                        let _ = timeout(Duration::from_secs(1), flush).await;
                        return Some(end);
                    }
                }
                Err(CodecError::TooLarge(n)) => {
                    info!(bytes = n, "packet over the size limit");
                    let end = End::Abnormal;
                    return Some(
                        self.bye(io, DisconnectReasonCode::PacketTooLarge, end)
                            .await,
                    );
                }
                Err(e) => {
                    info!(error = %e, "malformed packet");
                    let end = End::Abnormal;
                    return Some(
                        self.bye(io, DisconnectReasonCode::MalformedPacket, end)
                            .await,
                    );
                }
            }
        }
        if rbuf.is_empty() {
            // Give an idle connection's memory back.
            *rbuf = BytesMut::new();
        }
        None
    }

    /// Until when a paced device's connection is not read, if its burst is spent.
    fn paused(&self) -> Option<Instant> {
        let pacing = self.shared.config.device_pacing.as_ref()?;
        self.pace.as_ref()?.paused_until(pacing, Instant::now())
    }

    /// Counts a packet that asks for work against the device's pace.
    fn count(&mut self, packet: &Packet) {
        let (Some(pacing), Some(pace)) = (&self.shared.config.device_pacing, &mut self.pace) else {
            return;
        };
        if matches!(
            packet,
            Packet::Publish(..) | Packet::Subscribe(..) | Packet::Unsubscribe(..)
        ) {
            pace.take(pacing, Instant::now());
        }
    }

    /// Moves queued publishes into the write buffer while the client's inflight window and
    /// the buffer have room.
    fn fill(&mut self) {
        while self.wbuf.len() < WRITE_HIGH
            && self.inflight.len() < self.max_inflight
            && (self.inflight.is_empty() || self.inflight_bytes < INFLIGHT_BYTES)
        {
            let Some(msg) = self.peer.outbox.pop() else {
                break;
            };
            self.send(msg, false);
        }
    }

    fn send(&mut self, msg: Msg, dup: bool) {
        let v = self.codec.version;
        let size = publish_size(v, msg.topic.len(), msg.payload.len(), msg.qos);
        if size > self.client_max_packet {
            // MQTT 5 (3.1.2.11.4): discarded as if delivered. For an update that is a gap
            // in the device's useqs, which it fills with `sync`.
            debug!(
                bytes = size,
                max = self.client_max_packet,
                "publish over the client's maximum packet size: discarded"
            );
            return;
        }
        let pkid = match msg.qos {
            0 => 0,
            _ => self.pkid(),
        };
        write_publish(
            &mut self.wbuf,
            v,
            &msg.topic,
            &msg.payload,
            msg.qos,
            pkid,
            dup,
        );
        if msg.qos > 0 {
            self.inflight_bytes += msg.payload.len();
            self.inflight.push((pkid, msg));
        }
    }

    /// A packet id not in use by an unacknowledged publish.
    fn pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            if !self.inflight.iter().any(|(p, _)| *p == self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    async fn kicked(&mut self, io: &mut Transport, why: Close) -> End {
        let reason = match why {
            Close::Revoked => DisconnectReasonCode::NotAuthorized,
            Close::TakenOver => DisconnectReasonCode::SessionTakenOver,
            Close::Slow => DisconnectReasonCode::QuotaExceeded,
        };
        self.bye(io, reason, End::Kicked(why)).await
    }

    /// Tells an MQTT 5 client why it is being closed (3.1.1 has no server DISCONNECT).
    async fn bye(&mut self, io: &mut Transport, reason: DisconnectReasonCode, end: End) -> End {
        if self.codec.version == Version::V5 {
            let bye = Disconnect {
                reason_code: reason,
            };
            let _ = self
                .codec
                .write(Packet::Disconnect(bye, None), &mut self.wbuf);
        }
        // Bounded: a client that stopped reading does not hold the goodbye.
        let _ = timeout(Duration::from_secs(1), io.write_all(&mut self.wbuf)).await;
        end
    }

    /// One packet from the client. Returns `Some` when the connection must end.
    async fn inbound(&mut self, packet: Packet, front: Option<(u8, u16, bool)>) -> Option<End> {
        match packet {
            Packet::Publish(publish, _) => {
                let (qos, pkid, _dup) = front.unwrap_or((0, 0, false));
                self.publish(publish, qos, pkid).await
            }
            Packet::PubAck(ack, _) => {
                if let Some(i) = self.inflight.iter().position(|(p, _)| *p == ack.pkid) {
                    let (_, msg) = self.inflight.remove(i);
                    self.inflight_bytes -= msg.payload.len();
                }
                None
            }
            Packet::PubRel(rel, _) => {
                let known = self.awaiting_rel.iter().position(|p| *p == rel.pkid);
                let reason = match known {
                    Some(i) => {
                        self.awaiting_rel.swap_remove(i);
                        PubCompReason::Success
                    }
                    None => PubCompReason::PacketIdentifierNotFound,
                };
                let comp = PubComp {
                    pkid: rel.pkid,
                    reason,
                };
                self.write(Packet::PubComp(comp, None));
                None
            }
            Packet::Subscribe(subscribe, _) => {
                self.subscribe(subscribe);
                None
            }
            Packet::Unsubscribe(unsubscribe, _) => {
                self.unsubscribe(unsubscribe);
                None
            }
            Packet::PingReq(_) => {
                self.write(Packet::PingResp(PingResp));
                None
            }
            Packet::Disconnect(disconnect, _) => {
                let will =
                    disconnect.reason_code == DisconnectReasonCode::DisconnectWithWillMessage;
                Some(End::Clean { will })
            }
            // Courier never sends QoS 2, so PUBREC/PUBCOMP from a client answer nothing.
            Packet::PubRec(..) | Packet::PubComp(..) => None,
            other => {
                info!(packet = ?other, "unexpected packet from client");
                Some(End::Abnormal)
            }
        }
    }

    fn write(&mut self, packet: Packet) {
        if let Err(e) = self.codec.write(packet, &mut self.wbuf) {
            info!(error = %e, "cannot encode a packet for the client");
        }
    }

    async fn publish(&mut self, publish: Publish, qos: u8, pkid: u16) -> Option<End> {
        if qos == 2 && self.awaiting_rel.contains(&pkid) {
            // A resend of a QoS 2 publish already taken: acknowledge it again, once.
            self.pubrec(pkid, PubRecReason::Success);
            return None;
        }
        if qos == 2 && self.awaiting_rel.len() >= usize::from(RECEIVE_MAX) {
            info!("QoS 2 publishes past the receive maximum without PUBREL");
            if self.codec.version == Version::V5 {
                let bye = Disconnect {
                    reason_code: DisconnectReasonCode::ReceiveMaximumExceeded,
                };
                self.write(Packet::Disconnect(bye, None));
            }
            return Some(End::Abnormal);
        }
        let allowed = match self.route(publish).await {
            Routed::Done => true,
            Routed::Refused => false,
            Routed::Closing(end) => return Some(end),
        };
        let v5 = self.codec.version == Version::V5;
        match (qos, allowed) {
            (1, true) => {
                let ack = PubAck {
                    pkid,
                    reason: PubAckReason::Success,
                };
                self.write(Packet::PubAck(ack, None));
            }
            // 3.1.1 has no refusal code: the PUBLISH is acknowledged and dropped.
            (1, false) => {
                let reason = match v5 {
                    true => PubAckReason::NotAuthorized,
                    false => PubAckReason::Success,
                };
                self.write(Packet::PubAck(PubAck { pkid, reason }, None));
            }
            (2, true) => {
                self.awaiting_rel.push(pkid);
                self.pubrec(pkid, PubRecReason::Success);
            }
            (2, false) if v5 => self.pubrec(pkid, PubRecReason::NotAuthorized),
            (2, false) => return Some(End::Abnormal),
            _ => {}
        }
        None
    }

    fn pubrec(&mut self, pkid: u16, reason: PubRecReason) {
        self.write(Packet::PubRec(PubRec { pkid, reason }, None));
    }

    /// Sends an authorised publish where it goes; waits while the engine's queue is full.
    async fn route(&mut self, publish: Publish) -> Routed {
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return Routed::Refused;
        };
        let identity = &self.peer.identity;
        if !identity.may_publish(topic) {
            info!(topic = %topic.chars().take(200).collect::<String>(), "PUBLISH refused");
            return Routed::Refused;
        }
        if let Some(device) = topic.strip_prefix(KICK_PREFIX) {
            // Only the service identity gets here (a device may publish on its own topics only).
            let was = self.shared.hub.kick(device, Close::Revoked);
            info!(device, connected = was, "kick requested by a backend");
            return Routed::Done;
        }
        let Ok(parsed) = DeviceTopic::parse(topic) else {
            return Routed::Done; // a service publishing elsewhere: nobody reads it
        };
        let kind = match parsed.stream {
            Stream::Req(op) => Kind::Request(op),
            Stream::Presence => Kind::Presence,
            out => {
                let out = match out {
                    Stream::In => Out::In,
                    Stream::Rsp => Out::Rsp,
                    _ => Out::Eph,
                };
                let (user, device) = (parsed.user.as_str(), parsed.device.as_str());
                self.shared.hub.deliver(user, device, out, publish.payload);
                return Routed::Done;
            }
        };
        let msg = Inbound {
            user: parsed.user.into_string(),
            device: parsed.device.into_string(),
            kind,
            topic: publish.topic,
            payload: publish.payload,
        };
        // The engine's queue may be full: wait, reading nothing more from this client, but
        // still leave at once when kicked or at shutdown.
        let outbox = &self.peer.outbox;
        tokio::select! {
            _ = self.shared.to_engine(msg) => Routed::Done,
            _ = async { while outbox.closed().is_none() { outbox.changed().await } } => {
                Routed::Closing(End::Kicked(outbox.closed().unwrap_or(Close::TakenOver)))
            }
            _ = self.shared.shutdown.cancelled() => Routed::Closing(End::Shutdown),
        }
    }

    fn subscribe(&mut self, subscribe: Subscribe) {
        let refused = match self.codec.version {
            Version::V5 => SubscribeReasonCode::NotAuthorized,
            Version::V311 => SubscribeReasonCode::Failure,
        };
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        for f in &subscribe.filters {
            let granted = match &self.peer.identity {
                Identity::Device { .. } if self.peer.identity.may_subscribe(&f.path) => {
                    device_stream(&f.path).map(|s| {
                        let qos = (f.qos as u8).min(s.qos());
                        self.peer.subs.set(s, Some(qos));
                        qos
                    })
                }
                Identity::Service => {
                    // Backends take requests and presence at QoS 1.
                    self.shared
                        .services
                        .subscribe(&self.peer, &f.path)
                        .then_some(1)
                }
                Identity::Device { .. } => None,
            };
            codes.push(match granted {
                Some(0) => SubscribeReasonCode::Success(QoS::AtMostOnce),
                Some(_) => SubscribeReasonCode::Success(QoS::AtLeastOnce),
                None => {
                    info!(filter = %f.path.chars().take(200).collect::<String>(), "SUBSCRIBE refused");
                    refused
                }
            });
        }
        let ack = SubAck {
            pkid: subscribe.pkid,
            return_codes: codes,
        };
        self.write(Packet::SubAck(ack, None));
    }

    fn unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for f in &unsubscribe.filters {
            let had = match &self.peer.identity {
                Identity::Device { .. } => match device_stream(f) {
                    Some(s) if self.peer.identity.may_subscribe(f) => {
                        let had = self.peer.subs.granted(s).is_some();
                        self.peer.subs.set(s, None);
                        had
                    }
                    _ => false,
                },
                Identity::Service => self.shared.services.unsubscribe(&self.peer, f),
            };
            reasons.push(match had {
                true => UnsubAckReason::Success,
                false => UnsubAckReason::NoSubscriptionExisted,
            });
        }
        let ack = UnsubAck {
            pkid: unsubscribe.pkid,
            reasons,
        };
        self.write(Packet::UnsubAck(ack, None));
    }

    /// After the loop: the will (if due), the session (if persistent), presence offline, and
    /// for a backend, its untaken requests to another backend. Then a successor may start.
    async fn goodbye(
        &mut self,
        end: End,
        expiry: Option<Duration>,
        identity: &Identity,
        registration: Registration,
        io: &mut Transport,
    ) {
        debug!(?end, "connection ends");
        let will_due = matches!(
            end,
            End::Abnormal | End::Clean { will: true } | End::Kicked(Close::Slow)
        );
        if let (true, Some(will)) = (will_due, self.will.take()) {
            self.publish_will(will).await;
        }
        self.peer.outbox.close(Close::TakenOver);
        let unacked: Vec<Msg> = self.inflight.drain(..).map(|(_, m)| m).collect();
        self.inflight_bytes = 0;
        match identity {
            Identity::Device { user, device } => {
                if let Some(expiry) = expiry {
                    let subs = self.peer.subs.bits();
                    self.shared.hub.keep(self.client_id, subs, unacked, expiry);
                }
                // "offline" goes out before a successor may say "online", so the two never cross.
                self.shared.presence(user, device, false).await;
            }
            Identity::Service => {
                self.shared.services.remove(&self.peer);
                let left = unacked.into_iter().chain(self.peer.outbox.take_all());
                let mut moved = 0;
                for msg in left {
                    moved += self.shared.redispatch(msg).await;
                }
                if moved > 0 {
                    info!(
                        requests = moved,
                        "handed a departed backend's requests to the others"
                    );
                }
            }
        }
        self.shared.hub.unregister(self.client_id, &self.peer);
        drop(registration);
        io.close().await;
    }

    async fn publish_will(&mut self, will: LastWill) {
        // Authorised at CONNECT: the device's own presence topic. Never retained.
        let publish = Publish::new(will.topic, will.message, false);
        if let Routed::Closing(_) = self.route(publish).await {
            debug!("last will not delivered: shutting down");
        }
    }
}

enum Routed {
    Done,
    Refused,
    Closing(End),
}

/// The stream of an exact device topic a device may subscribe to.
fn device_stream(filter: &str) -> Option<Out> {
    match DeviceTopic::parse(filter).ok()?.stream {
        Stream::In => Some(Out::In),
        Stream::Rsp => Some(Out::Rsp),
        Stream::Eph => Some(Out::Eph),
        _ => None,
    }
}
