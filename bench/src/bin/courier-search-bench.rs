//! `courier-search-bench`: how long `GET /v1/search` and a page of `GET /v1/conversations`
//! take when the store is big: `--messages` text messages (a million by default) across
//! `--convs` conversations of one user, and a user in `--list` conversations.
//!
//! Courier runs in-process as `courier serve` runs it. The messages are written straight into
//! the tables (and the search index, folded as the server folds) in bulk, since sending a
//! million through MQTT would measure the send path instead; then each query is asked over
//! HTTP `--rounds` times and its p50/p99 reported. Texts are 8 words drawn from a vocabulary
//! of 5 000 with a Zipf-like spread, so there are common words (in ~1 message in 10) and rare
//! ones (in a few hundred).

use clap::Parser;
use client::protocol::search::fold;
use client::Api;
use sea_orm::sea_query::{Alias, Query};
use sea_orm::{ConnectionTrait, Database};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Text messages in the store
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Conversations they are spread over (all of them the searching user's)
    #[arg(long, default_value_t = 100)]
    convs: usize,
    /// Conversations of the user whose list is paged
    #[arg(long, default_value_t = 10_000)]
    list: usize,
    /// Times each query is asked
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Database (default: SQLite in a temp dir)
    #[arg(long)]
    database_url: Option<String>,
}

const VOCABULARY: usize = 5_000;

/// Word `i` of the vocabulary: syllables with Vietnamese diacritics, so folding is exercised.
fn word(i: usize) -> String {
    const SYL: [&str; 20] = [
        "tiếng", "việt", "đà", "nẵng", "hà", "nội", "phở", "bò", "cà", "phê", "sữa", "đá", "bánh",
        "mì", "chợ", "lớn", "nhà", "mới", "xe", "máy",
    ];
    format!("{}{}{}", SYL[i % 20], SYL[(i / 20) % 20], i / 400)
}

