//! How message search sees text: folded to lower case without diacritics, so that "tieng"
//! finds "tiếng", "Đà Nẵng" is "da nang" and "Crème" is "creme". The server indexes folded
//! text and folds queries the same way; both databases then match plain words.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Most words a query matches on.
pub const MAX_QUERY_TERMS: usize = 8;
/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// `text` in lower case, its letters stripped of diacritics (Vietnamese `đ` becomes `d`).
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
    {
        match c {
            'đ' => out.push('d'),
            'ø' => out.push('o'),
            'ł' => out.push('l'),
            'ı' => out.push('i'),
            'ß' => out.push_str("ss"),
            'æ' => out.push_str("ae"),
            'œ' => out.push_str("oe"),
            other => out.push(other),
        }
    }
    out
}

/// The words of a query, folded: runs of letters and digits, each once, at most
/// [`MAX_QUERY_TERMS`]. Nothing else of the query reaches the database's query syntax.
pub fn terms(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in fold(query).split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() || out.iter().any(|w| w == word) {
            continue;
        }
        out.push(word.chars().take(64).collect());
        if out.len() == MAX_QUERY_TERMS {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_vietnamese_and_other_latin_scripts() {
        assert_eq!(fold("Tiếng Việt"), "tieng viet");
        assert_eq!(fold("Đà Nẵng ĐƯỜNG"), "da nang duong");
        assert_eq!(fold("Crème brûlée, Ærø, Łódź"), "creme brulee, aero, lodz");
        assert_eq!(fold("Straße"), "strasse");
    }

    #[test]
    fn queries_are_plain_words() {
        assert_eq!(terms("  Tiếng \"OR\" tiếng* -x"), vec!["tieng", "or", "x"]);
        assert!(terms("*** ---").is_empty());
        assert_eq!(terms(&"a ".repeat(50)), vec!["a"]);
        let many: String = (0..20).map(|i| format!("w{i} ")).collect();
        assert_eq!(terms(&many).len(), MAX_QUERY_TERMS);
    }
}
