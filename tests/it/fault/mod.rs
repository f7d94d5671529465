//! Fault tolerance: thousands of messages among four users with two devices each (a group of
//! four and two direct conversations) while, in turn, the `courier` process is SIGKILLed and
//! restarted, the broker goes away (the process stops and comes back) and every client
//! reconnects with backoff, devices drop their connections in the middle of a batch without
//! acknowledging, PostgreSQL crashes and restarts under load, and — scaled out, devices on
//! Mosquitto and two `--role backend` processes sharing the requests — one backend is
//! SIGKILLed and restarted.
//!
//! Then, for every scenario: every message that got a send ack is on every member device
//! exactly once after dedup by message id, in seq order per conversation; every stored
//! message was acknowledged to its sender (unanswered sends are resent with the same cmid, as
//! an app's outbox does, and the count of those is printed); the stored seqs are gapless.

pub mod process;
mod workload;

use crate::helpers::{fresh_postgres, Db};
use courier_client::protocol::http::GroupAdds;
use courier_client::protocol::{ConvId, MsgId};
use courier_client::Api;
use process::{Mosquitto, PgCluster, Server};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use workload::Dev;

/// Messages each of the eight devices sends.
const PER_DEVICE: usize = 300;
const DEVICES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// SIGKILL the process three times under load.
    Kill,
    /// Stop the process (its broker closes every connection), keep it down a second, start it
    /// again; twice.
    BrokerRestart,
    /// Every device drops its connection every 40 sends, without acknowledging.
    Disconnects,
    /// Crash PostgreSQL (immediate stop) and keep it down 4 s, longer than the clients'
    /// request timeout; twice.
    PostgresRestart,
    /// Scaled out: devices on a Mosquitto broker, two `--role backend` processes sharing the
    /// requests through a shared subscription; SIGKILL one backend and restart it, twice.
    BackendKill,
    /// The same on Courier's own broker running alone (`--role broker`).
    BackendKillOwnBroker,
    /// Two backends on Mosquitto; SIGTERM one (it drains: leaves the shared subscription,
    /// answers what it took) and start it again, twice. No send may go unanswered.
    BackendDrain,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_survives_sigkill() {
    survive(Db::Sqlite, Fault::Kill).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_survives_sigkill() {
    survive(Db::Postgres, Fault::Kill).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_survives_broker_restarts() {
    survive(Db::Sqlite, Fault::BrokerRestart).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_survives_devices_dropping_mid_batch() {
    survive(Db::Postgres, Fault::Disconnects).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_backends_on_mosquitto_survive_sigkill() {
    survive(Db::Postgres, Fault::BackendKill).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_backends_on_courier_broker_survive_sigkill() {
    survive(Db::Postgres, Fault::BackendKillOwnBroker).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_stopped_with_sigterm_drains_without_losing_an_answer() {
    survive(Db::Postgres, Fault::BackendDrain).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_postgres_restarts() {
    survive(Db::Postgres, Fault::PostgresRestart).await
}

async fn survive(db: Db, fault: Fault) {
    crate::helpers::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut pg_cluster = None;
    let mut _pg_database = None;
    let database_url = match (db, fault) {
        (_, Fault::PostgresRestart) => {
            let c = PgCluster::start();
            let url = c.url();
            pg_cluster = Some(c);
            url
        }
        (Db::Postgres, _) => {
            let (url, guard) = fresh_postgres().await;
            _pg_database = Some(guard);
            url
        }
        (Db::Sqlite, _) => format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display()),
    };
    // The server the faults hit, and (scaled out) the broker and the backend that stays up,
    // which the test talks HTTP to.
    let mut _brokers = (None, None);
    let mut _steady = None;
    let mut server;
    let api;
    if matches!(
        fault,
        Fault::BackendKill | Fault::BackendKillOwnBroker | Fault::BackendDrain
    ) {
        let ports = if fault != Fault::BackendKillOwnBroker {
            let m = Mosquitto::start().await;
            let ports = m.ports;
            _brokers.0 = Some(m);
            ports
        } else {
            let (b, ports) = Server::broker(dir.path(), &database_url).await;
            _brokers.1 = Some(b);
            ports
        };
        let steady = Server::backend(dir.path(), "backend-a", &database_url, &ports).await;
        server = Server::backend(dir.path(), "backend-b", &database_url, &ports).await;
        api = Api::new(format!("http://{}", steady.http));
        _steady = Some(steady);
    } else {
        server = Server::start(dir.path(), &database_url).await;
        api = Api::new(format!("http://{}", server.http));
    }

    // Four users, a phone (MQTT 3.1.1 over TCP, persistent session) and a laptop (MQTT 5 over
    // WebSocket, clean start) each.
    let names = ["alice", "bob", "carol", "dave"];
    let mut sessions = Vec::new();
    for n in names {
        api.sign_up(n, "correct horse battery").await.unwrap();
        for (device, ws) in [("phone", false), ("laptop", true)] {
            let s = api
                .log_in(n, "correct horse battery", device, "test")
                .await
                .unwrap();
            sessions.push((format!("{n}-{device}"), s, ws));
        }
    }
    let user = |i: usize| sessions[i * 2].1.user.clone();
    let token = sessions[0].1.token.clone();
    for i in 1..=3 {
        api.set_group_adds(&sessions[i * 2].1.token, GroupAdds::Everyone)
            .await
            .unwrap();
    }
    let group = api
        .create_group(&token, "all", &[user(1), user(2), user(3)])
        .await
        .unwrap()
        .id;
    let ab = api.create_direct(&token, &user(1)).await.unwrap().id;
    let cd = api
        .create_direct(&sessions[4].1.token, &user(3))
        .await
        .unwrap()
        .id;
    let convs_of = |i: usize| match i {
        0 | 1 => vec![group.clone(), ab.clone()],
        _ => vec![group.clone(), cd.clone()],
    };
    let mut devs = Vec::new();
    for (i, (name, s, ws)) in sessions.into_iter().enumerate() {
        devs.push(Dev::new(&name, s, ws, convs_of(i / 2)).await);
    }

    // Traffic, with the fault injected at set points of progress.
    let answered = Arc::new(AtomicU64::new(0));
    let disconnect_every = (fault == Fault::Disconnects).then_some(40);
    let running: Vec<_> = devs
        .into_iter()
        .map(|d| tokio::spawn(d.run(PER_DEVICE, disconnect_every, answered.clone())))
        .collect();
    let total = (PER_DEVICE * DEVICES) as u64;
    let mut faults = 0;
    let points: &[f64] = match fault {
        Fault::Kill => &[0.2, 0.45, 0.7],
        Fault::BackendKill | Fault::BackendKillOwnBroker | Fault::BackendDrain => &[0.3, 0.6],
        Fault::BrokerRestart | Fault::PostgresRestart => &[0.25, 0.6],
        Fault::Disconnects => &[],
    };
    for point in points {
        while (answered.load(Ordering::Relaxed) as f64) < point * total as f64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match fault {
            Fault::Kill | Fault::BackendKill | Fault::BackendKillOwnBroker => {
                server.kill_and_restart().await
            }
            Fault::BrokerRestart => server.stop_and_restart(Duration::from_secs(1)).await,
            Fault::BackendDrain => server.stop_and_restart(Duration::from_millis(500)).await,
            Fault::PostgresRestart => {
                let c = pg_cluster.as_ref().expect("private cluster");
                c.crash_and_restart(Duration::from_secs(4)).await
            }
            Fault::Disconnects => unreachable!(),
        }
        faults += 1;
    }
    let mut devs = Vec::new();
    for r in running {
        devs.push(r.await.expect("device task"));
    }

    // Stored but never answered so far: the commit happened, the answer was lost with the
    // connection or the process. The sender still has these in its outbox.
    let answered_ids: std::collections::HashSet<MsgId> = devs
        .iter()
        .flat_map(|d| d.acks.values().map(|a| a.msg.clone()))
        .collect();
    let mut stored_unanswered = 0;
    for conv in [&group, &ab, &cd] {
        let stored = history(&api, devs[0].token_for(conv, &devs), conv).await;
        stored_unanswered += stored
            .values()
            .filter(|(m, system)| !system && !answered_ids.contains(m))
            .count();
    }

    // The outbox: whatever got no answer is sent again with its cmid.
    let unanswered_at_end: usize = devs.iter().map(|d| d.unanswered.len()).sum();
    for d in &mut devs {
        d.resend_unanswered(Duration::from_secs(60)).await;
    }

    // What the senders were told, per conversation.
    let mut acked: HashMap<ConvId, BTreeMap<i64, MsgId>> = HashMap::new();
    for d in &devs {
        for a in d.acks.values() {
            let before = acked
                .entry(a.conv.clone())
                .or_default()
                .insert(a.seq, a.msg.clone());
            assert!(
                before.is_none(),
                "two acks with seq {} in {}",
                a.seq,
                a.conv
            );
        }
    }
    let expected: HashMap<ConvId, Vec<MsgId>> = acked
        .iter()
        .map(|(c, m)| (c.clone(), m.values().cloned().collect()))
        .collect();
    let acked_total: usize = expected.values().map(Vec::len).sum();
    assert_eq!(acked_total, PER_DEVICE * DEVICES, "every send answered");

    // What the server stored: exactly the acknowledged messages, seqs 1..=N.
    let mut stored_unacked = 0;
    for (conv, by_seq) in &acked {
        let member = devs.iter().find(|d| d.convs.contains(conv)).unwrap();
        let stored = history(&api, member.token(), conv).await;
        let seqs: Vec<i64> = stored.keys().copied().collect();
        assert_eq!(
            seqs,
            (1..=stored.len() as i64).collect::<Vec<_>>(),
            "gapless seqs in {conv}"
        );
        // A group begins with its `created` system line.
        let system = stored.values().filter(|(_, system)| *system).count();
        for (seq, (id, system)) in &stored {
            match by_seq.get(seq) {
                Some(a) => assert_eq!(a, id, "seq {seq} in {conv}"),
                None if *system => {}
                None => stored_unacked += 1,
            }
        }
        assert_eq!(
            stored.len() - system,
            by_seq.len(),
            "stored vs acknowledged in {conv}"
        );
    }

    // Every device: every acknowledged message of its conversations, once, in seq order.
    let mut repeats = 0;
    for d in &mut devs {
        d.settle(&expected, Duration::from_secs(90)).await;
        for conv in &d.convs {
            let got = &d.order[conv];
            assert_eq!(got.len(), expected[conv].len(), "{}: {conv}", d.name);
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "{}: {conv} out of seq order",
                d.name
            );
        }
        let theirs: usize = d.convs.iter().map(|c| expected[c].len()).sum();
        assert_eq!(
            d.seen.len(),
            theirs,
            "{}: messages it should not have",
            d.name
        );
        repeats += d.repeats;
    }
    let resends: u64 = devs.iter().map(|d| d.resends).sum();
    let reconnects: u64 = devs.iter().map(|d| d.reconnects).sum();
    println!(
        "fault {fault:?} on {db:?}: {acked_total} messages acknowledged and stored, \
         {faults} faults ({} process restarts), {unanswered_at_end} sends unanswered when \
         traffic ended ({stored_unanswered} of them stored: their resends got the original ack) \
         and resent ({resends} resends in all), {stored_unacked} stored but unacknowledged \
         after the resends, {reconnects} device reconnects from the server cursor, \
         {repeats} repeated deliveries dropped by message id; every one of {DEVICES} devices \
         holds all of its conversations' messages once, in seq order",
        server.restarts
    );
    if fault == Fault::BackendDrain {
        assert_eq!(
            (resends, unanswered_at_end),
            (0, 0),
            "a draining backend answers every request it took"
        );
    }
    assert_eq!(stored_unacked, 0);
}

/// Every stored message of `conv`, by seq.
/// Every message of `conv` by seq, and whether it is a system line.
async fn history(api: &Api, token: &str, conv: &ConvId) -> BTreeMap<i64, (MsgId, bool)> {
    let mut out = BTreeMap::new();
    let mut before = None;
    loop {
        let page = api.history(token, conv, before, 200).await.unwrap();
        for m in page.messages {
            out.insert(m.seq, (m.id, m.content.kind() == "system"));
        }
        match page.next_before {
            Some(b) => before = Some(b),
            None => return out,
        }
    }
}