/// A Zipf-like draw of a word index from a cheap generator.
fn draw(state: &mut u64) -> usize {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let u = (*state >> 11) as f64 / (1u64 << 53) as f64;
    // Rank ~ exp(u · ln V): the top words are common, the tail rare.
    ((u * (VOCABULARY as f64).ln()).exp() as usize - 1).min(VOCABULARY - 1)
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    courier::telemetry::init_quiet();
    let dir = tempfile::tempdir()?;
    let url = args.database_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("search.db").display()
        )
    });
    let server = bench::Server::start(Some(url.clone())).await?;
    let api = Api::new(format!("http://{}", server.addrs.http));
    let run = std::process::id();
    let (a, b) = (format!("alice{run}"), format!("bob{run}"));
    let alice_id = api.sign_up(&a, "bench password").await?;
    let bob_id = api.sign_up(&b, "bench password").await?;
    let alice = api.log_in(&a, "bench password", "laptop", "bench").await?;
    let bob = api.log_in(&b, "bench password", "phone", "bench").await?;
    let db = Database::connect(&url).await?;

    // Conversations of alice and bob, then their messages, in bulk.
    let started = Instant::now();
    let conv = |i: usize| format!("cs{run}x{i:06}");
    let all_convs = args.convs + args.list;
    for chunk in (0..all_convs).collect::<Vec<_>>().chunks(500) {
        let mut c = Query::insert();
        c.into_table(Alias::new("conversations")).columns(
            [
                "id",
                "kind",
                "title",
                "created_by",
                "last_seq",
                "created_at",
                "last_at",
            ]
            .map(Alias::new),
        );
        let mut m = Query::insert();
        m.into_table(Alias::new("members")).columns(
            [
                "conv_id",
                "user_id",
                "role",
                "delivered_seq",
                "read_seq",
                "joined_at",
            ]
            .map(Alias::new),
        );
        for &i in chunk {
            let per = if i < args.convs {
                args.messages.div_ceil(args.convs)
            } else {
                0
            };
            c.values_panic([
                conv(i).into(),
                "group".into(),
                format!("g{i}").into(),
                alice_id.to_string().into(),
                (per as i64).into(),
                (i as i64).into(),
                (i as i64).into(),
            ]);
            for (u, role) in [(&alice_id, "admin"), (&bob_id, "member")] {
                m.values_panic([
                    conv(i).into(),
                    u.to_string().into(),
                    role.into(),
                    0i64.into(),
                    0i64.into(),
                    0i64.into(),
                ]);
            }
        }
        db.execute(&c).await?;
        db.execute(&m).await?;
    }
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let per_conv = args.messages.div_ceil(args.convs);
    let mut n = 0;
    while n < args.messages {
        let mut msgs = Query::insert();
        msgs.into_table(Alias::new("messages")).columns(
            [
                "id",
                "conv_id",
                "seq",
                "sender_id",
                "device_id",
                "cmid",
                "kind",
                "content",
                "created_at",
            ]
            .map(Alias::new),
        );
        let mut index = Query::insert();
        index
            .into_table(Alias::new("message_search"))
            .columns(["msg_id", "body"].map(Alias::new));
        for i in n..(n + 1000).min(args.messages) {
            let text: Vec<String> = (0..8).map(|_| word(draw(&mut rng))).collect();
            let text = text.join(" ");
            let id = format!("ms{run}x{i:08}");
            let content = serde_json::json!({"kind": "text", "text": text}).to_string();
            msgs.values_panic([
                id.clone().into(),
                conv(i / per_conv).into(),
                ((i % per_conv) as i64 + 1).into(),
                bob_id.to_string().into(),
                bob.device.to_string().into(),
                format!("b{i}").into(),
                "text".into(),
                content.into(),
                (1_700_000_000_000i64 + i as i64).into(),
            ]);
            let body = backend::store::search::indexed_body(&conv(i / per_conv), &text);
            index.values_panic([id.into(), body.into()]);
        }
        db.execute(&msgs).await?;
        db.execute(&index).await?;
        n = (n + 1000).min(args.messages);
    }
    if url.starts_with("postgres") {
        db.execute_unprepared("ANALYZE").await?;
    }
    println!(
        "stored {} messages in {} conversations and {} more conversations in {:.1} s",
        args.messages,
        args.convs,
        args.list,
        started.elapsed().as_secs_f64()
    );

    // Searches: a common word, a rare one, two words, a prefix, and one conversation.
    let common = word(0);
    let rare = word(VOCABULARY - 7);
    let two = format!("{} {}", word(1), word(2));
    let prefix: String = fold(&word(3)).chars().take(6).collect();
    let queries: Vec<(&str, String, Option<String>)> = vec![
        ("common word", fold(&common), None),
        ("rare word", fold(&rare), None),
        ("two words", fold(&two), None),
        ("prefix", prefix, None),
        ("common, one conversation", fold(&common), Some(conv(0))),
    ];
    println!("| query | matches in first page | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (name, q, c) in &queries {
        let c = c
            .as_ref()
            .map(|c| client::protocol::ConvId::parse(c).expect("id"));
        let mut times = Vec::with_capacity(args.rounds);
        let mut found = 0;
        for _ in 0..args.rounds {
            let t = Instant::now();
            let page = api.search(&alice.token, q, c.as_ref(), None, 20).await?;
            times.push(t.elapsed());
            found = page.messages.len();
        }
        let (p50, p99) = percentiles(times);
        println!("| {name} (`{q}`) | {found} | {p50:.1} | {p99:.1} |");
    }
    // The list: bob is in every conversation; a first page and a page deep in.
    let mut times = Vec::new();
    let mut deep = Vec::new();
    for _ in 0..args.rounds.min(20) {
        let t = Instant::now();
        let mut page = api.conversations_page(&bob.token, false, None, 50).await?;
        times.push(t.elapsed());
        for _ in 0..3 {
            let next = page.next_before.clone().expect("more pages");
            let t = Instant::now();
            page = api
                .conversations_page(&bob.token, false, Some(&next), 50)
                .await?;
            deep.push(t.elapsed());
        }
    }
    let (p50, p99) = percentiles(times);
    let (d50, d99) = percentiles(deep);
    println!(
        "| list of {} conversations, first page of 50 | 50 | {p50:.1} | {p99:.1} |",
        all_convs
    );
    println!("| same, next pages of 50 | 50 | {d50:.1} | {d99:.1} |");
    server.stop().await;
    Ok(())
}
