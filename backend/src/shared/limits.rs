//! What every way in may be used for, and how often: one bucket per limit and key (device,
//! user, address or everyone), checked by [`super::Shared::limit`]. The defaults are the
//! table in docs/protocol.md ("Rate limits"); `--rate NAME=RATE` changes one.

use std::net::IpAddr;
use std::time::Duration;

/// How many of a kind of action are allowed: `count` per `per`, in bursts of up to `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// `30/10s`, `5/1m`, `100/1h`; `off` for no limit (`None`).
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        let s = s.trim();
        if s == "off" {
            return Ok(None);
        }
        let bad = || format!("`{s}` is not a rate like 30/10s, 5/1m or `off`");
        let (n, per) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = crate::util::parse_duration(per.trim()).map_err(|_| bad())?;
        if count == 0 || per.is_zero() {
            return Err(bad());
        }
        Ok(Some(Self { count, per }))
    }

    const fn new(count: u32, secs: u64) -> Self {
        Self {
            count,
            per: Duration::from_secs(secs),
        }
    }

    /// Milliseconds between two actions at the sustained rate (GCRA's emission interval).
    pub(super) fn interval_ms(&self) -> u64 {
        (self.per.as_millis() as u64 / u64::from(self.count)).max(1)
    }

    /// How far ahead of now the bucket may run: a full burst.
    pub(super) fn tolerance_ms(&self) -> u64 {
        self.interval_ms() * u64::from(self.count.saturating_sub(1))
    }
}

/// What a limit is about; the key names the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// MQTT ops, per device.
    Send,
    Ack,
    Read,
    Sync,
    Edit,
    Delete,
    React,
    /// Over the limit, a `typing` event is dropped (it is never answered).
    Typing,
    /// Uploads started (simple and resumable), per user.
    Upload,
    /// Media downloads (originals, derivatives, file info), per user.
    Download,
    /// Users added to groups (at creation or later), per user adding them.
    GroupAdd,
    /// Log-in attempts per client address (IPv6: per /64).
    Login,
    /// Log-in attempts per username, from anywhere.
    LoginAccount,
    /// Sign-ups per client address (IPv6: per /64).
    Signup,
    /// Sign-ups from everyone together: each costs an Argon2id hash.
    SignupAll,
    /// Connections as the service identity (the backends' own MQTT login) per client
    /// address, so its secret cannot be guessed at speed.
    ServiceLogin,
    /// MQTT connections per device (right token; a wrong one costs a lookup and gets nothing):
    /// each connect and disconnect is presence, written and announced.
    Connect,
    /// Conversation lists, single conversations, history pages and user lookups over HTTP,
    /// per user: the reads that cost the database most.
    History,
    /// Blocks and unblocks, per user.
    Block,
    /// Reports filed, per user: each is work for a moderator.
    Report,
    /// Profile changes, per user: each is an update to everyone they share a conversation with.
    Profile,
    /// Conversation settings (mute, pin, archive, marked unread) and group changes (title,
    /// picture, roles), per user: each is an update to their devices or to every member.
    Settings,
    /// Message searches, per user: each reads the search index.
    Search,
    /// Packets asking for work (PUBLISH, SUBSCRIBE, UNSUBSCRIBE) per device connection, kept
    /// by Courier's broker itself: past it the connection is read no faster (never refused).
    Packets,
}

