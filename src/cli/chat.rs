//! `courier chat`: a line-based chat in the terminal. It lists your conversations, opens one
//! (`--with bob`, `--conv ID`, or by number), shows its recent history, then prints messages
//! as they arrive and sends each line you type. Commands: `/list`, `/open N`, `/quit`.
//!
//! Messages print as `[HH:MM] name: text`; your own get `✓` once the server stored them and
//! the conversation shows `✓✓` (delivered) and `read` as the others' receipts arrive. Lines
//! typed while the connection is down wait in the SDK's request timeout and are sent with
//! their cmid; a send that got no answer is retried with the same cmid, so it is stored once.

use super::{describe, names, pick, session, Account};
use anyhow::Context;
use clap::Args;
use client::protocol::http::{Conversation, Session};
use client::protocol::update::{Content, SystemEvent};
use client::protocol::{ConvId, Message, UpdateBody, UserId};
use client::{Api, Client, ClientOptions, Event};
use std::collections::BTreeMap;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Open the direct conversation with this user (made if new)
    #[arg(long, conflicts_with = "conv")]
    with: Option<String>,
    /// Open this conversation
    #[arg(long)]
    conv: Option<String>,
    /// Messages of history to show when a conversation opens
    #[arg(long, default_value_t = 20)]
    history: u32,
    #[command(flatten)]
    account: Account,
}

struct Chat {
    api: Api,
    session: Session,
    client: Client,
    names: BTreeMap<UserId, String>,
    open: Option<ConvId>,
    history: u32,
}

fn hhmm(ms: i64) -> String {
    let t = super::when(ms);
    t[11..16].to_owned()
}

fn text_of(content: &Content) -> String {
    match content {
        Content::Text { text, .. } => super::printable(text),
        Content::Deleted {} => "(deleted)".into(),
        other => format!("[{}]", other.kind()),
    }
}

/// What a system line says after the name of who made the change.
pub fn system_text(
    event: SystemEvent,
    who: &[String],
    title: Option<&str>,
    role: Option<&str>,
) -> String {
    let who = who.join(", ");
    match event {
        SystemEvent::Created => format!("created the group with {who}"),
        SystemEvent::Added => format!("added {who}"),
        SystemEvent::Removed => format!("removed {who}"),
        SystemEvent::Left => "left".into(),
        SystemEvent::TitleChanged => match title {
            Some(t) => format!("named the group \"{}\"", super::printable(t)),
            None => "removed the group's name".into(),
        },
        SystemEvent::AvatarChanged => "changed the group's picture".into(),
        SystemEvent::RoleChanged => match role {
            Some("admin") => format!("made {who} an admin"),
            _ => format!("made {who} a member (no longer an admin)"),
        },
    }
}

impl Chat {
    fn name(&self, u: &UserId) -> String {
        if *u == self.session.user {
            return "me".into();
        }
        self.names.get(u).cloned().unwrap_or_else(|| u.to_string())
    }

    async fn learn_names(&mut self, ids: &[&UserId]) {
        let unknown: Vec<&UserId> = ids
            .iter()
            .copied()
            .filter(|u| !self.names.contains_key(*u))
            .collect();
        if unknown.is_empty() {
            return;
        }
        if let Ok(found) = names(&self.api, &self.session.token, &unknown).await {
            self.names.extend(found);
        }
    }

    fn print(&self, m: &Message) {
        if let Content::System {
            event,
            users,
            title,
            role,
        } = &m.content
        {
            let who: Vec<String> = users.iter().map(|u| self.name(u)).collect();
            println!(
                "[{}] · {} {}",
                hhmm(m.ts),
                self.name(&m.sender),
                system_text(*event, &who, title.as_deref(), role.as_deref())
            );
            return;
        }
        println!(
            "[{}] {}: {}",
            hhmm(m.ts),
            self.name(&m.sender),
            text_of(&m.content)
        );
    }

    async fn list(&mut self) -> anyhow::Result<Vec<Conversation>> {
        let convs = self.api.conversations(&self.session.token).await?;
        let all: Vec<&UserId> = convs.iter().flat_map(|c| &c.members).collect();
        self.learn_names(&all).await;
        for (i, c) in convs.iter().enumerate() {
            println!(
                "{:>3}. {}",
                i + 1,
                describe(c, &self.session.user, &self.names)
            );
        }
        if convs.is_empty() {
            println!("no conversations yet: run `courier chat --with <user>`");
        }
        Ok(convs)
    }

