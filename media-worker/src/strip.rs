//! Originals without identifying metadata: [`strip`] copies a JPEG, PNG, WebP or GIF
//! leaving out EXIF (GPS, camera serials, maker notes, times), XMP, IPTC, comments, embedded
//! thumbnails (which can show what a crop cut away) and whatever follows the image (phone
//! trailers, motion-photo videos). The pixels are copied byte for byte — never decoded or
//! re-encoded — and so is what decides how they look: colour profiles (ICC, gamma,
//! chromaticities), transparency, animation, Adobe's colour transform. The EXIF orientation
//! is the one tag kept, in a minimal EXIF block of its own, so the image displays as before.
//!
//! An MP4, MOV, 3GP or M4A file keeps every byte in place, but its user-data and metadata
//! boxes (`udta`, `meta` — where phones put the location, `loci` or `©xyz`, and the make,
//! model and software) become `free` boxes full of zeros: nothing moves, so the sample
//! offsets stay right, and the tracks (with the rotation in their headers) are untouched.
//!
//! Stripping is deterministic, so the same upload stripped twice is the same bytes and is
//! stored once. It walks the file's structure only (segments, chunks, blocks) and streams:
//! memory stays at a few buffers whatever the file's size. A structure it cannot follow is an
//! error: the upload is refused rather than stored with its metadata.

use image::metadata::Orientation;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};

/// Why a file could not be stripped.
#[derive(Debug, thiserror::Error)]
pub enum StripError {
    #[error("the {0} file's structure cannot be read: {1}")]
    Unreadable(&'static str, String),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

fn unreadable(format: &'static str) -> impl Fn(io::Error) -> StripError {
    move |e| match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            StripError::Unreadable(format, e.to_string())
        }
        _ => StripError::Io(e),
    }
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Whether files of this (sniffed) type are stripped.
pub fn strippable(mime: &str) -> bool {
    matches!(
        mime,
        "image/jpeg"
            | "image/png"
            | "image/webp"
            | "image/gif"
            | "video/mp4"
            | "video/quicktime"
            | "video/3gpp"
            | "audio/mp4"
    )
}

/// Copies `input`, an image sniffed as `mime` (see [`strippable`]), to `out` without its
/// metadata.
pub fn strip(
    mime: &str,
    input: &mut (impl BufRead + Seek),
    out: &mut impl Write,
) -> Result<(), StripError> {
    match mime {
        "image/jpeg" => jpeg(input, out).map_err(unreadable("JPEG")),
        "image/png" => png(input, out).map_err(unreadable("PNG")),
        "image/webp" => webp(input, out).map_err(unreadable("WebP")),
        "image/gif" => gif(input, out).map_err(unreadable("GIF")),
        "video/mp4" | "video/quicktime" | "video/3gpp" | "audio/mp4" => {
            iso_media(input, out).map_err(unreadable("MP4"))
        }
        _ => Err(StripError::Unreadable(
            "unknown",
            format!("{mime} is not stripped"),
        )),
    }
}

/// A TIFF structure (big-endian) whose only entry is the orientation: what an EXIF block
/// holds once stripped.
fn orientation_tiff(o: Orientation) -> Vec<u8> {
    let mut t = Vec::with_capacity(26);
    t.extend_from_slice(b"MM\0\x2a\0\0\0\x08"); // byte order, magic, IFD0 at 8
    t.extend_from_slice(&1u16.to_be_bytes()); // one entry
    t.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    t.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    t.extend_from_slice(&1u32.to_be_bytes()); // one value
    t.extend_from_slice(&u16::from(o.to_exif()).to_be_bytes());
    t.extend_from_slice(&[0, 0]); // value padding
    t.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    t
}

/// The orientation an EXIF TIFF structure gives, if it turns or flips the image.
fn turning(tiff: &[u8]) -> Option<Orientation> {
    Orientation::from_exif_chunk(tiff).filter(|o| *o != Orientation::NoTransforms)
}

/// Reads exactly `n` bytes, allocating as they arrive (a hostile length costs nothing).
fn read_n(r: &mut impl Read, n: u64) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.take(n).read_to_end(&mut v)?;
    if (v.len() as u64) < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(v)
}

