//! The engine's way in: one lane per device with requests waiting, handled strictly in arrival
//! order by a task that exists only while the lane has work, so an idle device costs nothing
//! and different devices run concurrently.
//!
//! A lane is bounded (requests and bytes). A device that floods fills only its own lane; its
//! connection then waits in [`Lanes::submit`] and stops reading that socket — TCP
//! backpressure — while every other device's lane keeps moving.

use super::{Engine, Run};
use broker::{Inbound, Kind};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

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
                    tokio::spawn(self.inner.clone().work(device));
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
    ///
    /// Where the engine allows it ([`Engine::pipelines`]), a run of writes begins — its
    /// writes are queued for the next batch — while the previous run still waits for its
    /// commit; a finisher answers the runs in order. So a busy device's next sends join the
    /// very next batch instead of every other one. At most one run waits behind the one being
    /// finished; any other request waits until the finisher is done.
    async fn work(self: Arc<Self>, device: Box<str>) {
        let working = Working {
            inner: &self,
            device: &device,
        };
        let mut finisher: Option<Finisher> = None;
        loop {
            let run = {
                let mut lanes = self.lock();
                let Some(lane) = lanes.get_mut(&device) else {
                    break;
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
                if run.is_empty() && finisher.is_none() {
                    lanes.remove(&device);
                    break;
                }
                run
            };
            if run.is_empty() {
                // Finishing may take a while; what arrives meanwhile is looked at after.
                finish(finisher.take()).await;
                continue;
            }
            self.room.notify_waiters();
            let held = Held {
                inner: &self,
                n: run.len(),
            };
            if run.iter().all(|m| self.engine.pipelines(m)) {
                let begun = self.engine.begin_run(run).await;
                let f = finisher.get_or_insert_with(|| Finisher::start(self.clone()));
                match f.runs.send((begun, held.n)).await {
                    // The finisher lets it go once answered.
                    Ok(()) => std::mem::forget(held),
                    // The finisher is gone (it panicked): the run is dropped unanswered.
                    Err(_) => {
                        drop(held);
                        finish(finisher.take()).await;
                    }
                }
            } else {
                finish(finisher.take()).await;
                self.engine.handle_run(run).await;
                drop(held);
            }
        }
        working.done();
    }

    /// `n` requests were handled (or dropped): they no longer count as pending.
    fn release(&self, n: usize) {
        self.pending.fetch_sub(n, Ordering::AcqRel);
        self.room.notify_waiters();
    }
}

/// A task answering a device's begun runs in order (see [`Inner::work`]).
struct Finisher {
    runs: mpsc::Sender<(Run, usize)>,
    task: tokio::task::JoinHandle<()>,
}

impl Finisher {
    fn start(inner: Arc<Inner>) -> Self {
        // One run waits here while the finisher works on the one before.
        let (runs, mut rx) = mpsc::channel::<(Run, usize)>(1);
        let task = tokio::spawn(async move {
            while let Some((run, n)) = rx.recv().await {
                let held = Held { inner: &inner, n };
                inner.engine.end_run(run).await;
                drop(held);
            }
        });
        Self { runs, task }
    }
}

/// Waits until the finisher, if any, has answered every run it was given.
async fn finish(finisher: Option<Finisher>) {
    if let Some(f) = finisher {
        drop(f.runs);
        if let Err(e) = f.task.await {
            tracing::warn!(error = %e, "a lane's finisher ended unfinished");
        }
    }
}

/// Requests taken from a lane: pending until handled, or dropped unhandled.
struct Held<'a> {
    inner: &'a Inner,
    n: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.inner.release(self.n);
    }
}

/// While a lane is worked on: if the work ends without finishing (a request panicked and the
/// runtime dropped the task, or shutdown), the lane is removed with what waited in it, so the
/// device is not stuck behind a lane nobody works on; its next request starts a new one.
struct Working<'a> {
    inner: &'a Inner,
    device: &'a str,
}

impl Working<'_> {
    fn done(self) {
        std::mem::forget(self);
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        let waiting = self
            .inner
            .lock()
            .remove(self.device)
            .map_or(0, |l| l.queue.len());
        self.inner.release(waiting);
        tracing::debug!(
            device = self.device,
            "a lane's work ended unfinished; lane dropped"
        );
    }
}

fn is_send(msg: &Inbound) -> bool {
    matches!(&msg.kind, Kind::Request(op) if op == "send")
}
