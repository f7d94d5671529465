//! Small helpers: clock, random ids and device tokens.

use rand::Rng;
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A new id: `prefix`, then the time in milliseconds as 9 base-36 digits, then 11 random
/// base-36 characters (~57 bits). Ids made later sort later, so a table's id index grows at
/// its end instead of touching a random page per insert; the random part keeps them
/// unguessable and unique within a millisecond.
pub fn new_id(prefix: char) -> String {
    let mut id = String::with_capacity(21);
    id.push(prefix);
    let mut ms = now_ms().max(0) as u64;
    let mut time = [0u8; 9];
    for digit in time.iter_mut().rev() {
        *digit = ALPHABET[(ms % 36) as usize];
        ms /= 36;
    }
    id.extend(time.iter().map(|&c| c as char));
    let mut rng = rand::rng();
    for _ in 0..11 {
        id.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    id
}

/// A fresh device access token (256 random bits, hex).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex(&bytes)
}

/// A new invite code: 24 random base-36 characters (~124 bits), short enough to read out.
pub fn new_invite_code() -> String {
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// What is stored for a token: its SHA-256, hex. Tokens are random, so no salt is needed.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `250ms`, `10s`, `15m`, `48h`, `30d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 250ms, 10s, 15m, 48h or 30d"))?;
    let ms = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown duration unit `{other}` (ms, s, m, h, d)")),
    };
    n.checked_mul(ms)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_later_ones_sort_later() {
        let a = new_id('m');
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id('m');
        assert!(protocol::MsgId::parse(&a).is_some() && protocol::MsgId::parse(&b).is_some());
        assert_eq!((a.len(), b.len()), (21, 21));
        assert!(a < b, "{a} then {b}");
        assert_ne!(new_id('m'), new_id('m'));
    }
}
