//! One client connection, from the first byte to the close:
//! CONNECT (bounded by a timeout) → authenticate → take over any older session of the same
//! client id → link into the router → CONNACK → relay packets both ways, authorising every
//! SUBSCRIBE and PUBLISH on the way in → on close publish the Last Will (if the close was not
//! a clean DISCONNECT) and leave the router.
//!
//! The router lives on its own thread; this task talks to it through `LinkTx`/`LinkRx`.

use crate::acl::Identity;
use crate::auth::Refusal;
use crate::codec::{make_publish, sniff, Codec, CodecError, Sniff, Version};
use crate::registry::Kick;
use crate::transport::Transport;
use crate::Shared;
use bytes::BytesMut;
use futures_util::FutureExt;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{
    ConnAck, ConnAckProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode, LastWill,
    Packet, PingResp, PubAck, PubAckReason, PubRec, PubRecReason, SubAck, Subscribe,
    SubscribeReasonCode,
};
use rumqttd::Notification;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, field, info, info_span, warn, Instrument};

/// Why the relay loop ended, which decides the Last Will and the router goodbye.
enum End {
    /// The client sent DISCONNECT (with or without asking for its will).
    Clean { will: bool },
    /// Socket closed, keep-alive expired, protocol error: the will is published.
    Abnormal,
    /// Kicked by a newer connection or a revocation: no will.
    Kicked,
    /// The router dropped the link itself; it already forgot the connection.
    RouterGone,
    /// The server is shutting down.
    Shutdown,
}

pub async fn serve(io: Transport, peer: SocketAddr, shared: Arc<Shared>) {
    let span = info_span!("mqtt", %peer, client_id = field::Empty, v = field::Empty);
    serve_inner(io, shared).instrument(span).await
}