/// Most bytes of an EXIF block read for its orientation (a JPEG's cannot be larger); a larger
/// block is skipped, orientation and all.
const MAX_EXIF: u64 = 64 * 1024;

/// An EXIF block of `n` bytes, or nothing (skipped) if it is over [`MAX_EXIF`].
fn read_exif(r: &mut (impl BufRead + Seek), n: u64) -> io::Result<Vec<u8>> {
    if n > MAX_EXIF {
        skip(r, n)?;
        return Ok(Vec::new());
    }
    read_n(r, n)
}

/// Skips exactly `n` bytes.
fn skip(r: &mut (impl BufRead + Seek), n: u64) -> io::Result<()> {
    r.seek_relative(n as i64)
}

fn copy_n(r: &mut impl Read, out: &mut impl Write, n: u64) -> io::Result<()> {
    if io::copy(&mut r.take(n), out)? < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

// --- JPEG ---

fn jpeg(input: &mut impl BufRead, out: &mut impl Write) -> io::Result<()> {
    use crate::jpeg_markers::{Markers, EOI, SOI};
    const APP0: u8 = 0xE0;
    const APP1: u8 = 0xE1;
    const APP2: u8 = 0xE2;
    const APP14: u8 = 0xEE;
    const COM: u8 = 0xFE;
    let mut markers = Markers::new(input);
    let mut orientation_written = false;
    let mut first = true;
    // Entropy-coded data goes straight to `out`; segments are written as they are decided.
    let mut sink = Vec::new();
    loop {
        let segment = markers.next(out)?;
        let Some(segment) = segment else {
            // Cut off: what there is has been copied; processing will call it truncated.
            return Ok(());
        };
        let (marker, payload) = (segment.marker, segment.payload);
        if first && marker != SOI {
            return Err(bad("no start-of-image marker"));
        }
        if !first && marker == SOI {
            // Found by the `strip` fuzz target: copied, it made a file the walker refuses.
            return Err(bad("a second start-of-image marker"));
        }
        first = false;
        sink.clear();
        let keep: Option<&[u8]> = match marker {
            SOI | EOI => {
                out.write_all(&[0xFF, marker])?;
                if marker == EOI {
                    // Whatever follows the image is not the image.
                    return Ok(());
                }
                continue;
            }
            // JFIF's header, without the thumbnail it may carry.
            APP0 if payload.starts_with(b"JFIF\0") && payload.len() >= 14 => {
                sink.extend_from_slice(&payload[..14]);
                sink[12] = 0;
                sink[13] = 0;
                Some(&sink)
            }
            APP1 if payload.starts_with(b"Exif\0\0") => match turning(&payload[6..]) {
                Some(o) if !orientation_written => {
                    orientation_written = true;
                    sink.extend_from_slice(b"Exif\0\0");
                    sink.extend_from_slice(&orientation_tiff(o));
                    Some(&sink)
                }
                _ => None,
            },
            APP2 if payload.starts_with(b"ICC_PROFILE\0") => Some(&payload),
            APP14 if payload.starts_with(b"Adobe") => Some(&payload),
            0xE0..=0xEF | COM => None,
            // A restart (or TEM) marker outside a scan has no length to write back; found by
            // the `strip` fuzz target, which made a copy the walker then refused.
            0x01 | 0xD0..=0xD7 => return Err(bad("a stand-alone marker outside a scan")),
            _ => Some(&payload),
        };
        if let Some(payload) = keep {
            let len = u16::try_from(payload.len() + 2).map_err(|_| bad("segment too long"))?;
            out.write_all(&[0xFF, marker])?;
            out.write_all(&len.to_be_bytes())?;
            out.write_all(payload)?;
        }
    }
}

// --- PNG ---

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// Ancillary chunks that change how the image looks (or moves), and are kept.
fn png_keeps(kind: &[u8; 4]) -> bool {
    kind[0].is_ascii_uppercase() // critical: the image cannot do without it
        || matches!(
            kind,
            b"tRNS" | b"cHRM" | b"gAMA" | b"iCCP" | b"sBIT" | b"sRGB" | b"cICP" | b"mDCv"
                | b"cLLi" | b"bKGD" | b"hIST" | b"pHYs" | b"sPLT" | b"acTL" | b"fcTL" | b"fdAT"
        )
}

fn png_chunk(out: &mut impl Write, kind: &[u8; 4], data: &[u8]) -> io::Result<()> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.write_all(&(data.len() as u32).to_be_bytes())?;
    out.write_all(kind)?;
    out.write_all(data)?;
    out.write_all(&crc.finalize().to_be_bytes())
}

