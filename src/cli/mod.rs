//! The terminal client: `courier user add|name|group-adds`, `courier login`, `courier device list|revoke`,
//! `courier conv create|list` and `courier chat`. It speaks only Courier's public protocol
//! (HTTP for accounts, MQTT for messages, through the Rust SDK), so it works against any
//! Courier server, local or not.
//!
//! A log-in registers a device; the CLI keeps its session (server, user, device, token) in
//! the session file (`--session-file`, default `~/.config/courier/sessions.json`) and reuses it
//! until the server refuses its token, so repeated commands do not pile up devices.

pub mod admin;
pub mod chat;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use client::protocol::http::{
    Conversation, ConversationChange, GroupAdds, Profile, Role, Session, SettingsPatch,
};
use client::protocol::update::Content;
use client::protocol::{ConvId, ErrorCode, UserId};
use client::Api;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

/// Where the server is and who is asking; shared by every CLI command.
#[derive(Args, Debug, Clone)]
pub struct Account {
    /// The server's HTTP address
    #[arg(long, env = "COURIER_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Your username
    #[arg(long, short)]
    pub user: String,
    /// Your password (default: $COURIER_PASSWORD, else read from the terminal)
    #[arg(long, env = "COURIER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Where sessions are kept [default: ~/.config/courier/sessions.json]
    #[arg(long, env = "COURIER_SESSION_FILE")]
    pub session_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account
    Add {
        /// The new username (3-32 of letters, digits, '.', '_', '-')
        username: String,
        /// The server's HTTP address
        #[arg(long, env = "COURIER_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// The password (default: $COURIER_PASSWORD, else read from the terminal)
        #[arg(long, env = "COURIER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// An invite code, where the server takes sign-ups by invitation (`courier invite`)
        #[arg(long)]
        invite: Option<String>,
    },
    /// The name others see instead of your username. Without a value, shows it
    Name {
        name: Option<String>,
        #[command(flatten)]
        account: Account,
    },
    /// Who may add you to groups: everyone, contacts (users you share a direct conversation
    /// with that you started or wrote in; the default) or nobody. Without a value, shows it
    GroupAdds {
        #[arg(value_parser = ["everyone", "contacts", "nobody"])]
        who: Option<String>,
        #[command(flatten)]
        account: Account,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Your devices: id, name, platform, online or last seen
    List {
        #[command(flatten)]
        account: Account,
    },
    /// Revoke one of your devices: its token stops working and it is disconnected
    Revoke {
        /// The device id (see `courier device list`)
        device: String,
        #[command(flatten)]
        account: Account,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConvCommand {
    /// Start a direct conversation (`--with bob`) or a group (`--group "Title" --members a,b`)
    Create {
        /// The other user of a direct conversation
        #[arg(long, conflicts_with_all = ["group", "members"])]
        with: Option<String>,
        /// A group's title
        #[arg(long, requires = "members")]
        group: Option<String>,
        /// A group's other members, comma-separated usernames
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
        #[command(flatten)]
        account: Account,
    },
    /// Your conversations, pinned first then by activity: id, members, unread count, and
    /// marks (pinned, muted, archived, marked unread, @ mentioned)
    List {
        /// The archived ones instead
        #[arg(long)]
        archived: bool,
        #[command(flatten)]
        account: Account,
    },
    /// Your own settings for a conversation
    Set {
        /// The conversation id
        conv: String,
        /// Mute for this many minutes, `always`, or `off`
        #[arg(long)]
        mute: Option<String>,
        #[arg(long)]
        pin: Option<bool>,
        #[arg(long)]
        archive: Option<bool>,
        /// Mark it unread (reading it clears this)
        #[arg(long)]
        unread: Option<bool>,
        #[command(flatten)]
        account: Account,
    },
    /// Rename a group (admins); an empty title clears it
    Rename {
        conv: String,
        title: String,
        #[command(flatten)]
        account: Account,
    },
    /// Make a member an admin, or an admin a member (admins)
    Role {
        conv: String,
        /// The member's username
        member: String,
        /// `admin` or `member`
        #[arg(value_name = "ROLE", value_parser = ["admin", "member"])]
        to: String,
        #[command(flatten)]
        account: Account,
    },
    /// Leave a group
    Leave {
        conv: String,
        #[command(flatten)]
        account: Account,
    },
    /// Find your messages holding every word of QUERY, newest first
    Search {
        query: String,
        /// Only in this conversation
        #[arg(long)]
        conv: Option<String>,
        #[command(flatten)]
        account: Account,
    },
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn conv_arg(id: &str) -> anyhow::Result<ConvId> {
    ConvId::parse(id).with_context(|| format!("`{id}` is not a conversation id"))
}

fn read_password(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        bail!("no password given (--password, $COURIER_PASSWORD or the terminal)");
    }
    Ok(line)
}

pub async fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            username,
            server,
            password,
            invite,
        } => {
            let password = match password {
                Some(p) => p,
                None => read_password(&format!("password for {username}: "))?,
            };
            let id = Api::new(&server)
                .sign_up_invited(&username, &password, invite.as_deref())
                .await?;
            println!("user {username} created ({id})");
            Ok(())
        }
        UserCommand::GroupAdds { who, account } => {
            let (api, s) = session(&account).await?;
            let settings = match who {
                Some(who) => {
                    let group_adds = GroupAdds::parse(&who);
                    api.set_group_adds(&s.token, group_adds).await?
                }
                None => api.settings(&s.token).await?,
            };
            println!("group adds: {}", settings.group_adds.as_str());
            Ok(())
        }
        UserCommand::Name { name, account } => {
            let (api, s) = session(&account).await?;
            let profile = match name {
                Some(name) => {
                    let change = client::protocol::http::ProfileChange {
                        display_name: Some(Some(name)),
                        avatar: None,
                    };
                    api.change_profile(&s.token, &change).await?
                }
                None => api.me(&s.token).await?,
            };
            println!("{}", shown_name(&profile));
            Ok(())
        }
    }
}