async fn serve_inner(mut io: Transport, shared: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(4096);
    let connect = timeout(
        shared.config.connect_timeout,
        read_connect(&mut io, &mut buf, shared.config.max_packet_size),
    )
    .await;
    let (mut codec, connect) = match connect {
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
    let Packet::Connect(connect, _props, will, _will_props, login) = connect else {
        io.close().await;
        return;
    };
    let span = tracing::Span::current();
    span.record("client_id", connect.client_id.as_str());
    span.record("v", if codec.version == Version::V5 { 5 } else { 4 });

    // Authenticate.
    let refusal = |code: Refusal| match code {
        Refusal::BadCredentials => ConnectReturnCode::BadUserNamePassword,
        Refusal::NotAuthorized => ConnectReturnCode::NotAuthorized,
        Refusal::Unavailable => ConnectReturnCode::ServiceUnavailable,
    };
    // The router refuses these ids (and one is the broker's own link).
    let bad_id = connect.client_id.is_empty()
        || connect.client_id.contains(['+', '$', '#', '/'])
        || connect.client_id == crate::system::SYSTEM_CLIENT_ID;
    let identity = match (&login, bad_id) {
        (_, true) => Err(ConnectReturnCode::ClientIdentifierNotValid),
        (None, _) => Err(ConnectReturnCode::BadUserNamePassword),
        (Some(login), _) => {
            let auth =
                shared
                    .auth
                    .authenticate(&connect.client_id, &login.username, &login.password);
            match timeout(shared.config.connect_timeout, auth).await {
                Ok(Ok(identity)) => Ok(identity),
                Ok(Err(r)) => Err(refusal(r)),
                Err(_) => Err(ConnectReturnCode::ServiceUnavailable),
            }
        }
    };
    // A will may only go to the device's own presence topic.
    let identity = identity.and_then(|id| match &will {
        Some(w) if !std::str::from_utf8(&w.topic).is_ok_and(|t| id.may_publish(t)) => {
            Err(ConnectReturnCode::NotAuthorized)
        }
        _ => Ok(id),
    });
    let identity = match identity {
        Ok(identity) => identity,
        Err(code) => {
            info!(?code, "CONNECT refused");
            let mut out = BytesMut::new();
            // The two versions name "server unavailable" differently (3 vs 0x88); rumqttd's
            // v5 writer has no code for the 3.1.1 name.
            let code = match (codec.version, code) {
                (Version::V5, ConnectReturnCode::ServiceUnavailable) => {
                    ConnectReturnCode::ServerUnavailable
                }
                (_, c) => c,
            };
            let ack = ConnAck {
                session_present: false,
                code,
            };
            if codec.write(Packet::ConnAck(ack, None), &mut out).is_ok() {
                let _ = io.write(out.freeze()).await;
            }
            io.close().await;
            return;
        }
    };

    let client_id = connect.client_id.clone();
    let mut registration = shared.registry.register(&client_id).await;
    let make_link = shared.make_link.clone();
    let clean = connect.clean_session;
    let link_client_id = client_id.clone();
    let link = tokio::task::spawn_blocking(move || make_link(&link_client_id, clean)).await;
    let (mut link_tx, mut link_rx, connack) = match link {
        Ok(Ok(link)) => link,
        other => {
            warn!(error = ?other.err(), "router refused the link");
            shared.registry.unregister(&client_id, registration.serial);
            io.close().await;
            return;
        }
    };
    let session_present = match Option::<Packet>::from(connack) {
        Some(Packet::ConnAck(ack, _)) => ack.session_present,
        _ => false,
    };
    let props = (codec.version == Version::V5).then(|| ConnAckProperties {
        max_packet_size: Some(shared.config.max_packet_size as u32),
        retain_available: Some(1),
        shared_subscription_available: Some(u8::from(identity == Identity::Service)),
        wildcard_subscription_available: Some(u8::from(identity == Identity::Service)),
        topic_alias_max: Some(0),
        ..Default::default()
    });
    let mut out = BytesMut::new();
    let ack = ConnAck {
        session_present,
        code: ConnectReturnCode::Success,
    };
    let _ = codec.write(Packet::ConnAck(ack, props), &mut out);
    info!(identity = ?identity, clean, "connected");
    if let Identity::Device { user, device } = &identity {
        shared.system.presence(user, device, true).await;
    }

    let mut relay = Relay {
        codec: &mut codec,
        identity: &identity,
        link_tx: &mut link_tx,
        pending_subacks: HashMap::new(),
        will,
        keep_alive: Duration::from_secs(u64::from(connect.keep_alive)),
    };
    let end = relay
        .run(
            &mut io,
            &mut buf,
            out,
            &mut link_rx,
            &mut registration.kicked,
            &shared,
        )
        .await;

    // Goodbye: will first (if due), then leave the router, then let a successor in.
    let will = relay.will.take();
    match end {
        End::Abnormal | End::Clean { will: true } => {
            if let Some(will) = will {
                publish_will(&mut link_tx, will).await;
            }
        }
        _ => {}
    }
    if !matches!(end, End::RouterGone) {
        let bye = Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
        };
        let _ = link_tx.send(Packet::Disconnect(bye, None)).await;
    }
    // "offline" goes out before a successor may say "online", so the two never cross.
    if let Identity::Device { user, device } = &identity {
        shared.system.presence(user, device, false).await;
    }
    shared.registry.unregister(&client_id, registration.serial);
    drop(registration);
    io.close().await;
    info!("disconnected");
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

async fn publish_will(link_tx: &mut LinkTx, will: LastWill) {
    let qos = will.qos as u8;
    let publish = make_publish(&will.topic, &will.message, qos.min(1), will.retain, 1);
    if let Err(e) = link_tx.send(Packet::Publish(publish, None)).await {
        warn!(error = %e, "last will not published");
    }
}

/// QoS and packet id of the PUBLISH at the front of `buf` (rumqttd keeps them private).
fn peek_publish(buf: &[u8]) -> Option<(u8, u16)> {
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
    Some((qos, pkid))
}

struct Relay<'a> {
    codec: &'a mut Codec,
    identity: &'a Identity,
    link_tx: &'a mut LinkTx,
    /// SUBSCRIBEs with refused filters: packet id → the codes of refused positions
    /// (`None` where the router decides), merged into the router's SUBACK.
    pending_subacks: HashMap<u16, Vec<Option<SubscribeReasonCode>>>,
    will: Option<LastWill>,
    keep_alive: Duration,
}