fn png(input: &mut (impl BufRead + Seek), out: &mut impl Write) -> io::Result<()> {
    let mut signature = [0; 8];
    input.read_exact(&mut signature)?;
    if &signature != PNG_SIGNATURE {
        return Err(bad("no PNG signature"));
    }
    out.write_all(PNG_SIGNATURE)?;
    let mut orientation_written = false;
    loop {
        let mut header = [0; 8];
        input.read_exact(&mut header)?;
        let len = u64::from(u32::from_be_bytes(header[..4].try_into().expect("4 bytes")));
        let kind: [u8; 4] = header[4..].try_into().expect("4 bytes");
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(bad("a chunk type that is not letters"));
        }
        if &kind == b"eXIf" {
            let data = read_exif(input, len)?;
            skip(input, 4)?;
            if let Some(o) = turning(&data).filter(|_| !orientation_written) {
                orientation_written = true;
                png_chunk(out, b"eXIf", &orientation_tiff(o))?;
            }
        } else if png_keeps(&kind) {
            out.write_all(&header)?;
            copy_n(input, out, len + 4)?;
        } else {
            skip(input, len + 4)?;
        }
        if &kind == b"IEND" {
            return Ok(());
        }
    }
}

// --- WebP ---

/// The chunks of an extended WebP that make up the image; anything else (EXIF, XMP, unknown
/// chunks) is left out.
fn webp_keeps(kind: &[u8; 4]) -> bool {
    matches!(
        kind,
        b"VP8X" | b"VP8 " | b"VP8L" | b"ALPH" | b"ANIM" | b"ANMF" | b"ICCP"
    )
}

/// Most chunks a WebP may have (an animation's frames are chunks).
const MAX_WEBP_CHUNKS: usize = 100_000;

