//! A connection's bounded outbox: the publishes the edge routed to one connection, waiting for
//! that connection's task to write them.
//!
//! Enqueueing for a device never waits: a full outbox means the device stopped reading, so it
//! is closed (it catches up with `sync` when it is back) and nobody else is slowed. A service
//! (a backend in another process) is waited for instead: a full service outbox stops the
//! devices feeding it from being read, which is TCP backpressure all the way to the phones.
//! An idle outbox holds no allocation.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// One PUBLISH to write: topic and payload are shared, never copied per connection.
#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: Bytes,
    pub payload: Bytes,
    /// 0 or 1: Courier never delivers QoS 2.
    pub qos: u8,
}

impl Msg {
    /// What the message counts against the outbox's byte bound.
    fn cost(&self) -> usize {
        self.topic.len() + self.payload.len() + 32
    }
}

/// Why an outbox was closed: the connection ends with the matching reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// The same client id connected again.
    TakenOver,
    /// The device was revoked.
    Revoked,
    /// Its outbox was full: the device stopped reading.
    Slow,
}

pub enum Push {
    Queued,
    /// The bound was reached; the message is handed back.
    Full(Msg),
    /// The connection is closing; the message is handed back.
    Closed(Msg),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Msg>,
    bytes: usize,
    closed: Option<Close>,
}

pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the connection's task: something was queued, or the outbox was closed.
    wake: Notify,
    /// Wakes whoever waits for room (only services are waited for).
    room: Notify,
    max_msgs: usize,
    max_bytes: usize,
}

impl Outbox {
    pub fn new(max_msgs: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::default(),
            wake: Notify::new(),
            room: Notify::new(),
            max_msgs,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `msg` unless the outbox is full or closed.
    pub fn push(&self, msg: Msg) -> Push {
        let mut s = self.lock();
        if s.closed.is_some() {
            return Push::Closed(msg);
        }
        let cost = msg.cost();
        // One message always fits, whatever its size, so a big answer is never refused alone.
        if !s.queue.is_empty()
            && (s.queue.len() >= self.max_msgs || s.bytes + cost > self.max_bytes)
        {
            return Push::Full(msg);
        }
        s.bytes += cost;
        s.queue.push_back(msg);
        drop(s);
        self.wake.notify_one();
        Push::Queued
    }

    /// Queues `msg`, waiting for room; hands it back if the outbox is (or gets) closed.
    pub async fn push_wait(&self, mut msg: Msg) -> Result<(), Msg> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.push(msg) {
                Push::Queued => return Ok(()),
                Push::Closed(m) => return Err(m),
                Push::Full(m) => msg = m,
            }
            room.await;
        }
    }

    /// The oldest queued message.
    pub fn pop(&self) -> Option<Msg> {
        let mut s = self.lock();
        let msg = s.queue.pop_front()?;
        s.bytes -= msg.cost();
        if s.queue.is_empty() {
            // Give an idle connection's memory back.
            s.queue = VecDeque::new();
        }
        drop(s);
        self.room.notify_waiters();
        Some(msg)
    }

    /// Closes the outbox; the first reason wins. Returns whether this call closed it.
    pub fn close(&self, why: Close) -> bool {
        let mut s = self.lock();
        if s.closed.is_some() {
            return false;
        }
        s.closed = Some(why);
        drop(s);
        self.wake.notify_one();
        self.room.notify_waiters();
        true
    }

    pub fn closed(&self) -> Option<Close> {
        self.lock().closed
    }

    /// Takes everything still queued (a closing service's requests go to another backend).
    pub fn take_all(&self) -> Vec<Msg> {
        let mut s = self.lock();
        s.bytes = 0;
        let all = std::mem::take(&mut s.queue).into();
        drop(s);
        self.room.notify_waiters();
        all
    }

    /// Resolves once something was queued or the outbox was closed since the last call.
    pub async fn changed(&self) {
        self.wake.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> Msg {
        Msg {
            topic: Bytes::from_static(b"t"),
            payload: Bytes::from(vec![0; n]),
            qos: 1,
        }
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let o = Outbox::new(2, 1000);
        assert!(matches!(o.push(msg(1)), Push::Queued));
        assert!(matches!(o.push(msg(1)), Push::Queued));
        assert!(matches!(o.push(msg(1)), Push::Full(_)));
        o.pop();
        assert!(matches!(o.push(msg(2000)), Push::Full(_)));
        o.pop();
        // Alone, a big message fits.
        assert!(matches!(o.push(msg(2000)), Push::Queued));
        assert!(o.close(Close::Slow));
        assert!(!o.close(Close::Revoked));
        assert!(matches!(o.push(msg(1)), Push::Closed(_)));
        assert_eq!(o.closed(), Some(Close::Slow));
    }

    #[tokio::test]
    async fn waiting_for_room() {
        let o = std::sync::Arc::new(Outbox::new(1, 1000));
        o.push_wait(msg(1)).await.unwrap();
        let o2 = o.clone();
        let waiter = tokio::spawn(async move { o2.push_wait(msg(1)).await.is_ok() });
        tokio::task::yield_now().await;
        o.pop();
        assert!(waiter.await.unwrap());
        let o3 = o.clone();
        let waiter = tokio::spawn(async move { o3.push_wait(msg(1)).await.is_ok() });
        tokio::task::yield_now().await;
        o.close(Close::TakenOver);
        assert!(!waiter.await.unwrap());
    }
}