    async fn open(&mut self, conv: ConvId) -> anyhow::Result<()> {
        let page = self
            .api
            .history(&self.session.token, &conv, None, self.history)
            .await?;
        let senders: Vec<&UserId> = page.messages.iter().map(|m| &m.sender).collect();
        self.learn_names(&senders).await;
        println!("--- {conv} ---");
        for m in page.messages.iter().rev() {
            self.print(m);
        }
        if let Some(newest) = page.messages.first() {
            let _ = self.client.read(&conv, newest.seq).await;
        }
        self.open = Some(conv);
        Ok(())
    }

    async fn update(&mut self, u: &client::protocol::Update) {
        match &u.body {
            // Sent from this terminal: shown when its ack came.
            UpdateBody::Message { msg } if msg.device == self.session.device => {}
            UpdateBody::Message { msg } if Some(&msg.conv) == self.open.as_ref() => {
                self.learn_names(&[&msg.sender]).await;
                self.print(msg);
                let _ = self.client.read(&msg.conv, msg.seq).await;
            }
            UpdateBody::Message { msg } => {
                self.learn_names(&[&msg.sender]).await;
                println!(
                    "(new message from {} in {})",
                    self.name(&msg.sender),
                    msg.conv
                );
            }
            UpdateBody::Receipt {
                conv,
                user,
                delivered_seq,
                read_seq,
            } if Some(conv) == self.open.as_ref() && *user != self.session.user => {
                self.learn_names(&[user]).await;
                let who = self.name(user);
                if read_seq >= delivered_seq {
                    println!("  read by {who} up to #{read_seq}");
                } else {
                    println!("  ✓✓ delivered to {who} up to #{delivered_seq}");
                }
            }
            _ => {}
        }
        // Everything shown is held: acknowledge it, so senders see ✓✓.
        let _ = self.client.ack(u.useq).await;
    }

    async fn line(&mut self, line: &str, convs: &mut Vec<Conversation>) -> anyhow::Result<bool> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(true);
        }
        match line.split_once(' ').unwrap_or((line, "")) {
            ("/quit", _) => return Ok(false),
            ("/list", _) => *convs = self.list().await?,
            ("/open", n) => match n
                .trim()
                .parse::<usize>()
                .ok()
                .and_then(|n| convs.get(n.wrapping_sub(1)))
            {
                Some(c) => {
                    let id = c.id.clone();
                    self.open(id).await?
                }
                None => println!("no conversation {n}: /list shows them"),
            },
            _ if line.starts_with('/') => println!("commands: /list, /open N, /quit"),
            _ => match &self.open {
                None => println!("open a conversation first: /list, then /open N"),
                Some(conv) => {
                    let conv = conv.clone();
                    match self.client.send_text(&conv, line).await {
                        Ok(ack) => println!("[{}] me: {line}  ✓ #{}", hhmm(ack.ts), ack.seq),
                        Err(e) => println!("  not sent ({e}); type it again to retry"),
                    }
                }
            },
        }
        Ok(true)
    }
}

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let (api, session) = session(&args.account).await?;
    let target = pick(&api, &session, args.with, args.conv).await?;
    let (client, mut events) = Client::connect(ClientOptions::tcp(&session))
        .await
        .with_context(|| format!("cannot connect to MQTT at {}", session.mqtt.tcp))?;
    let mut chat = Chat {
        api,
        session,
        client,
        names: BTreeMap::new(),
        open: None,
        history: args.history,
    };
    println!("signed in as {}; /list, /open N, /quit", args.account.user);
    let mut convs = Vec::new();
    match target {
        Some(conv) => chat.open(conv).await?,
        None => convs = chat.list().await?,
    }
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => match line? {
                Some(l) => {
                    if !chat.line(&l, &mut convs).await? {
                        break;
                    }
                }
                None => break,
            },
            ev = events.recv() => match ev {
                Some(Event::Update(u)) => chat.update(&u).await,
                Some(Event::Disconnected(why)) => println!("  (connection lost: {why}; reconnecting)"),
                Some(Event::Ephemeral(client::protocol::ops::Ephemeral::Typing { conv, user, on: true }))
                    if Some(&conv) == chat.open.as_ref() =>
                {
                    println!("  {} is typing…", chat.name(&user));
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    chat.client.disconnect().await;
    Ok(())
}