fn webp(input: &mut (impl BufRead + Seek), out: &mut impl Write) -> io::Result<()> {
    const EXIF_FLAG: u8 = 0x08;
    const XMP_FLAG: u8 = 0x04;
    let mut header = [0; 12];
    input.read_exact(&mut header)?;
    if &header[..4] != b"RIFF" || &header[8..] != b"WEBP" {
        return Err(bad("no RIFF WEBP header"));
    }
    let riff_end = 8 + u64::from(u32::from_le_bytes(header[4..8].try_into().expect("4")));
    // First pass: where the kept chunks are, and the orientation.
    let mut kept: Vec<([u8; 4], u64, u64)> = Vec::new();
    let mut orientation = None;
    let mut at = 12u64;
    while at + 8 <= riff_end {
        input.seek(SeekFrom::Start(at))?;
        let mut chunk = [0; 8];
        if input.read_exact(&mut chunk).is_err() {
            break; // a cut-off tail: the chunks before it stand
        }
        let kind: [u8; 4] = chunk[..4].try_into().expect("4 bytes");
        let size = u64::from(u32::from_le_bytes(chunk[4..].try_into().expect("4")));
        let padded = size + (size & 1);
        if &kind == b"EXIF" && orientation.is_none() {
            let data = read_exif(input, size)?;
            // Some writers put the JPEG-style "Exif\0\0" prefix before the TIFF header.
            let tiff = data.strip_prefix(b"Exif\0\0").unwrap_or(&data);
            orientation = turning(tiff);
        } else if webp_keeps(&kind) {
            if kept.len() == MAX_WEBP_CHUNKS {
                return Err(bad("too many chunks"));
            }
            kept.push((kind, at, padded));
        }
        at += 8 + padded;
    }
    if !matches!(kept.first(), Some((k, ..)) if k == b"VP8X" || k == b"VP8 " || k == b"VP8L") {
        return Err(bad("no image chunk"));
    }
    let exif = orientation.map(orientation_tiff);
    let exif_size = exif
        .as_ref()
        .map_or(0, |e| 8 + e.len() as u64 + (e.len() as u64 & 1));
    let body: u64 = kept.iter().map(|(_, _, padded)| 8 + padded).sum::<u64>() + exif_size;
    let riff_size = u32::try_from(4 + body).map_err(|_| bad("too large"))?;
    out.write_all(b"RIFF")?;
    out.write_all(&riff_size.to_le_bytes())?;
    out.write_all(b"WEBP")?;
    for (kind, at, padded) in &kept {
        input.seek(SeekFrom::Start(*at))?;
        if kind == b"VP8X" {
            // Flags say which metadata follows: now only the orientation's EXIF, if any.
            if *padded > 64 {
                return Err(bad("a VP8X chunk of the wrong size"));
            }
            let mut chunk = read_n(input, 8 + padded)?;
            if chunk.len() < 9 {
                return Err(bad("a VP8X chunk without flags"));
            }
            chunk[8] &= !(EXIF_FLAG | XMP_FLAG);
            if exif.is_some() {
                chunk[8] |= EXIF_FLAG;
            }
            out.write_all(&chunk)?;
        } else {
            copy_n(input, out, 8 + padded)?;
        }
    }
    if let Some(exif) = &exif {
        // A simple (VP8/VP8L-only) file cannot carry EXIF: only VP8X announces it.
        if &kept[0].0 != b"VP8X" {
            return Err(bad("EXIF in a WebP without a VP8X header"));
        }
        out.write_all(b"EXIF")?;
        out.write_all(&(exif.len() as u32).to_le_bytes())?;
        out.write_all(exif)?;
        if exif.len() & 1 == 1 {
            out.write_all(&[0])?;
        }
    }
    Ok(())
}

// --- GIF ---

fn gif(input: &mut (impl BufRead + Seek), out: &mut impl Write) -> io::Result<()> {
    let mut header = [0; 13];
    input.read_exact(&mut header)?;
    if &header[..6] != b"GIF87a" && &header[..6] != b"GIF89a" {
        return Err(bad("no GIF header"));
    }
    out.write_all(&header)?;
    if header[10] & 0x80 != 0 {
        copy_n(input, out, 3 << ((header[10] & 7) + 1))?;
    }
    loop {
        let mut kind = [0; 1];
        input.read_exact(&mut kind)?;
        match kind[0] {
            // Extension: graphic control and plain text shape the frames; of the application
            // extensions, only looping is kept. Comments and the rest (XMP) go.
            0x21 => {
                let mut label = [0; 1];
                input.read_exact(&mut label)?;
                let keep = match label[0] {
                    0xF9 | 0x01 => true,
                    0xFF => {
                        // The first sub-block names the application.
                        let size = read_n(input, 1)?;
                        let id = read_n(input, u64::from(size[0]))?;
                        let looping = matches!(&id[..], b"NETSCAPE2.0" | b"ANIMEXTS1.0");
                        if looping {
                            out.write_all(&[0x21, 0xFF, size[0]])?;
                            out.write_all(&id)?;
                        }
                        if size[0] != 0 {
                            gif_blocks(input, looping.then_some(&mut *out))?;
                        } else if looping {
                            out.write_all(&[0])?;
                        }
                        continue;
                    }
                    _ => false,
                };
                if keep {
                    out.write_all(&[0x21, label[0]])?;
                }
                gif_blocks(input, keep.then_some(&mut *out))?;
            }
            // An image: descriptor, local colour table, LZW data.
            0x2C => {
                let descriptor = read_n(input, 9)?;
                out.write_all(&[0x2C])?;
                out.write_all(&descriptor)?;
                if descriptor[8] & 0x80 != 0 {
                    copy_n(input, out, 3 << ((descriptor[8] & 7) + 1))?;
                }
                copy_n(input, out, 1)?; // LZW minimum code size
                gif_blocks(input, Some(out))?;
            }
            0x3B => return out.write_all(&[0x3B]),
            _ => return Err(bad("an unknown GIF block")),
        }
    }
}