/// How a user is shown: their display name with the username, the username alone, or a
/// deleted account.
pub fn shown_name(p: &Profile) -> String {
    if p.deleted {
        return "deleted account".into();
    }
    match &p.display_name {
        Some(name) => format!("{} ({})", printable(name), p.username),
        None => p.username.clone(),
    }
}

fn session_path(account: &Account) -> anyhow::Result<PathBuf> {
    if let Some(p) = &account.session_file {
        return Ok(p.clone());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .context("no $HOME: pass --session-file")?;
    Ok(base.join("courier").join("sessions.json"))
}

type Sessions = BTreeMap<String, Session>;

fn session_key(account: &Account) -> String {
    format!("{} {}", account.server, account.user.to_lowercase())
}

fn load_sessions(path: &PathBuf) -> Sessions {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_session(path: &PathBuf, key: String, session: Option<&Session>) -> anyhow::Result<()> {
    let mut all = load_sessions(path);
    match session {
        Some(s) => all.insert(key, s.clone()),
        None => all.remove(&key),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // The file holds device tokens: readable by its owner only.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&all)?)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A signed-in session for `account`: the saved one while the server still takes its token,
/// else a fresh log-in (a new device named after this host), saved for next time.
pub async fn session(account: &Account) -> anyhow::Result<(Api, Session)> {
    let api = Api::new(&account.server);
    let path = session_path(account)?;
    let key = session_key(account);
    if let Some(saved) = load_sessions(&path).remove(&key) {
        match api.devices(&saved.token).await {
            Ok(_) => return Ok((api, saved)),
            Err(e) if e.code() == Some(ErrorCode::Unauthorized) => {
                save_session(&path, key.clone(), None)?;
            }
            Err(e) => return Err(e).context("cannot reach the server"),
        }
    }
    let password = match &account.password {
        Some(p) => p.clone(),
        None => read_password(&format!("password for {}: ", account.user))?,
    };
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "terminal".into());
    let session = api
        .log_in(
            &account.user,
            &password,
            &format!("courier cli on {host}"),
            "cli",
        )
        .await?;
    save_session(&path, key, Some(&session))?;
    Ok((api, session))
}

pub async fn login(account: Account) -> anyhow::Result<()> {
    let (_, s) = session(&account).await?;
    println!("signed in as {} on device {}", account.user, s.device);
    Ok(())
}

/// `1732700000000` → `2024-11-27 09:33 UTC`-style text, without a date crate: days since the
/// epoch to a civil date (Howard Hinnant's algorithm).
pub fn when(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

pub async fn device(cmd: DeviceCommand) -> anyhow::Result<()> {
    match cmd {
        DeviceCommand::List { account } => {
            let (api, s) = session(&account).await?;
            for d in api.devices(&s.token).await? {
                let state = match (d.online, d.last_seen) {
                    (true, _) => "online".to_owned(),
                    (false, Some(t)) => format!("last seen {}", when(t)),
                    (false, None) => "never connected".to_owned(),
                };
                let me = if d.current { "  (this terminal)" } else { "" };
                println!("{}  {}  [{}]  {state}{me}", d.id, d.name, d.platform);
            }
        }
        DeviceCommand::Revoke { device, account } => {
            let (api, s) = session(&account).await?;
            api.revoke_device(&s.token, &device).await?;
            println!("device {device} revoked");
        }
    }
    Ok(())
}

/// How `ids` are shown ([`shown_name`]; ids the server does not know stay as they are).
pub async fn names(
    api: &Api,
    token: &str,
    ids: &[&UserId],
) -> anyhow::Result<BTreeMap<UserId, String>> {
    let ids: Vec<&str> = ids.iter().map(|u| u.as_str()).collect();
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(client::protocol::http::USER_LOOKUP_LIMIT) {
        for u in api.users(token, &[], chunk).await? {
            out.insert(u.user.clone(), shown_name(&u));
        }
    }
    Ok(out)
}

/// The user ids of `usernames`; an unknown name is an error naming it.
pub async fn user_ids(api: &Api, token: &str, usernames: &[String]) -> anyhow::Result<Vec<UserId>> {
    let wanted: Vec<&str> = usernames.iter().map(String::as_str).collect();
    let found = api.users(token, &wanted, &[]).await?;
    usernames
        .iter()
        .map(|n| {
            found
                .iter()
                .find(|u| u.username.eq_ignore_ascii_case(n))
                .map(|u| u.user.clone())
                .with_context(|| format!("no user named {n}"))
        })
        .collect()
}

/// One line about a conversation: its id, what to call it, unread count.
/// Text from other users as the terminal should show it: control characters (escape
/// sequences that would move the cursor, retitle the window or rewrite earlier lines) and
/// bidirectional overrides (which reorder what follows) are shown escaped, not obeyed.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            let shown: Box<dyn Iterator<Item = char>> = if c.is_control() || bidi {
                Box::new(c.escape_unicode())
            } else {
                Box::new(std::iter::once(c))
            };
            shown
        })
        .collect()
}

