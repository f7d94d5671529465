//! How fast a device's connection is read. Each packet that asks the server for work
//! (PUBLISH, SUBSCRIBE, UNSUBSCRIBE) is counted against a GCRA: a burst of up to `count`, then
//! one every `per / count`. Past it the connection is simply not read until its next packet
//! is due, so a flood costs the server no more than the pace allows and the flooder meets TCP
//! backpressure; nothing is refused, and acknowledgements (PUBACK) are never held back.

use std::time::Duration;
use tokio::time::Instant;

/// `count` packets per `per`, in bursts of up to `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    pub count: u32,
    pub per: Duration,
}

impl Pacing {
    fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }

    fn tolerance(&self) -> Duration {
        self.interval() * self.count.saturating_sub(1)
    }
}

/// One connection's place against its [`Pacing`]: when its next packet is due.
#[derive(Debug)]
pub struct Pace {
    due: Instant,
}

impl Pace {
    pub fn new(now: Instant) -> Self {
        Self { due: now }
    }

    /// Counts one packet.
    pub fn take(&mut self, p: &Pacing, now: Instant) {
        self.due = self.due.max(now) + p.interval();
    }

    /// When reading may go on, if not now: the burst is spent.
    pub fn paused_until(&self, p: &Pacing, now: Instant) -> Option<Instant> {
        let resume = self.due.checked_sub(p.tolerance())?;
        (resume > now).then_some(resume)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let p = Pacing {
            count: 4,
            per: Duration::from_millis(400),
        };
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        for _ in 0..4 {
            assert_eq!(pace.paused_until(&p, t0), None);
            pace.take(&p, t0);
        }
        assert_eq!(
            pace.paused_until(&p, t0),
            Some(t0 + Duration::from_millis(100))
        );
        let later = t0 + Duration::from_millis(100);
        assert_eq!(pace.paused_until(&p, later), None);
        pace.take(&p, later);
        assert!(pace.paused_until(&p, later).is_some());
        // Idle for long, the whole burst is back and no more.
        let idle = t0 + Duration::from_secs(10);
        for _ in 0..4 {
            assert_eq!(pace.paused_until(&p, idle), None);
            pace.take(&p, idle);
        }
        assert!(pace.paused_until(&p, idle).is_some());
    }
}