/// Copies (to `out`) or skips a run of data sub-blocks, its terminator included.
fn gif_blocks(
    input: &mut (impl BufRead + Seek),
    mut out: Option<&mut impl Write>,
) -> io::Result<()> {
    loop {
        let mut size = [0; 1];
        input.read_exact(&mut size)?;
        match out.as_deref_mut() {
            Some(out) => {
                out.write_all(&size)?;
                copy_n(input, out, u64::from(size[0]))?;
            }
            None => skip(input, u64::from(size[0]))?,
        }
        if size[0] == 0 {
            return Ok(());
        }
    }
}

// --- MP4, MOV, 3GP, M4A (ISO base media) ---

/// Most boxes looked at in one file, all levels together (a phone's clip has a few dozen):
/// what the walk remembers stays small whatever a hostile file nests.
const MAX_BOXES: usize = 10_000;

/// A box directly inside another: its type, where it starts, its header's length, its end.
type IsoBox = ([u8; 4], u64, u64, u64);

/// The boxes directly inside `[start, end)`, each charged to `budget`.
fn iso_boxes(
    input: &mut (impl BufRead + Seek),
    start: u64,
    end: u64,
    budget: &mut usize,
) -> io::Result<Vec<IsoBox>> {
    let mut boxes = Vec::new();
    let mut at = start;
    while at + 8 <= end {
        *budget = budget.checked_sub(1).ok_or_else(|| bad("too many boxes"))?;
        input.seek(SeekFrom::Start(at))?;
        let mut header = [0; 8];
        input.read_exact(&mut header)?;
        let kind: [u8; 4] = header[4..].try_into().expect("4 bytes");
        let (size, header_len) = match u32::from_be_bytes(header[..4].try_into().expect("4")) {
            0 => (end - at, 8),
            1 => {
                let mut large = [0; 8];
                input.read_exact(&mut large)?;
                (u64::from_be_bytes(large), 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header_len || size > end - at {
            return Err(bad("a box that does not fit in its parent"));
        }
        boxes.push((kind, at, header_len, at + size));
        at += size;
    }
    Ok(boxes)
}

fn iso_media(input: &mut (impl BufRead + Seek), out: &mut impl Write) -> io::Result<()> {
    let len = input.seek(SeekFrom::End(0))?;
    let mut budget = MAX_BOXES;
    let top = iso_boxes(input, 0, len, &mut budget)?;
    if !matches!(top.first(), Some((kind, ..)) if kind == b"ftyp") {
        return Err(bad("no ftyp box first"));
    }
    // The boxes to blank, and the containers (the movie, its tracks) still to look into.
    let mut blank: Vec<(u64, u64)> = Vec::new();
    let mut containers: Vec<(u64, u64)> = Vec::new();
    for (kind, at, header, end) in &top {
        match kind {
            b"moov" => containers.push((at + header, *end)),
            // Metadata beside the movie (a top-level `meta` or `udta`).
            b"udta" | b"meta" => blank.push((*at, *end)),
            _ => {}
        }
    }
    while let Some((start, end)) = containers.pop() {
        for (kind, at, header, box_end) in iso_boxes(input, start, end, &mut budget)? {
            match &kind {
                b"udta" | b"meta" => blank.push((at, box_end)),
                b"trak" => containers.push((at + header, box_end)),
                _ => {}
            }
        }
    }
    blank.sort_unstable();
    input.seek(SeekFrom::Start(0))?;
    let mut copied = 0;
    for (at, end) in blank {
        copy_n(input, out, at - copied)?;
        // The size stays (a 64-bit one too, as zeros follow it), the type becomes `free`.
        let mut header = [0; 8];
        input.read_exact(&mut header)?;
        out.write_all(&header[..4])?;
        out.write_all(b"free")?;
        io::copy(&mut io::repeat(0).take(end - at - 8), out)?;
        input.seek(SeekFrom::Start(end))?;
        copied = end;
    }
    copy_n(input, out, len - copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn stripped(mime: &str, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        strip(mime, &mut Cursor::new(bytes), &mut out).unwrap();
        out
    }

    fn has(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn rgb(w: u32, h: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 99]))
    }

    fn camera_exif() -> Vec<u8> {
        crate::fixtures::camera_exif(6)
    }

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    #[test]
    fn jpeg_keeps_pixels_and_orientation_only() {
        let mut plain = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 85)
            .encode_image(&rgb(40, 30))
            .unwrap();
        // A phone's EXIF, XMP, comment and trailer; then IPTC and a colour profile.
        let camera = crate::fixtures::camera_jpeg(&plain, 6);
        let icc = b"ICC_PROFILE\0\x01\x01fake-profile".to_vec();
        let mut photo = camera[..2].to_vec();
        photo.extend(segment(0xED, b"Photoshop 3.0\08BIM IPTC byline"));
        photo.extend(segment(0xE2, &icc));
        photo.extend_from_slice(&camera[2..]);

        let out = stripped("image/jpeg", &photo);
        for secret in [
            &b"SERIAL"[..],
            b"GPS",
            b"taken at home",
            b"IPTC",
            b"SEFT",
            b"xmpmeta",
        ] {
            assert!(
                !has(&out, secret),
                "{:?} left in",
                String::from_utf8_lossy(secret)
            );
        }
        assert!(has(&out, b"fake-profile"), "the colour profile stays");
        // The pixels are the same bytes, and the orientation still turns the picture.
        let a = image::load_from_memory(&photo).unwrap().to_rgb8();
        let b = image::load_from_memory(&out).unwrap().to_rgb8();
        assert_eq!(a.as_raw(), b.as_raw());
        let mut dec = jpeg_decoder::Decoder::new(Cursor::new(&out));
        dec.read_info().unwrap();
        let o = dec.exif_data().and_then(Orientation::from_exif_chunk);
        assert_eq!(o, Some(Orientation::Rotate90));
        // Deterministic: stripping twice gives the same bytes; stripping is idempotent.
        assert_eq!(stripped("image/jpeg", &photo), out);
        assert_eq!(stripped("image/jpeg", &out), out);
    }

    #[test]
    fn png_drops_text_time_and_exif_but_keeps_colour() {
        use image::ImageEncoder;
        let mut plain = Vec::new();
        image::codecs::png::PngEncoder::new(&mut plain)
            .write_image(rgb(20, 10).as_raw(), 20, 10, image::ExtendedColorType::Rgb8)
            .unwrap();
        // After IHDR (8 + 25 bytes): text, time, EXIF, gamma.
        let mut photo = plain[..33].to_vec();
        png_chunk(&mut photo, b"tEXt", b"Author\0Alice at 12 Rue X").unwrap();
        png_chunk(&mut photo, b"tIME", &[7, 234, 1, 2, 3, 4, 5]).unwrap();
        png_chunk(&mut photo, b"eXIf", &camera_exif()).unwrap();
        png_chunk(&mut photo, b"gAMA", &45455u32.to_be_bytes()).unwrap();
        png_chunk(&mut photo, b"prVt", b"private maker data").unwrap();
        photo.extend_from_slice(&plain[33..]);
        let out = stripped("image/png", &photo);
        for secret in [&b"Alice"[..], b"tIME", b"SERIAL", b"GPS", b"maker"] {
            assert!(
                !has(&out, secret),
                "{:?} left in",
                String::from_utf8_lossy(secret)
            );
        }
        assert!(has(&out, b"gAMA") && has(&out, b"eXIf"));
        let a = image::load_from_memory(&photo).unwrap().to_rgb8();
        let b = image::load_from_memory(&out).unwrap().to_rgb8();
        assert_eq!(a.as_raw(), b.as_raw());
    }

    #[test]
    fn webp_drops_xmp_and_exif_except_orientation() {
        let mut plain = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut plain)
            .encode(rgb(16, 16).as_raw(), 16, 16, image::ExtendedColorType::Rgb8)
            .unwrap();
        assert_eq!(&plain[12..16], b"VP8L");
        // Rebuild as an extended file: VP8X (EXIF + XMP flags), the image, EXIF, XMP.
        let image_chunk = &plain[12..];
        let mut body = b"WEBP".to_vec();
        let mut vp8x = vec![0x08 | 0x04, 0, 0, 0];
        vp8x.extend_from_slice(&[15, 0, 0, 15, 0, 0]); // 16 × 16, minus one, 24-bit
        let chunk = |body: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
            body.extend_from_slice(kind);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        };
        chunk(&mut body, b"VP8X", &vp8x);
        body.extend_from_slice(image_chunk);
        chunk(&mut body, b"EXIF", &camera_exif());
        chunk(&mut body, b"XMP ", b"<x:xmpmeta>GPS</x:xmpmeta>");
        let mut photo = b"RIFF".to_vec();
        photo.extend_from_slice(&(body.len() as u32).to_le_bytes());
        photo.extend_from_slice(&body);

        let out = stripped("image/webp", &photo);
        for secret in [&b"SERIAL"[..], b"GPS", b"xmpmeta"] {
            assert!(
                !has(&out, secret),
                "{:?} left in",
                String::from_utf8_lossy(secret)
            );
        }
        assert_eq!(out[20] & 0x0C, 0x08, "the EXIF flag alone");
        let riff = u32::from_le_bytes(out[4..8].try_into().unwrap()) as usize;
        assert_eq!(riff + 8, out.len());
        let a = image::load_from_memory(&photo).unwrap().to_rgb8();
        let b = image::load_from_memory(&out).unwrap().to_rgb8();
        assert_eq!(a.as_raw(), b.as_raw());
    }

    #[test]
    fn gif_drops_comments_and_xmp_and_keeps_looping() {
        let mut plain = Vec::new();
        {
            let frame = image::Frame::new(image::RgbaImage::from_fn(4, 3, |x, y| {
                image::Rgba([(x * 60) as u8, (y * 80) as u8, 7, 255])
            }));
            let mut enc = image::codecs::gif::GifEncoder::new(&mut plain);
            enc.set_repeat(image::codecs::gif::Repeat::Infinite)
                .unwrap();
            enc.encode_frames([frame]).unwrap();
        }
        let mut at = 13;
        if plain[10] & 0x80 != 0 {
            at += 3 << ((plain[10] & 7) + 1);
        }
        let mut gif = plain[..at].to_vec();
        gif.extend_from_slice(b"\x21\xFE\x0Dat the office\x00");
        gif.extend_from_slice(b"\x21\xFF\x0BXMP DataXMP\x05<GPS>\x00");
        gif.extend_from_slice(&plain[at..]);
        let out = stripped("image/gif", &gif);
        assert!(!has(&out, b"office") && !has(&out, b"GPS") && !has(&out, b"XMP"));
        assert!(has(&out, b"NETSCAPE2.0"));
        let a = image::load_from_memory(&gif).unwrap().to_rgba8();
        let b = image::load_from_memory(&out).unwrap().to_rgba8();
        assert_eq!(a.as_raw(), b.as_raw());
    }

    #[test]
    fn mp4_loses_its_location_and_tags_but_keeps_its_frames() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.mp4");
        crate::fixtures::h264_clip("320x240", "2", &[], &plain);
        // Shot sideways where it says, as a phone records it (a stream copy sets the rotation).
        let clip = dir.path().join("phone.mp4");
        let src = plain.display().to_string();
        crate::fixtures::ffmpeg(
            &[
                "-i",
                &src,
                "-c",
                "copy",
                "-metadata:s:v:0",
                "rotate=90",
                "-metadata",
                "location=+48.8577+002.2950/",
                "-metadata",
                "title=secret title",
            ],
            &clip,
        );
        let phone = std::fs::read(&clip).unwrap();
        assert!(has(&phone, b"loci") && has(&phone, b"secret title"));
        let out = stripped("video/mp4", &phone);
        assert_eq!(out.len(), phone.len(), "nothing moves");
        assert!(!has(&out, b"loci") && !has(&out, b"secret title"));
        assert!(!has(&out, b"udta"));
        // The same frames, rotation and duration: the poster is the same image.
        let stripped_clip = dir.path().join("stripped.mp4");
        std::fs::write(&stripped_clip, &out).unwrap();
        let limits = crate::video::VideoLimits::default();
        let mp4 = crate::video::Container::Mp4;
        let a = crate::video::process_video(&clip, mp4, &limits).unwrap();
        let b = crate::video::process_video(&stripped_clip, mp4, &limits).unwrap();
        assert_eq!((a.width, a.height), (240, 320), "turned");
        assert_eq!(
            (b.width, b.height, b.rotation),
            (a.width, a.height, a.rotation)
        );
        assert_eq!((a.duration_ms, a.poster), (b.duration_ms, b.poster));
        // Idempotent and deterministic.
        assert_eq!(stripped("video/mp4", &out), out);
    }

    #[test]
    fn a_movie_of_countless_boxes_is_refused() {
        // 6 000 tracks of two empty boxes each: 18 000 boxes in 144 KB.
        let mut trak = 24u32.to_be_bytes().to_vec();
        trak.extend_from_slice(b"trak");
        for kind in [b"udta", b"free"] {
            trak.extend_from_slice(&8u32.to_be_bytes());
            trak.extend_from_slice(kind);
        }
        let tracks = trak.repeat(6_000);
        let mut mp4 = b"\0\0\0\x10ftypisom\0\0\0\0".to_vec();
        mp4.extend_from_slice(&(8 + tracks.len() as u32).to_be_bytes());
        mp4.extend_from_slice(b"moov");
        mp4.extend_from_slice(&tracks);
        let r = strip("video/mp4", &mut Cursor::new(&mp4), &mut Vec::new());
        assert!(
            matches!(&r, Err(StripError::Unreadable(_, why)) if why.contains("too many boxes")),
            "{r:?}"
        );
        // A thousand tracks are fine.
        let ok = &mp4[..16 + 8 + 24_000];
        let mut ok = ok.to_vec();
        ok[16..20].copy_from_slice(&(8 + 24_000u32).to_be_bytes());
        assert_eq!(stripped("video/mp4", &ok).len(), ok.len());
    }

    #[test]
    fn hostile_structures_are_refused_or_bounded() {
        let cases: &[(&str, &[u8])] = &[
            ("image/jpeg", b"\xFF\xD8\x00\x00garbage"),
            ("image/png", b"\x89PNG\r\n\x1a\n\xFF\xFF\xFF\xFFIDAT"),
            ("image/png", b"\x89PNG\r\n\x1a\n\0\0\0\x01\0\0\0\0"),
            (
                "image/webp",
                b"RIFF\xFF\xFF\xFF\xFFWEBPEXIF\xFF\xFF\xFF\x7F",
            ),
            ("image/gif", b"GIF89a\x01\0\x01\0\0\0\0\x99"),
            ("image/gif", b"GIF89a\x01\0\x01\0\0\0\0\x21\xFE\x30short"),
            ("video/mp4", b"\0\0\0\x10ftypisom\0\0\0\0\0\0\0\x30moov"),
            ("video/mp4", b"\0\0\0\x04ftyp"),
            ("video/mp4", b"\0\0\0\x08mdat\0\0\0\x08ftyp"),
        ];
        for (mime, bytes) in cases {
            let r = strip(mime, &mut Cursor::new(bytes), &mut Vec::new());
            assert!(
                matches!(r, Err(StripError::Unreadable(..))),
                "{mime} {bytes:?}: {r:?}"
            );
        }
    }
}
