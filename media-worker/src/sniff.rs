//! What an upload is, read from its first bytes — never from the name or the type the client
//! claims. Only the kinds a chat app sends are accepted: images, videos, audio, PDF, office
//! documents, plain text and zip archives; anything else (executables, unknown binaries) is
//! refused.

/// How many leading bytes [`sniff`] wants (it works with fewer).
pub const SNIFF_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaClass {
    Image,
    Video,
    Audio,
    /// PDF, office documents, text, archives, and images Courier does not decode (HEIC).
    Document,
}

impl MediaClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detected {
    pub mime: &'static str,
    pub class: MediaClass,
}

const fn d(mime: &'static str, class: MediaClass) -> Option<Detected> {
    Some(Detected { mime, class })
}

/// The type of a file starting with `head` (its first [`SNIFF_BYTES`], or all of it if
/// shorter), or `None` if it is not one Courier accepts.
pub fn sniff(head: &[u8]) -> Option<Detected> {
    use MediaClass::*;
    let starts = |magic: &[u8]| head.starts_with(magic);
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if starts(b"\xFF\xD8\xFF") {
        return d("image/jpeg", Image);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return d("image/png", Image);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return d("image/gif", Image);
    }
    if starts(b"RIFF") && at(8, b"WEBP") {
        return d("image/webp", Image);
    }
    if starts(b"RIFF") && at(8, b"WAVE") {
        return d("audio/wav", Audio);
    }
    if at(4, b"ftyp") {
        return iso_media(head.get(8..12).unwrap_or_default());
    }
    if starts(b"\x1A\x45\xDF\xA3") {
        // Matroska; WebM says so in its DocType near the start.
        let webm = head.windows(4).take(64).any(|w| w == b"webm");
        return if webm {
            d("video/webm", Video)
        } else {
            d("video/x-matroska", Video)
        };
    }
    if starts(b"OggS") {
        return d("audio/ogg", Audio);
    }
    if starts(b"fLaC") {
        return d("audio/flac", Audio);
    }
    if starts(b"#!AMR") {
        return d("audio/amr", Audio);
    }
    if starts(b"ID3") || mp3_frame(head) {
        return d("audio/mpeg", Audio);
    }
    if head.len() >= 2 && head[0] == 0xFF && (head[1] & 0xF6) == 0xF0 {
        return d("audio/aac", Audio);
    }
    if starts(b"%PDF-") {
        return d("application/pdf", Document);
    }
    if starts(b"PK\x03\x04") {
        return Some(zip_kind(head));
    }
    if starts(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1") {
        // The compound file of legacy .doc/.xls/.ppt.
        return d("application/vnd.ms-office", Document);
    }
    if is_text(head) {
        return d("text/plain", Document);
    }
    None
}

/// ISO base media (`ftyp` box): MP4/MOV video, M4A audio, HEIC images.
fn iso_media(brand: &[u8]) -> Option<Detected> {
    use MediaClass::*;
    match brand {
        b"M4A " | b"M4B " => d("audio/mp4", Audio),
        b"qt  " => d("video/quicktime", Video),
        b"heic" | b"heix" | b"mif1" | b"msf1" | b"heim" | b"heis" | b"avif" => {
            d("image/heic", Document)
        }
        b"3gp4" | b"3gp5" | b"3gp6" | b"3g2a" => d("video/3gpp", Video),
        _ => d("video/mp4", Video),
    }
}

/// An MPEG audio frame header (no ID3 tag): sync bits, a valid layer and bitrate.
fn mp3_frame(head: &[u8]) -> bool {
    head.len() >= 4
        && head[0] == 0xFF
        && (head[1] & 0xE0) == 0xE0
        && (head[1] & 0x06) != 0
        && (head[2] & 0xF0) != 0xF0
        && (head[2] & 0x0C) != 0x0C
}

/// Office Open XML documents are zip files whose entries live under `word/`, `xl/` or `ppt/`.
fn zip_kind(head: &[u8]) -> Detected {
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    let mime = if has(b"word/") {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    } else if has(b"xl/") {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    } else if has(b"ppt/") {
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    } else {
        "application/zip"
    };
    Detected {
        mime,
        class: MediaClass::Document,
    }
}

/// UTF-8 text without NULs (a character cut at the end of `head` is allowed).
fn is_text(head: &[u8]) -> bool {
    if head.is_empty() || head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(s) => !s
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c')),
        Err(e) => {
            e.error_len().is_none()
                && head.len() - e.valid_up_to() < 4
                && is_text(&head[..e.valid_up_to()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_chat_media_and_refuses_the_rest() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"\xFF\xD8\xFF\xE0\x00\x10JFIF", Some("image/jpeg")),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some("image/png")),
            (b"GIF89a\x01\x00", Some("image/gif")),
            (b"RIFF\x10\0\0\0WEBPVP8 ", Some("image/webp")),
            (b"RIFF\x10\0\0\0WAVEfmt ", Some("audio/wav")),
            (b"\0\0\0\x20ftypisom\0\0\x02\0", Some("video/mp4")),
            (b"\0\0\0\x14ftypqt  \0\0\0\0", Some("video/quicktime")),
            (b"\0\0\0\x20ftypM4A \0\0\0\0", Some("audio/mp4")),
            (b"\0\0\0\x18ftypheic\0\0\0\0", Some("image/heic")),
            (
                b"\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x84webm",
                Some("video/webm"),
            ),
            (b"OggS\0\x02", Some("audio/ogg")),
            (b"ID3\x04\0\0", Some("audio/mpeg")),
            (b"\xFF\xFB\x90\x64", Some("audio/mpeg")),
            (b"%PDF-1.7\n", Some("application/pdf")),
            (
                b"PK\x03\x04\x14\0\0\0[Content_Types].xml....word/document.xml",
                Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
            ),
            (b"PK\x03\x04\x14\0\0\0hello.txt", Some("application/zip")),
            (
                b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\0",
                Some("application/vnd.ms-office"),
            ),
            ("hello, world — xin chào\n".as_bytes(), Some("text/plain")),
            (b"\x7FELF\x02\x01\x01\0", None),
            (b"MZ\x90\0\x03\0", None),
            (b"text with a \0 NUL", None),
            (b"\x01\x02\x03\x04\x05", None),
            (b"", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff(bytes).map(|d| d.mime), *want, "{bytes:?}");
        }
        // A multi-byte character cut by the sniff window is still text.
        let cut = &"chào".as_bytes()[..4];
        assert_eq!(sniff(cut).map(|d| d.mime), Some("text/plain"));
    }
}