pub fn describe(c: &Conversation, me: &UserId, names: &BTreeMap<UserId, String>) -> String {
    let others: Vec<&str> = c
        .members
        .iter()
        .filter(|u| *u != me)
        .map(|u| names.get(u).map_or(u.as_str(), String::as_str))
        .collect();
    let title = match &c.title {
        Some(t) => format!("{} ({})", printable(t), others.join(", ")),
        None => others.join(", "),
    };
    let unread = if c.unread > 0 {
        format!("  {} unread", c.unread)
    } else {
        String::new()
    };
    let mut marks = String::new();
    for (on, mark) in [
        (c.settings.pinned, " [pinned]"),
        (c.settings.muted_until.is_some(), " [muted]"),
        (c.settings.archived, " [archived]"),
        (c.settings.marked_unread, " [marked unread]"),
        (c.mentioned, " [@ you]"),
    ] {
        if on {
            marks.push_str(mark);
        }
    }
    format!("{}  {title}{unread}{marks}", c.id)
}

pub async fn conv(cmd: ConvCommand) -> anyhow::Result<()> {
    match cmd {
        ConvCommand::Create {
            with,
            group,
            members,
            account,
        } => {
            let (api, s) = session(&account).await?;
            let conv = match (with, group) {
                (Some(other), None) => {
                    let ids = user_ids(&api, &s.token, &[other]).await?;
                    api.create_direct(&s.token, &ids[0]).await?
                }
                (None, Some(title)) => {
                    let ids = user_ids(&api, &s.token, &members).await?;
                    api.create_group(&s.token, &title, &ids).await?
                }
                _ => bail!("give --with <user>, or --group <title> --members <a,b,…>"),
            };
            println!("{}", conv.id);
        }
        ConvCommand::List { archived, account } => {
            let (api, s) = session(&account).await?;
            let mut before: Option<String> = None;
            loop {
                let page = api
                    .conversations_page(&s.token, archived, before.as_deref(), 100)
                    .await?;
                let all: Vec<&UserId> =
                    page.conversations.iter().flat_map(|c| &c.members).collect();
                let names = names(&api, &s.token, &all).await?;
                for c in &page.conversations {
                    println!("{}", describe(c, &s.user, &names));
                }
                match page.next_before {
                    Some(next) => before = Some(next),
                    None => break,
                }
            }
        }
        ConvCommand::Set {
            conv,
            mute,
            pin,
            archive,
            unread,
            account,
        } => {
            let muted_until = match mute.as_deref() {
                None => None,
                Some("off") => Some(None),
                Some("always") => Some(Some(-1)),
                Some(minutes) => {
                    let m: i64 = minutes
                        .parse()
                        .context("--mute takes minutes, `always` or `off`")?;
                    Some(Some(now_ms() + m * 60_000))
                }
            };
            let patch = SettingsPatch {
                muted_until,
                pinned: pin,
                archived: archive,
                marked_unread: unread,
            };
            let (api, s) = session(&account).await?;
            let c = api
                .conversation_settings(&s.token, &conv_arg(&conv)?, &patch)
                .await?;
            let names = names(&api, &s.token, &c.members.iter().collect::<Vec<_>>()).await?;
            println!("{}", describe(&c, &s.user, &names));
        }
        ConvCommand::Rename {
            conv,
            title,
            account,
        } => {
            let (api, s) = session(&account).await?;
            let change = ConversationChange {
                title: Some((!title.trim().is_empty()).then_some(title)),
                avatar: None,
            };
            api.change_group(&s.token, &conv_arg(&conv)?, &change)
                .await?;
        }
        ConvCommand::Role {
            conv,
            member,
            to,
            account,
        } => {
            let (api, s) = session(&account).await?;
            let ids = user_ids(&api, &s.token, &[member]).await?;
            let role = match to.as_str() {
                "admin" => Role::Admin,
                _ => Role::Member,
            };
            api.set_role(&s.token, &conv_arg(&conv)?, &ids[0], role)
                .await?;
        }
        ConvCommand::Leave { conv, account } => {
            let (api, s) = session(&account).await?;
            api.remove_member(&s.token, &conv_arg(&conv)?, &s.user)
                .await?;
        }
        ConvCommand::Search {
            query,
            conv,
            account,
        } => {
            let (api, s) = session(&account).await?;
            let conv = conv.as_deref().map(conv_arg).transpose()?;
            let page = api
                .search(&s.token, &query, conv.as_ref(), None, 50)
                .await?;
            let senders: Vec<&UserId> = page.messages.iter().map(|m| &m.sender).collect();
            let names = names(&api, &s.token, &senders).await?;
            for m in &page.messages {
                let text = match &m.content {
                    Content::Text { text, .. } => text.as_str(),
                    Content::Image { text, .. } | Content::Video { text, .. } => {
                        text.as_deref().unwrap_or_default()
                    }
                    _ => "",
                };
                println!(
                    "{}  {}  {}  {}: {}",
                    when(m.ts),
                    m.conv,
                    m.id,
                    names
                        .get(&m.sender)
                        .map_or(m.sender.as_str(), String::as_str),
                    printable(text)
                );
            }
        }
    }
    Ok(())
}

/// `--with bob` → the direct conversation with bob (made if new); `--conv ID` → that one.
pub async fn pick(
    api: &Api,
    s: &Session,
    with: Option<String>,
    conv: Option<String>,
) -> anyhow::Result<Option<ConvId>> {
    if let Some(other) = with {
        let ids = user_ids(api, &s.token, &[other]).await?;
        return Ok(Some(api.create_direct(&s.token, &ids[0]).await?.id));
    }
    conv.map(|c| serde_json::from_value(serde_json::Value::String(c)))
        .transpose()
        .context("not a conversation id")
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_civil() {
        assert_eq!(super::when(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::when(1_732_700_000_000), "2024-11-27 09:33 UTC");
        assert_eq!(super::when(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