impl Relay<'_> {
    async fn run(
        &mut self,
        io: &mut Transport,
        buf: &mut BytesMut,
        mut out: BytesMut,
        link_rx: &mut LinkRx,
        kicked: &mut tokio::sync::oneshot::Receiver<Kick>,
        shared: &Shared,
    ) -> End {
        // MQTT: the server closes after 1.5 × keep-alive without a packet.
        let grace = self.keep_alive + self.keep_alive / 2;
        let mut deadline = Instant::now() + grace;
        loop {
            if !out.is_empty() && io.write(out.split().freeze()).await.is_err() {
                return End::Abnormal;
            }
            let keep_alive = async {
                if grace.is_zero() {
                    std::future::pending::<()>().await
                } else {
                    sleep_until(deadline).await
                }
            };
            tokio::select! {
                why = &mut *kicked => {
                    let reason = match why {
                        Ok(Kick::Revoked) => DisconnectReasonCode::NotAuthorized,
                        _ => DisconnectReasonCode::SessionTakenOver,
                    };
                    self.say_disconnect(io, reason).await;
                    return End::Kicked;
                }
                _ = shared.shutdown.cancelled() => {
                    self.say_disconnect(io, DisconnectReasonCode::ServerShuttingDown).await;
                    return End::Shutdown;
                }
                _ = keep_alive => {
                    debug!("keep-alive expired");
                    self.say_disconnect(io, DisconnectReasonCode::KeepAliveTimeout).await;
                    return End::Abnormal;
                }
                read = io.read(buf) => {
                    match read {
                        Ok(0) | Err(_) => return End::Abnormal,
                        Ok(_) => deadline = Instant::now() + grace,
                    }
                    loop {
                        let front = peek_publish(buf);
                        match self.codec.read(buf) {
                            Ok(None) => break,
                            Ok(Some(packet)) => {
                                if let Some(end) = self.inbound(packet, front, &mut out).await {
                                    if !out.is_empty() {
                                        let _ = io.write(out.split().freeze()).await;
                                    }
                                    return end;
                                }
                            }
                            Err(CodecError::TooLarge(n)) => {
                                info!(bytes = n, "packet over the size limit");
                                self.say_disconnect(io, DisconnectReasonCode::PacketTooLarge).await;
                                return End::Abnormal;
                            }
                            Err(e) => {
                                info!(error = %e, "malformed packet");
                                self.say_disconnect(io, DisconnectReasonCode::MalformedPacket).await;
                                return End::Abnormal;
                            }
                        }
                    }
                }
                notification = link_rx.next() => {
                    let mut next = notification;
                    let mut unscheduled = false;
                    // Drain what the router already queued, then write it in one go.
                    for _ in 0..256 {
                        match next {
                            Err(_) => return End::RouterGone,
                            Ok(None) => {}
                            Ok(Some(Notification::Unschedule)) => unscheduled = true,
                            Ok(Some(n)) => {
                                if let Some(end) = self.outbound(n, &mut out) {
                                    let _ = io.write(out.split().freeze()).await;
                                    return end;
                                }
                            }
                        }
                        match link_rx.next().now_or_never() {
                            Some(n) => next = n,
                            None => break,
                        }
                    }
                    if unscheduled {
                        if !out.is_empty() && io.write(out.split().freeze()).await.is_err() {
                            return End::Abnormal;
                        }
                        if link_rx.wake().await.is_err() {
                            return End::RouterGone;
                        }
                    }
                }
            }
        }
    }

    async fn say_disconnect(&mut self, io: &mut Transport, reason: DisconnectReasonCode) {
        if self.codec.version == Version::V5 {
            let mut out = BytesMut::new();
            let bye = Disconnect {
                reason_code: reason,
            };
            if self
                .codec
                .write(Packet::Disconnect(bye, None), &mut out)
                .is_ok()
            {
                let _ = io.write(out.freeze()).await;
            }
        }
    }

    async fn forward(&mut self, packet: Packet) -> Option<End> {
        match self.link_tx.send(packet).await {
            Ok(_) => None,
            Err(_) => Some(End::RouterGone),
        }
    }

    /// One packet from the client. Returns `Some` when the connection must end.
    async fn inbound(
        &mut self,
        packet: Packet,
        front: Option<(u8, u16)>,
        out: &mut BytesMut,
    ) -> Option<End> {
        match packet {
            Packet::Publish(mut publish, props) => {
                let allowed =
                    std::str::from_utf8(&publish.topic).is_ok_and(|t| self.identity.may_publish(t));
                if allowed {
                    if *self.identity != Identity::Service {
                        // Devices only send requests; a retained request would replay.
                        publish.retain = false;
                    }
                    return self.forward(Packet::Publish(publish, props)).await;
                }
                let (qos, pkid) = front.unwrap_or((0, 0));
                info!(topic = %String::from_utf8_lossy(&publish.topic), qos, "PUBLISH refused");
                match qos {
                    // 3.1.1 has no refusal code: the PUBLISH is acknowledged and dropped.
                    1 => {
                        let reason = match self.codec.version {
                            Version::V5 => PubAckReason::NotAuthorized,
                            Version::V311 => PubAckReason::Success,
                        };
                        let _ = self
                            .codec
                            .write(Packet::PubAck(PubAck { pkid, reason }, None), out);
                        None
                    }
                    2 if self.codec.version == Version::V5 => {
                        let rec = PubRec {
                            pkid,
                            reason: PubRecReason::NotAuthorized,
                        };
                        let _ = self.codec.write(Packet::PubRec(rec, None), out);
                        None
                    }
                    2 => Some(End::Abnormal),
                    _ => None,
                }
            }
            Packet::Subscribe(subscribe, props) => self.subscribe(subscribe, props, out).await,
            Packet::PingReq(_) => {
                let _ = self.codec.write(Packet::PingResp(PingResp), out);
                None
            }
            Packet::Disconnect(disconnect, _) => {
                let will =
                    disconnect.reason_code == DisconnectReasonCode::DisconnectWithWillMessage;
                Some(End::Clean { will })
            }
            p @ (Packet::PubAck(..)
            | Packet::PubRec(..)
            | Packet::PubRel(..)
            | Packet::PubComp(..)
            | Packet::Unsubscribe(..)) => self.forward(p).await,
            other => {
                info!(packet = ?other, "unexpected packet from client");
                Some(End::Abnormal)
            }
        }
    }

    async fn subscribe(
        &mut self,
        mut subscribe: Subscribe,
        props: Option<rumqttd::protocol::SubscribeProperties>,
        out: &mut BytesMut,
    ) -> Option<End> {
        let refused_code = match self.codec.version {
            Version::V5 => SubscribeReasonCode::NotAuthorized,
            Version::V311 => SubscribeReasonCode::Failure,
        };
        let codes: Vec<Option<SubscribeReasonCode>> = subscribe
            .filters
            .iter()
            .map(|f| (!self.identity.may_subscribe(&f.path)).then_some(refused_code))
            .collect();
        if codes.iter().all(Option::is_none) {
            return self.forward(Packet::Subscribe(subscribe, props)).await;
        }
        for (f, c) in subscribe.filters.iter().zip(&codes) {
            if c.is_some() {
                info!(filter = %f.path, "SUBSCRIBE refused");
            }
        }
        if codes.iter().all(Option::is_some) {
            let ack = SubAck {
                pkid: subscribe.pkid,
                return_codes: codes.into_iter().flatten().collect(),
            };
            let _ = self.codec.write(Packet::SubAck(ack, None), out);
            return None;
        }
        let mut keep = codes.iter().map(Option::is_none);
        subscribe.filters.retain(|_| keep.next().unwrap_or(false));
        self.pending_subacks.insert(subscribe.pkid, codes);
        self.forward(Packet::Subscribe(subscribe, props)).await
    }

    /// One notification from the router. Returns `Some` when the connection must end.
    fn outbound(&mut self, notification: Notification, out: &mut BytesMut) -> Option<End> {
        let packet = Option::<Packet>::from(notification)?;
        let packet = match packet {
            Packet::SubAck(mut ack, props) => {
                if let Some(codes) = self.pending_subacks.remove(&ack.pkid) {
                    let mut granted = ack.return_codes.into_iter();
                    ack.return_codes = codes
                        .into_iter()
                        .map(|c| {
                            c.or_else(|| granted.next())
                                .unwrap_or(SubscribeReasonCode::Failure)
                        })
                        .collect();
                }
                Packet::SubAck(ack, props)
            }
            Packet::Disconnect(d, p) => {
                if self.codec.version == Version::V5 {
                    let _ = self.codec.write(Packet::Disconnect(d, p), out);
                }
                return Some(End::RouterGone);
            }
            other => other,
        };
        if let Err(e) = self.codec.write(packet, out) {
            warn!(error = %e, "cannot encode packet for client");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::peek_publish;

    #[test]
    fn peeks_qos_and_pkid() {
        // PUBLISH qos1, topic "a/b", pkid 0x0102, payload "x"
        let raw = [0x32, 8, 0, 3, b'a', b'/', b'b', 1, 2, b'x'];
        assert_eq!(peek_publish(&raw), Some((1, 0x0102)));
        let raw0 = [0x30, 6, 0, 3, b'a', b'/', b'b', b'x'];
        assert_eq!(peek_publish(&raw0), Some((0, 0)));
        assert_eq!(peek_publish(&[0x82, 0]), None);
    }
}
