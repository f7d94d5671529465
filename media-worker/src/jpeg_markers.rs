//! A JPEG's structure, marker by marker, streamed from any reader: header segments with their
//! payloads, and the entropy-coded data after each start of scan passed through to a sink
//! (restart markers and stuffed `FF 00` bytes included) without being decoded.
//!
//! Used to count scans before a decoder runs ([`crate::image`]: a few kilobytes can declare
//! thousands of empty progressive scans, each of which costs the decoder a pass) and to copy a
//! JPEG without its metadata segments ([`crate::strip`]).

use std::io::{self, BufRead, Write};

pub(crate) const SOI: u8 = 0xD8;
pub(crate) const EOI: u8 = 0xD9;
pub(crate) const SOS: u8 = 0xDA;

/// A marker and, unless it stands alone (SOI, EOI, RSTn, TEM), its payload (the bytes after
/// the two length bytes).
pub(crate) struct Segment {
    pub marker: u8,
    pub payload: Vec<u8>,
}

fn stands_alone(marker: u8) -> bool {
    matches!(marker, SOI | EOI | 0x01 | 0xD0..=0xD7)
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

/// Walks a JPEG's markers.
pub(crate) struct Markers<R> {
    r: R,
    /// After a SOS: the next bytes are entropy-coded data.
    in_scan: bool,
}

impl<R: BufRead> Markers<R> {
    pub fn new(r: R) -> Self {
        Self { r, in_scan: false }
    }

    fn byte(&mut self) -> io::Result<Option<u8>> {
        let b = self.r.fill_buf()?.first().copied();
        if b.is_some() {
            self.r.consume(1);
        }
        Ok(b)
    }

    /// The next segment, or `None` at the end of the input. Entropy-coded data met on the way
    /// goes to `scan_data`.
    pub fn next(&mut self, scan_data: &mut impl Write) -> io::Result<Option<Segment>> {
        let marker = if self.in_scan {
            match self.copy_scan(scan_data)? {
                Some(m) => m,
                None => return Ok(None),
            }
        } else {
            match self.byte()? {
                None => return Ok(None),
                Some(0xFF) => {}
                Some(_) => return Err(bad("bytes between JPEG segments")),
            }
            // Any number of fill bytes may precede the marker's code.
            loop {
                match self.byte()? {
                    None => return Ok(None),
                    Some(0xFF) => continue,
                    Some(0x00) => return Err(bad("a stuffed byte outside a scan")),
                    Some(m) => break m,
                }
            }
        };
        if stands_alone(marker) {
            return Ok(Some(Segment {
                marker,
                payload: Vec::new(),
            }));
        }
        let (Some(hi), Some(lo)) = (self.byte()?, self.byte()?) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len < 2 {
            return Err(bad("a JPEG segment shorter than its length field"));
        }
        let mut payload = vec![0; len - 2];
        self.r.read_exact(&mut payload)?;
        self.in_scan = marker == SOS;
        Ok(Some(Segment { marker, payload }))
    }

    /// Copies entropy-coded data to `out` up to the marker that ends it, and returns that
    /// marker's code (`None` at the end of the input).
    fn copy_scan(&mut self, out: &mut impl Write) -> io::Result<Option<u8>> {
        loop {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let Some(at) = memchr::memchr(0xFF, buf) else {
                let n = buf.len();
                out.write_all(buf)?;
                self.r.consume(n);
                continue;
            };
            out.write_all(&buf[..at])?;
            self.r.consume(at + 1);
            // The byte after 0xFF decides: data, a restart marker, or the scan's end.
            let mut next = self.byte()?;
            while next == Some(0xFF) {
                next = self.byte()?;
            }
            match next {
                None => return Ok(None),
                Some(b @ (0x00 | 0xD0..=0xD7)) => out.write_all(&[0xFF, b])?,
                Some(m) => {
                    self.in_scan = false;
                    return Ok(Some(m));
                }
            }
        }
    }
}

/// How many scans (SOS segments) `jpeg` has before its end marker.
pub(crate) fn scan_count(jpeg: &[u8]) -> io::Result<usize> {
    let mut markers = Markers::new(jpeg);
    let mut scans = 0;
    while let Some(segment) = markers.next(&mut io::sink())? {
        match segment.marker {
            SOS => scans += 1,
            EOI => break,
            _ => {}
        }
    }
    Ok(scans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_segments_and_passes_scan_data_through() {
        // SOI, COM "hi", SOS (empty header), data with a stuffed byte and a restart, EOI.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x04, b'h', b'i', 0xFF, 0xDA, 0x00, 0x02, 1, 2, 0xFF,
            0x00, 3, 0xFF, 0xD0, 4, 0xFF, 0xFF, 0xD9, 9, 9,
        ];
        let mut markers = Markers::new(&jpeg[..]);
        let mut data = Vec::new();
        let mut seen = Vec::new();
        while let Some(s) = markers.next(&mut data).unwrap() {
            let end = s.marker == EOI;
            seen.push((s.marker, s.payload));
            if end {
                break;
            }
        }
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            [SOI, 0xFE, SOS, EOI]
        );
        assert_eq!(seen[1].1, b"hi");
        assert_eq!(data, [1, 2, 0xFF, 0x00, 3, 0xFF, 0xD0, 4]);
        assert_eq!(scan_count(&jpeg).unwrap(), 1);
    }

    #[test]
    fn refuses_what_is_not_a_jpeg_structure() {
        assert!(scan_count(&[0xFF, 0xD8, 0x12, 0x34]).is_err());
        assert!(scan_count(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01]).is_err());
        // Cut inside a segment's payload.
        assert!(scan_count(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 1, 2]).is_err());
    }
}