impl Limit {
    pub const ALL: [Limit; 24] = [
        Limit::Send,
        Limit::Ack,
        Limit::Read,
        Limit::Sync,
        Limit::Edit,
        Limit::Delete,
        Limit::React,
        Limit::Typing,
        Limit::Upload,
        Limit::Download,
        Limit::GroupAdd,
        Limit::Login,
        Limit::LoginAccount,
        Limit::Signup,
        Limit::SignupAll,
        Limit::ServiceLogin,
        Limit::Connect,
        Limit::History,
        Limit::Block,
        Limit::Report,
        Limit::Profile,
        Limit::Settings,
        Limit::Search,
        Limit::Packets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Limit::Send => "send",
            Limit::Ack => "ack",
            Limit::Read => "read",
            Limit::Sync => "sync",
            Limit::Edit => "edit",
            Limit::Delete => "delete",
            Limit::React => "react",
            Limit::Typing => "typing",
            Limit::Upload => "upload",
            Limit::Download => "download",
            Limit::GroupAdd => "group_add",
            Limit::Login => "login",
            Limit::LoginAccount => "login_account",
            Limit::Signup => "signup",
            Limit::SignupAll => "signup_all",
            Limit::ServiceLogin => "service_login",
            Limit::Connect => "connect",
            Limit::History => "history",
            Limit::Block => "block",
            Limit::Report => "report",
            Limit::Profile => "profile",
            Limit::Settings => "settings",
            Limit::Search => "search",
            Limit::Packets => "packets",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The default: generous for an app used by a person, tight for a script.
    pub fn standard(self) -> Rate {
        match self {
            Limit::Send => Rate::new(50, 5),
            Limit::Ack => Rate::new(600, 60),
            Limit::Read => Rate::new(300, 60),
            Limit::Sync => Rate::new(120, 60),
            Limit::Edit | Limit::Delete => Rate::new(30, 60),
            Limit::React => Rate::new(60, 60),
            Limit::Typing => Rate::new(30, 60),
            Limit::Upload => Rate::new(60, 60),
            Limit::Download => Rate::new(600, 60),
            Limit::GroupAdd => Rate::new(200, 3600),
            Limit::Login => Rate::new(20, 60),
            Limit::LoginAccount => Rate::new(10, 60),
            Limit::Signup => Rate::new(30, 3600),
            Limit::SignupAll => Rate::new(100, 60),
            Limit::ServiceLogin => Rate::new(30, 60),
            Limit::Connect => Rate::new(20, 60),
            Limit::History => Rate::new(60, 60),
            Limit::Block => Rate::new(30, 60),
            Limit::Report => Rate::new(20, 3600),
            Limit::Profile => Rate::new(30, 3600),
            Limit::Settings => Rate::new(60, 60),
            Limit::Search => Rate::new(30, 60),
            // Every op at its own limit together is ~30 a second.
            Limit::Packets => Rate::new(100, 2),
        }
    }

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|l| *l == self)
            .expect("listed in ALL")
    }
}

/// The limits in force, each `None` when off. `Default` has them all off (tests turn on the
/// ones they check); [`Limits::standard`] is what a server runs with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits([Option<Rate>; Limit::ALL.len()]);

impl Limits {
    pub fn standard() -> Self {
        Self(Limit::ALL.map(|l| Some(l.standard())))
    }

    pub fn get(&self, limit: Limit) -> Option<Rate> {
        self.0[limit.index()]
    }

    pub fn set(&mut self, limit: Limit, rate: Option<Rate>) -> &mut Self {
        self.0[limit.index()] = rate;
        self
    }

    /// One `--rate` value that turns every limit off, for load generators and tests that
    /// start a server process (later settings still override it).
    pub fn all_off_setting() -> String {
        let all: Vec<String> = Limit::ALL
            .iter()
            .map(|l| format!("{}=off", l.name()))
            .collect();
        all.join(",")
    }

    /// Applies `name=rate` (`sync=60/1m`, `typing=off`).
    pub fn apply(&mut self, setting: &str) -> Result<(), String> {
        let (name, rate) = setting
            .split_once('=')
            .ok_or_else(|| format!("`{setting}` is not NAME=RATE, e.g. sync=60/1m"))?;
        let limit = Limit::parse(name.trim()).ok_or_else(|| {
            let names: Vec<&str> = Limit::ALL.iter().map(|l| l.name()).collect();
            format!("no rate limit `{name}`; there are {}", names.join(", "))
        })?;
        self.set(limit, Rate::parse(rate)?);
        Ok(())
    }
}

/// The bucket key for a client address: IPv4 as is, IPv6 by its /64 (one subscriber's
/// network; rotating within it earns nothing).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_a_limit_and_a_rate() {
        let mut l = Limits::standard();
        l.apply("sync=7/1m").unwrap();
        l.apply(" typing = off ").unwrap();
        assert_eq!(l.get(Limit::Sync), Some(Rate::new(7, 60)));
        assert_eq!(l.get(Limit::Typing), None);
        assert_eq!(l.get(Limit::Send), Some(Limit::Send.standard()));
        assert!(l.apply("nope=1/1s").unwrap_err().contains("signup_all"));
        assert!(l.apply("sync").is_err());
        assert!(l.apply("sync=0/1s").is_err());
        for limit in Limit::ALL {
            assert_eq!(Limit::parse(limit.name()), Some(limit));
        }
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), "10.0.0.1");
    }
}
