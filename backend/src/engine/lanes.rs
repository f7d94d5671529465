//! The engine's way in: one lane per device with requests waiting, handled strictly in arrival
//! order by a task that exists only while the lane has work, so an idle device costs nothing
//! and different devices run concurrently.
//!
//! A lane is bounded (requests and bytes). A device that floods fills only its own lane; its
//! connection then waits in [`Lanes::submit`] and stops reading that socket — TCP
//! backpressure — while every other device's lane keeps moving.

use super::Engine;
use broker::{Inbound, Kind};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Most requests waiting in one device's lane.
const LANE_REQUESTS: usize = 32;
/// Most request bytes waiting in one device's lane (one request always fits).
const LANE_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub struct Lanes {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<Engine>,
    lanes: Mutex<HashMap<Box<str>, Lane>>,
    /// Woken whenever a lane gives room back.
    room: Notify,
    /// Requests queued or running, over all lanes.
    pending: AtomicUsize,
}

enum Pushed {
    Queued,
    /// The lane was idle: it needs a worker.
    Started(Box<str>),
    /// The lane is full; the message is handed back.
    Full(Inbound),
}

struct Lane {
    queue: VecDeque<Inbound>,
    bytes: usize,
}

impl Lanes {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                lanes: Mutex::default(),
                room: Notify::new(),
                pending: AtomicUsize::new(0),
            }),
        }
    }

    /// Requests queued or running.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Acquire)
    }

    /// Queues `msg` on its device's lane, waiting while that lane is full.
    pub async fn submit(&self, mut msg: Inbound) {
        loop {
            let room = self.inner.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.inner.try_push(msg) {
                Pushed::Queued => return,
                Pushed::Started(device) => {
                    let inner = self.inner.clone();
                    tokio::spawn(async move { inner.work(device).await });
                    return;
                }
                Pushed::Full(back) => msg = back,
            }
            room.await;
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Lane>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_push(&self, msg: Inbound) -> Pushed {
        let mut lanes = self.lock();
        let size = msg.payload.len();
        let started = match lanes.get_mut(msg.device.as_str()) {
            Some(lane) => {
                if !lane.queue.is_empty()
                    && (lane.queue.len() >= LANE_REQUESTS || lane.bytes + size > LANE_BYTES)
                {
                    return Pushed::Full(msg);
                }
                lane.bytes += size;
                lane.queue.push_back(msg);
                Pushed::Queued
            }
            None => {
                let device: Box<str> = msg.device.as_str().into();
                let lane = Lane {
                    bytes: size,
                    queue: VecDeque::from([msg]),
                };
                lanes.insert(device.clone(), lane);
                Pushed::Started(device)
            }
        };
        self.pending.fetch_add(1, Ordering::AcqRel);
        started
    }

    /// Handles the lane of `device` until it is empty, then removes it. Consecutive sends
    /// are taken together, so they share a group commit (still answered in order).
    async fn work(&self, device: Box<str>) {
        loop {
            let run = {
                let mut lanes = self.lock();
                let Some(lane) = lanes.get_mut(&device) else {
                    return;
                };
                let mut run = Vec::new();
                while let Some(msg) = lane.queue.front() {
                    let send = is_send(msg);
                    if !run.is_empty() && !send {
                        break;
                    }
                    let msg = lane.queue.pop_front().expect("peeked");
                    lane.bytes -= msg.payload.len();
                    run.push(msg);
                    if !send {
                        break;
                    }
                }
                if run.is_empty() {
                    lanes.remove(&device);
                    return;
                }
                run
            };
            self.room.notify_waiters();
            let running = Running {
                inner: self,
                device: &device,
                held: run.len(),
            };
            self.engine.handle_run(run).await;
            self.pending.fetch_sub(running.held, Ordering::AcqRel);
            std::mem::forget(running);
        }
    }
}

/// While a run is handled: if the work ends without finishing it (a request panicked and the
/// runtime dropped the task, or shutdown), the lane is removed with what waited in it, so the
/// device is not stuck behind a lane nobody works on; its next request starts a new one.
struct Running<'a> {
    inner: &'a Inner,
    device: &'a str,
    held: usize,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let waiting = self
            .inner
            .lock()
            .remove(self.device)
            .map_or(0, |l| l.queue.len());
        self.inner
            .pending
            .fetch_sub(self.held + waiting, Ordering::AcqRel);
        self.inner.room.notify_waiters();
        tracing::debug!(
            device = self.device,
            "a lane's work ended unfinished; lane dropped"
        );
    }
}

fn is_send(msg: &Inbound) -> bool {
    matches!(&msg.kind, Kind::Request(op) if op == "send")
}
